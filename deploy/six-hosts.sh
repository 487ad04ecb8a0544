#!/usr/bin/env bash
# Runs flashstock as it runs on six servers, on this one machine: six network namespaces, one per
# server, each with its own address in 198.18.0.0/15, joined by a bridge in a seventh namespace
# (the switch). No namespace has a default route, and the machine's own namespace gets no address
# there: nothing can leave this machine, and nothing here talks to those addresses from outside.
# An eighth namespace, the client, holds 198.18.0.100 for the commands you run against the
# cluster. The shop's floating public address, 198.18.0.10, is held by one gateway server at a
# time: keepalived (VRRP, unicast between servers 4, 5 and 6) runs in each gateway's namespace
# with deploy/keepalived/server-N.conf and moves the address to another gateway when this one's
# /v1/ready fails (it died, hangs, lost the leader or trails it).
#
#   ./deploy/six-hosts.sh up   [--dir DIR]   build, create the namespaces, start PostgreSQL on
#                                            server 4 with its synchronous standby on server 5,
#                                            the voters on 1-3, the gateways on 4-6, form the
#                                            cluster, load the demo catalog, start keepalived
#                                            on 4-6 and wait for the floating address
#   ./deploy/six-hosts.sh exec CMD...        run CMD in the client namespace, e.g.
#                                            ./deploy/six-hosts.sh exec curl -s --cacert DIR/tls/ca.pem https://198.18.0.4:8080/v1/products
#   ./deploy/six-hosts.sh stockctl ARGS...   stockctl in the client namespace, with the cluster's
#                                            endpoints, operator secret, gateways and admin token set
#   ./deploy/six-hosts.sh holder             which server holds the floating address now
#   ./deploy/six-hosts.sh down  [--dir DIR]  stop every process, delete the namespaces and DIR
#
# The nodes run with the configuration files of a real six-server deployment,
# deploy/six-servers/server-N.toml; only data_dir is moved to DIR/server-N, and the certificate
# paths from /etc/flashstock/tls to DIR/server-N/tls. Certificates are made as deploy/RUNBOOK.md,
# "TLS", says: a CA in DIR/tls (with the operator's certificate), one certificate per server;
# a gateway's public certificate is valid for its own address and the floating one.
# keepalived runs each server's deploy/keepalived/server-N.conf; only the check's path, the name
# it checks the certificate for (the floating address), its CA and its user (root, as the script
# is in this checkout) change.
# Needs root (network namespaces), iproute2, and Debian's postgresql, curl and keepalived
# packages (installed if missing, as root).
# FLASHSTOCK_BIN_DIR, if set, names the directory of already built binaries (no build).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"
# Namespace names start with this; tests pick their own.
PREFIX="${SIX_HOSTS_PREFIX:-fs6}"
SUBNET_BITS=15
CLIENT_IP=198.18.0.100
# The shop's public address: on one of the gateway servers at a time (deploy/keepalived).
FLOATING_IP=198.18.0.10
DIR=/tmp/flashstock-six-hosts

die() { echo "six-hosts: $*" >&2; exit 1; }
say() { echo "six-hosts: $*"; }

command="${1:-}"
[ -n "$command" ] || die "usage: $0 up|down|exec|stockctl|holder [--dir DIR]"
shift
if [ "$command" = up ] || [ "$command" = down ]; then
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; DIR="$2"; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
fi
[ "$(id -u)" -eq 0 ] || die "network namespaces need root"
command -v ip >/dev/null || die "iproute2 (ip) is missing: apt-get install -y iproute2"
# keepalived is in /usr/sbin, which a PATH may lack.
KEEPALIVED="$(command -v keepalived || echo /usr/sbin/keepalived)"

