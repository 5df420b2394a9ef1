#!/usr/bin/env bash
# Calls through a server: SIPp caller (tests/scenarios/call_uac.xml: INVITE,
# 180, 200, ACK, BYE, 200; 2 transactions per call) and SIPp callee
# (tests/scenarios/call_uas.xml), the callee registered once
# (register_once.xml, digest auth, user bob / password secret in
# example.com). Targets:
#   all-in-one  target/release/sipbus, embedded store
#   split       Redis + registrar-svc + sdp-svc + session-svc + sip-edge,
#               one replica each, gRPC between them
#   kamailio    stateful record-routing proxy, memory usrloc, t_relay
#               (bench/kamailio/proxy.cfg, 4 workers)
# Neither side authenticates calls (Kamailio's config challenges REGISTER
# only, sipbus runs with session.authenticate = false). With the method of
# bench/lib.sh and bench/sipbench.py (README "## Benchmarks"):
#   memory  10,000 calls established (400/s, below split's knee) and held
#           (the caller pauses before its BYE) on a fresh server, measured
#           once the transactions that made them are gone, then released
#           (SIPp and the server stop): RSS and PSS growth of the server
#           processes, in split Redis used_memory and MEMORY USAGE of one
#           sess: record, per 10,000 calls. A record-routing proxy
#           keeps no state per call once its transactions end: Kamailio's
#           figure is near zero by design.
#   sweep   closed-loop probe, open-loop steps: the knee in calls/s, the
#           servers' CPU µs per transaction and per call (in split also
#           Redis commands per transaction).
# The response time is INVITE to 200 (through the server and the callee).
#
#   bench/calls.sh [seconds-per-step] [target...]   # default: all three
#   NO_BUILD=1 bench/calls.sh 2 kamailio
#   NO_BUILD=1 bench/calls.sh 2 all-in-one all-in-one@/tmp/old/sipbus   # two builds, one run
# Settings (RUNS, FRACTIONS, RATES, HELD, MEM=0, QUICK=1, LOGS=DIR, ...):
# bench/lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
workload=calls
bench_init 2 "$@"
split_services=(registrar-svc sdp-svc session-svc)
kamailio_cfg=bench/kamailio/proxy.cfg
kamailio_shm=512
config=$work/sipbus.toml
sc=tests/scenarios
domain=example.com
callee=bob
password=secret
# SIPp's digest is MD5 only: offer MD5 first. The nonce key is shared by
# the split processes.
cat >"$config" <<EOF
[registrar]
domains = ["$domain"]
[[registrar.users]]
user = "$callee"
password = "$password"
[registrar.auth]
algorithms = ["MD5", "SHA-256"]
nonce_key = "calls-bench"
[session]
authenticate = false
EOF

# start_callee: registers the callee at a fresh port through the target and
# starts the SIPp callee there: $uas_pid.
start_callee() {
    local uas_port
    uas_port=$(free_port)
    printf 'SEQUENTIAL\n%s;%s;3600;bench\n' "$callee" "$domain" >"$work/register.csv"
    if ! timeout --signal=KILL 30 sipp "127.0.0.1:$port" -sf "$sc/register_once.xml" -inf "$work/register.csv" \
        -au "$callee" -ap "$password" -auth_uri "$domain" -i 127.0.0.1 -p "$uas_port" -t u1 -m 1 -buff_size 4194304 \
        -timeout 15s -timeout_error -nostdin >/dev/null 2>&1; then
        echo "$target: registration of $callee through 127.0.0.1:$port failed" >&2
        return 1
    fi
    local err=()
    if [ -n "$logs" ]; then err=(-trace_err -error_file "$logs/${target//\//_}-uas.err"); fi
    sipp -sf "$sc/call_uas.xml" -i 127.0.0.1 -p "$uas_port" -t u1 -buff_size 4194304 -l 30000 -nostdin "${err[@]}" >/dev/null 2>&1 &
    uas_pid=$!
    pids+=("$uas_pid")
    wait_udp "$uas_port"
}

uac=(-s "$callee" -key domain "$domain")

memory_phase() {
    start_callee || return 1
    hold calls call "$sc/call_uac.xml" "${MEM_RATE:-400}" --pause --record 'sess:*' --warm "$sc/call_uac.xml" -- "${uac[@]}"
    stop "$uas_pid"
}

load_phase() {
    start_callee || return 1
    sweep calls 2 "$sc/call_uac.xml" --watch "$uas_pid" -- "${uac[@]}"
    stop "$uas_pid"
}

run_targets
report
