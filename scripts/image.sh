#!/usr/bin/env bash
# Builds the project's container images offline (no registry, no base image: FROM scratch) and saves each as an
# archive that `ctr -n k8s.io images import` loads:
#   docker.io/library/openelb-rs:0.1.0  openelb-controller, openelb-speaker, openelb-cli (deploy/'s `openelb-rs:0.1.0`)
#   docker.io/library/kubia-lab:1       the seed's luksa/kubia: "You've hit <pod name>" on 8080 (openelb-cli lab pod-http)
#   localhost/pause:lab                 a pause image for containerd's sandbox_image (busybox-static sleep)
# Usage: scripts/image.sh [build|verify|all]   (default all: build, then verify)
#   build   release binaries (cargo build --release --locked --workspace --bins), staged contexts, images, archives
#   verify  runs each image (podman/docker), and imports the archives into a throwaway containerd (ctr)
# Environment: OPENELB_IMAGE_DIR (archives and the image store; default /var/cache/openelb-images),
#   OPENELB_IMAGE_ENGINE (podman, buildah or docker; default the first of them installed; as root, podman is
#   installed from Debian when none is).
# Idempotent: every run restages from the current binaries; unchanged inputs give the same image IDs.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
case "$mode" in
  build | verify | all) ;;
  *) echo "usage: scripts/image.sh [build|verify|all]" >&2; exit 2 ;;
esac

out=${OPENELB_IMAGE_DIR:-/var/cache/openelb-images}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
openelb_image=docker.io/library/openelb-rs:$version
kubia_image=docker.io/library/kubia-lab:1
pause_image=localhost/pause:lab
images=("$openelb_image" "$kubia_image" "$pause_image")
bins=(openelb-controller openelb-speaker openelb-cli)
rootfs=target/image/rootfs

log() { echo "== image.sh: $*" >&2; }
die() { echo "error: image.sh: $*" >&2; exit 1; }

