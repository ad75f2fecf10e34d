#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one: installs what the tests need, then runs formatting,
# lint, every test (unit, property, integration, doc) and the benchmarks in test mode (each once, quickly).
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite needs: none yet. The network-namespace lab (iproute2, iptables, keepalived...) and
# the kube-apiserver build of the next issues add themselves to this list.
apt_pkgs=()
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "cargo is required (rustup toolchain)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
