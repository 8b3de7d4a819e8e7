#!/usr/bin/env bash
# Check the JNI glue (../jni/edgespec_jni.c) on a Linux host with a JDK, without Android: build it
# against the host libedgespec.so, and drive it from Java classes that stand in for the Kotlin
# ones (same class names, so the same JNI symbols). Usage: check.sh MODEL.gguf
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
lib=${CARGO_TARGET_DIR:-$root/target}/release
jdk=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$root" && cargo build --release --lib)
cc -shared -fPIC -Wall -Wextra -Werror -I"$root/platforms/include" -I"$jdk/include" -I"$jdk/include/linux" \
  "$here/../jni/edgespec_jni.c" -o "$out/libedgespec_jni.so" -L"$lib" -ledgespec -Wl,-rpath,"$lib"
javac -d "$out" "$here"/dev/edgespec/*.java "$here/Smoke.java"
java -Djava.library.path="$out" -cp "$out" Smoke "$1"
