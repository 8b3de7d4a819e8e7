#!/usr/bin/env bash
# Build libedgespec.so for the Android ABIs into jniLibs/<abi>/, ready for an app's
# src/main/jniLibs (the JNI glue in jni/ is built by the app's CMake against it).
# Needs: the Android NDK (ANDROID_NDK_HOME), `cargo install cargo-ndk`, and
#   rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
# Not run in edgespec's CI (no NDK there); see README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=platforms/android/jniLibs
API=${ANDROID_API:-24}
cargo ndk --platform "$API" -t arm64-v8a -t armeabi-v7a -t x86_64 -o "$out" build --release --lib
ls -l "$out"/*/libedgespec.so
