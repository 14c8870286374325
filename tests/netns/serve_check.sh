#!/usr/bin/env bash
# Test helper: runs a server launch command inside a network namespace, waits for GET /ready on
# 127.0.0.1:PORT there, POSTs each request file to /v1/completions (responses to OUT/response.N.json),
# then stops the launcher with SIGTERM like a supervisor and prints "rc=STATUS" (or "rc=stuck").
#   serve_check.sh NS PORT OUT REQUEST.json... -- COMMAND...
# Every wait is bounded: 90 s for /ready, 60 s per request, 30 s for the drain.
set -uo pipefail

ns="$1" port="$2" out="$3"
shift 3
requests=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do requests+=("$1"); shift; done
[ $# -gt 1 ] || { echo "serve_check.sh: usage: NS PORT OUT REQUEST... -- COMMAND..." >&2; exit 2; }
shift

in_ns() { ip netns exec "$ns" "$@"; }
url="http://127.0.0.1:$port"

in_ns "$@" &
pid=$!

ready=""
for _ in $(seq 1 450); do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  code="$(in_ns curl -s -o /dev/null -w '%{http_code}' "$url/ready" || true)"
  if [ "$code" = 200 ]; then ready=1; break; fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "serve_check.sh: $url/ready never answered 200" >&2
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  echo "rc=$?"
  exit 1
fi

i=0
for request in "${requests[@]}"; do
  in_ns curl -s -m 60 -H 'Content-Type: application/json' --data-binary "@$request" \
    -o "$out/response.$i.json" -w "request $i: HTTP %{http_code}\n" "$url/v1/completions"
  i=$((i + 1))
done

kill -TERM "$pid"
for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  echo "rc=stuck"
  kill -KILL "$pid"
  exit 1
fi
wait "$pid"
echo "rc=$?"
