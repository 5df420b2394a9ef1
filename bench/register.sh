#!/usr/bin/env bash
# REGISTER through sipbus all-in-one (embedded store), sipbus split (Redis,
# registrar-svc, sip-edge) and Kamailio (memory-only registrar,
# bench/kamailio/registrar.cfg, 4 workers) in one run, with the method of
# bench/lib.sh and bench/sipbench.py (README "## Benchmarks"):
#   memory  10,000 users registered (bench/register_hold.xml, Expires 3600,
#           not unregistered) on a fresh server: RSS and PSS growth of the
#           server processes, in split Redis used_memory growth and MEMORY
#           USAGE of one reg: record, per 10,000 registrations
#   sweep   register then unregister per SIPp call (bench/register_bench.xml,
#           2 transactions), 10,000 distinct users: closed-loop probe, then
#           open-loop steps; the knee and the servers' CPU µs per REGISTER
# No authentication on either side.
#
#   bench/register.sh [seconds-per-step] [target...]
#   NO_BUILD=1 bench/register.sh 2 all-in-one all-in-one@/tmp/old/sipbus
#   QUICK=1 NO_BUILD=1 bench/register.sh        # a short validation run
# Settings (RUNS, FRACTIONS, RATES, HELD, MEM=0, ...): bench/lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
workload=register
bench_init 2 "$@"
split_services=(registrar-svc)
kamailio_cfg=bench/kamailio/registrar.cfg
kamailio_shm=512
config=$work/sipbus.toml

# 10,000 users: the injection file and the registrar's configuration.
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
with open(f"{work}/users.csv", "w") as f:
    f.write("SEQUENTIAL\n")
    for i in range(10000):
        f.write(f"user{i}\n")
with open(f"{work}/sipbus.toml", "w") as f:
    f.write('[registrar]\ndomains = ["example.com"]\nmax_bindings = 16\n')
    f.write('[registrar.auth]\nenabled = false\n')
    for i in range(10000):
        f.write(f'[[registrar.users]]\nuser = "user{i}"\npassword = "x"\n')
PY

memory_phase() {
    hold register registration bench/register_hold.xml "${MEM_RATE:-2000}" --record 'reg:*' \
        --warm bench/register_bench.xml -- -inf "$work/users.csv"
}

load_phase() {
    sweep register 2 bench/register_bench.xml -- -inf "$work/users.csv"
}

run_targets
report
