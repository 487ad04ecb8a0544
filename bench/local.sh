# bench/local.sh: sourced by the scripts beside it that measure one fresh local cluster.
#   local_start BIN DIR [FLASHSTOCK-LOCAL FLAGS...]   start flashstock-local from the binaries in
#       directory BIN with its cluster in DIR/c, wait until it is ready, and set URLS (the
#       gateways' public URLs, comma-separated), TOKEN (the admin token), VOTERS and GATEWAYS
#       (node ids, space-separated)
#   node_addr ID      a node's internal address (its /metrics are there)
#   node_pid ID       a node's process id
#   node_cpu          one line per node, "ID TICKS": its user + system CPU time so far, in clock
#                     ticks (10 ms here)
#   local_stop        stop the cluster and remove DIR/c (the logs in DIR stay)

local_start() {
    LOCAL_BIN=$1; LOCAL_DIR=$2; shift 2
    rm -rf "$LOCAL_DIR"; mkdir -p "$LOCAL_DIR"
    FLASHSTOCK_NODE_BIN=$LOCAL_BIN/flashstock-node "$LOCAL_BIN/flashstock-local" --dir "$LOCAL_DIR/c" "$@" \
        > "$LOCAL_DIR/local.log" 2>&1 < /dev/null &
    LOCAL_PID=$!
    for _ in $(seq 1 240); do grep -q "ready\. Ctrl-C" "$LOCAL_DIR/local.log" && break; sleep 0.5; done
    grep -q "ready\. Ctrl-C" "$LOCAL_DIR/local.log" || { cat "$LOCAL_DIR/local.log"; return 1; }
    URLS=$(grep -o "gateway [0-9]*  http://[0-9.:]*" "$LOCAL_DIR/local.log" | awk '{print $3}' | paste -sd, -)
    VOTERS=$(grep -oE "voter +[0-9]+ +[0-9.]+:[0-9]+ " "$LOCAL_DIR/local.log" | awk '{print $2}' | paste -sd' ' -)
    GATEWAYS=$(grep -oE "gateway +[0-9]+ +[0-9.]+:[0-9]+ " "$LOCAL_DIR/local.log" | awk '{print $2}' | paste -sd' ' -)
    TOKEN=$(cat "$LOCAL_DIR/c/admin-token")
}

node_addr() {
    grep -oE "(voter|gateway) +$1 +[0-9.]+:[0-9]+ " "$LOCAL_DIR/local.log" | awk '{print $3}'
}

node_pid() {
    pgrep -f "flashstock-node.*$LOCAL_DIR/c/node-$1.toml" | head -1
}

node_cpu() {
    for n in $VOTERS $GATEWAYS; do echo "$n $(awk '{print $14+$15}' "/proc/$(node_pid "$n")/stat")"; done
}

local_stop() {
    kill -INT "$LOCAL_PID"; wait "$LOCAL_PID" 2>/dev/null
    rm -rf "$LOCAL_DIR/c"
}
