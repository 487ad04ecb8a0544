#!/usr/bin/env bash
# Installs what building and testing flashstock needs beyond the Rust toolchain, if missing.
# Sourced by deploy/run-local.sh and deploy/test.sh. Debian/Ubuntu: installs with apt-get when run
# as root; otherwise prints the exact command to run.
set -euo pipefail

flashstock_need_packages() {
  local missing=()
  # bindgen (RocksDB's bindings) loads libclang at build time.
  if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
     && ! ldconfig -p 2>/dev/null | grep -q 'libclang'; then
    missing+=(libclang-dev)
  fi
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  for extra in "$@"; do
    case "$extra" in
      postgresql) command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql) ;;
      chromium) { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || missing+=(chromium chromium-driver) ;;
      # Network partitions of the fault-injection harness; only root can use them, so only
      # root needs the package (others run without partitions).
      iptables) [ "$(id -u)" -ne 0 ] || command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables) ;;
      # Network namespaces of the fault harness and of six-hosts.sh; root only, like iptables.
      iproute2) [ "$(id -u)" -ne 0 ] || command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2) ;;
    esac
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
