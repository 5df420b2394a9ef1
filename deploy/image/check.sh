#!/usr/bin/env bash
# Builds the runtime stage of the Dockerfile with a prebuilt binary and
# checks the image, on a machine that can reach Debian's mirror but no
# container registry (CI):
#
#   1. debian:bookworm-slim is made locally: debootstrap --variant=minbase
#      from the mirror apt uses, imported with podman import (the tarball
#      is kept in target/image-cache/ for a week, so reruns skip this);
#   2. podman builds --target runtime with --build-arg BINARY_FROM=prebuilt
#      and --pull=never (vfs storage, chroot isolation), from a context
#      holding the Dockerfile, .dockerignore and the stripped binary; the
#      Rust build stage must not run;
#   3. the image's config is inspected (USER 10001:10001, entrypoint,
#      ports) and its filesystem exported: /usr/local/bin/sipbus is the
#      only sipbus file and equals the binary built, the CA roots are
#      there, the sipbus user cannot write the binary or /etc/sipbus, PATH
#      finds sipbus;
#   4. in that filesystem, as uid/gid 10001 (chroot --userspec): sipbus
#      --help, --check-config, --check-config --target sip-edge with a
#      split config in /etc/sipbus (plus SIPBUS_BUS__* variables), a bad
#      config rejected with status 2, and an all-in-one start on loopback
#      that reaches "ready", finds the system CA roots and stops on SIGTERM.
#
# Runs as root (apt-get, debootstrap, chroot); installs podman, debootstrap
# and binutils when missing. Everything (podman's storage included) lives
# in one temporary directory removed on exit; nothing is left in
# /var/lib/containers.
#
#   deploy/image/check.sh                     # binary: target/debug/sipbus
#   SIPBUS_BIN=target/release/sipbus deploy/image/check.sh
#
# Environment: SIPBUS_BIN (binary to put in the image), SIPBUS_DEBIAN_MIRROR
# (default: the bookworm mirror in /etc/apt/sources.list*),
# SIPBUS_IMAGE_CACHE (base tarball cache directory, default
# target/image-cache; empty: no cache), SIPBUS_IMAGE_KEEP=1 (keep the
# temporary directory for inspection).
set -euo pipefail
# SIPBUS_BIN is relative to the caller's directory; the rest to the repository.
if [ -n "${SIPBUS_BIN:-}" ] && [ "${SIPBUS_BIN#/}" = "$SIPBUS_BIN" ]; then SIPBUS_BIN="$PWD/$SIPBUS_BIN"; fi
cd "$(dirname "$0")/../.."

say() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] FAILED: %s\n' "$*" >&2; exit 1; }

start_all=$EPOCHREALTIME
timings=()
step_start=
step() {
    step_end
    step_name=$1
    step_start=$EPOCHREALTIME
    say "$step_name"
}
step_end() {
    if [ -n "$step_start" ]; then
        timings+=("$(printf '%7.1fs  %s' "$(elapsed "$step_start")" "$step_name")")
        step_start=
    fi
}
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, debootstrap, chroot and podman's storage need it)"
[ -r /etc/debian_version ] || die "needs Debian (apt-get, debootstrap)"

bin=${SIPBUS_BIN:-target/debug/sipbus}
{ [ -f "$bin" ] && [ -x "$bin" ]; } || die "SIPBUS_BIN=$bin: no such executable; build it first (cargo build -p sipbus) or set SIPBUS_BIN"
[ "$(head -c4 "$bin" | od -An -c | tr -d ' ')" = '177ELF' ] || die "SIPBUS_BIN=$bin is not an ELF binary"

# --- prerequisites ----------------------------------------------------------
step "prerequisites"
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v objcopy >/dev/null 2>&1 || missing+=(binutils)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
say "$(podman --version)"

