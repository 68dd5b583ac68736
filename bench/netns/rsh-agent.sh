#!/bin/sh
# plm_rsh_agent for bench/netns/run.sh: mpirun calls `rsh-agent.sh [options] HOST COMMAND...`; HOST is one
# of the benchmark addresses 198.18.0.N, and the command (the orted launch line) runs in namespace gzb-hN.
while [ $# -gt 0 ]; do
  case "$1" in
    -*) shift ;;
    *) break ;;
  esac
done
host="$1"; shift
case "$host" in
  198.18.0.[1-9]) ns="gzb-h${host##*.}" ;;
  *) echo "rsh-agent: unknown benchmark host '$host'" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" /bin/sh -c "$*"
