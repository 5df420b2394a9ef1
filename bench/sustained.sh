#!/usr/bin/env bash
# Sustained non-INVITE load: SIPp OPTIONS (one transaction each) at RATE
# per second for SECONDS against a fresh sipbus all-in-one, every
# completed transaction kept for timer J (32 s) as RFC 3261 asks. Passes
# with no 503 and no failed transaction, memory bounded: it prints, every
# 5 s, the transactions held, the bytes of transaction state the overload
# limit counts (edge.overload.transaction_memory_mib), sipbus's RSS and the
# 503s sent, then the totals and sipbus's CPU µs per transaction.
#
#   bench/sustained.sh [rate] [seconds]     # default 40000/s for 60 s
# INSTANCES (2) SIPp processes share the rate (one alone tops out below
# 40,000/s); each runs with -buff_size 4194304.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
rate=${1:-40000}
secs=${2:-60}
instances=${INSTANCES:-2}
bin=${BIN:-target/release/sipbus}
for cmd in sipp python3 curl; do command -v "$cmd" >/dev/null || { echo "$cmd missing" >&2; exit 2; }; done
if [ -z "${NO_BUILD:-}" ]; then cargo build --release -p sipbus >&2; fi
raise_socket_buffers
scratch

# metric NAME [LABEL-FILTER]: the sum of a family's samples.
metric() {
    curl -s "http://127.0.0.1:$aport/metrics" | python3 -c '
import sys
name, want = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
total = 0.0
for line in sys.stdin:
    if line.startswith(name) and (line[len(name)] in "{ ") and want in line:
        total += float(line.rsplit(" ", 1)[1])
print(int(total))' "$@"
}
clk=$(getconf CLK_TCK)
# run TARGET: one sustained run against a fresh sipbus or Kamailio.
run() {
    local name=$1 server
    port=$(free_port)
    if [ "$name" = sipbus ]; then
        local gport
        gport=$(free_port); aport=$(free_port)
        : >"$work/sipbus.toml"
        SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\"]" SIPBUS_GRPC__LISTEN="127.0.0.1:$gport" \
            SIPBUS_ADMIN__LISTEN="127.0.0.1:$aport" SIPBUS_LOG__LEVEL=warn \
            "$bin" --config "$work/sipbus.toml" >"$work/sipbus.log" 2>&1 &
        server=$!
        pids+=("$server")
        wait_udp "$port"
        wait_port "$aport"
    else
        kamailio -f bench/kamailio/options.cfg -l "udp:127.0.0.1:$port" -n 4 -b 4194304 -DD -E -m 256 -M 16 \
            >"$work/kamailio.log" 2>&1 &
        server=$!
        pids+=("$server")
        wait_udp "$port"
    fi
    sleep 1
    local per=$((rate / instances)) calls cpu0 cpu1 snmp0 snmp1 sipps=() i p
    calls=$((per * secs))
    cpu0=$(cpu_ticks "$server")
    snmp0=$(awk '/^Udp: [0-9]/ { print $4 + $6 }' /proc/net/snmp)
    for i in $(seq "$instances"); do
        timeout --signal=KILL $((secs + 90)) sipp "127.0.0.1:$port" -sf tests/scenarios/options.xml -t u1 -i 127.0.0.1 \
            -r "$per" -m "$calls" -l $((per * 4)) -buff_size 4194304 -recv_timeout 10000 -nostdin \
            -trace_stat -stf "$work/stat$i.csv" -fd 1 >/dev/null 2>&1 &
        sipps+=($!)
        pids+=($!)
    done
    echo "== $name, $rate OPTIONS/s for $secs s"
    printf '%6s %10s %14s %10s %8s\n' "s" "held tx" "state MiB" "RSS MiB" "503s"
    local peak_state=0 peak_rss=0 t=0 held=- state=0 rss n503=0
    while kill -0 "${sipps[0]}" 2>/dev/null; do
        sleep 5
        t=$((t + 5))
        if [ "$name" = sipbus ]; then
            held=$(metric sipbus_sip_transactions 'kind="server"')
            state=$(metric sipbus_sip_transaction_state_bytes 'kind="server"')
            n503=$(metric sipbus_sip_responses_sent_total 'code="503"')
        fi
        # RSS of the server and its children (Kamailio's workers count
        # their shared memory each: this overstates Kamailio).
        rss=$(sipbench mem "$server" | awk '{ print $1 * 1024 }')
        [ "$state" -gt "$peak_state" ] && peak_state=$state
        [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
        printf '%6d %10s %14.1f %10.1f %8d\n' "$t" "$held" "$(echo "$state / 1048576" | bc -l)" "$(echo "$rss / 1048576" | bc -l)" "$n503"
    done
    for p in "${sipps[@]}"; do wait "$p" 2>/dev/null || true; forget "$p"; done
    cpu1=$(cpu_ticks "$server")
    snmp1=$(awk '/^Udp: [0-9]/ { print $4 + $6 }' /proc/net/snmp)
    local ok failed retrans elapsed
    read -r ok failed retrans elapsed < <(sipbench counts "$work"/stat*.csv)
    python3 - "$ok" "$failed" "$retrans" "$elapsed" "$((cpu1 - cpu0))" "$clk" "$((snmp1 - snmp0))" "$n503" \
        "$peak_state" "$peak_rss" <<'PY' || status=1
import sys
ok, failed, retrans = (int(v) for v in sys.argv[1:4])
elapsed = max(float(sys.argv[4]), 0.001)
ticks, clk, udp_errors, n503, peak_state, peak_rss = (int(v) for v in sys.argv[5:])
cpu_us = ticks * 1e6 / clk
print(f"transactions: {ok} completed, {failed} failed, {retrans} retransmitted, "
      f"{ok / elapsed:,.0f}/s over {elapsed:.1f} s; 503 sent: {n503}; kernel UDP receive errors: {udp_errors}")
held = f"peak transaction state {peak_state / 2**20:.1f} MiB; " if peak_state else ""
print(f"{held}peak RSS {peak_rss / 2**20:.1f} MiB; server CPU {cpu_us / max(ok, 1):.1f} µs per transaction")
sys.exit(0 if failed == 0 and n503 == 0 else 1)
PY
    stop "$server"
}

status=0
for target in ${TARGETS:-sipbus kamailio}; do run "$target"; done
exit $status
