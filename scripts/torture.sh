#!/usr/bin/env bash
# The published torture messages (RFC 4475, RFC 5118) against the binary:
# sipbus all-in-one with its defaults on a loopback port, judged by the
# checker that ships with the corpus. The corpus is not part of this
# repository; it is looked for in $CONFORMANCE_DIR (not SIPBUS_*: sipbus
# reads those as configuration), else in
# ../shared/conformance next to the checkout. Without it this says so and
# succeeds (nothing to check against).
#
#   scripts/torture.sh [BINARY]      default: target/debug/sipbus
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CONFORMANCE_DIR:-../shared/conformance}
if [ ! -f "$dir/torture_check.py" ]; then
    echo "torture: no corpus at $dir (set CONFORMANCE_DIR): skipped"
    exit 0
fi
bin=${1:-target/debug/sipbus}
port=${TORTURE_PORT:-15060}
log=$(mktemp /tmp/sipbus-torture.XXXXXX.log)
SIPBUS_EDGE__LISTEN="[\"udp:127.0.0.1:$port\", \"tcp:127.0.0.1:$port\"]" \
    SIPBUS_SHUTDOWN__DRAIN_S=0 "$bin" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { echo "torture: sipbus did not start; see $log" >&2; exit 1; }
    sleep 0.1
done
# The checker must find its own corpus next to it.
if python3 "$dir/torture_check.py" 127.0.0.1 "$port"; then
    rm -f "$log"
else
    echo "torture: failures above; sipbus log: $log" >&2
    exit 1
fi
