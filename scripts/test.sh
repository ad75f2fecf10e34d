#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one: installs what the tests need, then runs formatting,
# lint, every test (unit, property, integration, doc) and the benchmarks in test mode (each once, quickly).
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite needs: the network-namespace lab (openelb-cli lab, tests/lab_*.rs) runs iproute2,
# iptables (kube-proxy's DNAT), ping/arping, keepalived (reference VRRP speaker), curl, tcpdump/tshark (captures)
# and ndisc6. The kube-apiserver of tests/apiserver_crd.rs comes from scripts/kapi.sh below.
apt_pkgs=(iproute2 iptables iputils-ping iputils-arping keepalived curl tcpdump tshark ndisc6)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # tshark's package asks whether non-root users may capture; answer "no" up front so nothing prompts.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# kube-apiserver v1.20.2 + etcd for tests/apiserver_crd.rs: built from Debian's `kubernetes` source package on the
# first run on a machine (about 3.5 min, 1.3 GB RAM), then taken from /var/cache/openelb-kapi.
echo "== scripts/kapi.sh install"
bash scripts/kapi.sh install

command -v cargo >/dev/null || { echo "cargo is required (rustup toolchain)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (the lab tests run the openelb-speaker binary)"
cargo build --workspace --bins --locked
echo "== scripts/kapi.sh start (test apiserver for tests/apiserver_crd.rs)"
log=$(mktemp)
KAPI_DIR=$(mktemp -d)
export KAPI_DIR
trap 'bash scripts/kapi.sh stop || true; rm -rf "$KAPI_DIR"; rm -f "$log"' EXIT
bash scripts/kapi.sh start
export KAPI_KUBECONFIG="$KAPI_DIR/kubeconfig"
echo "== cargo test"
status=0
cargo test --workspace --all-targets --locked --no-fail-fast 2>&1 | tee -a "$log" || status=$?
cargo test --workspace --doc --locked --no-fail-fast 2>&1 | tee -a "$log" || status=$?
# One closing line over every test binary (cargo prints one result line per binary, the last being doc tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
