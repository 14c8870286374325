#!/usr/bin/env bash
# Test helper: a stand-in for kvmesh-serve started by deploy/launch.sh (which appends --tp/--pp).
#   --mode place        print "rank=R local=L netns=NS gpu=CUDA_VISIBLE_DEVICES" and exit 0
#   --mode serve        rank 0 runs until SIGTERM, then writes DIR/stop and exits 0 (the "drain");
#                       other ranks run until DIR/stop appears (the leader's shutdown), then exit 0;
#                       a rank that gets SIGTERM itself writes DIR/term.R; a rank whose parent (the
#                       Open MPI daemon) is gone exits 8, as MPI ranks do. Bounded: 30 s, then exit 9.
#   --fail-rank R --fail-code C   in serve mode, rank R exits with C once every rank started
set -uo pipefail

mode="place" dir="" fail_rank="-1" fail_code=0
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --fail-rank) fail_rank="$2"; shift 2 ;;
    --fail-code) fail_code="$2"; shift 2 ;;
    *) shift ;;  # --tp N --pp M from launch.sh
  esac
done
rank="${OMPI_COMM_WORLD_RANK:?not started by mpirun}"

if [ "$mode" = "place" ]; then
  echo "rank=$rank local=${OMPI_COMM_WORLD_LOCAL_RANK:-?} netns=$(ip netns identify $$) gpu=${CUDA_VISIBLE_DEVICES-unset} env=${KVMESH_FAKE_MARK:-unset}"
  exit 0
fi

[ -n "$dir" ] || { echo "fake_rank.sh: --dir is required in serve mode" >&2; exit 2; }
if [ "$rank" = 0 ]; then
  trap 'touch "$dir/stop"; exit 0' TERM
else
  trap 'echo term >"$dir/term.$rank"' TERM
fi
touch "$dir/started.$rank"
parent=$PPID
for _ in $(seq 1 300); do
  kill -0 "$parent" 2>/dev/null || exit 8
  if [ "$rank" = "$fail_rank" ] && [ "$(find "$dir" -name 'started.*' | wc -l)" -ge "${OMPI_COMM_WORLD_SIZE:-1}" ]; then exit "$fail_code"; fi
  if [ "$rank" != 0 ] && [ -e "$dir/stop" ]; then exit 0; fi
  sleep 0.1
done
exit 9
