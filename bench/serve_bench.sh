#!/usr/bin/env bash
# serve_bench: generated tokens/s of kvmesh-serve on the GPT-2-124M shape (synthetic weights, fp32,
# CPU) at 1, 4, 16 and 64 concurrent clients (kvmesh-load, closed loop, 32-token prompts, 128
# tokens out), and the speed-up of each over one client. Usage: bench/serve_bench.sh [build-dir]
set -euo pipefail
build="${1:-build}"
serve="$build/coordinator/kvmesh-serve"
load="$build/client/kvmesh-load"
for bin in "$serve" "$load"; do [ -x "$bin" ] || { echo "serve_bench: $bin not built" >&2; exit 1; }; done
work=$(mktemp -d)
port=$((18900 + RANDOM % 90))
"$serve" --model synthetic:gpt2-124m --port "$port" --kv-device-mem 1GiB --max-num-seqs 64 \
  >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done

echo "| clients | requests | generated tok/s | x one client | TTFT p50 ms | TPOT p50 ms |"
echo "|---|---|---|---|---|---|"
base=""
for c in 1 4 16 64; do
  n=$(( c < 4 ? 4 : c < 64 ? 2 * c : c ))
  "$load" --base-url "http://127.0.0.1:$port" --concurrency "$c" --num-requests "$n" --input-len 32 \
    --output-len 128 --warmup 1 --seed 5 --result-json "$work/c$c.json" >/dev/null 2>&1
  read -r tps ttft tpot < <(python3 -c "import json; r=json.load(open('$work/c$c.json')); \
print(r['output_throughput'], r['median_ttft_ms'], r['median_tpot_ms'])")
  base=${base:-$tps}
  python3 -c "print('| $c | $n | %.1f | %.2fx | %.0f | %.0f |' % ($tps, $tps / $base, $ttft, $tpot))"
done
