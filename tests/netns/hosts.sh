#!/usr/bin/env bash
# Test helper: makes (and removes) two network namespaces that act as two hosts joined by one
# veth link, private to the test: each namespace has lo and an interface named kvmesh0, holding
# 10.211.0.1/24 (first) and 10.211.0.2/24 (second). Nothing outside the two namespaces is touched.
#   hosts.sh up NS_A NS_B     exit 0 when ready, 77 when namespaces are not permitted here
#   hosts.sh down NS_A NS_B   removes both (safe to run twice, or after a partial "up")
set -euo pipefail

readonly iface="kvmesh0"
readonly subnet_prefix="10.211.0"

usage() {
  echo "usage: $0 up|down NS_A NS_B" >&2
  exit 2
}

down() {
  local ns
  for ns in "$@"; do
    # Deleting a namespace deletes the veth end inside it, and with it the peer.
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
      ip netns delete "$ns"
    fi
  done
}

# Every step checked by hand: set -e does not apply inside a function called from "if".
setup() {
  local ns_a="$1" ns_b="$2" i=1 ns
  ip netns add "$ns_a" || return 1
  ip netns add "$ns_b" || return 1
  ip link add name "$iface" netns "$ns_a" type veth peer name "$iface" netns "$ns_b" || return 1
  for ns in "$ns_a" "$ns_b"; do
    ip -n "$ns" link set lo up || return 1
    ip -n "$ns" addr add "$subnet_prefix.$i/24" dev "$iface" || return 1
    ip -n "$ns" link set "$iface" up || return 1
    i=$((i + 1))
  done
  # The link is usable when both ends report a carrier (bounded: 50 tries, 0.1 s apart).
  for _ in $(seq 1 50); do
    if ip -n "$ns_a" link show "$iface" | grep -q LOWER_UP && ip -n "$ns_b" link show "$iface" | grep -q LOWER_UP; then
      return 0
    fi
    sleep 0.1
  done
  echo "link $iface has no carrier" >&2
  return 1
}

up() {
  local log err
  log="$(mktemp)"
  if setup "$1" "$2" 2>"$log"; then
    rm -f "$log"
    return 0
  fi
  err="$(cat "$log")"
  rm -f "$log"
  down "$1" "$2"
  echo "hosts.sh: cannot make namespaces $1 and $2: $err" >&2
  case "$err" in
    *"Operation not permitted"* | *"Permission denied"* | *"not supported"*) exit 77 ;;
    *) exit 1 ;;
  esac
}

[ $# -eq 3 ] || usage
case "$1" in
  up) up "$2" "$3" ;;
  down) down "$2" "$3" ;;
  *) usage ;;
esac
