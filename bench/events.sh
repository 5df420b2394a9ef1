#!/usr/bin/env bash
# Events: SUBSCRIBE/NOTIFY and PUBLISH through sipbus and through
# Kamailio's presence server in one run, with the method of bench/lib.sh
# and bench/sipbench.py (README "## Benchmarks"). Per target:
#   memory     10,000 held presence subscriptions (bench_watch.xml: 10
#              watchers on each of mem0..mem999) on a fresh server, measured
#              once the transactions that made them are gone: RSS and PSS
#              growth of the server processes, in split Redis used_memory
#              growth and MEMORY USAGE of one sub: record, per 10,000
#   subscribe  one exchange per SIPp call (bench_subscribe.xml): SUBSCRIBE,
#              200, NOTIFY, 200, unsubscribe, 200, NOTIFY, 200 = 4
#              transactions; for each package of PACKAGES (default
#              presence; "presence message-summary" adds MWI)
#   publish    one publication's life per call (bench_publish.xml):
#              initial, refresh, removal = 3 transactions
#   fan-out    1000 watchers of one resource, then one PUBLISH: time until
#              the last NOTIFY is answered (FANOUT=0 skips it)
# Subscribe and publish: closed-loop probe, open-loop steps, the knee and
# the servers' CPU µs per transaction.
# Targets: all-in-one (embedded store), split (Redis, registrar-svc,
# publish-svc, pubsub-svc, sip-edge; one replica each), kamailio
# (bench/kamailio/presence.cfg, 4 workers: subs_db_mode 0, publ_cache,
# force_active, its tables in db_text: see its header). Neither side
# authenticates.
#
#   bench/events.sh [seconds-per-step] [target...]
#   NO_BUILD=1 bench/events.sh 2 all-in-one kamailio
#   PACKAGES="presence message-summary" NO_BUILD=1 bench/events.sh
# Settings (RUNS, FRACTIONS, RATES, HELD, MEM=0, QUICK=1, LOGS=DIR, ...):
# bench/lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
workload=events
bench_init 2 "$@"
for t in "${targets[@]}"; do
    if [ "${t%%@*}" = kamailio ] && [ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ]; then
        echo "Kamailio presence modules missing (apt-get install kamailio-presence-modules)" >&2
        exit 2
    fi
done
split_services=(registrar-svc publish-svc pubsub-svc)
kamailio_cfg=bench/kamailio/presence.cfg
kamailio_shm=1024
config=$work/sipbus.toml
sc=tests/scenarios
domain=example.com
read -r -a packages <<<"${PACKAGES:-presence}"

# Resources: bench0..bench999 (one per call, round robin), mem0..mem999
# (the held subscriptions of the memory phase) and fan.
{ echo SEQUENTIAL; for i in $(seq 0 999); do echo "bench$i"; done; } >"$work/users.csv"
{ echo SEQUENTIAL; for i in $(seq 0 999); do echo "mem$i"; done; } >"$work/mem.csv"
{
    echo "[registrar]"
    echo "domains = [\"$domain\"]"
    echo "users = ["
    for i in $(seq 0 999); do echo "  { user = \"bench$i\", password = \"x\" },"; echo "  { user = \"mem$i\", password = \"x\" },"; done
    echo "  { user = \"fan\", password = \"x\" },"
    echo "]"
    echo "[registrar.auth]"
    echo "nonce_key = \"events-bench\""
    echo "[pubsub]"
    echo "authenticate = false"
    echo "[publish]"
    echo "authenticate = false"
} >"$config"

# Kamailio's presence tables: a fresh db_text copy per server, on tmpfs.
tables=/usr/share/kamailio/dbtext/kamailio
before_kamailio() {
    db=$(mktemp -d -p /dev/shm sipbus-bench-XXXXXX)
    cp "$tables"/{version,presentity,watchers,active_watchers,xcap} "$db"/
    kamailio_args=(-A "DBURL=\"text://$db\"" -A "SRVADDR=\"sip:127.0.0.1:$port\"")
}
after_kamailio() { rm -rf "$db"; db=""; }
db=""
on_exit() {
    if [ -n "$db" ]; then rm -rf "$db"; fi
    if [ -n "${logs:-}" ]; then cp "$work"/*.log "$logs"/ 2>/dev/null || true; fi
}

# fanout: 1000 watchers of fan@, then one PUBLISH; the time from the
# PUBLISH to the last NOTIFY answered.
fanout() {
    local dir t0 watchers result
    dir=$(mktemp -d -p "$work")
    printf 'SEQUENTIAL\nfan\n' >"$dir/fan.csv"
    (cd "$dir" && timeout --signal=KILL 120 sipp "127.0.0.1:$port" -sf "$OLDPWD/$sc/bench_watch.xml" -inf "$dir/fan.csv" \
        -key domain "$domain" -i 127.0.0.1 -p "$(free_port)" -t u1 -buff_size 4194304 -m 1000 -r 500 -l 2000 -timeout 100s \
        -nostdin -trace_msg -message_file "$dir/watch.log" >/dev/null 2>&1) &
    watchers=$!
    pids+=("$watchers")
    sleep 4
    t0=$(date +%s.%N)
    (cd "$dir" && timeout --signal=KILL 30 sipp "127.0.0.1:$port" -sf "$OLDPWD/$sc/bench_publish.xml" -inf "$dir/fan.csv" \
        -key domain "$domain" -i 127.0.0.1 -p "$(free_port)" -t u1 -buff_size 4194304 -m 1 -d 3000 -timeout 20s \
        -nostdin >/dev/null 2>&1) || true
    wait "$watchers" || true
    forget "$watchers"
    result=$(sipbench fanout "$dir/watch.log" "$t0")
    echo "$target fan-out of one PUBLISH to 1000 watchers: $result"
    sipbench note "$results" "$workload" "$target" "fan-out of one PUBLISH to 1000 watchers: $result"
    rm -rf "$dir"
}

memory_phase() {
    hold "subscribe presence" subscription "$sc/bench_watch.xml" "${MEM_RATE:-1000}" --record 'sub:*' \
        --warm "$sc/bench_subscribe.xml" -- -inf "$work/mem.csv" -key domain "$domain" -key event presence
}

load_phase() {
    local pkg
    for pkg in "${packages[@]}"; do
        sweep "subscribe $pkg" 4 "$sc/bench_subscribe.xml" -- -inf "$work/users.csv" -key domain "$domain" -key event "$pkg"
    done
    sweep publish 3 "$sc/bench_publish.xml" -- -inf "$work/users.csv" -key domain "$domain" -d 0
    if [ "${FANOUT:-1}" != 0 ]; then fanout; fi
}

run_targets
report
