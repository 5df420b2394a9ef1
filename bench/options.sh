#!/usr/bin/env bash
# OPTIONS to the server itself (tests/scenarios/options.xml: OPTIONS, 200;
# one transaction per SIPp call) over UDP, with the method of bench/lib.sh
# and bench/sipbench.py (README "## Benchmarks"): closed-loop probe,
# open-loop steps, the knee and the servers' CPU µs per OPTIONS. Targets:
#   all-in-one  target/release/sipbus (its edge answers OPTIONS)
#   split       the smallest split deployment: Redis, registrar-svc and
#               sip-edge (sip-edge needs one service; its edge answers
#               OPTIONS itself, the others idle)
#   kamailio    bench/kamailio/options.cfg (200 from sl, stateless, as for
#               bench/sustained.sh), 4 workers
# No memory phase: an OPTIONS leaves nothing behind.
#
#   bench/options.sh [seconds-per-step] [target...]
#   NO_BUILD=1 bench/options.sh 2 all-in-one all-in-one@/tmp/old/sipbus
# Settings (RUNS, FRACTIONS, RATES, QUICK=1, LOGS=DIR, ...): bench/lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
workload=options
bench_init 2 "$@"
split_services=(registrar-svc)
kamailio_cfg=bench/kamailio/options.cfg
kamailio_shm=256
config=$work/sipbus.toml
# registrar-svc wants the nonce key its replicas share.
printf '[registrar.auth]\nnonce_key = "options-bench"\n' >"$config"

load_phase() {
    sweep options 1 tests/scenarios/options.xml
}

run_targets
report
