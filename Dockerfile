# syntax=docker/dockerfile:1
#
# Agora: the `agora` binary in a small Debian image.
#
#   docker build -t agora .
#   docker run --rm -p 8080:8080 -p 9090:9090 -v agora-data:/data agora
#
# The default command runs one node (`agora dev`) with its data in the /data volume. For a
# cluster node, override the command:  agora node --config FILE --node-id N
# (see deploy/README.md and deploy/kubernetes/).

# The workspace declares rust-version = 1.90; CI and development use a newer stable.
ARG RUST_VERSION=1.95

############################################################################################
# Build stage
############################################################################################
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# The whole workspace is copied (.dockerignore keeps out data and build output), so a new
# member crate can never be missing from the image's build: cargo must load every member's
# manifest, and .ci/run checks that .dockerignore excludes none of them. BuildKit cache
# mounts keep the registry and the compiled dependencies between builds instead of a
# hand-kept layer of placeholder crates.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    cargo build --release -p agora-node --bin agora --locked; \
    install -m 0755 target/release/agora /usr/local/bin/agora; \
    test -n "$(/usr/local/bin/agora --version)"

############################################################################################
# Runtime stage
############################################################################################
FROM debian:bookworm-slim AS runtime

LABEL org.opencontainers.image.title="agora" \
      org.opencontainers.image.description="Agora e-commerce backend: sharded, durable actors on redb" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 agora; \
    useradd --system --uid 10001 --gid agora --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin agora; \
    mkdir -p /data; \
    chown agora:agora /data

COPY --from=builder /usr/local/bin/agora /usr/local/bin/agora

# Numeric so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# 7100: node-to-node (cluster) traffic, 8080: shop API, 9090: admin (health, readiness,
# metrics, /admin/*). `agora dev` does not use 7100.
EXPOSE 7100 8080 9090

ENV RUST_LOG=info

# No HEALTHCHECK: the image has no curl or wget, and a probe binary just for that is not
# worth it. Orchestrators probe the admin port instead: GET :9090/healthz (liveness) and
# GET :9090/readyz (readiness), as deploy/kubernetes/statefulset.yaml does.

# agora handles SIGTERM and SIGINT itself (graceful stop), so it can run as PID 1.
ENTRYPOINT ["agora"]
CMD ["dev", "--data-dir", "/data", "--http-addr", "0.0.0.0:8080", "--admin-addr", "0.0.0.0:9090"]
