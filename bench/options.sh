#!/usr/bin/env bash
# OPTIONS/s that SIPp sustains against the sipbus edge with zero failures.
#
# Builds the release binary, starts it on a loopback port, and runs SIPp
# (one OPTIONS + 200 per "call") at rising rates for a fixed number of
# seconds each. For each rate it prints what SIPp achieved and the
# failures; the result is the highest rate with none. Both run on this
# machine's cores, so the figure bounds the pair, not sipbus alone.
#
#   bench/options.sh [udp|tcp] [seconds-per-step]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
transport="${1:-udp}"
secs="${2:-5}"
case "$transport" in udp) t=u1 ;; tcp) t=t1 ;; *) echo "usage: $0 [udp|tcp] [seconds]" >&2; exit 2 ;; esac
command -v sipp >/dev/null || { echo "SIPp missing: apt-get install sip-tester" >&2; exit 2; }

cargo build --release -p sipbus >&2
port=$(free_port)
scratch
SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\", \"tcp:127.0.0.1:$port\"]" SIPBUS_LOG__LEVEL=warn SIPBUS_EDGE__OVERLOAD__MAX_TRANSACTIONS=${MAX_TX:-500000} \
    target/release/sipbus >"$work/sipbus.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_port "$port"

best=0
printf '%-10s %-10s %-12s %-8s %s\n' rate calls achieved/s failed rss_kib
for rate in 2000 5000 10000 15000 20000 25000 30000 40000; do
    calls=$((rate * secs))
    start=$(date +%s.%N)
    timeout --signal=KILL $((secs * 4 + 20)) sipp "127.0.0.1:$port" -sf tests/scenarios/options.xml -t "$t" -i 127.0.0.1 \
        -m "$calls" -r "$rate" -l 20000 -timeout $((secs * 4 + 10))s -recv_timeout 4000 -nostdin \
        -trace_stat -stf "$work/stat.csv" >/dev/null 2>&1 || true
    end=$(date +%s.%N)
    read -r ok failed < <(sipp_counts "$work/stat.csv")
    rm -f "$work/stat.csv"
    achieved=$(python3 -c "print(int($ok / ($end - $start)))")
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    printf '%-10s %-10s %-12s %-8s %s\n' "$rate" "$calls" "$achieved" "$failed" "$rss"
    if [ "$failed" -ne 0 ] || [ "$ok" -ne "$calls" ]; then break; fi
    if [ "$achieved" -gt "$best" ]; then best=$achieved; fi
done
echo "sustained with zero failures over $transport: $best OPTIONS/s"
