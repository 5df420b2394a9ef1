#!/usr/bin/env bash
# Calls/s with zero failed calls through a server: SIPp caller
# (tests/scenarios/call_uac.xml, no pause: INVITE, 180, 200, ACK, BYE, 200)
# and SIPp callee (tests/scenarios/call_uas.xml), the callee registered
# once (register_once.xml, digest auth, user bob / password secret in
# example.com). Targets:
#   kamailio    stateful record-routing proxy, memory usrloc, t_relay
#               (bench/kamailio/proxy.cfg)
#   all-in-one  target/release/sipbus, embedded store
#   split       Redis + registrar-svc + sdp-svc + session-svc + sip-edge,
#               one replica each, gRPC between them
# Neither side authenticates calls (Kamailio's config challenges REGISTER
# only, sipbus runs with session.authenticate = false).
#
# SIPp raises the call rate step by step; a target's figure is the highest
# achieved calls/s of a step with zero failed calls (read from SIPp's
# -trace_stat file, as bench/register.sh does). The two SIPp instances share
# the two cores with what they measure. Each step also gives the servers'
# CPU time per call (user + system from /proc, every server process:
# Redis, each service, Kamailio's children), steadier than calls/s on a
# shared machine; the summary quotes it at the CPU_AT step (default 800/s).
#
#   bench/calls.sh [seconds-per-step] [target...]   # default: all three
#   bench/calls.sh 4 kamailio
#   bench/calls.sh 4 all-in-one all-in-one@/tmp/old/sipbus   # two builds, one run
# A sipbus target may name its binary after `@` (another build, to compare
# before and after a change in one run); default target/release/sipbus.
# RATES="100 200 ..." overrides the steps; NO_BUILD=1 uses the
# target/release/sipbus already built; LOGS=DIR keeps SIPp's error
# logs (per target and step) and the servers' logs there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
secs="${1:-4}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all-in-one split kamailio)
rates=(${RATES:-100 200 400 600 800 1000 1200 1400 1600 1800 2000 2400 2800})
cpu_rate=${CPU_AT:-800}
clk_tck=$(getconf CLK_TCK)

needs_sipbus=0
for t in "${targets[@]}"; do
    case "${t%%@*}" in
        kamailio) command -v kamailio >/dev/null || { echo "kamailio missing (apt-get install kamailio)" >&2; exit 2; } ;;
        all-in-one) needs_sipbus=1 ;;
        split) needs_sipbus=1; command -v redis-server >/dev/null || { echo "redis-server missing" >&2; exit 2; } ;;
        *) echo "unknown target $t (kamailio, all-in-one, split)" >&2; exit 2 ;;
    esac
done
for cmd in sipp python3 ss; do
    command -v "$cmd" >/dev/null || { echo "$cmd missing (apt-get install sip-tester)" >&2; exit 2; }
done
if [ "$needs_sipbus" -eq 1 ] && [ -z "${NO_BUILD:-}" ]; then cargo build --release -p sipbus >&2; fi
# The sipbus binary of a target: after its `@`, or this tree's release build.
bin_of() { if [[ "$1" == *@* ]]; then echo "${1#*@}"; else echo target/release/sipbus; fi; }

