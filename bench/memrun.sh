#!/bin/bash
# bench/memrun.sh BIN TAG [SECONDS]: start a fresh local cluster from the binaries in directory
# BIN in /tmp/memrun-TAG, drive the standard mix over 6000 connections (closed loop, 1000
# products) for SECONDS (default 40), read each gateway's resident memory (VmRSS) every second,
# and print the largest reading of each, the answers/s, and the CPU per answer of the gateways
# and of the voters over the run.
set -u
BIN=$1; TAG=$2; SECONDS_RUN=${3:-40}
source "$(dirname "$0")/local.sh"
local_start "$BIN" "/tmp/memrun-$TAG" || exit 1
node_cpu > "$LOCAL_DIR/cpu0"
"$BIN/loadgen" --admin-token "$TOKEN" --url "$URLS" --workload standard --connections 6000 \
    --seconds "$SECONDS_RUN" --products 1000 --no-progress > "$LOCAL_DIR/loadgen.log" 2>&1 &
LG=$!
while kill -0 $LG 2>/dev/null; do
    for g in $GATEWAYS; do echo "$g $(awk '/^VmRSS/ {print $2}' "/proc/$(node_pid "$g")/status")"; done >> "$LOCAL_DIR/rss"
    sleep 1
done
wait $LG
node_cpu > "$LOCAL_DIR/cpu1"
answers=$(grep -o "standard-closed: [0-9]* answers/s" "$LOCAL_DIR/loadgen.log" | awk '{print $2}')
echo "== $TAG, $(date -u +%H:%M:%S) UTC: $answers answers/s; largest VmRSS, MiB:" \
    "$(sort -k1,1 -k2,2n "$LOCAL_DIR/rss" | awk '{m[$1] = $2} END {for (g in m) printf "gateway %s %d  ", g, m[g] / 1024}')"
paste "$LOCAL_DIR/cpu0" "$LOCAL_DIR/cpu1" | awk -v gateways=" $GATEWAYS " -v n="$answers" -v s="$SECONDS_RUN" \
    '{ms = ($4 - $2) * 10; if (index(gateways, " " $1 " ")) g += ms; else v += ms}
     END {printf "CPU per answer: gateways %d us, voters %d us\n", g * 1000 / (n * s), v * 1000 / (n * s)}'
grep -E "check:|^  ok|FAILED" "$LOCAL_DIR/loadgen.log"
local_stop
