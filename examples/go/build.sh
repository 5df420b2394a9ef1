#!/usr/bin/env bash
# Builds the Go example offline, from Debian packages only.
#
# There is no Go module proxy to download from, so this uses GOPATH mode
# (GO111MODULE=off): Debian's golang-*-dev packages put their sources in
# /usr/share/gocode, and the stubs generated here go to a private GOPATH,
# .gopath/, placed in front of it. No go.mod, no network.
#
#   ./build.sh          install missing packages, generate stubs, build bin/route-tag
#   ./build.sh test     the same, then run the smoke test (go test)
#   ./build.sh clean    remove .gopath/ and bin/
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
gopath="$here/.gopath"
gen_prefix="sipbus.example/gen"

if [[ "${1:-}" == clean ]]; then
  rm -rf "$gopath" "$here/bin"
  exit 0
fi

# golang-github-golang-protobuf-1-5-dev is named on purpose: grpc-dev also
# accepts the 1.3 line, whose codec cannot marshal the messages that
# protoc-gen-go 1.28 generates. The two conflict; apt swaps them.
packages=(
  golang-go
  golang-google-grpc-dev
  golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev
  protoc-gen-go
  protoc-gen-go-grpc
  protobuf-compiler
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "build.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "build.sh: missing Debian packages: ${missing[*]}" >&2
    echo "build.sh: run as root:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

# Debian's own toolchain and plugins, even if others are earlier on PATH.
export PATH="/usr/lib/go/bin:$PATH"
export GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= GOTOOLCHAIN=local

# The .proto files carry no `option go_package`: M mappings give each one
# its Go import path (and package name) inside the private GOPATH.
protos=(
  "sipbus/edge/v1/edge.proto=$gen_prefix/edgev1"
  "sipbus/session/v1/supplement.proto=$gen_prefix/sessionv1"
  "sipbus/extension/v1/registry.proto=$gen_prefix/extensionv1"
)
args=()
files=()
for m in "${protos[@]}"; do
  args+=("--go_opt=M$m" "--go-grpc_opt=M$m")
  files+=("${m%%=*}")
done

# Regenerate from scratch every time: cheap, and never stale.
rm -rf "$gopath/src/$gen_prefix"
mkdir -p "$gopath/src"
protoc -I "$proto_root" \
  --plugin=protoc-gen-go=/usr/bin/protoc-gen-go \
  --plugin=protoc-gen-go-grpc=/usr/bin/protoc-gen-go-grpc \
  --go_out="$gopath/src" --go-grpc_out="$gopath/src" \
  "${args[@]}" "${files[@]}"

cd "$here"
mkdir -p bin
go build -o bin/route-tag .
echo "build.sh: built $here/bin/route-tag" >&2

if [[ "${1:-}" == test ]]; then
  ROUTE_TAG_BIN="$here/bin/route-tag" go test -count=1 -v .
fi
