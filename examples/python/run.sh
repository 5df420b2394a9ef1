#!/usr/bin/env bash
# Runs one example with this folder's virtualenv, preparing the folder first
# when needed (setup.sh: .venv and the generated gen/):
#   examples/python/run.sh screening.py --block-list blocked.txt
# A bare program name is one of this folder's; arguments are passed through
# untouched (relative paths stay relative to your working directory).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <program.py> [args...]" >&2
  exit 2
fi

# setup.sh again when a piece is missing, requirements.txt changed, or a
# contract is newer than the generated code. Its output goes to stderr: stdout
# is the program's, where the `registered ...` line appears.
if [[ ! -x "$here/.venv/bin/python" || ! -f "$here/gen/sipbus/__init__.py" ]] \
   || ! cmp -s "$here/requirements.txt" "$here/.venv/requirements.installed" \
   || [[ -n "$(find "$here/../../proto/sipbus" -name '*.proto' -newer "$here/gen/sipbus/__init__.py" -print -quit 2>/dev/null)" ]]; then
  bash "$here/setup.sh" >&2
fi

prog=$1
shift
if [[ "$prog" != */* ]]; then
  prog="$here/$prog"
fi
# exec: python takes this process's place, so SIGTERM / SIGINT sent to the
# pid the caller started reach the program (which deregisters and exits 0).
exec "$here/.venv/bin/python" "$prog" "$@"
