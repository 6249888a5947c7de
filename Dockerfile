# syntax=docker/dockerfile:1
#
# One image holding the four Switchboard services; a Deployment's command picks one:
#   /usr/local/bin/gateway  /usr/local/bin/routing-svc
#   /usr/local/bin/conversation-svc  /usr/local/bin/reporting-svc
#
# Build (BuildKit, for the cache mounts):
#   docker build -t registry.example.com/switchboard/switchboard:0.1.0 .
#
# Migrations are compiled into each binary; at run time the image needs nothing else but
# CA certificates, for the TLS connections the services make.

# --- build ------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

WORKDIR /src
COPY . .

# Cargo.lock is committed: --locked builds exactly what was reviewed. The cache mounts keep
# downloaded crates and compiled dependencies between builds on the same builder; the
# binaries are copied out of the cached target directory before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p gateway -p routing-svc -p conversation-svc -p reporting-svc \
    && mkdir -p /out \
    && for bin in gateway routing-svc conversation-svc reporting-svc; do \
           cp "target/release/$bin" /out/; \
       done

# --- run --------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric user, so that Kubernetes can check runAsNonRoot; the Deployments run
# as 10001:10001 with a read-only root filesystem.
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --no-create-home \
        --home-dir /var/lib/switchboard --shell /usr/sbin/nologin switchboard \
    && install -d -o switchboard -g switchboard -m 0750 /var/lib/switchboard

COPY --from=builder /out/ /usr/local/bin/

# Working directory for a plain `docker run`, where the default SQLite files
# (switchboard-data/*.db) can be written. Kubernetes deployments use PostgreSQL.
WORKDIR /var/lib/switchboard
USER 10001:10001

# gRPC: gateway 50051, routing-svc 50061, conversation-svc 50062, reporting-svc 50063;
# Prometheus metrics on 9051, 9061, 9062, 9063 respectively.
EXPOSE 50051 50061 50062 50063 9051 9061 9062 9063

LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard contact-center services: gateway, routing-svc, conversation-svc, reporting-svc" \
      org.opencontainers.image.licenses="Apache-2.0"

# No default command: name the service to run. The defaults listen on loopback only, so
# outside Kubernetes pass the addresses too, e.g.
#   docker run -p 50061:50061 IMAGE routing-svc --listen 0.0.0.0:50061 \
#       --metrics-listen 0.0.0.0:9061 --database-url postgres://…
