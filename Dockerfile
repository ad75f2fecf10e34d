# One image with every binary: openelb-controller (Deployment), openelb-speaker (DaemonSet) and openelb-cli.
#   scripts/image.sh      builds the release binaries, stages target/image/rootfs, builds, tags and saves the image
# By hand, after staging (the script's `stage` step): podman build -t openelb-rs:0.1.0 .
#
# No base image: nothing is pulled, so it builds on a machine without a registry. target/image/rootfs holds the
# three release binaries in /usr/local/bin, exactly the shared libraries `ldd` names for them plus the dynamic
# loader (at the paths ldd prints), and the build machine's CA bundle. TLS is rustls with the ring provider (no
# OpenSSL), so glibc, libgcc_s and the CA bundle are all the binaries load; .dockerignore keeps the build context
# to that folder.
FROM scratch
COPY target/image/rootfs/ /
# The controller runs as this user (deploy/20-controller.yaml also sets runAsUser 65534 and runAsNonRoot, which
# needs a numeric USER: the image has no /etc/passwd). The speaker's DaemonSet overrides it with runAsUser 0 and
# only NET_ADMIN and NET_RAW (deploy/30-speaker.yaml), since Kubernetes grants added capabilities to root only.
USER 65534:65534
# deploy/ names the command of each container explicitly; the entrypoint is only the default.
ENTRYPOINT ["/usr/local/bin/openelb-controller"]
