#!/usr/bin/env bash
# deploy/launch.sh: starts kvmesh-serve on a cluster: one mpirun over a hostfile, TP x PP ranks,
# one GPU per rank, TP groups inside a node and PP stages across nodes; forwards a supervisor's
# SIGTERM to rank 0 so the server drains. See docs/cluster.md ("Running on a cluster").
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/launch.sh --hostfile FILE --tp N --pp M [options] [--] [kvmesh-serve flags...]

  --hostfile FILE   Open MPI hostfile, one "HOST slots=GPUS" line per node (# comments allowed).
                    Every node lists the same slots, a multiple of --tp.
  --tp N            tensor-parallel ranks; a TP group (consecutive ranks) stays inside one node
  --pp M            pipeline stages; they fill nodes in order, so stages span nodes
  --iface IF        network interface (or comma list, e.g. ib0 or eth0,eth1) for MPI's TCP
                    traffic (btl_tcp_if_include, oob_tcp_if_include) and NCCL (NCCL_SOCKET_IFNAME);
                    a subnet (10.0.0.0/24) works for MPI only
  --bin PATH        program to start on every rank (default: build/coordinator/kvmesh-serve
                    beside this script, else kvmesh-serve on PATH); same path on every node
  --mpirun PATH     mpirun to use (default: mpirun on PATH; Open MPI 4 or 5)
  --mca KEY VALUE   extra Open MPI MCA parameter, repeatable (e.g. --mca plm_rsh_agent ssh)
  --bind-to WHAT    CPU binding of each rank: none (default), core, socket, numa
  --no-gpu-binding  leave CUDA_VISIBLE_DEVICES alone (CPU backend)
  --dry-run         print the mpirun command and exit 0 without starting anything
  -h, --help        this text

Every other argument goes to kvmesh-serve after "--tp N --pp M" (e.g. --model DIR --port 8000).
Exit status: 0 after a clean stop, 2 for a bad command line or hostfile (nothing started),
otherwise mpirun's: the exit code of the first rank that failed, or 128+N for a rank killed by
signal N. First SIGTERM/SIGINT: rank 0 drains and stops every rank; a second one: mpirun
stops the job at once.
EOF
}

die() {
  echo "launch.sh: $*" >&2
  exit 2
}

# Globals set by parse_args and read_hostfile.
hostfile="" tp="" pp="" iface="" bin="" mpirun_bin="mpirun" bind_to="none" gpu_binding=1 dry_run=0
mca_args=() serve_args=() hosts=() host_slots=()

need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --hostfile) need_value "$@"; hostfile="$2"; shift 2 ;;
      --tp) need_value "$@"; tp="$2"; shift 2 ;;
      --pp) need_value "$@"; pp="$2"; shift 2 ;;
      --iface) need_value "$@"; iface="$2"; shift 2 ;;
      --bin) need_value "$@"; bin="$2"; shift 2 ;;
      --mpirun) need_value "$@"; mpirun_bin="$2"; shift 2 ;;
      --bind-to) need_value "$@"; bind_to="$2"; shift 2 ;;
      --mca) [ $# -ge 3 ] || die "--mca needs KEY VALUE"; mca_args+=(--mca "$2" "$3"); shift 3 ;;
      --no-gpu-binding) gpu_binding=0; shift ;;
      --dry-run) dry_run=1; shift ;;
      -h | --help) usage; exit 0 ;;
      --) shift; serve_args+=("$@"); break ;;
      *) serve_args+=("$1"); shift ;;
    esac
  done
  [ -n "$hostfile" ] || die "--hostfile is required (one \"HOST slots=GPUS\" line per node; see deploy/hostfile.example)"
  [ -n "$tp" ] || die "--tp is required"
  [ -n "$pp" ] || die "--pp is required"
  [[ "$tp" =~ ^[1-9][0-9]*$ ]] || die "--tp must be a positive integer, not '$tp'"
  [[ "$pp" =~ ^[1-9][0-9]*$ ]] || die "--pp must be a positive integer, not '$pp'"
  [[ "$bind_to" =~ ^(none|core|socket|numa|hwthread|l3cache)$ ]] || die "--bind-to: unknown binding '$bind_to'"
}

# Fills hosts[] and host_slots[] from "HOST slots=N [max_slots=M]" lines.
read_hostfile() {
  [ -e "$hostfile" ] || die "hostfile $hostfile does not exist"
  if [ ! -f "$hostfile" ] || [ ! -r "$hostfile" ]; then die "hostfile $hostfile is not a readable file"; fi
  local line n=0 host slots word
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line%%#*}"
    read -r -a words <<<"$line"
    [ ${#words[@]} -gt 0 ] || continue
    host="${words[0]}" slots=""
    for word in "${words[@]:1}"; do
      case "$word" in
        slots=*) slots="${word#slots=}" ;;
        max_slots=* | max-slots=*) ;;
        *) die "$hostfile:$n: unexpected '$word' (lines look like \"node1 slots=8\")" ;;
      esac
    done
    [ -n "$slots" ] || die "$hostfile:$n: host $host has no slots=N (N = GPUs, one rank each)"
    [[ "$slots" =~ ^[1-9][0-9]*$ ]] || die "$hostfile:$n: slots must be a positive integer, not '$slots'"
    hosts+=("$host")
    host_slots+=("$slots")
  done <"$hostfile"
  [ ${#hosts[@]} -gt 0 ] || die "hostfile $hostfile lists no hosts"
}

# Checks the grid fits the hostfile; prints the slots per node (the ppr of the mapping).
check_layout() {
  local per_node="${host_slots[0]}" total=0 i
  for i in "${!hosts[@]}"; do
    local s="${host_slots[$i]}"
    if [ $((s % tp)) -ne 0 ]; then
      die "host ${hosts[$i]} has slots=$s, not a multiple of --tp $tp: a TP group must stay inside one node (list $(((s / tp) * tp)) slots, or lower --tp)"
    fi
    [ "$s" -eq "$per_node" ] || die "hosts list different slots (${hosts[0]}: $per_node, ${hosts[$i]}: $s): every node must run the same number of ranks"
    total=$((total + s))
  done
  local world=$((tp * pp))
  if [ "$world" -gt "$total" ]; then
    die "tp*pp = $tp*$pp = $world ranks but $hostfile has $total slots (${#hosts[@]} hosts x $per_node): add hosts or lower --tp/--pp"
  fi
  echo "$per_node"
}

default_bin() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  if [ -x "$here/../build/coordinator/kvmesh-serve" ]; then
    (cd "$here/../build/coordinator" && echo "$PWD/kvmesh-serve")
  elif command -v kvmesh-serve >/dev/null 2>&1; then
    command -v kvmesh-serve
  else
    die "kvmesh-serve not found (build it with deploy/build.sh, or pass --bin PATH)"
  fi
}

