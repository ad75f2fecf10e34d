#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one: installs what the tests need, then runs formatting,
# lint, every test (unit, property, integration, doc) and the benchmarks in test mode (each once, quickly).
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
#
# Tests that need something from the machine (root for network namespaces, the test kube-apiserver,
# keepalived, tshark) carry `#[ignore = "needs ..."]`. As root this script installs all of it and runs them too
# (`-- --include-ignored`), where a missing prerequisite fails the test. As another user it installs nothing,
# runs the rest, and its summary counts the ignored tests by reason. With CI set, not being root, or a
# prerequisite missing after the install, is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

root=0
[ "$(id -u)" = 0 ] && root=1
if [ -n "${CI:-}" ] && [ "$root" = 0 ]; then
  echo "error: CI runs the whole suite, which needs root (network namespaces, apt installs)" >&2
  exit 1
fi

# Debian packages the suite needs: the network-namespace lab (openelb-cli lab, openelb-lab's harness) runs
# iproute2, iptables (kube-proxy's DNAT), ping/arping, keepalived (reference VRRP speaker), curl,
# tcpdump/tshark (captures) and ndisc6. The kube-apiserver of the apiserver tests comes from scripts/kapi.sh.
# scripts/image.sh builds the images with podman (busybox-static for the pause image) and checks that
# containerd's ctr imports them.
# The real-cluster lab (scripts/cluster.sh) runs containerd, runc and the CNI plugins on every node.
apt_pkgs=(iproute2 iptables iputils-ping iputils-arping keepalived curl tcpdump tshark ndisc6 podman containerd
  busybox-static runc containernetworking-plugins conntrack)
# Programs the ignored tests call, checked after the install.
tools=(ip iptables ping arping keepalived curl tcpdump tshark sysctl kubectl etcd podman containerd ctr busybox runc
  nsenter)
if [ "$root" = 1 ]; then
  missing=()
  for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # tshark's package asks whether non-root users may capture; answer "no" up front so nothing prompts.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # Kubernetes v1.20.2 (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet, kubectl)
  # + etcd: built from Debian's `kubernetes` source package on the first run on a machine (about 8 min, 1.3 GB
  # RAM), then taken from /var/cache/openelb-kapi.
  echo "== scripts/kapi.sh install cluster"
  bash scripts/kapi.sh install cluster # exits non-zero unless every component is built and cached
  absent=()
  for t in "${tools[@]}"; do
    command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || [ -x "/sbin/$t" ] || absent+=("$t")
  done
  if [ "${#absent[@]}" -gt 0 ]; then
    echo "error: prerequisites still missing after the install: ${absent[*]}" >&2
    exit 1
  fi
else
  echo "== not root: installing nothing and starting no apiserver; tests that need them are ignored (see the summary)"
fi

command -v cargo >/dev/null || { echo "cargo is required (rustup toolchain)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (the lab tests run the openelb-speaker binary)"
cargo build --workspace --bins --locked
if [ "$root" = 1 ]; then
  # The release binaries (cached by cargo between runs) in the images the cluster lab runs; fails unless each
  # image's programs run and containerd imports every archive.
  echo "== scripts/image.sh"
  bash scripts/image.sh
fi
log=$(mktemp)
test_args=()
if [ "$root" = 1 ]; then
  echo "== scripts/kapi.sh start (test apiserver for the apiserver tests)"
  KAPI_DIR=$(mktemp -d)
  export KAPI_DIR
  trap 'bash scripts/kapi.sh stop || true; rm -rf "$KAPI_DIR"; rm -f "$log"' EXIT
  bash scripts/kapi.sh start
  export KAPI_KUBECONFIG="$KAPI_DIR/kubeconfig"
  test_args=(--include-ignored)
else
  trap 'rm -f "$log"' EXIT
fi
echo "== cargo test"
status=0
cargo test --workspace --all-targets --locked --no-fail-fast -- "${test_args[@]}" 2>&1 | tee -a "$log" || status=$?
cargo test --workspace --doc --locked --no-fail-fast 2>&1 | tee -a "$log" || status=$?
# One closing line over every test binary (cargo prints one result line per binary), then the ignored tests
# by reason (libtest prints `test NAME ... ignored, REASON`).
awk '/^test result:/ { for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     / \.\.\. ignored/ { r = $0; sub(/.* \.\.\. ignored(, )?/, "", r); if (r == "") r = "(no reason given)"; n[r]++ }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s
           for (r in n) printf "  skipped %d: %s\n", n[r], r }' "$log"
exit "$status"
