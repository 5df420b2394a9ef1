#!/usr/bin/env bash
# Events (issue 9): SUBSCRIBE/NOTIFY and PUBLISH through sipbus and
# through Kamailio's presence server in the same run, SIPp on both sides
# with -buff_size 4194304. Per target:
#   subscribe  one exchange per SIPp call (bench_subscribe.xml): SUBSCRIBE,
#              200, NOTIFY, 200, unsubscribe, 200, NOTIFY, 200 = 4
#              transactions; for the presence and message-summary packages
#   publish    one publication's life per call (bench_publish.xml):
#              initial, refresh, removal = 3 transactions
#   fan-out    1000 watchers of one resource, then one PUBLISH: time until
#              the last NOTIFY is answered
#   memory     10,000 held subscriptions on the fresh server, measured
#              once the transactions that made them are gone: server
#              memory (PSS of every server process) and, in split, Redis
#              used_memory, per subscription, and Redis MEMORY USAGE of one
#              subscription's record
# Open-loop rate steps (-r R -m R*seconds); a step passes with zero failed
# calls, at most 1 % retransmitted messages and a p99 of the first answer
# (SIPp rtd) at most 50 ms; the knee is the highest passing rate. Each step
# prints the servers' CPU µs per transaction (user + system from /proc,
# every server process: Kamailio's children, each split service, Redis).
# Targets: all-in-one (embedded store), split (Redis, registrar-svc,
# pubsub-svc, publish-svc, sip-edge; one replica each), kamailio
# (bench/kamailio/presence.cfg: subs_db_mode 0, publ_cache, force_active,
# a throw-away sqlite database, one SIP worker: see its header). Neither
# side authenticates.
#
#   bench/events.sh [seconds-per-step] [target...]
#   RATES="250 500 1000" NO_BUILD=1 bench/events.sh 3 all-in-one kamailio
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
secs="${1:-3}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all-in-one split kamailio)
rates=(${RATES:-250 500 1000 1500 2000 3000 4000 5000 6000})
held=${HELD:-10000}
clk_tck=$(getconf CLK_TCK)
for cmd in sipp python3 ss; do command -v "$cmd" >/dev/null || { echo "$cmd missing" >&2; exit 2; }; done
for t in "${targets[@]}"; do
    case "$t" in
        kamailio) [ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ] || {
            echo "Kamailio presence modules missing (apt-get install kamailio kamailio-presence-modules kamailio-sqlite-modules sqlite3)" >&2; exit 2; } ;;
        all-in-one|split) ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
done
if [ -z "${NO_BUILD:-}" ]; then cargo build --release -p sipbus >&2; fi
bin=target/release/sipbus
sc=$(pwd)/tests/scenarios
domain=example.com

scratch

# Resources: bench0..bench999 (one per call, round robin), mem0..mem999
# (the held subscriptions of the memory step, whose watchers are gone
# afterwards: no later step changes them, so no NOTIFY waits on a dead
# watcher) and fan.
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
} >"$work/sipbus.toml"

# pss PID...: proportional set size (KiB) of these processes and their
# children (Kamailio's shared memory counted once across its children).
pss() {
    python3 - "$@" <<'PY'
import os, sys
def children(pid):
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task") for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError:
        return []
todo, seen, total = [int(p) for p in sys.argv[1:]], set(), 0
while todo:
    pid = todo.pop()
    if pid in seen: continue
    seen.add(pid)
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"): total += int(line.split()[1])
    except OSError:
        pass
    todo += children(pid)
print(total)
PY
}

