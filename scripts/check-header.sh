#!/usr/bin/env bash
# Fail when platforms/include/edgespec.h is not what cbindgen generates from src/ffi/ now.
# Usage: scripts/check-header.sh [--fix]   (--fix rewrites the committed header instead)
# Installs the pinned cbindgen with `cargo install` if it is missing or another version.
set -euo pipefail
cd "$(dirname "$0")/.."

CBINDGEN_VERSION=0.29.4
header=platforms/include/edgespec.h

if ! cbindgen --version 2>/dev/null | grep -qx "cbindgen $CBINDGEN_VERSION"; then
  echo "installing cbindgen $CBINDGEN_VERSION" >&2
  cargo install --locked --quiet cbindgen --version "$CBINDGEN_VERSION"
fi

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# cbindgen's warnings about items it skips (private constants of other modules) are noise here.
cbindgen --quiet --config cbindgen.toml --output "$tmp" 2>/dev/null \
  || { cbindgen --config cbindgen.toml --output "$tmp"; exit 1; }

if [ "${1:-}" = "--fix" ]; then
  cp "$tmp" "$header"
  echo "regenerated $header"
elif ! diff -u "$header" "$tmp"; then
  echo "error: $header is stale; run scripts/check-header.sh --fix and commit it" >&2
  exit 1
else
  echo "$header is current"
fi
