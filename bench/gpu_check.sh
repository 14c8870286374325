#!/usr/bin/env bash
# gpu_check: on a GPU machine, runs the gpu tests (each CUDA op against its CPU twin, the HF fixture
# end to end in bf16, decode graphs against eager steps, TP/PP over NCCL when there are GPUs
# enough), then the decode benchmark for the GPT-2 XL shape (bf16, synthetic weights) at batch 1,
# 8, 32 and 128, with and without decode graphs, beside the weight-bytes roofline. Prints a short
# table last. The programs come from gpu-bundle/ when it is there (made by bench/gpu_bundle.sh on a
# build machine: for GPU images without kvmesh's build dependencies), else they are built here
# (Release, CUDA ON, sm_90) into build-gpu.
# Usage: bench/gpu_check.sh [build-dir]     Environment: GPU_CHECK_BUILD=1 (build even with a
#        bundle), KVMESH_BUILD_JOBS (default: all cores), GPU_CHECK_NEW_TOKENS (decode tokens per
#        sequence, default 64). Logs go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
build="${1:-build-gpu}"
logs="${OUT:-$root/$build-logs}"
mkdir -p "$logs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
start=$(date +%s)
stamp() { echo "[gpu_check $(( $(date +%s) - start ))s] $*"; }

nvidia-smi -L || { echo "gpu_check: nvidia-smi finds no GPU" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv || true

# Directories holding a CUDA library (the toolkit's, or the Python packages' nvidia/*/lib).
cuda_lib_dirs() {
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && echo "$d"
  done
  python3 - 2>/dev/null <<'PY' || true
import glob, os
try:
    import nvidia
    for base in nvidia.__path__:
        for lib in sorted(glob.glob(os.path.join(base, "*", "lib"))):
            print(lib)
except Exception:
    pass
PY
}

if [ -d gpu-bundle ] && [ -z "${GPU_CHECK_BUILD:-}" ]; then
  stamp "programs from gpu-bundle (commit $(cat gpu-bundle/commit 2>/dev/null || echo unknown))"
  head="$(git rev-parse HEAD 2>/dev/null || true)"
  if [ -n "$head" ] && [ "$head" != "$(cat gpu-bundle/commit 2>/dev/null)" ]; then
    echo "gpu_check: warning: the bundle was built from another commit than this tree's $head"
  fi
  tests_dir="$root/gpu-bundle/bin"
  bench_dir="$root/gpu-bundle/bin"
  # The programs read the test data and the tokenizer under the tree they were built from.
  src="$(cat gpu-bundle/source_root)"
  if [ "$src" != "$root" ]; then
    if [ -e "$src" ] && [ "$(cd "$src" && pwd -P)" != "$(pwd -P)" ]; then
      echo "gpu_check: $src (the bundle's source tree) exists and is not this tree" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$src")"
    [ -e "$src" ] || ln -s "$root" "$src"
  fi
  libs="$root/gpu-bundle/lib"
  for d in $(cuda_lib_dirs); do libs="$libs:$d"; done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ldd "$tests_dir/cuda_ops_test" | grep "not found"; then
    echo "gpu_check: the bundle's programs miss the libraries above (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" >&2
    exit 1
  fi
else
  stamp "configure + build ($build)"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKVMESH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real \
    >"$logs/configure.log" 2>&1 || { tail -30 "$logs/configure.log"; exit 1; }
  grep "kvmesh CUDA" "$logs/configure.log" || true
  cmake --build "$build" -j"${KVMESH_BUILD_JOBS:-$(nproc)}" \
    --target cuda_ops_test cuda_hf_golden_test cuda_graphs_test nccl_parallel_test kvmesh-generate \
             gpu_decode_bench \
    >"$logs/build.log" 2>&1 || { tail -40 "$logs/build.log"; exit 1; }
  tests_dir="$root/$build/tests"
  bench_dir="$root/$build/bench"
fi

# Tests in a GoogleTest summary line ("[  PASSED  ] 12 tests."); 0 when there is none.
count() {
  local n
  n="$(grep -E "^\[  $1 *\] [0-9]+ tests?[.,]" "$2" | head -1 | sed -E 's/^\[[^]]*\] ([0-9]+).*/\1/')"
  echo "${n:-0}"
}

stamp "gpu tests"
tests_status=0
summary=()
for t in cuda_ops_test cuda_graphs_test cuda_hf_golden_test nccl_parallel_test; do
  status=0
  timeout 300 "$tests_dir/$t" --gtest_brief=1 >"$logs/$t.log" 2>&1 || status=$?
  [ "$status" -eq 0 ] || tests_status=1
  grep -E "FAILED|Failure|error" "$logs/$t.log" | head -20 || true
  summary+=("| $t | $(count PASSED "$logs/$t.log") | $(count FAILED "$logs/$t.log") | $(count SKIPPED "$logs/$t.log") | $status |")
done

stamp "decode benchmark"
bench_status=0
timeout 300 "$bench_dir/gpu_decode_bench" synthetic:gpt2-xl "${GPU_CHECK_NEW_TOKENS:-64}" \
  >"$logs/decode-bench.txt" 2>"$logs/decode-bench.err" || bench_status=$?
tail -5 "$logs/decode-bench.err"

stamp "done: gpu tests $([ "$tests_status" -eq 0 ] && echo passed || echo FAILED), benchmark exit $bench_status"
echo
echo "| test program | passed | failed | skipped | exit status |"
echo "|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
echo
cat "$logs/decode-bench.txt"
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
