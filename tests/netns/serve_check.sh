#!/usr/bin/env bash
# Test helper: runs a server launch command inside a network namespace, waits for GET /ready on
# 127.0.0.1:PORT there, POSTs each request file to /v1/completions (responses to OUT/response.N.json),
# then stops the launcher with SIGTERM like a supervisor and prints "rc=STATUS" (or "rc=stuck").
#   serve_check.sh NS PORT OUT REQUEST.json... -- COMMAND...
# Every wait is bounded: 90 s for /ready, 60 s per request, 30 s for the drain. The command runs in
# its own process group, killed whole on any way out, so no rank outlives the check.
set -uo pipefail

ns="$1" port="$2" out="$3"
shift 3
requests=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do requests+=("$1"); shift; done
if [ $# -lt 2 ]; then
  echo "serve_check.sh: usage: NS PORT OUT REQUEST... -- COMMAND..." >&2
  exit 2
fi
shift

url="http://127.0.0.1:$port"
setsid ip netns exec "$ns" "$@" &
pid=$!
trap 'kill -KILL -- "-$pid" 2>/dev/null' EXIT
trap 'exit 143' TERM INT

# Sends SIGTERM to the launcher alone and prints its exit status once it is gone.
stop() {
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "rc=stuck"
    return
  fi
  wait "$pid"
  echo "rc=$?"
}

ready=""
for _ in $(seq 1 450); do
  kill -0 "$pid" 2>/dev/null || break
  code="$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' "$url/ready" || true)"
  if [ "$code" = 200 ]; then ready=1; break; fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "serve_check.sh: $url/ready never answered 200" >&2
  stop
  exit 1
fi

i=0
for request in "${requests[@]}"; do
  ip netns exec "$ns" curl -s -m 60 -H 'Content-Type: application/json' --data-binary "@$request" \
    -o "$out/response.$i.json" -w "request $i: HTTP %{http_code}\n" "$url/v1/completions"
  i=$((i + 1))
done
stop
