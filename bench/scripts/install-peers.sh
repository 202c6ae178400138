#!/usr/bin/env bash
# Installs and builds the benchmark peers, each from its own registry, into
# bench/ (every output gitignored). Idempotent: a step whose output is
# present and current is skipped.
#
#   bench/scripts/install-peers.sh [PEER...]     (default: all)
#
# PEER: grpc-go  grpc-c++  grpcio  grpc-js  refs (nghttpd, h2load, iperf3)  ghz
# (ours, tonic and the raw h2 reference are cargo binaries: `cargo build
# --release -p bench`.) Needs go, node/npm, python3; apt-get (as root) for
# Debian's packages.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$BENCH/.build"
TOOLS="$BENCH/.tools/bin"
GHZ_VERSION="${GHZ_VERSION:-v0.93.0}"
mkdir -p "$BUILD" "$TOOLS"
log() { printf '[bench-install] %s\n' "$*" >&2; }

apt_updated=0
need_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Newer-than test: true if $1 is missing or any later path is newer.
stale() {
  local out="$1"; shift
  [ -e "$out" ] || return 0
  [ -n "$(find "$@" -newer "$out" 2>/dev/null | head -n1)" ]
}

install_go() {
  command -v go >/dev/null || { log "go not found: grpc-go peer skipped"; return 1; }
  if [ ! -f "$BENCH/go/pb/echo/echo_grpc.pb.go" ]; then
    need_apt protobuf-compiler
    GOBIN="$TOOLS" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
    GOBIN="$TOOLS" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
    (cd "$BENCH/go" && PATH="$TOOLS:$PATH" protoc -I ../proto --go_out=. --go_opt=module=grpc-core/bench/go \
      --go-grpc_out=. --go-grpc_opt=module=grpc-core/bench/go ../proto/helloworld.proto ../proto/echo.proto)
  fi
  log "grpc-go: go build"
  (cd "$BENCH/go" && GOFLAGS=-buildvcs=false go build -o "$BUILD/go-server" .)
}

install_cpp() {
  need_apt g++ pkg-config libgrpc++-dev protobuf-compiler-grpc protobuf-compiler
  log "grpc-c++: build"
  "$BENCH/cpp/build.sh" "$BUILD/cpp-server"
}

install_python() {
  local venv="$BENCH/.venv" req="$BENCH/python/requirements.txt"
  if [ ! -x "$venv/bin/python" ]; then
    log "grpcio: python3 -m venv bench/.venv"
    python3 -m venv "$venv" || { need_apt python3-venv; python3 -m venv "$venv"; }
  fi
  if stale "$venv/.installed" "$req"; then
    log "grpcio: pip install -r python/requirements.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    touch "$venv/.installed"
  fi
  if stale "$BUILD/py/echo_pb2_grpc.py" "$BENCH/proto" "$venv/.installed"; then
    mkdir -p "$BUILD/py"
    "$venv/bin/python" -m grpc_tools.protoc -I "$BENCH/proto" --python_out="$BUILD/py" \
      --grpc_python_out="$BUILD/py" "$BENCH/proto/helloworld.proto" "$BENCH/proto/echo.proto"
  fi
}

install_node() {
  command -v npm >/dev/null || { log "npm not found: grpc-js peer skipped"; return 1; }
  if stale "$BENCH/node/node_modules/.package-lock.json" "$BENCH/node/package-lock.json"; then
    log "grpc-js: npm ci"
    (cd "$BENCH/node" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

install_refs() {
  need_apt nghttp2-server nghttp2-client iperf3
}

install_ghz() {
  command -v go >/dev/null || { log "go not found: ghz skipped"; return 1; }
  if ! go version -m "$TOOLS/ghz" 2>/dev/null | grep -q "github.com/bojand/ghz[[:space:]]*$GHZ_VERSION"; then
    log "ghz: go install github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
    GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
  fi
}

peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(grpc-go grpc-c++ grpcio grpc-js refs ghz)
status=0
for p in "${peers[@]}"; do
  case "$p" in
    grpc-go) install_go || status=1 ;;
    grpc-c++) install_cpp || status=1 ;;
    grpcio) install_python || status=1 ;;
    grpc-js) install_node || status=1 ;;
    refs) install_refs || status=1 ;;
    ghz) install_ghz || status=1 ;;
    *) log "unknown peer $p"; status=1 ;;
  esac
done
# A peer that could not be installed is skipped by run.py; say so, go on.
[ "$status" = 0 ] || log "some peers could not be installed (see above); run.py skips them"
exit 0
