#!/usr/bin/env bash
# One command that measures the GPU backend on a machine with a GPU (Vulkan or Metal): lists the
# adapters, then for each catalog model prefill and plain decode tok/s on the GPU and on the CPU,
# and `bench --strategies plain,lookup,auto` on the GPU (every strategy checked against plain).
# Models come from the cache (pulled when missing, so the first run needs the network).
#
#   scripts/gpu-bench.sh [MODEL ...]        # default: the three catalog models
#   EDGESPEC_GPU_ADAPTER=1 scripts/gpu-bench.sh   # pick an adapter (index or name, see info --devices)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo build --release --locked
B="${CARGO_TARGET_DIR:-target}/release/edgespec"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(smollm2-135m gemma3-270m qwen2.5-coder-0.5b)
prompt="Write a Python function that parses an ISO 8601 date and returns the weekday, with tests."

echo "== adapters"
"$B" info --devices
for m in "${models[@]}"; do
  "$B" pull "$m" >/dev/null
  for dev in gpu cpu; do
    echo "== $m on $dev: plain, 128 tokens (the stats line gives prefill and decode tok/s)"
    "$B" run --device "$dev" -m "$m" --chat -p "$prompt" -n 128 --temp 0 --strategy plain --stats 2>&1 >/dev/null \
      | grep -E "^(prefill|strategy|device)"
  done
  echo "== $m: bench on the GPU"
  "$B" bench --device gpu -m "$m" --strategies plain,lookup,auto --reps 3 --power none
done
