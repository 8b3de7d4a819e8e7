#!/usr/bin/env bash
# Build the kernel tests for 64-bit ARM and run them under qemu user-mode emulation, so the NEON
# kernels are compiled and checked bitwise against the scalar references on an x86-64 Debian
# machine. CI runs this (.ci/run); anyone with a clone and root can too:
#
#   scripts/aarch64-test.sh                # the kernel tests (tests/kernels*.rs, lib kernels:: quant::)
#   scripts/aarch64-test.sh --lib foo::    # any other `cargo test` arguments instead
#
# Why it is built this way:
# - rustup cannot download other targets' standard libraries on every network this project runs
#   on; Debian's `rustc-web` compiler ships its aarch64 standard library as the multiarch package
#   `libstd-rust-web-dev:arm64`, so these builds use that compiler (RUSTC=/usr/bin/rustc).
# - The test binaries are linked statically: dynamically linked aarch64 programs that start
#   threads have hung under qemu-user on these machines, static ones run (rayon included).
# - `-cpu max` gives the emulated core every optional extension (dotprod, i8mm), so the kernel
#   tables that need them run too (QEMU_CPU overrides it).
# Emulation is 10-50x slower than a real core: correctness only, never timings.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
[ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ] || missing+=(rustc-web libstd-rust-web-dev:arm64)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "aarch64-test: needs ${missing[*]} (apt-get, as root)" >&2
    exit 1
  fi
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export QEMU_CPU="${QEMU_CPU:-max}"
# A target dir of its own: another compiler would invalidate the host build's cache.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_AARCH64:-target/aarch64-cross}"
echo "aarch64-test: $($RUSTC --version), qemu-aarch64-static -cpu $QEMU_CPU, target dir $CARGO_TARGET_DIR"

target=(--release --locked --target aarch64-unknown-linux-gnu)
if [ $# -gt 0 ]; then
  cargo test "${target[@]}" "$@"
else
  cargo test "${target[@]}" --no-default-features --test kernels --test kernels_interleaved
  cargo test "${target[@]}" --no-default-features --lib -- kernels:: quant::
fi
