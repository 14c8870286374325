#!/usr/bin/env bash
# gpu_bundle: on a build machine without a GPU, builds the GPU check's programs (Release, CUDA ON,
# sm_90) and packs them into gpu-bundle/ with the one non-CUDA library they load (libgomp), so a GPU
# machine whose image lacks kvmesh's build dependencies (MPI, Boost, GoogleTest) can run
# bench/gpu_check.sh without building. The GPU machine must provide the CUDA runtime and cuBLAS
# (libcudart.so.13, libcublas.so.13, libcublasLt.so.13). The programs read the test data and
# tokenizer from this source tree's path, which gpu_check.sh links to wherever the tree lands.
# gpu-bundle.tar.gz holds the same, compressed (about a quarter of the size): the copy of the tree
# sent to a GPU machine can carry that file alone, and gpu_check.sh unpacks it.
# Usage: bench/gpu_bundle.sh [build-dir]    Environment: KVMESH_BUILD_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-gpu}"
bundle=gpu-bundle
programs=(tools/kvmesh-generate bench/gpu_decode_bench bench/gpu_products_bench)
for f in tests/gpu/*_test.cpp; do programs+=("tests/$(basename "$f" .cpp)"); done

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVMESH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real >/dev/null
targets=()
for p in "${programs[@]}"; do targets+=("$(basename "$p")"); done
cmake --build "$build" -j"${KVMESH_BUILD_JOBS:-2}" --target "${targets[@]}"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
for p in "${programs[@]}"; do
  cp "$build/$p" "$bundle/bin/"
  strip --strip-debug "$bundle/bin/$(basename "$p")"
done
gomp="$(ldd "$build/tests/cuda_ops_test" | awk '/libgomp/ {print $3}')"
[ -n "$gomp" ] && cp -L "$gomp" "$bundle/lib/"
pwd >"$bundle/source_root"
# The commit, marked when the tree had changes it does not hold (gpu_check.sh then warns).
{ git rev-parse HEAD 2>/dev/null | tr -d '\n'; [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || printf '+changes'; echo; } \
  >"$bundle/commit" || true
tar -czf "$bundle.tar.gz" "$bundle"
echo "gpu_bundle: $(du -sh "$bundle" | cut -f1) in $bundle, $(du -sh "$bundle.tar.gz" | cut -f1) in $bundle.tar.gz" \
  "(commit $(cat "$bundle/commit" 2>/dev/null))"