scratch
logs="${LOGS:-}"
if [ -n "$logs" ]; then mkdir -p "$logs"; logs=$(cd "$logs" && pwd); fi
# errlog NAME: SIPp options writing its error log to $LOGS/NAME.err.
errlog() { if [ -n "$logs" ]; then echo "-trace_err -error_file $logs/$1.err"; fi; }
# The servers' logs go to $LOGS too when it is set.
on_exit() {
    if [ -n "$logs" ]; then cp "$work"/*.log "$logs"/ 2>/dev/null || true; fi
}

sc=tests/scenarios
domain=example.com
callee=bob
password=secret
# SIPp's digest is MD5 only: offer MD5 first. The nonce key is shared by
# the split processes.
cat >"$work/sipbus.toml" <<EOF
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

# callee PORT NAME: registers the callee at a fresh port, starts the SIPp callee
# there and sets $uas_pid (0 if the registration failed).
callee() {
    local port=$1 uas_port
    uas_port=$(free_port)
    uas_pid=0
    printf 'SEQUENTIAL\n%s;%s;3600;bench\n' "$callee" "$domain" >"$work/register.csv"
    if ! timeout --signal=KILL 30 sipp "127.0.0.1:$port" -sf "$sc/register_once.xml" -inf "$work/register.csv" \
        -au "$callee" -ap "$password" -auth_uri "$domain" -i 127.0.0.1 -p "$uas_port" -t u1 -m 1 -buff_size 4194304 \
        -timeout 15s -timeout_error -nostdin >/dev/null 2>&1; then
        echo "registration of $callee through 127.0.0.1:$port failed" >&2
        return 0
    fi
    # shellcheck disable=SC2046
    sipp -sf "$sc/call_uas.xml" -i 127.0.0.1 -p "$uas_port" -t u1 -buff_size 4194304 -nostdin $(errlog "$2-uas") >/dev/null 2>&1 &
    uas_pid=$!
    pids+=("$uas_pid")
    wait_udp "$uas_port"
}

# redis_commands: commands Redis has run so far ($redis_port), or 0.
redis_port=""
redis_commands() {
    if [ -z "$redis_port" ]; then echo 0; return; fi
    redis-cli -p "$redis_port" info commandstats |
        python3 -c 'import re,sys; print(sum(int(m) for m in re.findall(r"calls=(\d+)", sys.stdin.read())))'
}

# ramp NAME PORT SERVER_PID...: registers and starts the callee, prints one
# line per step and sets $best (calls/s) and $cpu_at (CPU µs per call at
# the CPU_AT step).
ramp() {
    local name=$1 port=$2
    shift 2
    local servers=("$@")
    best=0 cpu_at=-
    callee "$port" "$name"
    if [ "$uas_pid" -eq 0 ]; then
        printf '%-10s registration failed\n' "$name"
        return 0
    fi
    for rate in "${rates[@]}"; do
        local calls=$((rate * secs))
        local start end ok failed
        local ticks0 ticks1 cpu cmds0 cmds1 store=""
        ticks0=$(cpu_ticks "${servers[@]}")
        cmds0=$(redis_commands)
        start=$(date +%s.%N)
        # shellcheck disable=SC2046
        timeout --signal=KILL $((secs * 4 + 40)) sipp "127.0.0.1:$port" -sf "$sc/call_uac.xml" -s "$callee" -key domain "$domain" \
            -t u1 -i 127.0.0.1 -p "$(free_port)" -buff_size 4194304 -d 0 -m "$calls" -r "$rate" -l 10000 -timeout $((secs * 4 + 30))s -nostdin \
            $(errlog "$name-$rate-uac") -trace_stat -stf "$work/stat.csv" >/dev/null 2>&1 || true
        end=$(date +%s.%N)
        ticks1=$(cpu_ticks "${servers[@]}")
        cmds1=$(redis_commands)
        if [ -s "$work/stat.csv" ]; then
            read -r ok failed < <(sipp_counts "$work/stat.csv")
        else
            ok=0 failed=$calls
        fi
        rm -f "$work/stat.csv"
        local achieved
        achieved=$(python3 -c "print(int($ok / ($end - $start)))")
        cpu=$(python3 -c "print(round(($ticks1 - $ticks0) * 1e6 / $clk_tck / max($ok, 1)))")
        if [ -n "$redis_port" ]; then
            store=" redis_cmds/call $(python3 -c "print(round(($cmds1 - $cmds0) / max($ok, 1), 1))")"
        fi
        printf '%-16s rate %-6s calls/s %-6s failed %-4s cpu_us/call %s%s\n' "$name" "$rate" "$achieved" "$failed" "$cpu" "$store"
        if [ "$rate" -eq "$cpu_rate" ] && [ "$failed" -eq 0 ]; then cpu_at=$cpu; fi
        if [ "$failed" -ne 0 ] || [ "$ok" -ne "$calls" ]; then break; fi
        if ! kill -0 "$uas_pid" 2>/dev/null; then echo "$name: the SIPp callee died" >&2; break; fi
        if [ "$achieved" -gt "$best" ]; then best=$achieved; fi
    done
    stop "$uas_pid"
}

# One function per target: start the server, ramp, stop it. Each sets
# $best; a server that does not come up makes it return 1. The processes
# it started are stopped by pid (here, or by cleanup on exit).
target_all-in-one() {
    local port pid bin=$1 name=$2
    port=$(free_port)
    SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_LOG__LEVEL=warn \
        "$bin" --config "$work/sipbus.toml" >"$work/all.log" 2>&1 &
    pid=$!; pids+=("$pid"); wait_udp "$port" || return 1
    ramp "$name" "$port" "$pid"
    stop "$pid"
}

target_split() {
    local rport gport port redis reg edge bin=$1 name=$2
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
    redis=$!; pids+=("$redis"); wait_port "$rport" || return 1
    gport=$(free_port)
    SIPBUS_STORE__REDIS="redis://127.0.0.1:$rport/" SIPBUS_GRPC__LISTEN="127.0.0.1:$gport" SIPBUS_LOG__LEVEL=warn \
        "$bin" --config "$work/sipbus.toml" --target registrar-svc >"$work/reg.log" 2>&1 &
    reg=$!; pids+=("$reg"); wait_port "$gport" || return 1
    local dport sport eport sdp session
    dport=$(free_port)
    SIPBUS_GRPC__LISTEN="127.0.0.1:$dport" SIPBUS_LOG__LEVEL=warn \
        "$bin" --config "$work/sipbus.toml" --target sdp-svc >"$work/sdp.log" 2>&1 &
    sdp=$!; pids+=("$sdp"); wait_port "$dport" || return 1
    sport=$(free_port)
    eport=$(free_port)
    SIPBUS_STORE__REDIS="redis://127.0.0.1:$rport/" SIPBUS_GRPC__LISTEN="127.0.0.1:$sport" SIPBUS_LOG__LEVEL=warn \
        SIPBUS_BUS__EDGES="{ edge1 = \"http://127.0.0.1:$eport\" }" \
        SIPBUS_BUS__REGISTRAR="[\"http://127.0.0.1:$gport\"]" SIPBUS_BUS__SDP="[\"http://127.0.0.1:$dport\"]" \
        "$bin" --config "$work/sipbus.toml" --target session-svc >"$work/session.log" 2>&1 &
    session=$!; pids+=("$session"); wait_port "$sport" || return 1
    port=$(free_port)
    SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_EDGE__INSTANCE=edge1 SIPBUS_GRPC__LISTEN="127.0.0.1:$eport" \
        SIPBUS_BUS__REGISTRAR="[\"http://127.0.0.1:$gport\"]" SIPBUS_BUS__SESSION="[\"http://127.0.0.1:$sport\"]" \
        SIPBUS_LOG__LEVEL=warn "$bin" --config "$work/sipbus.toml" --target sip-edge >"$work/edge.log" 2>&1 &
    edge=$!; pids+=("$edge"); wait_udp "$port" || return 1
    redis_port=$rport
    ramp "$name" "$port" "$edge" "$session" "$sdp" "$reg" "$redis"
    redis_port=""
    stop "$edge"; stop "$session"; stop "$sdp"; stop "$reg"; stop "$redis"
}

target_kamailio() {
    local port pid
    port=$(free_port)
    kamailio -f bench/kamailio/proxy.cfg -l "udp:127.0.0.1:$port" -DD -E -m 512 -M 16 >"$work/kamailio.log" 2>&1 &
    pid=$!; pids+=("$pid"); wait_udp "$port" || return 1
    ramp kamailio "$port" "$pid"
    stop "$pid"
}

declare -A result cpu_result
for t in "${targets[@]}"; do
    best=0 cpu_at=-
    "target_${t%%@*}" "$(bin_of "$t")" "$t" || echo "$t: did not start (logs: LOGS=DIR keeps them)" >&2
    result[$t]=$best
    cpu_result[$t]=$cpu_at
done

echo
summary="calls/s with zero failed calls:"
for t in "${targets[@]}"; do summary+=" $t ${result[$t]},"; done
echo "${summary%,}"
cpu_summary="server CPU µs per call at $cpu_rate calls/s:"
for t in "${targets[@]}"; do cpu_summary+=" $t ${cpu_result[$t]},"; done
echo "${cpu_summary%,}"
if [ -n "${result[kamailio]:-}" ] && [ ${#targets[@]} -gt 1 ]; then
    ratios="ratios to kamailio:"
    for t in "${targets[@]}"; do
        [ "$t" = kamailio ] && continue
        ratios+=" $t $(python3 -c "print(f'{${result[$t]}/max(${result[kamailio]},1):.2f}x')"),"
    done
    echo "${ratios%,}"
fi