ns_host() { echo "$PREFIX-server$1"; }
target_dir() {
  cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# ---- down ----

down() {
  rm -f "$(dir_file)"
  # keepalived first: it releases the floating address on SIGTERM.
  for pidfile in "$DIR"/server-*/keepalived.pid; do
    [ -f "$pidfile" ] || continue
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=0
    for pidfile in "$DIR"/server-*/keepalived.pid; do
      [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pidfile in "$DIR"/server-*/node.pid; do
    [ -f "$pidfile" ] || continue
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  # Nodes drain on SIGTERM; give them a moment, then make sure.
  for _ in $(seq 1 100); do
    alive=0
    for pidfile in "$DIR"/server-*/node.pid; do
      [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pidfile in "$DIR"/server-*/node.pid; do
    [ -f "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
  done
  for pg in "4 postgres" "5 postgres-standby"; do
    set -- $pg
    if [ -f "$DIR/$2/data/postmaster.pid" ]; then
      ip netns exec "$(ns_host "$1")" runuser -u postgres -- \
        "$(pg_bin)/pg_ctl" -D "$DIR/$2/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
    # Whatever still runs in a namespace goes with it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns"
  done
  rm -rf "$DIR"
  say "stopped; namespaces deleted, $DIR removed"
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

# ---- up ----

network() {
  ip netns add "$PREFIX-switch"
  ip -n "$PREFIX-switch" link set lo up
  ip -n "$PREFIX-switch" link add br0 type bridge
  ip -n "$PREFIX-switch" link set br0 up
  attach() { # namespace, port name on the switch, address
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip link add "$2" netns "$PREFIX-switch" type veth peer name eth0 netns "$1"
    ip -n "$PREFIX-switch" link set "$2" master br0 up
    ip -n "$1" addr add "$3/$SUBNET_BITS" dev eth0
    ip -n "$1" link set eth0 up
  }
  for n in 1 2 3 4 5 6; do attach "$(ns_host "$n")" "port$n" "198.18.0.$n"; done
  attach "$PREFIX-client" port100 "$CLIENT_IP"
  for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-"); do
    if [ -n "$(ip -n "$ns" route show default)" ]; then
      die "namespace $ns has a default route; refusing to go on"
    fi
  done
  say "network: servers 198.18.0.1-6 and the client $CLIENT_IP on one bridge, no default route"
}

# psql against server N's PostgreSQL, from server N's namespace.
psql_on() { # server number, SQL
  ip netns exec "$(ns_host "$1")" runuser -u postgres -- "$(pg_bin)/psql" \
    -h "198.18.0.$1" -p 5432 -U flashstock -d flashstock -Atc "$2"
}

standby_is_sync() { [ "$(psql_on 4 'SELECT sync_state FROM pg_stat_replication')" = sync ]; }

# The archive as deploy/systemd/postgresql-archive.conf ships it: the primary on server 4, a
# synchronous streaming standby on server 5.
postgres() {
  local data="$DIR/postgres/data" standby="$DIR/postgres-standby/data"
  mkdir -p "$DIR/postgres" "$DIR/postgres-standby"
  chown postgres:postgres "$DIR/postgres" "$DIR/postgres-standby"
  runuser -u postgres -- "$(pg_bin)/initdb" -D "$data" -U flashstock -A trust -E UTF8 --locale=C >/dev/null
  echo "host all all 198.18.0.0/$SUBNET_BITS trust" >> "$data/pg_hba.conf"
  echo "host replication all 198.18.0.0/$SUBNET_BITS trust" >> "$data/pg_hba.conf"
  install -o postgres -g postgres -m 0644 deploy/systemd/postgresql-archive.conf "$data/flashstock.conf"
  echo "include 'flashstock.conf'" >> "$data/postgresql.conf"
  # No standby yet: commits must not wait for one while the database is created.
  echo "synchronous_standby_names = ''" >> "$data/postgresql.auto.conf"
  ip netns exec "$(ns_host 4)" runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$data" \
    -l "$DIR/postgres/server.log" -w -t 60 \
    -o "-c listen_addresses=198.18.0.4 -p 5432 -c unix_socket_directories=''" start >/dev/null
  ip netns exec "$(ns_host 4)" runuser -u postgres -- "$(pg_bin)/createdb" \
    -h 198.18.0.4 -p 5432 -U flashstock flashstock
  # Back to the shipped synchronous_standby_names ('*'), before the copy, so the standby has it
  # too when it is promoted.
  psql_on 4 "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null
  psql_on 4 "SELECT pg_reload_conf()" >/dev/null
  ip netns exec "$(ns_host 5)" runuser -u postgres -- "$(pg_bin)/pg_basebackup" \
    -h 198.18.0.4 -p 5432 -U flashstock -D "$standby" -R -X stream
  ip netns exec "$(ns_host 5)" runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$standby" \
    -l "$DIR/postgres-standby/server.log" -w -t 60 \
    -o "-c listen_addresses=198.18.0.5 -p 5432 -c unix_socket_directories=''" start >/dev/null
  eventually "the standby on server 5 streams synchronously" standby_is_sync
  say "PostgreSQL (the order archive) on server 4, 198.18.0.4:5432; synchronous standby on server 5"
}

# The cluster's CA and the operator's certificate in DIR/tls; each server's certificate, for
# its address, in DIR/server-N/tls as the RUNBOOK installs it in /etc/flashstock/tls.
certificates() {
  local ca="$DIR/tls"
  "$BIN/stockctl" certs ca --dir "$ca" >/dev/null
  "$BIN/stockctl" certs issue --dir "$ca" operator >/dev/null
  for n in 1 2 3 4 5 6; do
    local tls="$DIR/server-$n/tls"
    "$BIN/stockctl" certs issue --dir "$ca" "server-$n" "198.18.0.$n" >/dev/null
    install -d -m 0750 "$tls"
    install -m 0644 "$ca/ca.pem" "$tls/ca.pem"
    install -m 0644 "$ca/server-$n.pem" "$tls/node.pem"
    install -m 0600 "$ca/server-$n.key" "$tls/node.key"
    # A gateway's public certificate: here from the same CA, for its own address and the
    # floating one (the shop's public address); a shop uses one from a public CA for its
    # public name.
    "$BIN/stockctl" certs issue --dir "$ca" "public-$n" "198.18.0.$n" "$FLOATING_IP" >/dev/null
    install -m 0644 "$ca/public-$n.pem" "$tls/public.pem"
    install -m 0600 "$ca/public-$n.key" "$tls/public.key"
  done
  say "TLS: a CA in $ca, a certificate per server; mutual TLS between nodes, HTTPS on gateways"
}

start_node() { # server number
  local n="$1" host="$DIR/server-$1"
  mkdir -p "$host"
  sed -e "s|^data_dir = .*|data_dir = \"$host/data\"|" -e "s|/etc/flashstock/tls/|$host/tls/|" \
    "deploy/six-servers/server-$n.toml" > "$host/node.toml"
  ip netns exec "$(ns_host "$n")" setsid "$BIN/flashstock-node" --config "$host/node.toml" \
    > "$host/node.log" 2>&1 < /dev/null &
  echo $! > "$host/node.pid"
}

in_client() { ip netns exec "$PREFIX-client" "$@"; }

# keepalived in gateway server N's namespace, with the shipped deploy/keepalived/server-N.conf:
# the check runs from this checkout, as root, checks the certificate for the floating address
# against the cluster's CA. Its own pid files, its log in DIR/server-N/keepalived.log.
start_keepalived() { # server number
  local n="$1" host="$DIR/server-$1"
  sed -e "s|\"/usr/local/lib/flashstock/flashstock-ready-check \(198\.18\.0\.$n:8080\) shop.example\"|\"$REPO/deploy/keepalived/flashstock-ready-check \1 $FLOATING_IP $DIR/tls/ca.pem\"|" \
    -e "s|^\( *script_user\) nobody\$|\1 root|" -e "/^ *enable_script_security\$/d" \
    "deploy/keepalived/server-$n.conf" > "$host/keepalived.conf"
  grep -q "$REPO/deploy/keepalived/flashstock-ready-check" "$host/keepalived.conf" \
    || die "deploy/keepalived/server-$n.conf: its check is not where this script expects it"
  ip netns exec "$(ns_host "$n")" setsid "$KEEPALIVED" --dont-fork --vrrp --log-console \
    --log-detail --no-syslog -f "$host/keepalived.conf" -p "$host/keepalived.daemon.pid" \
    -r "$host/keepalived.vrrp.pid" > "$host/keepalived.log" 2>&1 < /dev/null &
  echo $! > "$host/keepalived.pid"
}

# The gateway server (4, 5 or 6) whose namespace holds the floating address; nothing if none.
holder() {
  for n in 4 5 6; do
    if ip -n "$(ns_host "$n")" -4 -o addr show dev eth0 2>/dev/null | grep -q " $FLOATING_IP/"; then
      echo "$n"
    fi
  done
}

one_holder() { [ "$(holder | wc -l)" -eq 1 ]; }

floating() {
  for n in 4 5 6; do start_keepalived "$n"; done
  eventually "one gateway server holds the floating address $FLOATING_IP" one_holder
  eventually "the floating address answers" \
    in_client curl -sf --cacert "$DIR/tls/ca.pem" "https://$FLOATING_IP:8080/v1/ready"
  if grep -E "Unknown keyword|missing a value|[Cc]onfiguration error" "$DIR"/server-*/keepalived.log; then
    die "keepalived found errors in deploy/keepalived/server-N.conf (above)"
  fi
  say "floating address $FLOATING_IP on server $(holder) (keepalived on 4-6, VRRP unicast)"
}

# Where `up` put the cluster, for `exec` and `stockctl`, which take no --dir.
dir_file() { echo "/tmp/$PREFIX.six-hosts-dir"; }

stockctl_env() {
  export STOCKCTL_ENDPOINTS=198.18.0.1:7000,198.18.0.2:7000,198.18.0.3:7000,198.18.0.4:7000,198.18.0.5:7000,198.18.0.6:7000
  export STOCKCTL_GATEWAYS=https://198.18.0.4:8080,https://198.18.0.5:8080,https://198.18.0.6:8080
  export STOCKCTL_TLS_CA="$DIR/tls/ca.pem" STOCKCTL_GATEWAY_CA="$DIR/tls/ca.pem"
  export STOCKCTL_TLS_CERT="$DIR/tls/operator.pem" STOCKCTL_TLS_KEY="$DIR/tls/operator.key"
  # The operator secret: the configs hold only its digest (operator_secrets), as nodes need no more.
  STOCKCTL_SECRET=six-servers-operator-secret-change-me
  STOCKCTL_ADMIN_TOKEN="$(sed -n 's/^admin_token = "\(.*\)"/\1/p' deploy/six-servers/server-1.toml)"
  export STOCKCTL_SECRET STOCKCTL_ADMIN_TOKEN
  # curl to an internal listener: the operator's certificate, the cluster's CA.
  CURL_TLS="--cacert $STOCKCTL_TLS_CA --cert $STOCKCTL_TLS_CERT --key $STOCKCTL_TLS_KEY"
}

# Poll until CMD succeeds, for up to 60 s.
eventually() {
  local what="$1"; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what: not within 60 s (logs in $DIR/server-*/node.log)"
}

up() {
  if ip netns list | grep -q "^$PREFIX-"; then
    die "namespaces $PREFIX-* exist already: run '$0 down' first"
  fi
  source deploy/setup.sh
  flashstock_need_packages postgresql curl keepalived
  if [ -n "${FLASHSTOCK_BIN_DIR:-}" ]; then
    BIN="$FLASHSTOCK_BIN_DIR"
  else
    cargo build --release --workspace --bins
    BIN="$(target_dir)/release"
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  echo "$DIR" > "$(dir_file)"
  network
  postgres
  certificates
  stockctl_env
  for n in 1 2 3; do start_node "$n"; done
  for n in 1 2 3; do
    eventually "voter $n answers" in_client curl -sf $CURL_TLS "https://198.18.0.$n:7000/health"
  done
  STOCKCTL_ENDPOINTS=198.18.0.1:7000 in_client "$BIN/stockctl" cluster init >/dev/null
  eventually "a leader is elected" bash -c \
    "ip netns exec $PREFIX-client '$BIN/stockctl' --output json cluster status | grep -q '\"state\": \"Leader\"'"
  for n in 4 5 6; do start_node "$n"; done
  for n in 4 5 6; do
    eventually "gateway $n answers" in_client curl -sf $CURL_TLS "https://198.18.0.$n:7000/health"
    in_client "$BIN/stockctl" cluster add-learner "$n" "198.18.0.$n:7000" >/dev/null
  done
  say "cluster formed: voters on servers 1-3, gateways on 4-6"
  in_client "$BIN/stockctl" product create sneaker-drop --name "Limited sneaker drop" \
    --price-cents 14900 --stock 50 >/dev/null
  in_client "$BIN/stockctl" product create tee --name "Logo T-shirt" \
    --price-cents 2500 --stock 200 >/dev/null
  in_client "$BIN/stockctl" cluster status
  floating
  cat <<EOF

six-hosts: ready. Everything lives in $DIR; the machine's own namespace has no route to it.
  $0 exec curl -s --cacert $DIR/tls/ca.pem https://$FLOATING_IP:8080/v1/products
  $0 holder
  $0 stockctl buy sneaker-drop 1
  $0 stockctl archive status
  $0 down
EOF
}

if [ "$command" = exec ] || [ "$command" = stockctl ]; then
  [ -f "$(dir_file)" ] && DIR="$(cat "$(dir_file)")"
fi

case "$command" in
  up) up ;;
  down) down ;;
  holder) holder ;;
  exec) in_client "$@" ;;
  stockctl)
    stockctl_env
    in_client "${FLASHSTOCK_BIN_DIR:-$(target_dir)/release}/stockctl" "$@" ;;
  *) die "unknown command $command; expected up, down, exec, stockctl or holder" ;;
esac
