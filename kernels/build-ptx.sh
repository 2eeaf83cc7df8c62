#!/bin/sh
# Regenerates the committed PTX from the CUDA sources (needs clang; no CUDA toolkit).
# Usage: kernels/build-ptx.sh [output-dir]   (default: kernels/)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
clang=${CLANG:-clang}
for name in ladder_scale; do
  "$clang" -x cuda --cuda-device-only -S --cuda-gpu-arch=sm_52 -nocudainc -nocudalib -O3 \
    "$here/$name.cu" -o "$out/$name.ptx"
done
