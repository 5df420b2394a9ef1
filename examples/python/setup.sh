#!/usr/bin/env bash
# Prepares this folder for the examples, from any working directory:
#   - .venv/: a virtualenv with requirements.txt (grpcio, grpcio-tools, protobuf);
#   - gen/:   the Python code of the sipbus contracts, generated from ../../proto.
# Idempotent: run it again after changing requirements.txt or a .proto file.
# PYTHON=/path/to/python3 picks the interpreter (default python3.11, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PROTO_DIR=../../proto
# The contracts the examples use. protoc does not generate imported files by
# itself, so edge.proto (imported by both services) is listed too.
PROTOS=(
  sipbus/edge/v1/edge.proto
  sipbus/extension/v1/registry.proto
  sipbus/session/v1/supplement.proto
  sipbus/pubsub/v1/subscription.proto
)

say() { echo "setup.sh: $*" >&2; }

if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  say "$PYTHON not found: install Python 3.10 or newer (Debian: apt-get install python3)"
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  say "$PYTHON is $("$PYTHON" -V 2>&1); grpcio needs Python 3.10 or newer"
  exit 1
fi

venv_ok() { [[ -x .venv/bin/python ]] && .venv/bin/python -m pip --version >/dev/null 2>&1; }

if ! venv_ok; then
  # Debian and Ubuntu move venv's ensurepip into a package of its own; without
  # it `python3 -m venv` fails half way, leaving a .venv without pip.
  if ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
    ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    pkgs=(python3-venv)
    if command -v apt-cache >/dev/null 2>&1 && apt-cache show "python$ver-venv" >/dev/null 2>&1; then
      pkgs+=("python$ver-venv")
    fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "$PYTHON has no ensurepip: installing ${pkgs[*]} with apt-get"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade "${pkgs[@]}" >&2
    elif command -v apt-get >/dev/null 2>&1; then
      say "$PYTHON cannot make a virtualenv (no ensurepip): run"
      say "    sudo apt-get install ${pkgs[*]}"
      say "then run this script again."
      exit 1
    else
      say "$PYTHON cannot make a virtualenv (no ensurepip): install your system's venv package for it (on Debian/Ubuntu: python3-venv)"
      exit 1
    fi
  fi
  say "creating .venv with $PYTHON ($("$PYTHON" -V 2>&1))"
  rm -rf .venv
  "$PYTHON" -m venv .venv
fi

# requirements.installed records what the last successful install was for, so
# a rerun is quick and offline, and run.sh notices an edited requirements.txt.
if ! cmp -s requirements.txt .venv/requirements.installed \
   || ! .venv/bin/python -c 'import grpc, grpc_tools, google.protobuf' >/dev/null 2>&1; then
  say "installing requirements.txt into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt >&2
  cp requirements.txt .venv/requirements.installed
fi

# Generate into a scratch folder and swap it in, so a failed run never leaves
# a half-filled gen/ that run.sh would take for a finished one.
say "generating gen/ from $PROTO_DIR"
rm -rf gen.tmp
mkdir gen.tmp
.venv/bin/python -m grpc_tools.protoc -I "$PROTO_DIR" \
  --python_out=gen.tmp --pyi_out=gen.tmp --grpc_python_out=gen.tmp "${PROTOS[@]}"
# Regular packages (an __init__.py per folder) rather than namespace packages:
# `from sipbus.session.v1 import supplement_pb2` then resolves to gen/ alone,
# whatever other `sipbus` folder (such as the repository's Rust crate) is on
# sys.path.
find gen.tmp -mindepth 1 -type d -exec touch {}/__init__.py \;
rm -rf gen
mv gen.tmp gen
say "ready: ./run.sh screening.py --block-list FILE, ./run.sh status_package.py --status-file FILE"
