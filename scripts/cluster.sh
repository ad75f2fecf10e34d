#!/usr/bin/env bash
# Real Kubernetes nodes for the lab: containerd (Debian) + runc, a kubelet and kube-proxy (iptables mode), all
# v1.20.2 from scripts/kapi.sh's build, each run inside the network namespace this script is started in
# (`nsenter --net=/run/netns/NODE_NS scripts/cluster.sh node-start ...`; not `ip netns exec`, which remounts /sys
# and hides the cgroup mounts the kubelet needs), so every node has its own addresses, routes and
# iptables rules. The control plane is scripts/kapi.sh with KAPI_CLUSTER=1. openelb-lab's cluster
# (`openelb-cli lab cluster`) drives both; docs/testing.md#the-real-cluster explains the choices.
#
# Usage:
#   scripts/cluster.sh install                       build/cache kube components, install containerd, runc, CNI
#   scripts/cluster.sh node-start NAME IP POD_CIDR [--taint K=V:EFFECT]... [--label K=V]...
#   scripts/cluster.sh node-stop NAME                every process of the node (by recorded PID), mounts, cgroups
#   scripts/cluster.sh kubelet-kill NAME             the node's kubelet only (SIGKILL): the node goes silent
#   scripts/cluster.sh containers NAME               PIDs of the node's containers (one `ID PID` per line)
#   scripts/cluster.sh import NAME ARCHIVE...        load OCI/docker archives into the node's containerd
# Environment:
#   CLUSTER_DIR   run dir, one folder per node      (default /tmp/openelb-cluster)
#   KAPI_DIR      the control plane's run dir: kubeconfig-system:node:NAME, kubeconfig-system:kube-proxy, ca.crt
#   KAPI_CACHE    the kube binaries                  (default /var/cache/openelb-kapi/v1.20.2)
#   CLUSTER_SANDBOX_IMAGE  containerd's pause image  (default localhost/pause:lab, built by scripts/image.sh)
#   CLUSTER_POD_CIDR       every node's Pods together, kube-proxy's clusterCIDR (default 198.51.100.0/25)
#   KAPI_SERVICE_CIDR      the ClusterIP range, as given to the apiserver (default 198.51.100.128/25)
set -euo pipefail

DIR=${CLUSTER_DIR:-/tmp/openelb-cluster}
KAPI=${KAPI_DIR:-/tmp/openelb-kapi}
CACHE=${KAPI_CACHE:-/var/cache/openelb-kapi/v1.20.2}
SANDBOX=${CLUSTER_SANDBOX_IMAGE:-localhost/pause:lab}
ALL_PODS=${CLUSTER_POD_CIDR:-198.51.100.0/25}
SERVICES=${KAPI_SERVICE_CIDR:-198.51.100.128/25}
HERE=$(cd "$(dirname "$0")" && pwd)

log() { echo "cluster: $*"; }
die() { echo "cluster: error: $*" >&2; exit 1; }

