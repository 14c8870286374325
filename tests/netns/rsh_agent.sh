#!/usr/bin/env bash
# Test helper: Open MPI's remote-shell agent (--mca plm_rsh_agent) for "hosts" that are network
# namespaces on this machine. Called like ssh, "rsh_agent.sh HOST COMMAND...", it runs the command
# inside the namespace KVMESH_NETNS_HOSTS maps HOST to ("10.211.0.1=ns_a,10.211.0.2=ns_b"), with a
# clean environment as a login over ssh would have.
set -euo pipefail

host=""
while [ $# -gt 0 ]; do
  case "$1" in
    -x | -a | -T | -n) shift ;;  # ssh options Open MPI may add; irrelevant here
    *) host="$1"; shift; break ;;
  esac
done
if [ -z "$host" ] || [ $# -eq 0 ]; then
  echo "rsh_agent.sh: usage: rsh_agent.sh HOST COMMAND..." >&2
  exit 255
fi

ns=""
IFS=',' read -r -a pairs <<<"${KVMESH_NETNS_HOSTS:-}"
for pair in "${pairs[@]}"; do
  if [ "${pair%%=*}" = "$host" ]; then ns="${pair#*=}"; fi
done
[ -n "$ns" ] || { echo "rsh_agent.sh: host '$host' is not in KVMESH_NETNS_HOSTS='${KVMESH_NETNS_HOSTS:-}'" >&2; exit 255; }

# Like sshd: the words are joined and run by the shell; only a login's basic variables survive.
keep=(PATH="$PATH" HOME="${HOME:-/root}" USER="${USER:-root}" LANG=C.UTF-8)
for name in OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM LD_LIBRARY_PATH; do
  if [ -n "${!name:-}" ]; then keep+=("$name=${!name}"); fi
done
exec ip netns exec "$ns" env -i "${keep[@]}" /bin/sh -c "$*"
