#!/usr/bin/env bash
# parallel_bench: generated tokens/s of the GPT-2-124M shape (synthetic weights, fp32, CPU) at
# batch 16 for TP x PP = 1x1, 2x1, 1x2, 2x2, and the pipeline bubble with and without
# micro-batching (1 - busy share of step time on the pipeline ranks). Prints a table.
# Usage: bench/parallel_bench.sh [build-dir]   (ranks beyond the cores share them: compare ratios)
set -euo pipefail
build="${1:-build}"
gen="$build/tools/kvmesh-generate"
[ -x "$gen" ] || { echo "parallel_bench: $gen not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
model="synthetic:gpt2-124m"
prompts=$(python3 -c 'import json; print(json.dumps([[ (i*131 + k*7) % 50000 for k in range(32)] for i in range(16)]))')
request="{\"prompt\": $prompts, \"max_tokens\": 32, \"temperature\": 0, \"ignore_eos\": true}"

run() {  # tp pp micro_batches -> "tokens_per_s bubble"
  local tp=$1 pp=$2 mb=$3 log
  log=$(mktemp)
  mpirun --oversubscribe --bind-to none -np $((tp * pp)) "$gen" --model "$model" --tp "$tp" --pp "$pp" \
    --micro-batches "$mb" --threads 1 --timing --request "$request" >/dev/null 2>"$log"
  python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
gen = re.search(r"generate_s=([\d.]+) generated_tokens=(\d+)", text)
shares = [float(x) for x in re.findall(r"busy_share=([\d.]+)", text)]
tps = int(gen.group(2)) / float(gen.group(1))
bubble = 1.0 - sum(shares) / len(shares)
print(f"{tps:.1f} {bubble * 100:.0f}%")
PY
  rm -f "$log"
}

echo "| layout | micro-batches | generated tok/s (batch 16) | bubble (1 - busy share) |"
echo "|---|---|---|---|"
for layout in "1 1 1" "2 1 1" "1 2 1" "1 2 2" "2 2 1" "2 2 2"; do
  set -- $layout
  read -r tps bubble < <(run "$1" "$2" "$3")
  echo "| ${1}x${2} | $3 | $tps | $bubble |"
done
