#!/usr/bin/env bash
# A real kube-apiserver (v1.20.2) + etcd (3.4) for integration tests, from Debian bookworm packages only.
# No registry ships a kube-apiserver binary, so `install` builds one from Debian's `kubernetes` source package
# (the full upstream tree with vendor/) and caches it; a second run on the same machine takes about a second.
# Why it is built this way: docs/testing.md#the-test-apiserver; each step says why it is there.
#
# Usage: scripts/kapi.sh install [cluster]|start|stop|status
# Environment (all optional):
#   KAPI_CACHE   where the built binary is kept      (default /var/cache/openelb-kapi/v1.20.2)
#   KAPI_DIR     run dir: etcd data, logs, pids, kubeconfig (default /tmp/openelb-kapi)
#   KAPI_ADDR    address to listen on, 127.0.0.1 or a lab address (default 127.0.0.1)
#   KAPI_PORT    apiserver secure port               (default 16443)
#   KAPI_ETCD_CLIENT_PORT / KAPI_ETCD_PEER_PORT      (default 23790 / 23800)
#   KAPI_SERVICE_CIDR  Service cluster IP range (default 10.96.0.0/24: bookkeeping only, never configured on an
#                     interface or routed; 2001:db8:ffff::/108 makes every Service single-stack IPv6)
#   KAPI_NODE_PORT_RANGE  NodePort range (default 30000-32767: 2768 LoadBalancer Services at most)
#   KAPI_FEATURE_GATES  kube-apiserver --feature-gates (e.g. IPv6DualStack=true with a v4,v6 KAPI_SERVICE_CIDR: a
#                     Service may then ask for either family, as kube-bench's IPv6 filler Services in an IPv4 lab do)
#   KAPI_CLUSTER=1    a whole control plane for real nodes (scripts/cluster.sh, openelb-lab's cluster): a CA of its
#                     own signs the serving certificate (SANs: KAPI_ADDR, the first Service IP, 127.0.0.1, the
#                     kubernetes.default names), `--authorization-mode Node,RBAC` with NodeRestriction, the
#                     `kubernetes` Service's Endpoints kept (lease reconciler), and kube-controller-manager and
#                     kube-scheduler started beside it. Each component and each node in KAPI_NODES (names,
#                     space-separated) gets its own token and kubeconfig ($KAPI_DIR/kubeconfig-<user>).
#   KAPI_NODE_GRACE   node lifecycle controller's grace period before a silent node is NotReady (default 16s)
#   KAPI_KEEP_DATA=1  `start` keeps the etcd data and token of an earlier start in the same KAPI_DIR (a restart:
#                     objects survive, as when a real control plane comes back)
# `start` writes $KAPI_DIR/kubeconfig (bearer token; insecure-skip-tls-verify, or the CA with KAPI_CLUSTER=1);
# `stop` ends only the PIDs `start` recorded in $KAPI_DIR.
set -euo pipefail

CACHE=${KAPI_CACHE:-/var/cache/openelb-kapi/v1.20.2}
D=${KAPI_DIR:-/tmp/openelb-kapi}
ADDR=${KAPI_ADDR:-127.0.0.1}
PORT=${KAPI_PORT:-16443}
ETCD_CLIENT=${KAPI_ETCD_CLIENT_PORT:-23790}
ETCD_PEER=${KAPI_ETCD_PEER_PORT:-23800}
SERVICE_CIDR=${KAPI_SERVICE_CIDR:-10.96.0.0/24}
CLUSTER=${KAPI_CLUSTER:-0}
SRCVER=1.20.5+really1.20.2-1.1+deb12u1
SRCDIR=kubernetes-1.20.5+really1.20.2
SRC_LIST=/etc/apt/sources.list.d/openelb-kapi-src.sources
SRC_LIST_CLASSIC=/etc/apt/sources.list.d/openelb-kapi-src.list

log() { echo "kapi: $*"; }
die() { echo "kapi: error: $*" >&2; exit 1; }

