#!/bin/bash
# bench/lagrun.sh BIN TAG [SECONDS]: start a fresh local cluster from the binaries in directory
# BIN in /tmp/lagrun-TAG, drive the standard mix over 6000 connections (closed loop, 1000
# products) for SECONDS (default 180), and every 10 s print the leader's commit index beside each
# gateway's applied index: how far the gateways' replicas trail their leader under that load.
# Then the load generator's summary and final check (it reads every product back from every
# gateway linearizably), and the leader's append timeouts to each node.
set -u
BIN=$1; TAG=$2; SECONDS_RUN=${3:-180}
source "$(dirname "$0")/local.sh"
local_start "$BIN" "/tmp/lagrun-$TAG" || exit 1
metric() { curl -s -m 2 "http://$(node_addr "$1")/metrics" | awk -v m="$2" '$1 ~ "^"m"[{]" {print $2}'; }
# The leader flashstock-local reported once the cluster formed.
leader=$(grep -E "^ +[0-9]+ +voter +Leader" "$LOCAL_DIR/local.log" | awk '{print $1}' | head -1)
"$BIN/loadgen" --admin-token "$TOKEN" --url "$URLS" --workload standard --connections 6000 \
    --seconds "$SECONDS_RUN" --products 1000 --no-progress > "$LOCAL_DIR/loadgen.log" 2>&1 &
LG=$!
echo "== $TAG, $(date -u +%H:%M:%S) UTC: leader $leader; its commit index / each gateway's applied index"
t=0
while kill -0 $LG 2>/dev/null; do
    line="t=${t}s $(metric "$leader" flashstock_raft_committed_index) /"
    for g in $GATEWAYS; do line="$line $(metric "$g" flashstock_raft_applied_index)"; done
    echo "$line"; sleep 10; t=$((t + 10))
done
wait $LG
grep -E "^standard-closed|check:|^  ok|FAILED|PROBLEM|http" "$LOCAL_DIR/loadgen.log"
echo "leader's append timeouts by target: $(grep -o "error replication to target=[0-9]*" \
    "$LOCAL_DIR/c/node-$leader.log" | cut -d= -f2 | sort | uniq -c | awk '{printf "%s: %s  ", $2, $1}')"
local_stop
