#!/usr/bin/env bash
# Builds flashstock and runs a whole cluster on this machine: 3 voters and 3 gateways on loopback,
# with a demo catalog. Ctrl-C stops it; a rerun resumes the same cluster (same ports, same data).
#
#   ./deploy/run-local.sh [--dir DIR] [--catalog FILE] [--with-archive | --archive-url URL]
#
# DIR (default: .local-cluster in the repository) holds the nodes' configs, data and logs.
# The order archive is off unless --with-archive (a PostgreSQL server of its own in DIR/postgres)
# or --archive-url URL (an existing PostgreSQL database) turns it on.
# Installs missing system packages first (see setup.sh). The first build compiles RocksDB's C++
# (a cold build of every binary took about 16 minutes on two cores) into the build directory
# fixed in .cargo/config.toml.
set -euo pipefail

# Paths given relative to where the script was called from, made absolute before the cd below.
args=()
extras=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir|--catalog)
      [ $# -ge 2 ] || { echo "run-local: $1 needs a value" >&2; exit 2; }
      case "$2" in /*) args+=("$1" "$2") ;; *) args+=("$1" "$PWD/$2") ;; esac
      shift 2 ;;
    --dir=*|--catalog=*)
      name="${1%%=*}" value="${1#*=}"
      case "$value" in /*) args+=("$name" "$value") ;; *) args+=("$name" "$PWD/$value") ;; esac
      shift ;;
    --with-archive) extras+=(postgresql); args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done

# cargo reads .cargo/config.toml (the build directory) from the working directory: run from the
# repository.
cd "$(dirname "$0")/.."
source deploy/setup.sh
# curl: the "Try it" commands printed once the cluster is ready.
flashstock_need_packages curl ${extras[@]+"${extras[@]}"}

# The launcher starts the flashstock-node binary of the same build: build every binary.
cargo build --release --workspace --bins
exec cargo run --release --quiet --bin flashstock-local -- ${args[@]+"${args[@]}"}