apt_ensure() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# deb-src entries derived from the machine's own Debian sources, so no mirror host is written here.
add_deb_src() {
  local found=0
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$SRC_LIST"
    found=1
  fi
  if [ -f /etc/apt/sources.list ] && grep -Eq '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then
    sed -nE 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list >"$SRC_LIST_CLASSIC"
    found=1
  fi
  [ "$found" = 1 ] || die "no Debian apt sources found (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)"
  log "temporary deb-src entries: $( [ -f "$SRC_LIST" ] && echo "$SRC_LIST") $( [ -f "$SRC_LIST_CLASSIC" ] && echo "$SRC_LIST_CLASSIC")"
}

# Every component is built from the same source tree, in one `make` (the generated-files step runs once).
# `install` builds what the tests need against the test apiserver; `install cluster` adds what a whole
# control plane and real nodes need (scripts/cluster.sh).
API_COMPONENTS=(kube-apiserver)
CLUSTER_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)

install() {
  local want=("${API_COMPONENTS[@]}")
  [ "${1:-}" = cluster ] && want=("${CLUSTER_COMPONENTS[@]}")
  apt_ensure etcd-server etcd-client curl openssl
  command -v kubectl >/dev/null || [ "${1:-}" = cluster ] || apt_ensure kubernetes-client
  local missing=() c
  for c in "${want[@]}"; do
    if [ -x "$CACHE/$c" ]; then log "$c cached: $CACHE/$c"; else missing+=("$c"); fi
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "building ${missing[*]} from Debian source kubernetes=$SRCVER (kube-apiserver alone about 3.5 min, the six about 8 min; 1.3 GB RAM)"
  apt_ensure golang-go rsync jq dpkg-dev make golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  local w t0=$SECONDS
  w=$(mktemp -d /tmp/openelb-kapi-build.XXXXXX)
  # shellcheck disable=SC2064 # expand now: the paths are fixed for this run
  trap "rm -rf '$w' '$SRC_LIST' '$SRC_LIST_CLASSIC'; apt-get update -qq >/dev/null 2>&1 || true" EXIT
  add_deb_src
  apt-get update -qq
  log "apt-get source kubernetes=$SRCVER into $w"
  (cd "$w" && apt-get source -qq "kubernetes=$SRCVER" >"$w/source.log" 2>&1) ||
    { tail -20 "$w/source.log" >&2; die "apt-get source kubernetes=$SRCVER failed"; }
  cd "$w/$SRCDIR"
  # Vendored reflect2 v1.0.1 faults in mapiternext under Go >= 1.18 on the first custom-resource create;
  # Debian's reflect2 1.0.2 / json-iterator 1.1.12 are API-compatible and fixed.
  local p
  for p in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    log "replacing vendor/$p with /usr/share/gocode/src/$p"
    rm -rf "vendor/$p"
    mkdir -p "vendor/$p"
    cp -r "/usr/share/gocode/src/$p/." "vendor/$p/"
    find "vendor/$p" -name '*_test.go' -delete
  done
  local what=()
  for c in "${missing[@]}"; do what+=("cmd/$c"); done
  log "make WHAT=\"${what[*]}\" (log: $w/build.log)"
  if ! CGO_ENABLED=0 HOME="$w" KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean \
    make WHAT="${what[*]}" >"$w/build.log" 2>&1; then
    mkdir -p "$(dirname "$CACHE")"
    cp "$w/build.log" "$CACHE.build.log" || true
    echo "---- last 40 lines of the build log (full log: $CACHE.build.log)" >&2
    tail -40 "$w/build.log" >&2
    die "build of ${missing[*]} failed"
  fi
  mkdir -p "$CACHE"
  for c in "${missing[@]}"; do
    cp "_output/bin/$c" "$CACHE/$c.tmp"
    mv "$CACHE/$c.tmp" "$CACHE/$c"
  done
  cd /
  log "built ${missing[*]} in $((SECONDS - t0)) s into $CACHE"
}

