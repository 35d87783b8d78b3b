#!/usr/bin/env bash
# run.sh BUILD_DIR: installs that build of troupe into a temporary prefix,
# builds test/consumer against it with find_package(troupe) and with
# pkg-config, and runs both programs. Exit status 0 when both say ok.
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" > /dev/null
libdir=$(find "$prefix" -name 'libtroupe.so*' -printf '%h\n' | head -1)
echo "installed into $prefix ($libdir)"

# 1. CMake: find_package(troupe)
cmake -S "$here" -B "$prefix/by-cmake" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
cmake --build "$prefix/by-cmake" > /dev/null
LD_LIBRARY_PATH="$libdir" "$prefix/by-cmake/consumer"

# 2. pkg-config
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 -Wall -Wextra -Werror -o "$prefix/by-pkgconfig" "$here/main.c" \
  $(pkg-config --cflags --libs troupe)
LD_LIBRARY_PATH="$libdir" "$prefix/by-pkgconfig"
echo "consumer: both builds ran"
