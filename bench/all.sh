#!/usr/bin/env bash
# Every workload of the shared method (README "## Benchmarks") for the same
# targets: bench/register.sh, calls.sh, events.sh and options.sh one after
# the other, then their tables together. Under 20 minutes with the defaults
# on two cores (15 sweeps of a minute at most, 9 memory phases of 20 to
# 45 s); QUICK=1 for a short validation run (about 6 minutes).
#
#   bench/all.sh [seconds-per-step] [target...]
#   NO_BUILD=1 bench/all.sh 2 all-in-one split kamailio
#   QUICK=1 NO_BUILD=1 bench/all.sh
# Settings (RUNS, FRACTIONS, HELD, MEM=0, LOGS=DIR, ...): bench/lib.sh;
# they apply to every script. RESULTS=FILE keeps the figures (JSON lines).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
scratch
export RESULTS=${RESULTS:-$work/results.jsonl}
start=$(date +%s)
# Build once (unless NO_BUILD), not in every script.
if [ -z "${NO_BUILD:-}" ]; then cargo build --release -p sipbus >&2; fi
export NO_BUILD=1
# One copy of the release build for every script.
cp target/release/sipbus "$work/sipbus"
export BENCH_BIN=$work/sipbus
for script in register calls events options; do
    echo
    echo "######## bench/$script.sh $*"
    began=$(date +%s)
    bench/"$script".sh "$@" || echo "bench/$script.sh failed" >&2
    echo "######## bench/$script.sh: $(($(date +%s) - began)) s"
done
echo
echo "######## every workload ($(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s)"
sipbench report "$RESULTS"
