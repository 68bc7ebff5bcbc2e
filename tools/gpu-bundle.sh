#!/usr/bin/env bash
# gpu-bundle.sh: packs a CUDA build for a GPU machine that can neither install packages nor build quickly:
# the four programs tools/gpu-check.sh runs, and the shared libraries they load that such a machine may lack
# (sentencepiece, utf8proc, liburing, ...). glibc, libstdc++ and the CUDA libraries are left to the target
# (its own are as new or newer; cudart and cuBLAS come with its toolkit or driver).
#
#   BUILD_DIR=build-h200 FERRY_CUDA=ON CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=90 bash tools/build.sh
#   bash tools/gpu-bundle.sh build-h200 .gpu-bundle
#   # on the GPU machine, in the repository root:
#   tar -C .gpu-bundle -xzf .gpu-bundle/lib.tar.gz
#   LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64 BUILD_DIR=.gpu-bundle \
#     bash tools/gpu-check.sh gpu ops generate pipeline memcheck probe report
#
# The test binary finds its data by the absolute source path it was configured with (FERRY_TEST_DATA);
# on another machine, link that path to the checkout (printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: gpu-bundle.sh BUILD_DIR DEST}
DEST=${2:?usage: gpu-bundle.sh BUILD_DIR DEST}
programs=(ferry make_model tests/ferry_ops tests/ferry_tests)
rm -rf "$DEST"
mkdir -p "$DEST/lib" "$DEST/tests"
for p in "${programs[@]}"; do
  [[ -x $BUILD/$p ]] || { echo "gpu-bundle: $BUILD/$p is not built" >&2; exit 1; }
  cp "$BUILD/$p" "$DEST/$p"
  strip --strip-debug "$DEST/$p"
done
# libraries every Linux with a CUDA driver has, or that must come from the target's own CUDA install
keep_out='^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux.*|linux-vdso|libcuda|libcudart|libcublas|libcublasLt)\.so'
for p in "${programs[@]}"; do
  ldd "$BUILD/$p" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $keep_out ]] && continue
  cp -L "$path" "$DEST/lib/$name"
done
libs=$(ls "$DEST/lib" | tr '\n' ' ')
# compressed, to fit the transfer limits of a remote runner (oneDNN alone is some 40 MB)
tar -C "$DEST" -czf "$DEST/lib.tar.gz" lib
rm -rf "$DEST/lib"
echo "gpu-bundle: $(du -sh "$DEST" | cut -f1) in $DEST: ${programs[*]}; libraries (lib.tar.gz): $libs"
echo "gpu-bundle: tests read data from $(grep -o 'FERRY_TEST_DATA=[^ ]*' "$BUILD/build.ninja" | head -n 1 | cut -d= -f2- | tr -d '"\\')"
