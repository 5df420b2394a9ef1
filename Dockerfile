# sipbus container image: one binary, any --target (all, sip-edge,
# registrar-svc, session-svc, sdp-svc, pubsub-svc, publish-svc).
#
#   podman build -t sipbus:0.1.0 .                  # compiles in the build stage
#   docker build -t sipbus:0.1.0 .                  # same with Docker
#
# With a binary built elsewhere (same glibc as Debian 12, e.g. built on
# Debian 12), skip the Rust stage:
#
#   mkdir -p target/image
#   objcopy --strip-debug target/release/sipbus target/image/sipbus
#   podman build --build-arg BINARY_FROM=prebuilt -t sipbus:0.1.0 .
#
# BINARY_FROM picks the stage the binary comes from (build or prebuilt);
# unused stages are skipped by BuildKit and by buildah/podman (also when
# building --target runtime with --pull=never: the Rust image is never
# pulled). deploy/image/check.sh builds and checks the runtime stage that
# way in CI.
ARG BINARY_FROM=build

# ---- build: compile the release binary -----------------------------------
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
# The whole workspace (see .dockerignore). proto/build.rs takes protoc from
# the protoc-bin-vendored crate, so nothing else needs installing.
COPY . .
# The release profile keeps line tables (debug = 1); the image keeps the
# symbols (named frames in backtraces) but not the DWARF.
RUN cargo build --release --locked -p sipbus \
 && mkdir /out \
 && objcopy --strip-debug target/release/sipbus /out/sipbus

# ---- prebuilt: a binary from the build context -----------------------------
FROM scratch AS prebuilt
COPY target/image/sipbus /out/sipbus

# ---- binary: whichever of the two BINARY_FROM names -------------------------
# ":-build" repeats the default on purpose: podman 4.3 (buildah 1.28, Debian
# 12) ignores ARG defaults when it works out which stages a build needs, so
# with a bare ${BINARY_FROM} a plain `podman build .` skips the build stage
# and then fails with "build: image not known".
FROM ${BINARY_FROM:-build} AS binary

# ---- runtime ---------------------------------------------------------------
FROM docker.io/library/debian:bookworm-slim AS runtime
# ca-certificates: the system roots for outgoing TLS (rediss://, gRPC over
# TLS without a ca_file). Only a non-root user and the config directory
# besides: /etc/sipbus, root's, readable by any UID (OpenShift-style
# arbitrary UIDs too), writable by none; mount configuration below it.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
 && groupadd --gid 10001 sipbus \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sipbus \
 && install -d -o root -g root -m 0755 /etc/sipbus
COPY --from=binary /out/sipbus /usr/local/bin/sipbus
USER 10001:10001
WORKDIR /
# SIP (UDP, TCP), SIP over TLS, WebSocket over TLS, gRPC (bus, edge API,
# tools), metrics. Which ones a process uses depends on its --target and
# [edge] listen / [grpc] listen; binding below 1024 is not needed.
EXPOSE 5060/udp 5060/tcp 5061/tcp 8443/tcp 50051/tcp 9090/tcp
LABEL org.opencontainers.image.title="sipbus" \
      org.opencontainers.image.description="SIP application server built as small services joined by a gRPC extension bus" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/sipbus"]
