# One image with every binary: openelb-controller, openelb-speaker and openelb-cli.
#   docker build -t openelb-rs:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/openelb-controller /src/target/release/openelb-speaker \
     /src/target/release/openelb-cli /usr/local/bin/
USER 65534
ENTRYPOINT ["/usr/local/bin/openelb-controller"]
