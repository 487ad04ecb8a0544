#!/usr/bin/env bash
# Checks flashstock as CI does: formatting, clippy (warnings are errors) and the docs, then every
# test: unit, storage conformance, scenario, and end-to-end tests that start real node processes
# on loopback, archive tests against a real PostgreSQL (Debian's postgresql package), browser tests
# in headless Chromium and the fault harness's short run. Installs missing system packages first
# (see setup.sh). Arguments go to `cargo test`.
#
# One cargo profile (release) serves tests and benchmarks, so RocksDB's C++ compiles once; the
# build directory is fixed in .cargo/config.toml, outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh
# postgresql: the archive's tests (node/tests/t40_archive.rs) and the benchmark's baseline
# (loadgen/tests/t10_smoke.rs) run a real server.
# redis-server: the benchmark's Redis baseline, in the same smoke test.
# chromium (with chromium-driver): the storefront's browser tests (node/tests/t50_storefront.rs).
# iptables, iproute2 (as root): the fault harness's partitions and network namespaces.
# keepalived (as root): the floating address of the six-hosts test (deploy/tests/six_hosts.rs).
flashstock_need_packages postgresql iptables iproute2 chromium curl keepalived redis-server

# The release profile compiles incrementally (Cargo.toml), and cargo never collects that state:
# it reached 40 GiB in the shared build directory after a few weeks of changes and filled the
# disk, which then failed tests that write data (the six-hosts test first). Start it afresh past
# 8 GiB: the next build recompiles this workspace's crates once, never RocksDB.
target_dir=$(sed -n 's/^target-dir = "\(.*\)"$/\1/p' .cargo/config.toml)
incremental="$target_dir/release/incremental"
if [ -d "$incremental" ] && [ "$(du -sm "$incremental" | cut -f1)" -gt 8192 ]; then
  echo "test.sh: $incremental is over 8 GiB: removing it"
  rm -rf "$incremental"
fi

# What a reviewer checks first, in the same release profile as everything else, so that RocksDB's
# C++ still compiles once: formatting, lints (warnings are errors) and the API docs.
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="${RUSTDOCFLAGS:--D warnings}" cargo doc --release --no-deps --workspace

# The rolling-upgrade test (jepsen-tests/tests/t30_rolling_upgrade.rs) starts a cluster of the
# previous release: build its node binary from git, once per build directory, before this
# checkout's binaries (it passes through target/release, which the next build restores).
./deploy/build-previous.sh
# The end-to-end tests run node binaries: build them first.
cargo build --release --workspace --bins
# Each end-to-end test runs a whole cluster; two at a time fit a 2-core machine.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
cargo test --release --workspace "$@"