# The archive of an image: openelb-rs_0.1.0.tar, kubia-lab_1.tar, pause_lab.tar.
archive_of() {
  local ref=${1##*/}
  echo "$out/${ref/:/_}.tar"
}

pick_engine() {
  if [ -n "${OPENELB_IMAGE_ENGINE:-}" ]; then
    command -v "$OPENELB_IMAGE_ENGINE" >/dev/null || die "OPENELB_IMAGE_ENGINE=$OPENELB_IMAGE_ENGINE is not installed"
    echo "$OPENELB_IMAGE_ENGINE"
    return
  fi
  local e
  for e in podman buildah docker; do
    if command -v "$e" >/dev/null; then echo "$e"; return; fi
  done
  [ "$(id -u)" = 0 ] || die "no podman, buildah or docker, and not root to install podman"
  log "no container engine: installing podman from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman >&2; }
  echo podman
}

engine=$(pick_engine)
# podman and buildah: an image store of our own (vfs works wherever overlay does not) and a containers.conf
# without default ulimits (raising nproc is refused on some machines: "error setting rlimit type 6").
store=()
if [ "$engine" = podman ] || [ "$engine" = buildah ]; then
  mkdir -p "$out/storage" "$out/run"
  store=(--root "$out/storage" --runroot "$out/run" --storage-driver vfs)
  printf '[containers]\ndefault_ulimits = []\n' >"$out/containers.conf"
  export CONTAINERS_CONF="$out/containers.conf"
fi
eng() { "$engine" "${store[@]}" "$@"; }

# Copies an ELF program into a root filesystem with exactly the shared libraries ldd names for it and its
# dynamic loader, each at the path ldd prints (where the loader looks for it without an ld.so.cache). The
# program loses its symbol table when binutils' strip is installed (a quarter of its size; panics still name
# their file and line, only backtraces lose function names).
stage_program() {
  local prog=$1 dest=$2 root=$3 lib
  install -D -m 0755 "$prog" "$root$dest"
  if command -v strip >/dev/null; then strip "$root$dest"; fi
  while read -r lib; do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done < <(ldd "$prog" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

build_binaries() {
  log "cargo build --release --locked --workspace --bins (nice -n 19)"
  nice -n 19 cargo build --release --locked --workspace --bins
  local dir
  dir=$(cargo metadata --format-version 1 --no-deps --locked | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  release=${dir:-target}/release
  local b
  for b in "${bins[@]}"; do [ -x "$release/$b" ] || die "no $release/$b after the build"; done
}

stage_openelb() {
  log "staging $rootfs (binaries, their libraries, CA bundle)"
  rm -rf "$rootfs"
  local b
  for b in "${bins[@]}"; do stage_program "$release/$b" "/usr/local/bin/$b" "$rootfs"; done
  local ca=/etc/ssl/certs/ca-certificates.crt
  if [ -f "$ca" ]; then install -D -m 0644 "$ca" "$rootfs$ca"; else log "warning: no $ca on this machine: the image has no CA bundle"; fi
}

# kubia-lab: openelb-cli's pod responder as PID 1, answering with its host name (the Pod's name).
stage_kubia() {
  local ctx=$1
  log "staging $ctx (openelb-cli lab pod-http)"
  rm -rf "$ctx"
  stage_program "$release/openelb-cli" /usr/local/bin/openelb-cli "$ctx/rootfs"
  cat >"$ctx/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
EXPOSE 8080
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/openelb-cli", "lab", "pod-http"]
EOF
}

# pause: sleeps forever as PID 1; containerd ends a sandbox with SIGKILL, which a PID 1 cannot ignore.
stage_pause() {
  local ctx=$1 busybox
  busybox=$(command -v busybox || true)
  if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "the pause image needs a static busybox (Debian's busybox-static)"
    log "installing busybox-static from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >&2
    busybox=/bin/busybox
  fi
  ! ldd "$busybox" >/dev/null 2>&1 || die "$busybox is dynamically linked; install busybox-static"
  log "staging $ctx (static $busybox)"
  rm -rf "$ctx"
  install -D -m 0755 "$busybox" "$ctx/rootfs/bin/busybox"
  cat >"$ctx/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
USER 65534:65534
ENTRYPOINT ["/bin/busybox", "sleep", "infinity"]
EOF
}

# Builds an image from a context and saves it as an archive ctr imports (docker-archive: its RepoTags carry the
# full name, which ctr keeps), then prints its sizes: the archive (a plain tar), the files in the image, and the
# archive gzipped (about what a registry would transfer).
build_image() {
  local ref=$1 ctx=$2 file=$3 root=$4 archive
  archive=$(archive_of "$ref")
  log "$engine build $ref from $ctx"
  case "$engine" in
    podman) eng build --pull=never --timestamp 0 -f "$file" -t "$ref" "$ctx" >&2 ;;
    buildah) eng bud --pull-never --timestamp 0 -f "$file" -t "$ref" "$ctx" >&2 ;;
    docker) DOCKER_BUILDKIT=0 docker build -f "$file" -t "$ref" "$ctx" >&2 ;;
  esac
  rm -f "$archive.tmp"
  case "$engine" in
    podman) eng save --format docker-archive -o "$archive.tmp" "$ref" >&2 ;;
    buildah) eng push "$ref" "docker-archive:$archive.tmp:$ref" >&2 ;;
    docker) docker save -o "$archive.tmp" "$ref" ;;
  esac
  mv "$archive.tmp" "$archive"
  local size files gz
  size=$(stat -c %s "$archive")
  files=$(du -sb "$root" | cut -f1)
  gz=$(gzip -c "$archive" | wc -c)
  printf '%s: %s %s bytes (%s MiB); files %s bytes (%s MiB); gzipped %s bytes (%s MiB)\n' "$ref" "$archive" \
    "$size" "$((size / 1048576))" "$files" "$((files / 1048576))" "$gz" "$((gz / 1048576))"
}

build() {
  mkdir -p "$out"
  build_binaries
  stage_openelb
  stage_kubia target/image/kubia
  stage_pause target/image/pause
  build_image "$openelb_image" . Dockerfile "$rootfs"
  build_image "$kubia_image" target/image/kubia target/image/kubia/Containerfile target/image/kubia/rootfs
  build_image "$pause_image" target/image/pause target/image/pause/Containerfile target/image/pause/rootfs
  # Our own store only: the images these builds replaced.
  case "$engine" in
    podman) eng image prune -f >/dev/null ;;
    buildah) eng rmi --prune >/dev/null ;;
  esac
}

# --- verify -------------------------------------------------------------------------------------------------

