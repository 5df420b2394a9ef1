# Shared by the bench scripts (sourced, not run).

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

# sipp_counts STAT_CSV: prints "successful failed" from SIPp's last
# statistics line.
sipp_counts() {
    python3 - "$1" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
h, last = rows[0], [r for r in rows[1:] if r][-1]
print(last[h.index('SuccessfulCall(C)')], last[h.index('FailedCall(C)')])
PY
}

# cpu_ticks PID...: CPU time (user + system, clock ticks) used so far by
# these processes and every process they started (Kamailio's children).
cpu_ticks() {
    python3 - "$@" <<'PY'
import os, sys
def children(pid):
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task")
                for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError:
        return []
todo, seen, total = [int(p) for p in sys.argv[1:]], set(), 0
while todo:
    pid = todo.pop()
    if pid in seen:
        continue
    seen.add(pid)
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    total += int(fields[11]) + int(fields[12])
    todo += children(pid)
print(total)
PY
}