install() {
  bash "$HERE/kapi.sh" install cluster
  local pkgs=(containerd runc containernetworking-plugins iptables conntrack) missing=() p
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The lab runs a containerd of its own per node (scripts/cluster.sh node-start), never a system one.
  bash "$HERE/image.sh"
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# spawn NAME PIDFILE LOG ARGS...: started in this script's namespace, detached from its stdio.
spawn() {
  local name=$1 pidfile=$2 logf=$3
  shift 3
  "$@" >"$logf" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "$name started (pid $!, log $logf)"
}

wait_for() { # wait_for WHAT SECONDS PIDFILE CMD...: until CMD succeeds, failing early if PIDFILE's process dies
  local what=$1 secs=$2 pidfile=$3 i
  shift 3
  for i in $(seq $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$pidfile" || { tail -20 "${pidfile%.pid}.log" >&2 || true; die "$what exited"; }
    sleep 0.1
  done
  tail -20 "${pidfile%.pid}.log" >&2 || true
  die "$what not ready after $secs s"
}

node_start() {
  local name=$1 ip=$2 pod_cidr=$3 args=("$@")
  shift 3
  local taints=() labels=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --taint) taints+=("$2"); shift 2 ;;
      --label) labels+=("$2"); shift 2 ;;
      *) die "node-start: unknown argument $1" ;;
    esac
  done
  local n="$DIR/$name" kc="$KAPI/kubeconfig-system:node:$name"
  # The kubelet 1.20 writes container logs under /var/log/pods whatever its root dir, and its garbage collector
  # removes the folders of Pods it does not run: kubelets sharing one /var/log/pods delete each other's logs. So
  # containerd, the kubelet and kube-proxy of a node share a mount namespace of their own (receiving the host's
  # mounts) where /var/log/pods and /var/log/containers are the node's folders; it ends with their processes.
  if [ -z "${CLUSTER_NODE_MOUNTS:-}" ]; then
    mkdir -p "$n/log/pods" "$n/log/containers" /var/log/pods /var/log/containers
    exec unshare --mount --propagation slave env CLUSTER_NODE_MOUNTS=1 bash "$0" node-start "${args[@]}"
  fi
  mount --bind "$n/log/pods" /var/log/pods
  mount --bind "$n/log/containers" /var/log/containers
  [ -s "$kc" ] || die "$kc missing: start the control plane with KAPI_CLUSTER=1 KAPI_NODES=\"... $name ...\""
  for b in kubelet kube-proxy; do [ -x "$CACHE/$b" ] || die "$CACHE/$b missing (run: scripts/cluster.sh install)"; done
  mkdir -p "$n/containerd/root" "$n/containerd/state" "$n/cni" "$n/kubelet" "$n/opt"
  local gw=${pod_cidr%/*}
  gw="${gw%.*}.$((${gw##*.} + 1))"
  # containerd: a private root, state and socket per node; CNI netns mounts under its state dir so a stop
  # finds them; a negative oom_score_adj is refused here (runc then fails with "can't get final child's PID").
  cat >"$n/containerd.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$n/containerd.sock"
[ttrpc]
  address = "$n/containerd.ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$n/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    Root = "$n/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni"
EOF
  # Pods on a bridge with this node's share of the Pod range; other nodes' shares are routed by the lab.
  cat >"$n/cni/10-lab.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "lab", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr", "gateway": "$gw"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$n/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  cat >"$n/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
nodeStatusUpdateFrequency: 2s
nodeLeaseDurationSeconds: 8
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: ""
EOF
  cat >"$n/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$KAPI/kubeconfig-system:kube-proxy"}
hostnameOverride: $name
bindAddress: $ip
clusterCIDR: $ALL_PODS
mode: iptables
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  ip link set lo up
  # Host-network programs (the speaker) reach the `kubernetes` Service through kube-proxy's OUTPUT DNAT, which
  # needs a route to the ClusterIP range first; the lab's nodes have no default route.
  local dev
  dev=$(ip -o addr show to "$ip" | awk '{ print $2; exit }')
  [ -n "$dev" ] || die "no interface of this namespace has $ip"
  ip route replace "$SERVICES" dev "$dev"
  spawn containerd "$n/containerd.pid" "$n/containerd.log" containerd --config "$n/containerd.toml"
  wait_for containerd 30 "$n/containerd.pid" ctr -a "$n/containerd.sock" version
  local extra=()
  [ "${#taints[@]}" -gt 0 ] && extra+=(--register-with-taints "$(IFS=,; echo "${taints[*]}")")
  [ "${#labels[@]}" -gt 0 ] && extra+=(--node-labels "$(IFS=,; echo "${labels[*]}")")
  spawn kubelet "$n/kubelet.pid" "$n/kubelet.log" "$CACHE/kubelet" --config "$n/kubelet.yaml" --kubeconfig "$kc" \
    --container-runtime remote --container-runtime-endpoint "unix://$n/containerd.sock" \
    --root-dir "$n/kubelet" --cert-dir "$n/kubelet/pki" --hostname-override "$name" --node-ip "$ip" \
    --volume-plugin-dir "$n/kubelet/volume-plugins" "${extra[@]}"
  spawn kube-proxy "$n/kube-proxy.pid" "$n/kube-proxy.log" "$CACHE/kube-proxy" --config "$n/kube-proxy.yaml"
  wait_for kubelet 60 "$n/kubelet.pid" curl -sf http://127.0.0.1:10248/healthz
  log "node $name up ($ip, Pods $pod_cidr)"
}

# Every container of the node: `ID PID` of its init process, from containerd's bundles.
containers() {
  local n="$DIR/$1" d
  for d in "$n"/containerd/state/io.containerd.runtime.v2.task/*/*/; do
    [ -s "$d/init.pid" ] && echo "$(basename "$d") $(cat "$d/init.pid")"
  done
  return 0
}

