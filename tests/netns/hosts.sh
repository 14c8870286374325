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

up() {
  local ns_a="$1" ns_b="$2" err
  if ! err=$(ip netns add "$ns_a" 2>&1); then
    echo "hosts.sh: cannot create network namespace $ns_a: $err" >&2
    case "$err" in
      *"Operation not permitted"* | *"Permission denied"* | *"not supported"*) exit 77 ;;
      *) exit 1 ;;
    esac
  fi
  trap 'down "$ns_a" "$ns_b"' ERR
  ip netns add "$ns_b"
  ip link add name "$iface" netns "$ns_a" type veth peer name "$iface" netns "$ns_b"
  local i=1 ns
  for ns in "$ns_a" "$ns_b"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$subnet_prefix.$i/24" dev "$iface"
    ip -n "$ns" link set "$iface" up
    i=$((i + 1))
  done
  # The link is usable when both ends report a carrier (bounded: 50 tries, 0.1 s apart).
  for _ in $(seq 1 50); do
    if ip -n "$ns_a" link show "$iface" | grep -q LOWER_UP && ip -n "$ns_b" link show "$iface" | grep -q LOWER_UP; then
      trap - ERR
      return 0
    fi
    sleep 0.1
  done
  echo "hosts.sh: $ns_a link $iface has no carrier" >&2
  down "$ns_a" "$ns_b"
  exit 1
}

[ $# -eq 3 ] || usage
case "$1" in
  up) up "$2" "$3" ;;
  down) down "$2" "$3" ;;
  *) usage ;;
esac
