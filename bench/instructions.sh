#!/usr/bin/env bash
# Instructions per call through sipbus all-in-one, counted by callgrind:
# a figure that does not move with the machine's load, to see a change's
# effect without load-test noise.
#
# sipbus runs under `valgrind --tool=callgrind` with the embedded store;
# a SIPp callee registers once (digest, as bench/calls.sh does), then
# callgrind's counters are zeroed, CALLS calls (tests/scenarios/call_uac.xml:
# INVITE, 180, 200, ACK, BYE, 200) go through at RATE calls/s, and the
# counters are dumped. An idle period of the same length is counted the
# same way first and subtracted (timers, store sweeps), so the figure is
# the instructions the calls themselves cost, every thread included.
#
#   bench/instructions.sh [calls] [rate]      # default 200 calls at 10/s
#   NO_BUILD=1 BIN=/tmp/old/sipbus bench/instructions.sh   # another build
# Prints "instructions per call: N" and the idle rate. For where they go,
# perf on a load run is quicker to read.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
calls=${1:-200}
rate=${2:-10}
bin=${BIN:-target/release/sipbus}
for cmd in sipp valgrind callgrind_control callgrind_annotate python3; do
    command -v "$cmd" >/dev/null || { echo "$cmd missing (apt-get install sip-tester valgrind)" >&2; exit 2; }
done
if [ -z "${NO_BUILD:-}" ]; then cargo build --release -p sipbus >&2; fi

scratch
sc=tests/scenarios
cat >"$work/sipbus.toml" <<EOF
[registrar]
domains = ["example.com"]
[[registrar.users]]
user = "bob"
password = "secret"
[registrar.auth]
algorithms = ["MD5", "SHA-256"]
[session]
authenticate = false
EOF

port=$(free_port)
gport=$(free_port)
# Under callgrind sipbus runs some 50 times slower: T1 of 5 s keeps its
# own retransmissions (and SIPp's, -recv_timeout below) out of the count.
SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_GRPC__LISTEN="127.0.0.1:$gport" SIPBUS_LOG__LEVEL=warn \
    SIPBUS_EDGE__TIMERS__T1_MS=5000 SIPBUS_EDGE__TIMERS__T2_MS=20000 \
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" --dump-instr=no \
    "$bin" --config "$work/sipbus.toml" >"$work/sipbus.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 600); do
    ss -Hunl "sport = :$port" | grep -q . && break
    sleep 0.1
done
ss -Hunl "sport = :$port" | grep -q . || { echo "sipbus did not start under callgrind:" >&2; tail "$work/sipbus.log" >&2; exit 1; }

uas_port=$(free_port)
printf 'SEQUENTIAL\nbob;example.com;3600;bench\n' >"$work/register.csv"
timeout --signal=KILL 120 sipp "127.0.0.1:$port" -sf "$sc/register_once.xml" -inf "$work/register.csv" \
    -au bob -ap secret -auth_uri example.com -i 127.0.0.1 -p "$uas_port" -t u1 -m 1 -buff_size 4194304 \
    -timeout 100s -timeout_error -nostdin >/dev/null 2>&1 || { echo "the callee did not register" >&2; exit 1; }
sipp -sf "$sc/call_uas.xml" -i 127.0.0.1 -p "$uas_port" -t u1 -buff_size 4194304 -nostdin >/dev/null 2>&1 &
pids+=($!)
sleep 2

# counted LABEL SECONDS COMMAND...: zeroes the counters, runs the command
# (or sleeps), dumps, and prints the instructions counted.
counted() {
    local label=$1 secs=$2
    shift 2
    callgrind_control --zero "$server" >/dev/null
    local start=$SECONDS
    if [ $# -gt 0 ]; then "$@"; fi
    local left=$((secs - (SECONDS - start)))
    if [ "$left" -gt 0 ]; then sleep "$left"; fi
    rm -f "$work"/callgrind."$server".*
    callgrind_control --dump="$label" "$server" >/dev/null
    local f
    for _ in $(seq 100); do
        f=$(ls "$work"/callgrind."$server".* 2>/dev/null | head -1 || true)
        [ -n "$f" ] && break
        sleep 0.1
    done
    # Every thread's dump: the summary line of each.
    sleep 1
    cat "$work"/callgrind."$server".* | awk '/^summary:/ { s += $2 } END { print s }'
}

window=$((calls / rate + 10))
idle=$(counted idle "$window")
placed() {
    timeout --signal=KILL $((window + 120)) sipp "127.0.0.1:$port" -sf "$sc/call_uac.xml" -s bob -key domain example.com -i 127.0.0.1 -t u1 \
        -m "$calls" -r "$rate" -buff_size 4194304 -recv_timeout 60000 -trace_stat -stf "$work/stat.csv" -nostdin \
        >/dev/null 2>&1 || true
}
busy=$(counted calls "$window" placed)
read -r ok failed _ _ < <(sipbench counts "$work/stat.csv")
echo "calls: $ok completed, $failed failed (of $calls at $rate/s, ${window} s windows)"
echo "idle: $idle instructions in ${window} s"
python3 -c "print(f'instructions per call: {($busy - $idle) / max($ok, 1):,.0f}')"
[ "$failed" -eq 0 ] && [ "$ok" -eq "$calls" ]
