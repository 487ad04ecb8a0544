#!/usr/bin/env bash
# Builds the node binary of the previous release, for the rolling-upgrade test
# (jepsen-tests/tests/t30_rolling_upgrade.rs), once per build directory: into
# <target>/previous/<commit>/flashstock-node. The previous release is named here by its commit
# (tag v0.1.0); raise it with each release.
#
# It builds from `git archive` of that commit in the same fixed build directory and release
# profile, so RocksDB's C++ is not compiled again: the previous release pins the same versions,
# and its workspace crates (another version number) get artifacts of their own. Only the binary
# at <target>/release/flashstock-node is the previous one afterwards, until the next
# `cargo build` of this checkout puts the current one back: deploy/test.sh runs this first.
set -euo pipefail
cd "$(dirname "$0")/.."

PREVIOUS_COMMIT=b290ff4987e041cf08c8513ae9355568445f5aa0
PREVIOUS_VERSION=0.1.0

target=$(sed -n 's/^target-dir = "\(.*\)"$/\1/p' .cargo/config.toml)
out="$target/previous/$PREVIOUS_COMMIT"
if [ -x "$out/flashstock-node" ]; then
  echo "build-previous: flashstock $PREVIOUS_VERSION ($PREVIOUS_COMMIT) is built: $out"
  exit 0
fi
if ! git cat-file -e "$PREVIOUS_COMMIT^{commit}" 2>/dev/null; then
  # Not an error of the checkout: the rolling-upgrade test is then reported ignored, with the
  # reason (jepsen-tests/build.rs), never passed.
  echo "build-previous: commit $PREVIOUS_COMMIT (flashstock $PREVIOUS_VERSION) is not in this" \
       "clone (a shallow clone?): the rolling-upgrade test will be reported ignored; fetch the" \
       "history (git fetch --unshallow) to run it" >&2
  exit 0
fi
source=$(mktemp -d)
trap 'rm -rf "$source"' EXIT
# -m: the files get the time of extraction, not of the commit; with the commit's older times
# cargo could take artifacts of another checkout for up to date.
git archive "$PREVIOUS_COMMIT" | tar -x -m -C "$source"
echo "build-previous: building flashstock $PREVIOUS_VERSION ($PREVIOUS_COMMIT) in $target"
(cd "$source" && cargo build --release --locked -p flashstock-node --bin flashstock-node)
mkdir -p "$out"
cp "$target/release/flashstock-node" "$out/flashstock-node.partial"
mv "$out/flashstock-node.partial" "$out/flashstock-node"
echo "build-previous: $out/flashstock-node"
