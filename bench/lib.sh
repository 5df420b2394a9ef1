# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run).
# shellcheck disable=SC2154 # workload, config, split_services, kamailio_cfg, kamailio_shm: the script's

# wait_udp PORT: until something is bound to the UDP port (10 s at most).
wait_udp() {
    for _ in $(seq 100); do
        ss -Hunl "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "nothing listens on udp $1" >&2
    return 1
}

# wait_port PORT: until something accepts TCP on the port (10 s at most).
wait_port() {
    for _ in $(seq 100); do
        (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

# scratch: $work, a fresh temporary folder, and $pids, the processes the
# script starts (pids+=($!)). When the script exits, however it ends,
# each is stopped and the folder removed; a script that defines on_exit
# has it run first (copy logs; return 1 to keep the folder).
scratch() {
    work=$(mktemp -d)
    pids=()
    trap end_scratch EXIT
}
end_scratch() {
    # A background child killed before it became its program would run
    # this trap too: only the script itself cleans up.
    [ "$BASHPID" = "$$" ] || return 0
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if declare -F on_exit >/dev/null && ! on_exit; then return; fi
    rm -rf "$work"
}

# forget PID: a process that has ended leaves $pids, so that the exit
# never signals a reused pid.
forget() {
    local p rest=()
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || rest+=("$p"); done
    pids=("${rest[@]}")
}

# stop PID: ends one process the script started, and forgets it.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# free_port: a free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID...: CPU time (user + system, clock ticks) used so far by
# these processes and every process they started (Kamailio's children).
cpu_ticks() { sipbench cpu "$@"; }

# sipbench COMMAND...: the method's number crunching (bench/sipbench.py).
sipbench() { python3 bench/sipbench.py "$@"; }

# ------------------------------------------------------------------------
# The benchmark method of register.sh, calls.sh, events.sh and options.sh
# (README "## Benchmarks"). A script sets $workload, $config (sipbus
# configuration), split_services (what split runs besides Redis and
# sip-edge), kamailio_cfg and kamailio_shm, defines load_phase (the
# sweeps) and memory_phase (the held items), then calls bench_init and
# run_targets. Settings from the environment:
#   RUNS (3)          runs per step, medians
#   FRACTIONS         steps as fractions of the probe
#                     (0.4 0.6 0.8 0.9 1.0 1.1 1.25)
#   RATES             fixed steps in calls/s instead (no probe)
#   PROBE_SECS (3)    PROBE_CALLS (100): the closed-loop probe
#   HELD (10000)      items held in the memory phase; MEM=0 skips it,
#                     SWEEP=0 skips the rest; MEM_RATE: items made per
#                     second (register 2000, calls 400, events 1000)
#   MEM_T1_MS (50)    sipbus's T1 (and T4 = 10*T1) in the memory phase
#                     only: the transactions that made the items end
#                     64*T1 after them; SETTLE (default max(64*T1, 5 s)
#                     + 1 s: Kamailio's tm keeps them 5 s) is the wait
#                     before each measure. MEM_T1_MS=500: the default
#                     timers (33 s waits)
#   QUICK=1           a short validation: RUNS=1, 2 s steps, FRACTIONS
#                     "0.6 0.9 1.1", PROBE_SECS=2, HELD=2000
#   NO_BUILD=1        use the target/release/sipbus already built
#   LOGS=DIR          keep the servers' logs and SIPp's error logs
#   RESULTS=FILE      append the knees and memory figures (bench/all.sh)
#   VERBOSE=1         every run of a step, not only the medians

# bench_init DEFAULT_SECS [seconds-per-step] [target...]: sets $secs,
# $targets (all-in-one split kamailio unless named; a sipbus target may
# name its binary after @), the settings, checks the tools, builds sipbus
# unless NO_BUILD, raises the socket buffer limits, makes $work.
bench_init() {
    local default=$1 t
    shift
    if [ "${QUICK:-0}" != 0 ]; then default=2; fi
    secs=$default
    # The seconds may be left out: bench/calls.sh kamailio split.
    if [[ "${1:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then secs=$1; shift; fi
    targets=("$@")
    [ ${#targets[@]} -gt 0 ] || targets=(all-in-one split kamailio)
    if [ "${QUICK:-0}" != 0 ]; then
        runs=${RUNS:-1} fractions=${FRACTIONS:-0.6 0.9 1.1} probe_secs=${PROBE_SECS:-2} held=${HELD:-2000}
    else
        runs=${RUNS:-3} fractions=${FRACTIONS:-0.4 0.6 0.8 0.9 1.0 1.1 1.25} probe_secs=${PROBE_SECS:-3} held=${HELD:-10000}
    fi
    probe_calls=${PROBE_CALLS:-100}
    mem_t1=${MEM_T1_MS:-50}
    settle=${SETTLE:-$(python3 -c "print(max(64 * $mem_t1 / 1000, 5) + 1)")}
    local need=(sipp python3 ss) build=0
    for t in "${targets[@]}"; do
        case "${t%%@*}" in
            all-in-one) [[ "$t" == *@* ]] || build=1 ;;
            split) [[ "$t" == *@* ]] || build=1; need+=(redis-server redis-cli) ;;
            kamailio) need+=(kamailio) ;;
            *) echo "unknown target $t (all-in-one, split, kamailio; all-in-one@BINARY, split@BINARY)" >&2; exit 2 ;;
        esac
    done
    for t in "${need[@]}"; do
        command -v "$t" >/dev/null || { echo "$t missing (apt-get install sip-tester redis-server kamailio)" >&2; exit 2; }
    done
    if [ "$build" -eq 1 ] && [ -z "${NO_BUILD:-}" ]; then cargo build --release -p sipbus >&2; fi
    raise_socket_buffers
    CLK_TCK=$(getconf CLK_TCK)
    export CLK_TCK
    scratch
    results=${RESULTS:-$work/results.jsonl}
    logs=${LOGS:-}
    if [ -n "$logs" ]; then mkdir -p "$logs"; logs=$(cd "$logs" && pwd); export LOGS=$logs; fi
    servers=() server_env=() redis_port="" port="" target=""
    # A copy (bench/all.sh makes one for every script: BENCH_BIN): a build
    # finishing during the run changes no target.
    sipbus_bin=${BENCH_BIN:-target/release/sipbus}
    if [ "$build" -eq 1 ] && [ -z "${BENCH_BIN:-}" ]; then cp target/release/sipbus "$work/sipbus"; sipbus_bin=$work/sipbus; fi
    local steps="$fractions x the probe"
    if [ -n "${RATES:-}" ]; then steps="$RATES calls/s"; fi
    echo "$workload: ${targets[*]}; steps of $secs s at $steps, $runs run(s) each; $held held items"
}

# The servers' logs go to $LOGS too when it is set.
on_exit() {
    if [ -n "${logs:-}" ]; then cp "$work"/*.log "$logs"/ 2>/dev/null || true; fi
}

# raise_socket_buffers: net.core.rmem_max and wmem_max to 8 MiB at least,
# so that the 4 MiB buffers SIPp (-buff_size), sipbus and Kamailio (-b)
# ask for are granted; a warning with the effective values if they cannot
# be raised (not root).
raise_socket_buffers() {
    local key have want=8388608 low=0
    for key in net.core.rmem_max net.core.wmem_max; do
        have=$(sysctl -n "$key" 2>/dev/null || echo 0)
        if [ "$have" -lt "$want" ]; then sysctl -qw "$key=$want" >/dev/null 2>&1 || true; fi
        have=$(sysctl -n "$key" 2>/dev/null || echo 0)
        if [ "$have" -lt "$want" ]; then low=1; fi
    done
    if [ "$low" -eq 1 ]; then
        echo "warning: net.core.rmem_max $(sysctl -n net.core.rmem_max) and net.core.wmem_max $(sysctl -n net.core.wmem_max)" \
            "(wanted $want; run as root to raise them): socket buffers are capped there" >&2
    fi
}

# bin_of TARGET: the sipbus binary of a target: after its @, or this
# tree's release build (as it was when the script started).
bin_of() { if [[ "$1" == *@* ]]; then echo "${1#*@}"; else echo "$sipbus_bin"; fi; }

# run_targets: per target, a fresh server for the memory phase (sipbus with
# T1 = MEM_T1_MS and MIMALLOC_PURGE_DELAY=0, so that what it frees leaves
# its RSS at once instead of when the allocator next runs; memory_phase;
# skipped with MEM=0), then a fresh one for the sweeps (load_phase). Both
# functions are the script's; they find the target's SIP port in $port,
# its processes in $servers and, in split, Redis in $redis_port. Every
# sipbus process runs with shutdown.drain_s = 0: stopped at once.
run_targets() {
    local t
    for t in "${targets[@]}"; do
        target=$t
        if [ "${MEM:-1}" != 0 ] && declare -F memory_phase >/dev/null; then
            server_env=("SIPBUS_EDGE__TIMERS__T1_MS=$mem_t1" "SIPBUS_EDGE__TIMERS__T4_MS=$((mem_t1 * 10))" MIMALLOC_PURGE_DELAY=0)
            if start_target memory; then
                memory_phase || echo "$t: memory phase failed" >&2
            else
                echo "$t: did not start (LOGS=DIR keeps the logs)" >&2
            fi
            stop_target
        fi
        server_env=()
        [ "${SWEEP:-1}" != 0 ] || continue
        if start_target load; then
            load_phase || echo "$t: load phase failed" >&2
        else
            echo "$t: did not start (LOGS=DIR keeps the logs)" >&2
        fi
        stop_target
    done
}

# start_target PHASE: starts $target, sets $port, $servers, $redis_port.
# Its processes log to $work/TARGET[-SERVICE].log.
start_target() {
    servers=() redis_port="" tag=${target//[^A-Za-z0-9._-]/_}
    case "${target%%@*}" in
        all-in-one) start_all_in_one "$(bin_of "$target")" || return 1 ;;
        split) start_split "$(bin_of "$target")" "${split_services[@]}" || return 1 ;;
        kamailio)
            port=$(free_port) kamailio_args=()
            if declare -F before_kamailio >/dev/null; then before_kamailio; fi
            start_kamailio "$kamailio_cfg" "$kamailio_shm" "${kamailio_args[@]}" || return 1 ;;
    esac
    # Every worker up before anything is measured.
    sleep 1
    local rb tb
    read -r rb tb < <(sipbench sockbuf "$port")
    echo "== $target, $1 phase: udp 127.0.0.1:$port (socket buffers: receive $rb, send $tb), processes ${servers[*]}"
}

# stop_target: stops the target's processes, the SIP side first.
stop_target() {
    local i
    for ((i = ${#servers[@]} - 1; i >= 0; i--)); do stop "${servers[$i]}"; done
    servers=() redis_port=""
    if [ "${target%%@*}" = kamailio ] && declare -F after_kamailio >/dev/null; then after_kamailio; fi
}

# start_all_in_one BINARY: sipbus with the embedded store.
start_all_in_one() {
    local gport pid
    port=$(free_port); gport=$(free_port)
    env "${server_env[@]}" SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_GRPC__LISTEN="127.0.0.1:$gport" \
        SIPBUS_LOG__LEVEL=warn SIPBUS_SHUTDOWN__DRAIN_S=0 "$1" --config "$config" >>"$work/$tag.log" 2>&1 &
    pid=$!; pids+=("$pid"); servers=("$pid")
    wait_udp "$port"
}

# start_split BINARY SERVICE...: Redis (the services share state through
# it), each service on its own gRPC port (in the order given, one replica
# each), then sip-edge wired to them. $servers lists sip-edge last.
start_split() {
    local bin=$1 svc pid eport
    shift
    local -A svc_port
    for svc in "$@"; do svc_port[$svc]=$(free_port); done
    eport=$(free_port); port=$(free_port)
    local store=() edges="SIPBUS_BUS__EDGES={ edge1 = \"http://127.0.0.1:$eport\" }" reg=() sdp=() edge_bus=()
    for svc in "$@"; do
        if [ -z "$redis_port" ]; then
            redis_port=$(free_port)
            redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >>"$work/$tag-redis.log" 2>&1 &
            pid=$!; pids+=("$pid"); servers+=("$pid")
            wait_port "$redis_port" || return 1
            store=("SIPBUS_STORE__REDIS=redis://127.0.0.1:$redis_port/")
        fi
        case "$svc" in
            registrar-svc) reg=("SIPBUS_BUS__REGISTRAR=[\"http://127.0.0.1:${svc_port[$svc]}\"]"); edge_bus+=("${reg[@]}") ;;
            sdp-svc) sdp=("SIPBUS_BUS__SDP=[\"http://127.0.0.1:${svc_port[$svc]}\"]") ;;
            session-svc) edge_bus+=("SIPBUS_BUS__SESSION=[\"http://127.0.0.1:${svc_port[$svc]}\"]") ;;
            pubsub-svc) edge_bus+=("SIPBUS_BUS__PUBSUB=[\"http://127.0.0.1:${svc_port[$svc]}\"]") ;;
            publish-svc) edge_bus+=("SIPBUS_BUS__PUBLISH=[\"http://127.0.0.1:${svc_port[$svc]}\"]") ;;
            *) echo "unknown service $svc" >&2; return 1 ;;
        esac
    done
    for svc in "$@"; do
        local svc_env=()
        case "$svc" in
            registrar-svc|publish-svc|sdp-svc) svc_env=("${store[@]}") ;;
            session-svc) svc_env=("${store[@]}" "$edges" "${reg[@]}" "${sdp[@]}") ;;
            pubsub-svc) svc_env=("${store[@]}" "$edges" "${reg[@]}") ;;
        esac
        env "${server_env[@]}" "${svc_env[@]}" SIPBUS_GRPC__LISTEN="127.0.0.1:${svc_port[$svc]}" SIPBUS_LOG__LEVEL=warn \
            SIPBUS_SHUTDOWN__DRAIN_S=0 "$bin" --config "$config" --target "$svc" >>"$work/$tag-$svc.log" 2>&1 &
        pid=$!; pids+=("$pid"); servers+=("$pid")
        wait_port "${svc_port[$svc]}" || return 1
    done
    env "${server_env[@]}" "${edge_bus[@]}" SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_EDGE__INSTANCE=edge1 \
        SIPBUS_GRPC__LISTEN="127.0.0.1:$eport" SIPBUS_LOG__LEVEL=warn SIPBUS_SHUTDOWN__DRAIN_S=0 \
        "$bin" --config "$config" --target sip-edge >>"$work/$tag-sip-edge.log" 2>&1 &
    pid=$!; pids+=("$pid"); servers+=("$pid")
    wait_udp "$port"
}

# start_kamailio CFG SHM_MB [ARG...]: Kamailio on $port with 4 SIP
# workers (-n 4), its UDP receive buffer probed up to 4 MiB (-b; Kamailio
# 5.6 has no setting for the send buffer). A script may define
# before_kamailio (sets kamailio_args) and after_kamailio.
start_kamailio() {
    local cfg=$1 shm=$2 pid
    shift 2
    kamailio -f "$cfg" -l "udp:127.0.0.1:$port" -n 4 -b 4194304 -DD -E -m "$shm" -M 16 "$@" >>"$work/$tag.log" 2>&1 &
    pid=$!; pids+=("$pid"); servers=("$pid")
    wait_udp "$port" || { tail -20 "$work/$tag.log" >&2; return 1; }
}

# sweep LABEL TX_PER_CALL SCENARIO [--watch PID] [-- SIPP_ARG...]: the
# closed-loop probe, then the open-loop steps against the running target;
# the knee goes to $results.
sweep() {
    local label=$1 tx=$2 sf=$3
    shift 3
    sipbench sweep --workload "$workload" --label "$label" --target "$target" --port "$port" \
        --servers "$(IFS=,; echo "${servers[*]}")" --redis-port "${redis_port:-0}" --scenario "$sf" --tx "$tx" \
        --secs "$secs" --runs "$runs" --fractions "$fractions" --rates "${RATES:-}" --probe-secs "$probe_secs" \
        --probe-calls "$probe_calls" --results "$results" --work "$work" "$@"
}

# hold LABEL ITEM SCENARIO RATE [--pause] [--record REDIS_PATTERN]
# [--warm SCENARIO] [-- SIPP_ARG...]: on the fresh target, a warm-up of
# $held/50 calls of a scenario that leaves nothing, the baseline once its
# transactions are gone, $held items made at RATE (--pause: calls held in
# the caller's pause), the memory they cost once their transactions are
# gone too, to $results; then the SIPp side ends.
hold() {
    local label=$1 item=$2 sf=$3 rate=$4
    shift 4
    sipbench hold --workload "$workload" --label "$label" --target "$target" --port "$port" \
        --servers "$(IFS=,; echo "${servers[*]}")" --redis-port "${redis_port:-0}" --scenario "$sf" --item "$item" \
        --held "$held" --rate "$rate" --settle "$settle" --results "$results" --work "$work" "$@"
}

# report: this workload's table, with the ratios to Kamailio.
report() { sipbench report "$results" "$workload"; }
