#!/usr/bin/env bash
# Prepares every example's toolchain from the package registries: the
# Python venv with grpcio and the generated stubs, the Node packages, the
# Go binary (Debian's Go packages; no module proxy needed). Idempotent; the
# test script runs it before the tests that start the examples.
set -euo pipefail
cd "$(dirname "$0")"
python/setup.sh
(cd node && npm ci --no-audit --no-fund --loglevel=error)
go/build.sh
