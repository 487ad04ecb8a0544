#!/bin/bash
# bench/openloop.sh BIN TAG [RATE]: start a fresh local cluster from the binaries in directory BIN
# (flashstock-local, flashstock-node, loadgen) in /tmp/openloop-TAG, drive the standard mix as an
# open loop of RATE requests/s (default 6000) over 6000 connections for 15 s, and print what the
# clients saw beside what the nodes measured over the same run: each node's CPU (ms per second,
# over 8 s in the middle), the gateways' own request latency for views and purchases, and each
# stage of the write path on the voters and on the gateways (quantiles are the histograms'
# bucket bounds, from the difference of two scrapes of each node's /metrics). To compare two
# builds, alternate them on fresh clusters:
#   for r in a1 b1 a2 b2; do bench/openloop.sh DIR_${r:0:1} $r; done
set -u
BIN=$1; TAG=$2; RATE=${3:-6000}
source "$(dirname "$0")/local.sh"
local_start "$BIN" "/tmp/openloop-$TAG" || exit 1
D=$LOCAL_DIR
scrape() { for n in $VOTERS $GATEWAYS; do curl -s "http://$(node_addr $n)/metrics" > $D/metrics-$1-$n; done; }
cpu() { node_cpu; echo "idle $(awk '/^cpu / {print $5+$6}' /proc/stat)"; }
scrape 0
$BIN/loadgen --admin-token "$TOKEN" --url "$URLS" --connections 6000 --seconds 15 \
    --products 1000 --workload standard --mode open --rate $RATE --no-progress > $D/loadgen.log 2>&1 &
LG=$!
sleep 5; cpu > $D/cpu0; sleep 8; cpu > $D/cpu1
wait $LG
scrape 1
echo "== $TAG, $(date -u +%H:%M:%S) UTC"
grep -E "^standard-open" $D/loadgen.log | sort -u
echo "CPU, ms per second (idle: the machine's, all cores): $(paste $D/cpu0 $D/cpu1 | awk '{printf "%s %d  ", $1, ($4-$2)*10/8}')"
python3 - $D "${VOTERS// /,}" "${GATEWAYS// /,}" <<'PY'
import re, sys
d = sys.argv[1]
def buckets(stage, node_ids, metric, want):
    total = {}
    for n in node_ids:
        for sign, which in ((1, 1), (-1, 0)):
            for line in open(f"{d}/metrics-{which}-{n}"):
                if not line.startswith(metric + "_bucket"):
                    continue
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                if any(labels.get(k) != v for k, v in want.items()):
                    continue
                le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
                total[le] = total.get(le, 0) + sign * float(line.split()[-1])
    return sorted(total.items())
def quantiles(rows):
    count = rows[-1][1] if rows else 0
    if not count:
        return "none"
    out = [f"{int(count)}"]
    for q in (0.5, 0.9, 0.99):
        le = next(le for le, c in rows if c >= q * count)
        out.append(f"p{q*100:g} <= {le*1000:g} ms")
    return ", ".join(out)
# Each node's role as flashstock-local listed it.
voters, gateways = sys.argv[2].split(","), sys.argv[3].split(",")
nodes = voters + gateways
http = "flashstock_http_request_duration_seconds"
print("gateways' own latency, purchases:", quantiles(buckets(None, gateways, http, {"route": "/v1/products/{id}/purchase", "method": "POST"})))
print("gateways' own latency, views:    ", quantiles(buckets(None, gateways, http, {"route": "/v1/products/{id}", "method": "GET"})))
stages = sorted(set(re.findall(r'stage="(\w+)"', open(f"{d}/metrics-1-{nodes[0]}").read())))
for stage in stages:
    for who, ids in (("voters", voters), ("gateways", gateways)):
        rows = buckets(stage, ids, "flashstock_stage_duration_seconds", {"stage": stage})
        if rows and rows[-1][1]:
            print(f"stage {stage:<15} {who:<8}: {quantiles(rows)}")
PY
local_stop
