#!/usr/bin/env bash
# Renders every overlay of deploy/kubernetes and checks it (check.py: schema
# validation against Kubernetes 1.30 and the newest kubernetes-validate
# knows, the manifests' invariants, `sipbus --check-config` per container).
# Needs kubectl and a built sipbus (SIPBUS_BIN, default target/debug/sipbus);
# installs python3-venv when Debian's python3 lacks it. Arguments go to
# check.py (--overlay NAME, --strip-keys SECTIONS).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
exec python3 deploy/kubernetes/check.py "$@"