# --- scratch space, removed on exit -----------------------------------------
work=$(mktemp -d "${TMPDIR:-/var/tmp}/sipbus-image.XXXXXX")
server_pid=
passed=0
# podman (4.3) keeps a blob cache in /var/lib/containers/cache whatever
# --root says; removed on exit unless it was there before.
had_var_lib_containers=0
[ -e /var/lib/containers ] && had_var_lib_containers=1
cleanup() {
    local status=$?
    set +e
    if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
    # Anything mounted below $work (deepest first), then the files.
    awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    if [ "$had_var_lib_containers" = 0 ] && [ -d /var/lib/containers ] \
        && [ -z "$(find /var/lib/containers -mindepth 1 ! -path /var/lib/containers/cache ! -path '/var/lib/containers/cache/blob-info-cache-v1.boltdb*' -print -quit)" ]; then
        rm -rf /var/lib/containers
    fi
    step_start=$EPOCHREALTIME step_name=cleanup
    if [ "${SIPBUS_IMAGE_KEEP:-}" = 1 ]; then
        say "kept $work (podman --root $work/storage --runroot $work/run --storage-driver vfs ...)"
    else
        rm -rf --one-file-system "$work"
    fi
    step_end
    if [ "$status" -eq 0 ] && [ "$passed" = 1 ]; then
        say "image checks passed in $(elapsed "$start_all")s (cleanup included):"
        printf '[image] %s\n' "${timings[@]}" >&2
    else
        say "failed after $(elapsed "$start_all")s"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$work/tmp"
# podman and buildah put big temporary files in $TMPDIR (default /var/tmp).
export TMPDIR="$work/tmp"
pm() {
    podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/libpod" \
        --storage-driver vfs --events-backend none --cgroup-manager cgroupfs "$@"
}

# --- the base image: debian:bookworm-slim from debootstrap -------------------
# The first URI apt uses for a suite ($1), from deb822 .sources files and
# one-line .list files; disabled entries and files are skipped.
apt_uri() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0; deb = 0; off = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^[ \t]*#/) continue
                    split($i, kv, ":[ \t]*")
                    key = tolower(kv[1]); val = substr($i, length(kv[1]) + 2); sub(/^[ \t]+/, "", val)
                    n = split(val, w, /[ \t]+/)
                    if (key == "uris") uri = w[1]
                    if (key == "types") for (j = 1; j <= n; j++) if (w[j] == "deb") deb = 1
                    if (key == "suites") for (j = 1; j <= n; j++) if (w[j] == suite) ok = 1
                    if (key == "enabled" && tolower(w[1]) == "no") off = 1
                }
                if (uri != "" && ok && deb && !off) { print uri; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$suite" '$1 == "deb" {
                line = $0; sub(/^deb[ \t]+(\[[^\]]*\][ \t]+)?/, "", line); split(line, w, /[ \t]+/)
                if (w[2] == suite) { print w[1]; exit }
            }' "$f"
    done
}
mirror=${SIPBUS_DEBIAN_MIRROR:-$(apt_uri bookworm | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
security=$(apt_uri bookworm-security | head -n1)
security=${security:-http://deb.debian.org/debian-security}
security=${security%/}

cache=${SIPBUS_IMAGE_CACHE-target/image-cache}
if [ -n "$cache" ] && [ "$cache" = target/image-cache ] && [ ! -d target ]; then cache=; fi
tarball=
if [ -n "$cache" ]; then
    mkdir -p "$cache"
    tarball="$cache/debian-bookworm-minbase.tar"
    # A week old at most: the runtime stage's apt-get must match the mirror.
    if [ -f "$tarball" ] && [ -n "$(find "$tarball" -mtime +6)" ]; then rm -f "$tarball"; fi
fi
if [ -n "$tarball" ] && [ -s "$tarball" ]; then
    step "base image: cached $tarball"
else
    step "base image: debootstrap --variant=minbase bookworm $mirror"
    command -v debootstrap >/dev/null || die "debootstrap missing"
    base="$work/base"
    timeout 900 debootstrap --variant=minbase bookworm "$base" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        die "debootstrap from $mirror failed (log above; set SIPBUS_DEBIAN_MIRROR to another mirror)"
    }
    # Like the official image: apt sources in deb822 form (release, updates,
    # security), no package cache or lists, no man pages or locales, no
    # host name or resolver of the machine that made it.
    rm -f "$base/etc/apt/sources.list"
    cat >"$base/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$base"/var/cache/apt/archives/*.deb "$base"/var/cache/apt/*.bin "$base"/var/lib/apt/lists/* \
        "$base"/usr/share/man/* "$base"/usr/share/info/* "$base"/usr/share/locale/* \
        "$base"/var/log/*.log "$base"/var/log/apt/* "$base/etc/hostname"
    find "$base/usr/share/doc" -mindepth 2 ! -type d ! -name copyright -delete
    : >"$base/etc/resolv.conf"
    out="${tarball:-$work/base.tar}"
    tar --numeric-owner -C "$base" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$out.part" . || die "packing the debootstrap tree failed"
    mv "$out.part" "$out"
    tarball=$out
    rm -rf --one-file-system "$base"
fi
step "base image: podman import as docker.io/library/debian:bookworm-slim"
# The official image's config: PATH (Kubernetes' `command: [sipbus]` needs
# it) and CMD.
pm import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$tarball" docker.io/library/debian:bookworm-slim >/dev/null \
    || die "podman import of $tarball failed"

# --- build the runtime stage -----------------------------------------------
step "build context: objcopy --strip-debug $bin"
ctx="$work/context"
mkdir -p "$ctx/target/image"
cp Dockerfile .dockerignore "$ctx/"
objcopy --strip-debug "$bin" "$ctx/target/image/sipbus" || die "objcopy --strip-debug $bin failed"
say "binary: $(du -h "$ctx/target/image/sipbus" | cut -f1) stripped (from $(du -h "$bin" | cut -f1))"

step "podman build --target runtime --build-arg BINARY_FROM=prebuilt"
# --squash-all: one layer, so vfs copies the tree once or twice instead of
# once per instruction (podman 4.3's --layers=false and --squash fail after
# tagging a multi-stage build: "identifier is not an image").
image=localhost/sipbus:check
timeout 1200 podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/libpod" \
    --storage-driver vfs --events-backend none --cgroup-manager cgroupfs \
    build --isolation=chroot --pull=never --squash-all \
    --build-arg BINARY_FROM=prebuilt --target runtime -t "$image" "$ctx" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    die "podman build failed (log above)"
}
if grep -E '^\[[0-9]+/[0-9]+\] STEP [0-9]+/[0-9]+: FROM .* AS build$' "$work/build.log" >/dev/null; then
    die "the Rust build stage ran although BINARY_FROM=prebuilt"
fi

# --- the image's configuration ------------------------------------------
step "image configuration"
inspect() { pm image inspect --format "$1" "$image"; }
user=$(inspect '{{.Config.User}}')
[ "$user" = 10001:10001 ] || die "image user is '$user', want 10001:10001 (non-root)"
entrypoint=$(inspect '{{json .Config.Entrypoint}}')
[ "$entrypoint" = '["/usr/local/bin/sipbus"]' ] || die "entrypoint is $entrypoint, want [\"/usr/local/bin/sipbus\"]"
# shellcheck disable=SC2016 # a Go template, not shell
ports=$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' | xargs -n1 | sort | xargs)
want_ports=$(printf '%s\n' 5060/udp 5060/tcp 5061/tcp 8443/tcp 50051/tcp 9090/tcp | sort | xargs)
[ "$ports" = "$want_ports" ] || die "exposed ports are '$ports', want '$want_ports'"
image_path=$(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed -n 's/^PATH=//p')
[[ ":$image_path:" == *:/usr/local/bin:* ]] || die "the image's PATH ('$image_path') lacks /usr/local/bin"
say "user $user, entrypoint $entrypoint, ports $ports, size $(inspect '{{.Size}}' | awk '{ printf "%.0f MB", $1 / 1e6 }')"

# --- the image's filesystem -----------------------------------------------
step "podman create + export"
rootfs="$work/rootfs"
mkdir -p "$rootfs"
cid=$(pm create --network none "$image")
pm export "$cid" | tar -C "$rootfs" --numeric-owner -xf - || die "podman export failed"
pm rm "$cid" >/dev/null

step "filesystem checks"
found=$(cd "$rootfs" && find . -xdev -iname '*sipbus*' | sed 's|^\.||' | sort | tr '\n' ' ')
[ "$found" = "/etc/sipbus /usr/local/bin/sipbus " ] \
    || die "files named sipbus: '$found', want only /etc/sipbus (config directory) and /usr/local/bin/sipbus"
for p in /out /src /usr/local/cargo /target; do
    [ ! -e "$rootfs$p" ] || die "$p is in the image (build leftovers)"
done
cmp -s "$ctx/target/image/sipbus" "$rootfs/usr/local/bin/sipbus" || die "/usr/local/bin/sipbus is not the binary given ($bin)"
[ "$(stat -c '%u:%g %a' "$rootfs/usr/local/bin/sipbus")" = "0:0 755" ] \
    || die "/usr/local/bin/sipbus is $(stat -c '%u:%g %a' "$rootfs/usr/local/bin/sipbus"), want root-owned 755"
[ "$(stat -c '%u:%g %a' "$rootfs/etc/sipbus")" = "0:0 755" ] \
    || die "/etc/sipbus is $(stat -c '%u:%g %a' "$rootfs/etc/sipbus"), want root-owned 755"
grep -q '^sipbus:x:10001:10001:' "$rootfs/etc/passwd" || die "no sipbus user with uid/gid 10001 in /etc/passwd"
grep -q '^sipbus:x:10001:' "$rootfs/etc/group" || die "no sipbus group with gid 10001 in /etc/group"
bundle="$rootfs/etc/ssl/certs/ca-certificates.crt"
[ -s "$bundle" ] || die "no CA roots: /etc/ssl/certs/ca-certificates.crt is missing (ca-certificates)"
ncerts=$(grep -c 'BEGIN CERTIFICATE' "$bundle")
[ "$ncerts" -ge 100 ] || die "only $ncerts CA certificates in /etc/ssl/certs/ca-certificates.crt"
say "only /usr/local/bin/sipbus and /etc/sipbus (root, 755); $ncerts CA roots"

# --- sipbus in the exported filesystem, as uid/gid 10001 ----------------
step "sipbus in the image, as 10001:10001"
# sipbus needs no /proc, /dev or /sys: nothing is mounted. Only the
# variables given here reach it (env -i), never the caller's SIPBUS_*.
chroot=$(command -v chroot) || die "chroot (coreutils) missing"
as_sipbus() {
    local vars=()
    while [ $# -gt 0 ] && [[ $1 == *=* ]]; do vars+=("$1"); shift; done
    env -i PATH="$image_path" HOME=/nonexistent "${vars[@]}" \
        "$chroot" --userspec=10001:10001 "$rootfs" "$@"
}
run_check() { # description, expected status, then as_sipbus arguments
    local what=$1 want=$2 status=0
    shift 2
    as_sipbus "$@" >"$work/out" 2>&1 || status=$?
    if [ "$status" -ne "$want" ]; then
        cat "$work/out" >&2
        die "$what: exit status $status, want $want (output above)"
    fi
    say "ok: $what"
}
for p in /usr/local/bin/sipbus /etc/sipbus; do
    # shellcheck disable=SC2016 # $1 is expanded by the shell in the image
    w=$(as_sipbus /bin/sh -c 'if test -w "$1"; then echo writable; else echo read-only; fi' sh "$p" 2>&1) || true
    [ "$w" = read-only ] || die "uid 10001 and $p: want read-only, got: $w"
done
say "ok: uid 10001 cannot write /usr/local/bin/sipbus or /etc/sipbus"

run_check "sipbus --help" 0 /usr/local/bin/sipbus --help
grep -q '^Usage: sipbus' "$work/out" || { cat "$work/out" >&2; die "sipbus --help printed no usage"; }
# By name, through the image's PATH, as Kubernetes' `command: [sipbus]` does.
run_check "sipbus --version: $(as_sipbus sipbus --version 2>&1)" 0 sipbus --version
run_check "sipbus --check-config (all-in-one defaults)" 0 /usr/local/bin/sipbus --check-config

# A split sip-edge: config file in /etc/sipbus (readable by the sipbus
# group only, like a Kubernetes Secret with fsGroup), services from the
# file and from SIPBUS_BUS__* variables.
install -m 0640 -o 0 -g 10001 /dev/stdin "$rootfs/etc/sipbus/sipbus.toml" <<'EOF'
[edge]
instance = "edge-0"
listen = ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]

[bus]
registrar = ["dns://registrar-svc.sipbus.svc.cluster.local:50051"]
EOF
run_check "sipbus --config /etc/sipbus/sipbus.toml --check-config --target sip-edge" 0 \
    SIPBUS_BUS__SESSION='["dns://session-svc.sipbus.svc.cluster.local:50051"]' \
    SIPBUS_BUS__PUBSUB='["dns://pubsub-svc.sipbus.svc.cluster.local:50051"]' \
    /usr/local/bin/sipbus --config /etc/sipbus/sipbus.toml --check-config --target sip-edge
run_check "a sip-edge without [bus] services is rejected (status 2)" 2 \
    /usr/local/bin/sipbus --check-config --target sip-edge
grep -q 'bus\.' "$work/out" || { cat "$work/out" >&2; die "the rejection does not name the bus.* keys"; }

# Start all-in-one on loopback ports the kernel picks, wait for "ready",
# stop with SIGTERM (drained for 1 s). The edge loads the system CA roots
# when it starts.
step "sipbus starts and stops in the image, as 10001:10001"
# A simple command, not a function: $! is the pid that ends up as sipbus
# (env and chroot exec).
env -i PATH="$image_path" HOME=/nonexistent \
    SIPBUS_EDGE__LISTEN='["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]' SIPBUS_GRPC__LISTEN=127.0.0.1:0 \
    SIPBUS_SHUTDOWN__DRAIN_S=1 \
    "$chroot" --userspec=10001:10001 "$rootfs" /usr/local/bin/sipbus >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    grep -q 'ready transport=TCP' "$work/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
grep -q 'ready transport=TCP' "$work/server.log" || { cat "$work/server.log" >&2; die "sipbus did not get ready within 10 s (log above)"; }
kill -TERM "$server_pid"
status=0
timeout 10 tail --pid="$server_pid" -f /dev/null || { cat "$work/server.log" >&2; die "sipbus did not stop within 10 s of SIGTERM"; }
wait "$server_pid" || status=$?
server_pid=
[ "$status" -eq 0 ] || { cat "$work/server.log" >&2; die "sipbus exited with status $status on SIGTERM (log above)"; }
grep -q 'SIGTERM: draining' "$work/server.log" || { cat "$work/server.log" >&2; die "sipbus did not drain on SIGTERM"; }
if grep -E 'no system CA certificates|system CA certificate unreadable' "$work/server.log" >&2; then
    die "sipbus found no system CA roots in the image"
fi
if grep -E ' (ERROR|WARN) ' "$work/server.log" >&2; then die "sipbus logged warnings or errors (above)"; fi
say "ok: ready on loopback, CA roots loaded, drained and exited cleanly on SIGTERM"
step_end
passed=1