# Runs on every rank before the program: one GPU per rank, chosen by the rank's index on its node
# (from the node's CUDA_VISIBLE_DEVICES list when a scheduler already set one).
# shellcheck disable=SC2016  # expanded by the rank's shell, not here
readonly rank_wrapper='lr=${OMPI_COMM_WORLD_LOCAL_RANK:?not started by Open MPI}; if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then IFS=, read -r -a g <<<"$CUDA_VISIBLE_DEVICES"; export CUDA_VISIBLE_DEVICES=${g[$lr]:?local rank $lr has no GPU in CUDA_VISIBLE_DEVICES}; else export CUDA_VISIBLE_DEVICES=$lr; fi; exec "$@"'

# Fills cmd[] with the whole mpirun command line.
build_command() {
  local per_node="$1"
  cmd=("$mpirun_bin" --hostfile "$hostfile" -np "$((tp * pp))" --map-by "ppr:$per_node:node"
       --bind-to "$bind_to")
  if [ -n "$iface" ]; then
    cmd+=(--mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface")
    # NCCL takes interface names (prefixes), not subnets: with a subnet, set NCCL_SOCKET_IFNAME yourself.
    if [[ "$iface" != */* ]]; then cmd+=(-x "NCCL_SOCKET_IFNAME=$iface"); fi
  fi
  cmd+=(-x "NCCL_DEBUG=${NCCL_DEBUG:-WARN}" -x PATH)
  local name
  # Forwarded by name (values stay off the command line): the loader path, any NCCL_* tuning
  # (NCCL_IB_HCA, ...) and KVMESH_* settings such as KVMESH_API_KEY.
  for name in $(compgen -e | grep -E '^(LD_LIBRARY_PATH|NCCL_.*|KVMESH_.*)$' | grep -vxE 'NCCL_DEBUG|NCCL_SOCKET_IFNAME' || true); do
    cmd+=(-x "$name")
  done
  cmd+=("${mca_args[@]}")
  if [ "$gpu_binding" -eq 1 ]; then cmd+=(bash -c "$rank_wrapper" kvmesh-rank); fi
  cmd+=("$bin" --tp "$tp" --pp "$pp" "${serve_args[@]}")
}

# The two functions below run from the signal trap (shellcheck cannot see that).
# shellcheck disable=SC2317
# The pid of rank 0 when it runs on this node (a child of mpirun), else nothing.
rank0_pid() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null || true); do
    if tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0'; then
      echo "$child"
      return 0
    fi
  done
}

stop_requests=0 mpirun_pid=""
# shellcheck disable=SC2317
on_stop_signal() {
  if [ -z "$mpirun_pid" ]; then exit 143; fi  # before mpirun started
  stop_requests=$((stop_requests + 1))
  local rank0
  rank0="$(rank0_pid "$mpirun_pid")"
  if [ "$stop_requests" -eq 1 ] && [ -n "$rank0" ]; then
    echo "launch.sh: stop requested: rank 0 (pid $rank0) drains, then every rank exits" >&2
    kill -TERM "$rank0" 2>/dev/null || true
  else
    echo "launch.sh: stopping the job now (mpirun pid $mpirun_pid)" >&2
    kill -TERM "$mpirun_pid" 2>/dev/null || true
  fi
}

main() {
  parse_args "$@"
  read_hostfile
  local per_node
  per_node="$(check_layout)"
  [ -n "$bin" ] || bin="$(default_bin)"
  build_command "$per_node"
  local world=$((tp * pp))
  echo "launch.sh: $world ranks (tp $tp x pp $pp) on $(((world + per_node - 1) / per_node)) of ${#hosts[@]} hosts, $per_node per host" >&2
  if [ "$dry_run" -eq 1 ]; then
    printf '%q ' "${cmd[@]}" | sed 's/ $//'
    echo
    exit 0
  fi
  command -v "$mpirun_bin" >/dev/null 2>&1 || die "mpirun not found ('$mpirun_bin'); install Open MPI or pass --mpirun PATH"
  trap on_stop_signal TERM INT
  "${cmd[@]}" &
  mpirun_pid=$!
  local rc=0
  # wait returns early (>128) when a trapped signal arrives; wait again until mpirun is gone.
  while true; do
    rc=0
    wait "$mpirun_pid" || rc=$?
    kill -0 "$mpirun_pid" 2>/dev/null || break
  done
  exit "$rc"
}

main "$@"
