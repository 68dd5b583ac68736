#!/usr/bin/env bash
# Rate-limited all-reduce benchmark: P = 4 hosts as network namespaces (gzb-h1..gzb-h4), each with a veth on
# a bridge that lives in its own namespace (gzb-br), addresses 198.18.0.1-4/24 (198.18.0.0/15 is reserved
# for benchmarking), `tc tbf` on both ends of every veth at 100 Mbit/s, 1 Gbit/s and 10 Gbit/s. mpirun starts
# in gzb-h1 and reaches the other hosts through rsh-agent.sh (`ip netns exec`); OpenMPI uses TCP on the
# bridge only (btl tcp,self; btl/oob_tcp_if_include 198.18.0.0/15). Nothing is routed outside the bridge:
# the root namespace is not touched. Everything created here is removed on exit (trap).
#
# usage: sudo bash bench/netns/run.sh [--mb 100] [--reps 2] [--rates "100mbit 1gbit 10gbit"]
# output: bench/netns/results-<date>.json and a markdown table on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MB=100; REPS=2; RATES="100mbit 1gbit 10gbit"; P=4
while [ $# -gt 0 ]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v mpirun >/dev/null || { echo "mpirun not found: run scripts/install-mpi.sh" >&2; exit 1; }
[ -f "$ROOT/build/Release/gradzip_mpi.node" ] || bash "$ROOT/scripts/build-mpi.sh"

NS=(gzb-br gzb-h1 gzb-h2 gzb-h3 gzb-h4)
cleanup() {
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
cleanup

ip netns add gzb-br
ip -n gzb-br link add br0 type bridge
ip -n gzb-br link set br0 up
ip -n gzb-br link set lo up
for i in $(seq 1 $P); do
  ip netns add "gzb-h$i"
  ip link add eth0 netns "gzb-h$i" type veth peer name "p$i" netns gzb-br
  ip -n gzb-br link set "p$i" master br0
  ip -n gzb-br link set "p$i" up
  ip -n "gzb-h$i" addr add "198.18.0.$i/24" dev eth0
  ip -n "gzb-h$i" link set eth0 up
  ip -n "gzb-h$i" link set lo up
done

burst_for() { case "$1" in 100mbit) echo 64kb ;; 1gbit) echo 512kb ;; *) echo 4mb ;; esac; }
set_rate() {
  local rate="$1" burst
  burst="$(burst_for "$rate")"
  for i in $(seq 1 $P); do
    ip netns exec "gzb-h$i" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 200ms
    ip netns exec gzb-br tc qdisc replace dev "p$i" root tbf rate "$rate" burst "$burst" latency 200ms
  done
}

HOSTS="198.18.0.1:1,198.18.0.2:1,198.18.0.3:1,198.18.0.4:1"
STAMP="$(date -u +%Y%m%dT%H%M%S)"
OUTJSON="$HERE/results-$STAMP.json"
echo "[" > "$OUTJSON"
first=1
for rate in $RATES; do
  set_rate "$rate"
  echo "== $rate: $MB MB gradient, P = $P, $REPS reps" >&2
  # (timeout: a rank that dies before MPI_Init can leave mpirun waiting for it)
  MPIRUN=(timeout --kill-after=10 1200 ip netns exec gzb-h1 mpirun --allow-run-as-root --oversubscribe -np $P --host "$HOSTS"
    --mca plm_rsh_agent "$HERE/rsh-agent.sh" --mca plm_rsh_no_tree_spawn 1
    --mca btl tcp,self --mca btl_tcp_if_include 198.18.0.0/15 --mca oob_tcp_if_include 198.18.0.0/15 -x PATH)
  # OpenMPI's default choice of all-reduce algorithm, then fp32 again with its ring algorithm forced
  "${MPIRUN[@]}" node "$HERE/allreduce.mjs" --mb "$MB" --reps "$REPS" --rate "$rate" --out "$HERE/.last.json"
  "${MPIRUN[@]}" --mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 4 \
    node "$HERE/allreduce.mjs" --mb "$MB" --reps "$REPS" --rate "$rate" --out "$HERE/.last.json" \
    --only fp32 --label "fp32 MPI_Allreduce (ring forced)" --append
  [ $first -eq 1 ] || echo "," >> "$OUTJSON"
  first=0
  cat "$HERE/.last.json" >> "$OUTJSON"
  rm -f "$HERE/.last.json"
done
echo "]" >> "$OUTJSON"
node "$HERE/table.mjs" "$OUTJSON"