tmp=""
netns=""
containerd_pid=""
cleanup() {
  if [ -n "$containerd_pid" ]; then kill "$containerd_pid" 2>/dev/null || true; wait "$containerd_pid" 2>/dev/null || true; fi
  if [ -n "$netns" ]; then
    eng rm -f openelb-image-kubia openelb-image-pause >/dev/null 2>&1 || true
    ip netns del "$netns" 2>/dev/null || true
  fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT

# Polls a command every 0.1 s until it succeeds, for at most $1 seconds.
within() {
  local secs=$1 i
  shift
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

verify_runs() {
  if [ "$engine" = buildah ]; then
    command -v podman >/dev/null || die "verify runs containers with podman or docker; only buildah is installed"
    engine=podman
  fi
  log "running the binaries of $openelb_image"
  local b
  for b in "${bins[@]}"; do
    eng run --pull=never --rm --network none --entrypoint "/usr/local/bin/$b" "$openelb_image" --help >/dev/null \
      || die "$b --help failed in $openelb_image"
  done
  [ "$(eng image inspect --format '{{.Config.User}}' "$openelb_image")" = 65534:65534 ] \
    || die "$openelb_image does not run as 65534:65534 by default"

  # kubia in a network namespace of our own, on its default port, answering with the container's host name.
  netns=openelb-image-$$
  log "running $kubia_image in network namespace $netns, curl 127.0.0.1:8080"
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  eng run --pull=never -d --name openelb-image-kubia --network "ns:/run/netns/$netns" --hostname kubia-image-check \
    --cap-drop ALL "$kubia_image" >/dev/null
  within 10 ip netns exec "$netns" curl -sf http://127.0.0.1:8080/ \
    || die "$kubia_image does not answer on 8080: $(eng logs openelb-image-kubia 2>&1)"
  local reply
  reply=$(ip netns exec "$netns" curl -sf http://127.0.0.1:8080/)
  [ "$reply" = "You've hit kubia-image-check" ] || die "$kubia_image answered '$reply'"
  # SIGTERM ends it at once (pod-http handles it; a PID 1 without a handler would ignore it).
  eng stop -t 5 openelb-image-kubia >/dev/null
  [ "$(eng inspect --format '{{.State.ExitCode}}' openelb-image-kubia)" = 0 ] \
    || die "$kubia_image did not exit 0 on SIGTERM"
  eng rm -f openelb-image-kubia >/dev/null

  log "running $pause_image: runs, then dies on SIGKILL"
  eng run --pull=never -d --name openelb-image-pause --network "ns:/run/netns/$netns" --cap-drop ALL "$pause_image" >/dev/null
  [ "$(eng inspect --format '{{.State.Running}}' openelb-image-pause)" = true ] || die "$pause_image is not running"
  eng kill -s KILL openelb-image-pause >/dev/null
  within 10 test "$(eng inspect --format '{{.State.Running}}' openelb-image-pause)" = false \
    || die "$pause_image survived SIGKILL"
  eng rm -f openelb-image-pause >/dev/null
  ip netns del "$netns"
  netns=""
}

# Imports every archive into a containerd of our own (own root, state and socket) and lists what it got.
verify_import() {
  command -v containerd >/dev/null && command -v ctr >/dev/null || die "verify needs containerd and ctr (Debian's containerd)"
  tmp=$(mktemp -d /tmp/openelb-image-containerd.XXXXXX)
  cat >"$tmp/config.toml" <<EOF
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$tmp/containerd.sock"
[ttrpc]
  address = "$tmp/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/opt"
EOF
  log "throwaway containerd in $tmp"
  containerd --config "$tmp/config.toml" >"$tmp/containerd.log" 2>&1 &
  containerd_pid=$!
  local c=(ctr --address "$tmp/containerd.sock" -n k8s.io)
  within 20 "${c[@]}" version || die "containerd did not start: $(cat "$tmp/containerd.log")"
  local ref listed
  for ref in "${images[@]}"; do
    "${c[@]}" images import --snapshotter native "$(archive_of "$ref")" >&2
  done
  listed=$("${c[@]}" images ls -q)
  for ref in "${images[@]}"; do
    grep -qxF "$ref" <<<"$listed" || die "ctr import did not name $ref; it has: $listed"
    log "ctr -n k8s.io images import: $ref ok"
  done
  kill "$containerd_pid"
  wait "$containerd_pid" 2>/dev/null || true
  containerd_pid=""
  rm -rf "$tmp"
  tmp=""
}

case "$mode" in
  build) build ;;
  verify) verify_runs; verify_import ;;
  all) build; verify_runs; verify_import ;;
esac
log "done ($mode). Load into a node's containerd: ctr --address SOCKET -n k8s.io images import --snapshotter native ARCHIVE"
for ref in "${images[@]}"; do echo "$ref $(archive_of "$ref")"; done