kill_pidfile() { # kill_pidfile FILE SIGNAL
  [ -s "$1" ] || return 0
  kill "-$2" "$(cat "$1")" 2>/dev/null || true
}

node_stop() {
  local name=$1 n="$DIR/$1" f d pid i
  [ -d "$n" ] || return 0
  kill_pidfile "$n/kube-proxy.pid" KILL
  kill_pidfile "$n/kubelet.pid" KILL
  # Containers first (their init is PID 1 of a PID namespace: killing it ends the container), then their
  # shims, then containerd: every one of them a PID this node's containerd recorded.
  # A container's shim is its init's parent; the shim's socket is named in the bundle's `address` file.
  local cgroups=() shims=() sockets=() id
  while read -r id pid; do
    [ -n "$pid" ] || continue
    [ -r "/proc/$pid/cgroup" ] && while IFS=: read -r _ _ path; do cgroups+=("$path"); done <"/proc/$pid/cgroup"
    shims+=("$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)")
    kill -KILL "$pid" 2>/dev/null || true
  done < <(containers "$name")
  for f in "$n"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
    f=$(sed 's|^unix://||' "$f" 2>/dev/null) || continue # the shim may remove its bundle meanwhile
    [ -n "$f" ] && sockets+=("$f")
  done
  for pid in "${shims[@]}"; do [ -n "$pid" ] && [ "$pid" != 1 ] && kill -KILL "$pid" 2>/dev/null || true; done
  for f in "${sockets[@]}"; do case "$f" in /run/containerd/s/*) rm -f "$f" ;; esac; done
  kill_pidfile "$n/containerd.pid" TERM
  for i in $(seq 50); do alive "$n/containerd.pid" || break; sleep 0.1; done
  kill_pidfile "$n/containerd.pid" KILL
  # Mounts under the node's folder (Secrets' tmpfs, netns binds) live in the node's mount namespace and end with
  # its processes; any the host sees (a node started without it) go too, deepest first.
  awk -v p="$n/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r d; do
    umount -l "$d" 2>/dev/null || true
  done
  # Empty cgroups runc left behind for the killed containers (never a cgroup with processes in it).
  local c
  for c in "${cgroups[@]}"; do
    [ -n "$c" ] && [ "$c" != / ] || continue
    for d in /sys/fs/cgroup/*"$c"; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
  done
  # Their parent, once no container of any node is left in it (rmdir refuses a cgroup that is in use).
  for d in /sys/fs/cgroup/*/k8s.io; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
  rm -rf "$n/containerd" "$n/kubelet" "$n/opt" "$n/cni-ipam" "$n/runc" "$n/log"
  # Folders the node created on the host, once empty (rmdir leaves one another node still uses).
  rmdir /run/containerd/s /run/containerd /var/log/pods /var/log/containers 2>/dev/null || true
  log "node $name stopped"
}

kubelet_kill() { kill_pidfile "$DIR/$1/kubelet.pid" KILL; }

import() {
  local name=$1 n="$DIR/$1" a
  shift
  for a in "$@"; do
    ctr -a "$n/containerd.sock" -n k8s.io images import --snapshotter native "$a" >/dev/null ||
      die "importing $a into $name's containerd failed"
  done
}

case "${1:-}" in
  install) install ;;
  node-start) shift; [ $# -ge 3 ] || die "usage: node-start NAME IP POD_CIDR [--taint K=V:E]... [--label K=V]..."; node_start "$@" ;;
  node-stop) [ $# -eq 2 ] || die "usage: node-stop NAME"; node_stop "$2" ;;
  kubelet-kill) [ $# -eq 2 ] || die "usage: kubelet-kill NAME"; kubelet_kill "$2" ;;
  containers) [ $# -eq 2 ] || die "usage: containers NAME"; containers "$2" ;;
  import) shift; [ $# -ge 2 ] || die "usage: import NAME ARCHIVE..."; import "$@" ;;
  *) sed -n '/^# Usage:/,/^# Environment:/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
