#!/usr/bin/env bash
# REGISTER/s with zero failures: sipbus all-in-one, sipbus split (Redis +
# sip-edge + registrar-svc), and Kamailio (memory-only registrar,
# bench/kamailio/registrar.cfg) in the same run, then the ratios.
#
# Scenario: register then unregister (two REGISTER transactions per SIPp
# call), 10,000 distinct users, no authentication on either side. SIPp
# raises the call rate step by step; a target's figure is the highest
# achieved REGISTER rate of a step with zero failures. SIPp shares the two
# cores with what it measures.
#
#   bench/register.sh [seconds-per-step]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
secs="${1:-4}"
for cmd in sipp redis-server kamailio python3; do
    command -v "$cmd" >/dev/null || { echo "$cmd missing (apt-get install sip-tester redis-server kamailio)" >&2; exit 2; }
done
cargo build --release -p sipbus >&2

scratch

wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }
wait_udp() { sleep 0.5; }

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

# ramp NAME PORT: prints one line per step and sets $best (REGISTER/s).
ramp() {
    local name=$1 port=$2
    best=0
    for rate in 1000 2000 3000 4000 6000 8000 10000 12000 14000; do
        local calls=$((rate * secs))
        local start end ok failed
        start=$(date +%s.%N)
        timeout --signal=KILL $((secs * 4 + 30)) sipp "127.0.0.1:$port" -sf bench/register_bench.xml -inf "$work/users.csv" \
            -t u1 -i 127.0.0.1 -m "$calls" -r "$rate" -l 30000 -timeout $((secs * 4 + 20))s -recv_timeout 4000 -nostdin \
            -trace_stat -stf "$work/stat.csv" >/dev/null 2>&1 || true
        end=$(date +%s.%N)
        read -r ok failed < <(sipp_counts "$work/stat.csv")
        rm -f "$work/stat.csv"
        local achieved=$(python3 -c "print(int(2 * $ok / ($end - $start)))")
        printf '%-10s calls/s %-6s REGISTER/s %-7s failed %s\n' "$name" "$rate" "$achieved" "$failed"
        if [ "$failed" -ne 0 ] || [ "$ok" -ne "$calls" ]; then break; fi
        if [ "$achieved" -gt "$best" ]; then best=$achieved; fi
    done
}

# sipbus all-in-one, embedded store.
port=$(free_port)
SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_LOG__LEVEL=warn \
    target/release/sipbus --config "$work/sipbus.toml" >"$work/all.log" 2>&1 &
pids+=($!); wait_udp
ramp all-in-one "$port"; all=$best
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# sipbus split: Redis, one registrar-svc, one sip-edge.
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!); wait_port "$rport"
gport=$(free_port)
SIPBUS_STORE__REDIS="redis://127.0.0.1:$rport/" SIPBUS_GRPC__LISTEN="127.0.0.1:$gport" SIPBUS_LOG__LEVEL=warn \
    target/release/sipbus --config "$work/sipbus.toml" --target registrar-svc >"$work/reg.log" 2>&1 &
pids+=($!); wait_port "$gport"
port=$(free_port)
SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_BUS__REGISTRAR="[\"http://127.0.0.1:$gport\"]" SIPBUS_LOG__LEVEL=warn \
    target/release/sipbus --config "$work/sipbus.toml" --target sip-edge >"$work/edge.log" 2>&1 &
pids+=($!); wait_udp
ramp split "$port"; split=$best

# Kamailio.
port=$(free_port)
kamailio -f bench/kamailio/registrar.cfg -l "udp:127.0.0.1:$port" -DD -E -m 512 -M 16 -P "$work/kamailio.pid" >"$work/kamailio.log" 2>&1 &
pids+=($!); wait_udp
ramp kamailio "$port"; kam=$best

echo
echo "REGISTER/s with zero failures: all-in-one $all, split $split, kamailio $kam"
python3 -c "k=max($kam,1); print(f'ratios to kamailio: all-in-one {$all/k:.2f}x, split {$split/k:.2f}x')"
