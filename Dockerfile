# One image with every binary: openelb-controller (Deployment), openelb-speaker (DaemonSet) and openelb-cli.
#   docker build -t openelb-rs:0.1.0 .
# Not built here: the development machine has no container engine. What it relies on is checked elsewhere:
# `cargo build --release --locked --workspace --bins` (CI; without --workspace cargo builds only the root facade,
# which has no binaries) and the manifests in deploy/ (server dry run in tests/apiserver_crd.rs).
#
# TLS everywhere is rustls with the ring provider (no OpenSSL, no aws-lc), so the runtime image needs only CA
# certificates, and the build needs no C toolchain beyond what the rust image has.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && cp target/release/openelb-controller target/release/openelb-speaker target/release/openelb-cli /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# The controller runs as this user (deploy/20-controller.yaml); the speaker's DaemonSet runs it as root with only
# NET_ADMIN and NET_RAW (deploy/30-speaker.yaml), since Kubernetes grants added capabilities to root only.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/openelb-controller"]
