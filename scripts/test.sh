#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, transaction (virtual
# time), loopback socket, CLI and end-to-end SIPp tests, then doc tests,
# then the Kubernetes manifests' and the container image's checks.
#
# What the tests need and a fresh Debian machine lacks is installed first:
# SIPp (Debian package sip-tester), Redis (redis-server, with redis-cli
# for Cluster tests and redis-sentinel for failover), promtool (prometheus,
# to check the metrics exposition), a real softphone (baresip-core), openssl (the test
# CA) and Chromium (two browsers in a WebRTC call over wss); then the
# example extensions' toolchains (examples/setup.sh: a Python venv with
# grpcio, the Node packages, Go from Debian's packages) and the JsSIP test
# clients (tests/js), and SIPVicious (tests/security/setup.sh), since the
# tests run them. Uses cargo-nextest when present, cargo test otherwise.
# Extra arguments go to the test runner.
#
# After the Rust tests: the published torture corpus against the binary
# (when ../shared/conformance is there), the multi-host chaos tests in
# network namespaces (root only: CI is root), and every fuzz target for
# 60 s (FUZZ_SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if ((${#missing[@]})); then
    echo "installing test prerequisites: ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

examples/setup.sh
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
tests/security/setup.sh

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
cargo test --workspace --doc

scripts/torture.sh target/debug/sipbus
if [ "$(id -u)" -eq 0 ]; then
    SIPBUS_BIN=target/debug/sipbus python3 tests/chaos/chaos.py
else
    echo "chaos tests need root (network namespaces): run sudo python3 tests/chaos/chaos.py" >&2
fi
# A fixed seed: a crash CI finds is reproduced by the same command.
FUZZ_ARGS="${FUZZ_ARGS:--seed=1}" scripts/fuzz.sh "${FUZZ_SECONDS:-60}"

# The Kubernetes manifests: every overlay rendered, validated against
# Kubernetes 1.30 and the newest schema, its invariants checked, and every
# sipbus container's configuration checked by the binary just built.
deploy/kubernetes/check.sh
# The container image's runtime stage, built with podman on a debootstrap
# base and run with chroot (no registry, no container runtime here).
if [ "$(id -u)" -eq 0 ]; then deploy/image/check.sh; else sudo deploy/image/check.sh; fi
