#!/usr/bin/env bash
# kv_tiers_bench: a multi-turn chat workload (one shared system prompt, returning sessions) whose
# working set is about ten times the device tier, served twice by the default model: with host and
# disk tiers, and recompute-only (device tier alone). Prints TTFT p50/p99 and throughput side by
# side, then the measured swap-in and recompute times per 1,000 cached tokens from the server's
# /metrics. Usage: bench/kv_tiers_bench.sh [build-dir]
set -euo pipefail
build="${1:-build}"
serve="$build/coordinator/kvmesh-serve"
load="$build/client/kvmesh-load"
for bin in "$serve" "$load"; do [ -x "$bin" ] || { echo "kv_tiers_bench: $bin not built" >&2; exit 1; }; done
work=$(mktemp -d)
trap 'kill "${server_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

# Default model: 4 layers x 256 wide -> a 16-token page is 128 KiB. 6 MiB of device tier is 48
# pages (768 tokens), enough for the longest turn; 12 sessions x (256 system + 4 turns of 96
# tokens) is ~10x that.
device=6MiB
workload=(--workload multiturn --sessions 12 --turns 4 --system-prompt-len 256 --input-len 64
          --output-len 32 --concurrency 4 --num-requests 48 --seed 11)

run() {  # name, extra server flags...
  local name=$1; shift
  local port=$((18700 + RANDOM % 200))
  "$serve" --port "$port" --kv-device-mem "$device" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  server_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
  "$load" --base-url "http://127.0.0.1:$port" "${workload[@]}" --result-json "$work/$name.json" >/dev/null 2>&1
  curl -s "http://127.0.0.1:$port/metrics" >"$work/$name.metrics"
  kill -TERM "$server_pid"; wait "$server_pid" || true
}

run tiers --kv-host-mem 24MiB --kv-disk-mem 128MiB --kv-disk-dir "$work/disk"
run recompute

python3 - "$work" <<'PY'
import json, re, sys
work = sys.argv[1]
def metric(name, text):
    m = re.search(r"^" + re.escape(name) + r" ([0-9.eE+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0
print("| configuration | TTFT p50 ms | TTFT p99 ms | output tok/s | cached prompt tokens |")
print("|---|---|---|---|---|")
for name in ("tiers", "recompute"):
    r = json.load(open(f"{work}/{name}.json"))
    m = open(f"{work}/{name}.metrics").read()
    print(f"| {name} | {r['median_ttft_ms']:.1f} | {r['p99_ttft_ms']:.1f} | {r['output_throughput']:.1f} | "
          f"{metric('kvmesh_prefix_cache_hits_total', m):.0f} |")
m = open(f"{work}/tiers.metrics").read()
per_k = 1000.0 / 16  # pages per 1,000 tokens
host = metric('kvmesh_kv_swap_in_seconds_per_page{tier="host"}', m) * per_k * 1e3
disk = metric('kvmesh_kv_swap_in_seconds_per_page{tier="disk"}', m) * per_k * 1e3
disk_loads = metric('kvmesh_kv_pages_moved_total{from="disk",to="host"}', m)
recompute = metric('kvmesh_kv_recompute_seconds_per_page', m) * per_k * 1e3
print()
print("| per 1,000 cached tokens | ms |")
print("|---|---|")
print(f"| swap in from host | {host:.2f} |")
print(f"| swap in from disk | {disk:.2f} |" if disk_loads > 0 else "| swap in from disk | no disk hit in this run |")
print(f"| recompute (prefill) | {recompute:.2f} |")
PY
