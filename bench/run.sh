#!/usr/bin/env bash
# The benchmark in one command: builds every binary in release mode, then runs flashstock-bench,
# which starts a six-node cluster on loopback, the bare axum, PostgreSQL and Redis baselines, runs the
# standard scenarios and the cost curves with the same load generator, and writes
# bench/results/<date>.json, <date>.md and <date>-*.svg.
#
#   ./bench/run.sh                 # the brief's scale: 6000 connections, curves to 12 000
#                                  # connections and 1 000 000 products (about 8 minutes on
#                                  # two cores with the Redis scenarios, 1 of them importing the
#                                  # million products)
#   ./bench/run.sh --scale quick   # a reduced scale, about 3 minutes (2.6 with Redis)
#   ./bench/run.sh --sustained 30  # only the sustained run: the standard mix at 6000
#                                  # connections for 30 minutes with the archive on, figures
#                                  # every 30 s (memory, data, snapshots, p99 over time)
#   ./bench/run.sh --help          # every figure can be set by a flag
#
# Installs missing system packages first (see deploy/setup.sh; PostgreSQL and Redis for the
# baselines).
# The build directory is the one fixed in .cargo/config.toml, shared with every other command.
set -euo pipefail

# cargo reads .cargo/config.toml (the build directory) from the working directory: run from the
# repository; relative paths given as flags are then taken from there too.
cd "$(dirname "$0")/.."
source deploy/setup.sh
flashstock_need_packages postgresql redis-server

# The benchmark starts flashstock-node and the baselines of the same build.
cargo build --release --workspace --bins
exec cargo run --release --quiet -p flashstock-loadgen --bin flashstock-bench -- "$@"