redis_port=""
redis_used() { if [ -n "$redis_port" ]; then redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r'; else echo 0; fi; }

# step NAME PORT SCENARIO TX_PER_CALL RATE EXTRA... -> prints a line, sets $pass
step() {
    local name=$1 port=$2 sf=$3 txs=$4 rate=$5
    shift 5
    local calls=$((rate * secs)) ticks0 ticks1 dir
    dir=$(mktemp -d -p "$work")
    ticks0=$(cpu_ticks "${servers[@]}")
    (cd "$dir" && timeout --signal=KILL $((secs * 4 + 40)) sipp "127.0.0.1:$port" -sf "$sc/$sf" -inf "$work/users.csv" \
        -key domain "$domain" "$@" -i 127.0.0.1 -p "$(free_port)" -buff_size 4194304 -m "$calls" -r "$rate" -l 20000 -d 0 \
        -timeout $((secs * 4 + 30))s -nostdin -trace_stat -stf stat.csv -trace_rtt -rtt_freq 1 >/dev/null 2>&1 || true)
    ticks1=$(cpu_ticks "${servers[@]}")
    python3 - "$dir" "$name" "$rate" "$calls" "$txs" "$ticks0" "$ticks1" "$clk_tck" <<'PY' >"$dir/line"
import csv, glob, sys
d, name, rate, calls, txs, t0, t1, tck = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
try:
    rows = list(csv.reader(open(f"{d}/stat.csv"), delimiter=';'))
    h, last = rows[0], [r for r in rows[1:] if r][-1]
    ok, failed, retrans = int(last[h.index('SuccessfulCall(C)')]), int(last[h.index('FailedCall(C)')]), int(last[h.index('Retransmissions(C)')])
except Exception:
    ok, failed, retrans = 0, calls, 0
rtts = []
for f in glob.glob(f"{d}/*_rtt.csv"):
    for r in list(csv.reader(open(f), delimiter=';'))[1:]:
        try: rtts.append(float(r[1]))
        except (ValueError, IndexError): pass
rtts.sort()
p99 = rtts[int(len(rtts) * 0.99) - 1] if rtts else float('nan')
msgs = max(ok * txs * 2, 1)
cpu = (t1 - t0) * 1e6 / tck / max(ok * txs, 1)
passed = failed == 0 and ok == calls and retrans <= msgs * 0.01 and p99 <= 50
print(f"{name:<28} rate {rate:<5} ok {ok:<6} failed {failed:<4} retrans {retrans:<5} p99_ms {p99:<6.1f} cpu_us/tx {cpu:<6.0f} {'pass' if passed else 'FAIL'}")
print("PASS" if passed else "FAIL", round(cpu))
PY
    head -1 "$dir/line"
    read -r verdict cpu_last < <(tail -1 "$dir/line")
    pass=0; [ "$verdict" = PASS ] && pass=1
    rm -rf "$dir"
}

# sweep NAME PORT SCENARIO TX EXTRA... -> sets $knee and $knee_cpu
sweep() {
    local name=$1 port=$2 sf=$3 txs=$4
    shift 4
    knee=0 knee_cpu=-
    for rate in "${rates[@]}"; do
        step "$name" "$port" "$sf" "$txs" "$rate" "$@"
        [ "$pass" -eq 1 ] || break
        knee=$rate knee_cpu=$cpu_last
    done
}

# fanout PORT -> sets $fan_ms: 1000 watchers of fan@, one PUBLISH.
fanout() {
    local port=$1 dir t0
    dir=$(mktemp -d -p "$work")
    printf 'SEQUENTIAL\nfan\n' >"$dir/fan.csv"
    (cd "$dir" && timeout --signal=KILL 120 sipp "127.0.0.1:$port" -sf "$sc/bench_watch.xml" -inf "$dir/fan.csv" -key domain "$domain" \
        -i 127.0.0.1 -p "$(free_port)" -buff_size 4194304 -m 1000 -r 500 -l 2000 -timeout 100s -nostdin \
        -trace_msg -message_file "$dir/watch.log" >/dev/null 2>&1) &
    local watchers=$!
    sleep 4
    t0=$(date +%s.%N)
    (cd "$dir" && timeout --signal=KILL 30 sipp "127.0.0.1:$port" -sf "$sc/bench_publish.xml" -inf "$dir/fan.csv" -key domain "$domain" \
        -i 127.0.0.1 -p "$(free_port)" -m 1 -d 3000 -timeout 20s -nostdin >/dev/null 2>&1 || true)
    wait "$watchers" || true
    fan_ms=$(python3 - "$dir/watch.log" "$t0" <<'PY'
import datetime, sys
text, t0 = open(sys.argv[1]).read(), float(sys.argv[2])
last, n = None, 0
for chunk in text.split("-----------------------------------------------")[1:]:
    stamp, _, msg = chunk.partition("\n")
    if "X-Fanout: answered" in msg and "message sent" in msg:
        n += 1
        t = datetime.datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        last = t if last is None or t > last else last
print(f"{(last - t0) * 1000:.0f}ms for {n}/1000" if last else f"none of 1000 answered")
PY
)
    rm -rf "$dir"
}

# memory PORT -> sets $mem_line: $held subscriptions held at once.
memory() {
    local port=$1 dir before after rbefore rafter sample
    dir=$(mktemp -d -p "$work")
    before=$(pss "${servers[@]}"); rbefore=$(redis_used)
    (cd "$dir" && timeout --signal=KILL 120 sipp "127.0.0.1:$port" -sf "$sc/bench_watch.xml" -inf "$work/mem.csv" -key domain "$domain" \
        -i 127.0.0.1 -p "$(free_port)" -buff_size 4194304 -m "$held" -r 1000 -l $((held + 100)) -timeout 100s -nostdin >/dev/null 2>&1) &
    local watchers=$!
    # Every subscription made, then the transactions that made them gone
    # (a UDP server transaction stays 32 s after its answer, Timer J):
    # what is left is what holding subscriptions costs.
    sleep $((held / 1000 + 36))
    after=$(pss "${servers[@]}"); rafter=$(redis_used)
    mem_line="$(python3 -c "print(f'{($after - $before) * 1024 / $held:.0f} B/subscription of server memory')")"
    if [ -n "$redis_port" ]; then
        sample=$(redis-cli -p "$redis_port" --scan --pattern 'sub:*' | head -1)
        mem_line+=", redis $(python3 -c "print(f'{($rafter - $rbefore) / $held:.0f}')") B/subscription (used_memory), MEMORY USAGE of one record $(redis-cli -p "$redis_port" memory usage "$sample" | tr -d '\r') B"
    fi
    kill "$watchers" 2>/dev/null || true; wait "$watchers" 2>/dev/null || true
    rm -rf "$dir"
}

# run_target NAME PORT: every workload against a running target.
declare -A summary
run_target() {
    local name=$1 port=$2
    # Memory first, on the fresh server.
    memory "$port"
    summary[$name.mem]=$mem_line
    sweep "$name presence" "$port" bench_subscribe.xml 4 -key event presence
    summary[$name.sub]="$knee ($knee_cpu µs/tx)"
    sweep "$name message-summary" "$port" bench_subscribe.xml 4 -key event message-summary
    summary[$name.mwi]="$knee ($knee_cpu µs/tx)"
    sweep "$name publish" "$port" bench_publish.xml 3
    summary[$name.pub]="$knee ($knee_cpu µs/tx)"
    fanout "$port"
    summary[$name.fan]=$fan_ms
    echo "$name fan-out: $fan_ms; memory: $mem_line"
}

target_all-in-one() {
    local port gport pid
    port=$(free_port); gport=$(free_port)
    SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_GRPC__LISTEN="127.0.0.1:$gport" SIPBUS_LOG__LEVEL=warn \
        "$bin" --config "$work/sipbus.toml" >"$work/all.log" 2>&1 &
    pid=$!; pids+=("$pid"); wait_udp "$port" || return 1
    servers=("$pid")
    run_target all-in-one "$port"
    stop "$pid"
}

target_split() {
    local rport gport pport bport eport port redis reg pub psub edge
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
    redis=$!; pids+=("$redis"); wait_port "$rport" || return 1
    local env=(SIPBUS_STORE__REDIS="redis://127.0.0.1:$rport/" SIPBUS_LOG__LEVEL=warn)
    gport=$(free_port); pport=$(free_port); bport=$(free_port); eport=$(free_port); port=$(free_port)
    env "${env[@]}" SIPBUS_GRPC__LISTEN="127.0.0.1:$gport" "$bin" --config "$work/sipbus.toml" --target registrar-svc >"$work/reg.log" 2>&1 &
    reg=$!; pids+=("$reg"); wait_port "$gport" || return 1
    env "${env[@]}" SIPBUS_GRPC__LISTEN="127.0.0.1:$bport" "$bin" --config "$work/sipbus.toml" --target publish-svc >"$work/pub.log" 2>&1 &
    pub=$!; pids+=("$pub"); wait_port "$bport" || return 1
    env "${env[@]}" SIPBUS_GRPC__LISTEN="127.0.0.1:$pport" SIPBUS_BUS__EDGES="{ edge1 = \"http://127.0.0.1:$eport\" }" \
        SIPBUS_BUS__REGISTRAR="[\"http://127.0.0.1:$gport\"]" "$bin" --config "$work/sipbus.toml" --target pubsub-svc >"$work/psub.log" 2>&1 &
    psub=$!; pids+=("$psub"); wait_port "$pport" || return 1
    env "${env[@]}" SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_EDGE__INSTANCE=edge1 SIPBUS_GRPC__LISTEN="127.0.0.1:$eport" \
        SIPBUS_BUS__REGISTRAR="[\"http://127.0.0.1:$gport\"]" SIPBUS_BUS__PUBSUB="[\"http://127.0.0.1:$pport\"]" \
        SIPBUS_BUS__PUBLISH="[\"http://127.0.0.1:$bport\"]" "$bin" --config "$work/sipbus.toml" --target sip-edge >"$work/edge.log" 2>&1 &
    edge=$!; pids+=("$edge"); wait_udp "$port" || return 1
    servers=("$edge" "$psub" "$pub" "$reg" "$redis")
    redis_port=$rport
    run_target split "$port"
    redis_port=""
    stop "$edge"; stop "$psub"; stop "$pub"; stop "$reg"; stop "$redis"
}

target_kamailio() {
    local port pid db
    port=$(free_port)
    # On tmpfs: sqlite's fsyncs would measure the disk.
    db=$(mktemp -p /dev/shm sipbus-bench-XXXXXX.sqlite)
    cat /usr/share/kamailio/db_sqlite/standard-create.sql /usr/share/kamailio/db_sqlite/presence-create.sql | sqlite3 "$db"
    sqlite3 "$db" "PRAGMA journal_mode=WAL;" >/dev/null
    kamailio -f bench/kamailio/presence.cfg -l "udp:127.0.0.1:$port" -A "DBURL=\"sqlite://$db\"" \
        -A "SRVADDR=\"sip:127.0.0.1:$port\"" -DD -E -m 1024 -M 16 >"$work/kamailio.log" 2>&1 &
    pid=$!; pids+=("$pid"); wait_udp "$port" || { tail -20 "$work/kamailio.log" >&2; return 1; }
    servers=("$pid")
    run_target kamailio "$port"
    stop "$pid"
    rm -f "$db" "$db"-wal "$db"-shm
}

for t in "${targets[@]}"; do
    "target_$t" || echo "$t: did not start" >&2
done

echo
echo "knee (rate of SIPp calls/s; CPU µs per transaction at the knee):"
for w in sub:"SUBSCRIBE+NOTIFY presence" mwi:"SUBSCRIBE+NOTIFY message-summary" pub:"PUBLISH"; do
    line="  ${w#*:}:"
    for t in "${targets[@]}"; do line+=" $t ${summary[$t.${w%%:*}]:--},"; done
    echo "${line%,}"
done
echo "fan-out to 1000 watchers:"
for t in "${targets[@]}"; do echo "  $t ${summary[$t.fan]:--}"; done
echo "memory with $held held subscriptions:"
for t in "${targets[@]}"; do echo "  $t ${summary[$t.mem]:--}"; done
