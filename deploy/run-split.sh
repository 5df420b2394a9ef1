#!/usr/bin/env bash
# Runs sipbus split locally, as it runs on Kubernetes: Redis, one sip-edge,
# two registrar-svc, two session-svc, two sdp-svc, two pubsub-svc and one
# publish-svc replica, each its own process, gRPC between them.
#
#   deploy/run-split.sh          start everything, wait; Ctrl-C stops it all
#   deploy/run-split.sh stop     stop what a previous run left (by pid)
#
# Ports (loopback): SIP 5060 (UDP+TCP), Redis 6390, edge API 50060,
# registrar-svc 50061-50062, session-svc 50071-50072, sdp-svc 50081-50082,
# pubsub-svc 50091-50092, publish-svc 50101 (also the API of `sipbus mwi`).
# Logs and pids go to deploy/local/run/.
set -euo pipefail
cd "$(dirname "$0")/.."
run=deploy/local/run
mkdir -p "$run"

stop() {
    for f in "$run"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
        rm -f "$f"
    done
}

if [ "${1:-}" = "stop" ]; then
    stop
    exit 0
fi
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server" >&2; exit 2; }
stop
trap 'stop; exit 0' INT TERM
trap stop EXIT

cargo build --release -p sipbus
bin=target/release/sipbus
config=deploy/local/split.toml

wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1; see $run/*.log" >&2; exit 1; }

redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly yes --dir "$run" >"$run/redis.log" 2>&1 &
echo $! >"$run/redis.pid"
wait_port 6390

for i in 1 2; do
    SIPBUS_STORE__REDIS=redis://127.0.0.1:6390/ SIPBUS_GRPC__LISTEN="127.0.0.1:5006$i" \
        "$bin" --config "$config" --target registrar-svc >"$run/registrar-$i.log" 2>&1 &
    echo $! >"$run/registrar-$i.pid"
    wait_port "5006$i"
done

for i in 1 2; do
    SIPBUS_STORE__REDIS=redis://127.0.0.1:6390/ SIPBUS_GRPC__LISTEN="127.0.0.1:5008$i" \
        "$bin" --config "$config" --target sdp-svc >"$run/sdp-$i.log" 2>&1 &
    echo $! >"$run/sdp-$i.pid"
    wait_port "5008$i"
done

for i in 1 2; do
    SIPBUS_STORE__REDIS=redis://127.0.0.1:6390/ SIPBUS_GRPC__LISTEN="127.0.0.1:5007$i" \
        SIPBUS_BUS__EDGES='{ edge1 = "http://127.0.0.1:50060" }' \
        SIPBUS_BUS__REGISTRAR='["http://127.0.0.1:50061", "http://127.0.0.1:50062"]' \
        SIPBUS_BUS__SDP='["http://127.0.0.1:50081", "http://127.0.0.1:50082"]' \
        "$bin" --config "$config" --target session-svc >"$run/session-$i.log" 2>&1 &
    echo $! >"$run/session-$i.pid"
    wait_port "5007$i"
done

for i in 1 2; do
    SIPBUS_STORE__REDIS=redis://127.0.0.1:6390/ SIPBUS_GRPC__LISTEN="127.0.0.1:5009$i" \
        SIPBUS_BUS__EDGES='{ edge1 = "http://127.0.0.1:50060" }' \
        SIPBUS_BUS__REGISTRAR='["http://127.0.0.1:50061", "http://127.0.0.1:50062"]' \
        "$bin" --config "$config" --target pubsub-svc >"$run/pubsub-$i.log" 2>&1 &
    echo $! >"$run/pubsub-$i.pid"
    wait_port "5009$i"
done

SIPBUS_STORE__REDIS=redis://127.0.0.1:6390/ SIPBUS_GRPC__LISTEN=127.0.0.1:50101 \
    "$bin" --config "$config" --target publish-svc >"$run/publish.log" 2>&1 &
echo $! >"$run/publish.pid"
wait_port 50101

SIPBUS_EDGE__LISTEN='["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]' SIPBUS_EDGE__INSTANCE=edge1 \
    SIPBUS_GRPC__LISTEN=127.0.0.1:50060 \
    SIPBUS_BUS__REGISTRAR='["http://127.0.0.1:50061", "http://127.0.0.1:50062"]' \
    SIPBUS_BUS__SESSION='["http://127.0.0.1:50071", "http://127.0.0.1:50072"]' \
    SIPBUS_BUS__PUBSUB='["http://127.0.0.1:50091", "http://127.0.0.1:50092"]' \
    SIPBUS_BUS__PUBLISH='["http://127.0.0.1:50101"]' \
    "$bin" --config "$config" --target sip-edge >"$run/edge.log" 2>&1 &
echo $! >"$run/edge.pid"
wait_port 5060

cat <<MSG
sipbus split is up: SIP on 127.0.0.1:5060, registrar-svc on :50061-2, session-svc on :50071-2,
sdp-svc on :50081-2, pubsub-svc on :50091-2, publish-svc on :50101, Redis on :6390.
Register two phones as alice@localhost (password alice-secret) and bob@localhost (bob-secret)
and call one from the other (both authenticate with their registration credentials).
Kill a registrar or a session-svc (kill \$(cat $run/session-1.pid)) and calls go on through the other.
Phones see each other's presence and busy lamps; set a mailbox with
  $bin mwi set alice --new 2 --server http://127.0.0.1:50101
Extensions register with the service of their point (examples/ has some in Python, Node, Go):
  SIPBUS_REGISTRY=http://127.0.0.1:50071 examples/go/bin/route-tag
  $bin extensions --server http://127.0.0.1:50071
Logs: $run/*.log. Ctrl-C stops everything.
MSG
wait
