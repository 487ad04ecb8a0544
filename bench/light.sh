#!/bin/bash
# bench/light.sh BIN TAG [CONNS [RATE]]: start a fresh local cluster from the binaries in directory
# BIN (flashstock-local, flashstock-node, loadgen), in /tmp/light-TAG; drive the spread workload
# over 1000 products with CONNS connections (10: light load) for 20 s, in a closed loop, or in an
# open loop of RATE purchases/s when given (the same work for both builds, so their CPU per
# purchase compares at the same batching); print the confirmed purchases and each node's CPU over
# the run, then stop the cluster. To compare two builds, alternate them:
#   for r in a1 b1 a2 b2; do bench/light.sh DIR_${r:0:1} $r; done
set -u
BIN=$1; TAG=$2; CONNS=${3:-10}; RATE=${4:-}
source "$(dirname "$0")/local.sh"
local_start "$BIN" "/tmp/light-$TAG" || exit 1
D=$LOCAL_DIR
node_cpu > $D/before; s=$(date +%s.%N)
$BIN/loadgen --admin-token "$TOKEN" --url "$URLS" --workload spread --products 1000 --connections $CONNS --seconds 20 ${RATE:+--mode open --rate $RATE} --no-progress --json $D/run.json > $D/loadgen.out 2>&1
e=$(date +%s.%N); node_cpu > $D/after
python3 - $D $s $e $TAG <<'PY'
import sys,json
d=sys.argv[1]; wall=float(sys.argv[3])-float(sys.argv[2])
b={l.split()[0]:l.split() for l in open(d+'/before')}; a={l.split()[0]:l.split() for l in open(d+'/after')}
j=json.load(open(d+'/run.json'))
def find(o,keys):
    if isinstance(o,dict):
        for k,v in o.items():
            if k in keys: yield k,v
            yield from find(v,keys)
    elif isinstance(o,list):
        for v in o: yield from find(v,keys)
conf=None
for k,v in find(j,{'confirmed','purchases_confirmed'}):
    if isinstance(v,(int,float)): conf=v; break
cpu={p:(int(a[p][1])-int(b[p][1]))*10 for p in a if p in b}
labels={p:a[p][2] if len(a[p])>2 else p for p in a}
print(sys.argv[4], f"wall {wall:.1f}s confirmed {conf}", " ".join(f"{labels[p]}={cpu[p]}ms" for p in sorted(cpu,key=lambda p:labels[p])))
if conf: print(sys.argv[4], f"cluster CPU/purchase {sum(cpu.values())*1000/conf:.0f} us")
PY
grep -i "purchase" $D/loadgen.out | head -4
local_stop
