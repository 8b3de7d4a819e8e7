#!/usr/bin/env bash
# Build Edgespec.xcframework (static libedgespec.a for iOS devices and the simulator, with the C
# header and a module map) for Xcode or a Swift package (see Package.swift).
# Needs macOS with Xcode and:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios
# Not run in edgespec's CI (no macOS there); see README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=platforms/ios/build
rm -rf "$out" && mkdir -p "$out/headers" "$out/sim"
export IPHONEOS_DEPLOYMENT_TARGET=${IPHONEOS_DEPLOYMENT_TARGET:-15.0}

for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  cargo build --release --lib --target "$t"
done
# One simulator library for both simulator architectures.
lipo -create target/aarch64-apple-ios-sim/release/libedgespec.a target/x86_64-apple-ios/release/libedgespec.a \
  -output "$out/sim/libedgespec.a"

cp platforms/include/edgespec.h "$out/headers/"
cat > "$out/headers/module.modulemap" <<'MAP'
module EdgespecC {
    header "edgespec.h"
    export *
}
MAP

xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libedgespec.a -headers "$out/headers" \
  -library "$out/sim/libedgespec.a" -headers "$out/headers" \
  -output "$out/Edgespec.xcframework"
echo "built $out/Edgespec.xcframework"