alive() { [ -s "$D/$1.pid" ] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/$ADDR/$1") 2>/dev/null; }

readyz() { curl -skf -H "Authorization: Bearer $(cat "$D/token")" "https://$ADDR:$PORT/readyz" >/dev/null 2>&1; }

fail_start() {
  echo "---- $1 log tail ($D/$1.log)" >&2
  tail -20 "$D/$1.log" >&2 || true
  stop >/dev/null 2>&1 || true
  die "$2"
}

# kubeconfig USER TOKEN: the cluster's CA when there is one, else TLS unverified (loopback test apiserver).
kubeconfig() {
  local tls="insecure-skip-tls-verify: true"
  [ -s "$D/ca.crt" ] && [ "$CLUSTER" = 1 ] && tls="certificate-authority-data: $(base64 -w0 <"$D/ca.crt")"
  cat <<KC
apiVersion: v1
kind: Config
clusters: [{name: kapi, cluster: {server: "https://$ADDR:$PORT", $tls}}]
users: [{name: "$1", user: {token: "$2"}}]
contexts: [{name: kapi, context: {cluster: kapi, user: "$1"}}]
current-context: kapi
KC
}

# One CA for serving and for the components' identities, and a token per component and node: the Node
# authorizer and the bootstrap RBAC roles (system:kube-controller-manager, system:kube-scheduler,
# system:node-proxier for system:kube-proxy) key on these user names.
cluster_pki() {
  if [ ! -s "$D/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=openelb-lab-ca" \
      -keyout "$D/ca.key" -out "$D/ca.crt" 2>/dev/null
  fi
  local svc_ip base last
  base=${SERVICE_CIDR%/*}
  last=${base##*.}
  svc_ip="${base%.*}.$((last + 1))"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$D/apiserver.key" -out "$D/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost\n' \
    "$ADDR" "$svc_ip" >"$D/apiserver.ext"
  openssl x509 -req -in "$D/apiserver.csr" -CA "$D/ca.crt" -CAkey "$D/ca.key" -CAcreateserial -days 30 \
    -extfile "$D/apiserver.ext" -out "$D/apiserver.crt" 2>/dev/null
  local user group tok n
  for user in system:kube-controller-manager system:kube-scheduler system:kube-proxy ${KAPI_NODES:-}; do
    group=""
    case "$user" in system:*) ;; *) user="system:node:$user"; group=system:nodes ;; esac
    n="$D/kubeconfig-$user"
    if [ -s "$n.token" ]; then tok=$(cat "$n.token"); else tok=$(openssl rand -hex 16); echo "$tok" >"$n.token"; fi
    echo "$tok,$user,$user,$group" >>"$D/tokens.csv"
    kubeconfig "$user" "$tok" >"$n"
  done
}

# start_component NAME ARGS...: a control-plane program beside the apiserver, its PID in $D/NAME.pid.
start_component() {
  local name=$1
  shift
  log "$name"
  "$CACHE/$name" "$@" >"$D/$name.log" 2>&1 &
  echo $! >"$D/$name.pid"
  sleep 0.5
  alive "$name" || fail_start "$name" "$name exited"
}

start() {
  [ -x "$CACHE/kube-apiserver" ] || die "no kube-apiserver in $CACHE (run: scripts/kapi.sh install)"
  command -v etcd >/dev/null || die "etcd not installed (run: scripts/kapi.sh install)"
  if alive apiserver && alive etcd && readyz; then
    log "already running in $D (kubeconfig: $D/kubeconfig)"
    return 0
  fi
  if alive apiserver || alive etcd; then stop; fi
  local p
  for p in "$PORT" "$ETCD_CLIENT" "$ETCD_PEER"; do
    port_free "$p" || die "port $ADDR:$p is in use (set KAPI_PORT / KAPI_ETCD_CLIENT_PORT / KAPI_ETCD_PEER_PORT)"
  done
  local keep=0
  [ "${KAPI_KEEP_DATA:-0}" = 1 ] && [ -d "$D/etcd" ] && [ -s "$D/token" ] && [ -s "$D/sa.key" ] && keep=1
  [ "$keep" = 1 ] || rm -rf "$D/etcd"
  rm -rf "$D/certs"
  mkdir -p "$D/certs"
  local t0=$SECONDS i
  log "etcd on $ADDR:$ETCD_CLIENT (data $D/etcd)"
  etcd --name kapi --data-dir "$D/etcd" \
    --listen-client-urls "http://$ADDR:$ETCD_CLIENT" --advertise-client-urls "http://$ADDR:$ETCD_CLIENT" \
    --listen-peer-urls "http://$ADDR:$ETCD_PEER" --initial-advertise-peer-urls "http://$ADDR:$ETCD_PEER" \
    --initial-cluster "kapi=http://$ADDR:$ETCD_PEER" >"$D/etcd.log" 2>&1 &
  echo $! >"$D/etcd.pid"
  if [ "$keep" = 0 ]; then
    openssl genrsa -out "$D/sa.key" 2048 2>/dev/null
    openssl rand -hex 16 >"$D/token"
  fi
  echo "$(cat "$D/token"),admin,1,system:masters" >"$D/tokens.csv"
  local mode_args=(--authorization-mode AlwaysAllow --endpoint-reconciler-type none --cert-dir "$D/certs")
  if [ "$CLUSTER" = 1 ]; then
    cluster_pki
    mode_args=(--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
      --kubelet-preferred-address-types InternalIP
      --client-ca-file "$D/ca.crt" --tls-cert-file "$D/apiserver.crt" --tls-private-key-file "$D/apiserver.key")
  fi
  for i in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "http://$ADDR:$ETCD_CLIENT" endpoint health >/dev/null 2>&1 && break
    alive etcd || fail_start etcd "etcd exited"
    sleep 0.1
  done
  log "kube-apiserver on https://$ADDR:$PORT"
  "$CACHE/kube-apiserver" --etcd-servers "http://$ADDR:$ETCD_CLIENT" \
    --bind-address "$ADDR" --advertise-address "$ADDR" --secure-port "$PORT" \
    --token-auth-file "$D/tokens.csv" "${mode_args[@]}" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$D/sa.key" \
    --service-account-signing-key-file "$D/sa.key" --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-node-port-range "${KAPI_NODE_PORT_RANGE:-30000-32767}" \
    ${KAPI_FEATURE_GATES:+--feature-gates "$KAPI_FEATURE_GATES"} \
    --enable-priority-and-fairness=false >"$D/apiserver.log" 2>&1 &
  echo $! >"$D/apiserver.pid"
  for i in $(seq 1200); do
    alive apiserver || fail_start apiserver "kube-apiserver exited"
    readyz && break
    [ "$i" = 1200 ] && fail_start apiserver "kube-apiserver not ready after 120 s"
    sleep 0.1
  done
  kubeconfig admin "$(cat "$D/token")" >"$D/kubeconfig"
  if [ "$CLUSTER" = 1 ]; then
    start_component kube-controller-manager --kubeconfig "$D/kubeconfig-system:kube-controller-manager" \
      --use-service-account-credentials --service-account-private-key-file "$D/sa.key" \
      --root-ca-file "$D/ca.crt" --cluster-signing-cert-file "$D/ca.crt" --cluster-signing-key-file "$D/ca.key" \
      --leader-elect=false --bind-address "$ADDR" --port 0 --allocate-node-cidrs=false \
      --node-monitor-period 2s --node-monitor-grace-period "${KAPI_NODE_GRACE:-16s}"
    start_component kube-scheduler --kubeconfig "$D/kubeconfig-system:kube-scheduler" \
      --leader-elect=false --bind-address "$ADDR" --port 0
  fi
  log "ready in $((SECONDS - t0)) s; export KAPI_KUBECONFIG=$D/kubeconfig"
}

stop() { # apiserver first (it shuts down gracefully in a few seconds), then etcd; SIGKILL after 15 s
  local f p i
  for f in kube-scheduler kube-controller-manager apiserver etcd; do
    [ -s "$D/$f.pid" ] || continue
    p=$(cat "$D/$f.pid")
    if kill "$p" 2>/dev/null; then
      log "stopping $f (pid $p)"
      for i in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$D/$f.pid"
  done
}

status() {
  local f rc=0
  for f in etcd apiserver; do
    if alive "$f"; then log "$f running (pid $(cat "$D/$f.pid"))"; else log "$f not running"; rc=1; fi
  done
  if [ -s "$D/token" ] && readyz; then log "apiserver ready at https://$ADDR:$PORT (kubeconfig: $D/kubeconfig)"; else rc=1; fi
  return "$rc"
}

case "${1:-}" in
  install) install "${2:-}" ;;
  start | stop | status) "$1" ;;
  *) echo "usage: $0 install [cluster]|start|stop|status" >&2; exit 2 ;;
esac
