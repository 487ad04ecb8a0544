#!/usr/bin/env bash
# Installs what building and testing flashstock needs beyond the Rust toolchain, if missing.
# Sourced by deploy/run-local.sh and deploy/test.sh. Debian/Ubuntu: installs with apt-get when run
# as root; otherwise prints the exact command to run.
set -euo pipefail

# Succeeds when bindgen (through clang-sys, which RocksDB's bindings use at build time) can load
# libclang under ROOT (default /): a file named libclang.so, libclang-N.so, libclang.so.N or
# libclang-N.so.N in $LIBCLANG_PATH or one of the directories clang-sys searches. Other
# libraries whose names merely start with "libclang" do not count: libclang-cpp.so.14 (the C++
# interface, shipped by many images without libclang itself) is not what bindgen loads.
flashstock_has_libclang() {
  local root="${1:-}" dir file name
  local dirs=()
  [ -n "${LIBCLANG_PATH:-}" ] && dirs+=("$root$LIBCLANG_PATH")
  dirs+=("$root"/usr/lib "$root"/usr/lib64 "$root"/usr/lib/*-linux-gnu "$root"/lib "$root"/lib64
         "$root"/lib/*-linux-gnu "$root"/usr/local/lib "$root"/usr/local/lib64
         "$root"/usr/lib/llvm-*/lib "$root"/usr/local/llvm*/lib)
  for dir in "${dirs[@]}"; do
    [ -d "$dir" ] || continue
    for file in "$dir"/libclang*.so*; do
      [ -e "$file" ] || continue
      name="${file##*/}"
      case "$name" in
        libclang.so | libclang.so.[0-9]* | libclang-[0-9]*.so | libclang-[0-9]*.so.[0-9]*) return 0 ;;
      esac
    done
  done
  return 1
}

flashstock_need_packages() {
  local missing=()
  flashstock_has_libclang || missing+=(libclang-dev)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  for extra in "$@"; do
    case "$extra" in
      postgresql) command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql) ;;
      # The benchmark's Redis baseline and its smoke test (loadgen/tests/t10_smoke.rs).
      redis-server) command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server) ;;
      # six-hosts.sh checks its nodes over HTTPS with it.
      curl) command -v curl >/dev/null 2>&1 || missing+=(curl) ;;
      chromium) { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || missing+=(chromium chromium-driver) ;;
      # Network partitions of the fault-injection harness; only root can use them, so only
      # root needs the package (others run without partitions).
      iptables) [ "$(id -u)" -ne 0 ] || command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables) ;;
      # Network namespaces of the fault harness and of six-hosts.sh; root only, like iptables.
      iproute2) [ "$(id -u)" -ne 0 ] || command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2) ;;
      # The floating public address (VRRP) of six-hosts.sh and its test; root only, like iproute2.
      keepalived) [ "$(id -u)" -ne 0 ] || command -v keepalived >/dev/null 2>&1 || [ -x /usr/sbin/keepalived ] || missing+=(keepalived) ;;
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
