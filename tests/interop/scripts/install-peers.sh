#!/usr/bin/env bash
# Installs the reference gRPC interop peers used by run-matrix.sh into
# <repo>/.peers (gitignored). Idempotent: every step is skipped when its
# output is already present and up to date.
#
#   .peers/go/bin/{server,client}   grpc-go interop server/client (go install)
#   .peers/java/lib/*.jar           io.grpc:grpc-interop-testing + runtime deps
#                                   (main classes io.grpc.testing.integration.
#                                   TestServiceServer / TestServiceClient)
#   .peers/certs/{ca.pem,server1.pem,server1.key}
#                                   standard interop test certs (test CA; the
#                                   server cert is valid for *.test.google.fr,
#                                   so clients use foo.test.google.fr as the
#                                   TLS host override)
#
# Needs: go, java (>= 11), mvn. Network: Go module proxy and Maven Central only.
#
# Env overrides:
#   GRPC_GO_VERSION    (default v1.83.1)
#   GRPC_JAVA_VERSION  (default 1.79.0; grpc-interop-testing is not published
#                       on Maven Central after 1.79.0)
#   PEERS_DIR          (default <repo>/.peers)
#   FORCE=1            reinstall everything
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../../.." && pwd)"
PEERS_DIR="${PEERS_DIR:-$REPO_ROOT/.peers}"
GRPC_GO_VERSION="${GRPC_GO_VERSION:-v1.83.1}"
GRPC_JAVA_VERSION="${GRPC_JAVA_VERSION:-1.79.0}"
FORCE="${FORCE:-0}"

GO_BIN_DIR="$PEERS_DIR/go/bin"
JAVA_DIR="$PEERS_DIR/java"
JAVA_LIB="$JAVA_DIR/lib"
CERTS_DIR="$PEERS_DIR/certs"

log() { printf '[install-peers] %s\n' "$*" >&2; }
die() { printf '[install-peers] ERROR: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found in PATH"; }
need go
need java
need mvn

mkdir -p "$GO_BIN_DIR" "$JAVA_DIR" "$CERTS_DIR"

# ---------------------------------------------------------------- grpc-go ----
# Returns 0 if binary $1 was built from google.golang.org/grpc at $GRPC_GO_VERSION.
go_bin_ok() {
  local bin="$1"
  [ -x "$bin" ] || return 1
  go version -m "$bin" 2>/dev/null |
    awk -v v="$GRPC_GO_VERSION" '$1=="mod" && $2=="google.golang.org/grpc" && $3==v {ok=1} END {exit !ok}'
}

if [ "$FORCE" != 1 ] && go_bin_ok "$GO_BIN_DIR/server" && go_bin_ok "$GO_BIN_DIR/client"; then
  log "grpc-go interop server/client $GRPC_GO_VERSION already installed"
else
  log "installing grpc-go interop server/client $GRPC_GO_VERSION (go install; takes a few minutes on a cold cache)"
  # Both packages are in the same module at the same version, so one
  # 'go install' builds them together. GOBIN keeps the generic names
  # 'server'/'client' out of $GOPATH/bin.
  GOBIN="$GO_BIN_DIR" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install \
    "google.golang.org/grpc/interop/server@$GRPC_GO_VERSION" \
    "google.golang.org/grpc/interop/client@$GRPC_GO_VERSION"
  go_bin_ok "$GO_BIN_DIR/server" && go_bin_ok "$GO_BIN_DIR/client" ||
    die "go install finished but $GO_BIN_DIR/{server,client} are missing or of the wrong version"
fi

# -------------------------------------------------------------- grpc-java ----
JAVA_STAMP="$JAVA_DIR/.installed"
POM="$SCRIPT_DIR/java/pom.xml"
# The stamp records the version and the pom's checksum, so editing the pom
# or changing GRPC_JAVA_VERSION triggers a refetch.
want_stamp="grpc-java=$GRPC_JAVA_VERSION pom=$(cksum < "$POM" | awk '{print $1}')"
java_main_jar="$JAVA_LIB/grpc-interop-testing-$GRPC_JAVA_VERSION.jar"

if [ "$FORCE" != 1 ] && [ -f "$JAVA_STAMP" ] && [ "$(cat "$JAVA_STAMP")" = "$want_stamp" ] && [ -f "$java_main_jar" ]; then
  log "grpc-java interop-testing $GRPC_JAVA_VERSION already fetched"
else
  log "fetching io.grpc:grpc-interop-testing:$GRPC_JAVA_VERSION and runtime deps from Maven Central"
  tmp_lib="$JAVA_DIR/lib.tmp.$$"
  rm -rf "$tmp_lib"
  mvn_log="$JAVA_DIR/mvn.log"
  if ! mvn -q -B -f "$POM" \
        -Dgrpc.version="$GRPC_JAVA_VERSION" \
        dependency:copy-dependencies \
        -DincludeScope=runtime \
        -DoutputDirectory="$tmp_lib" >"$mvn_log" 2>&1; then
    rm -rf "$tmp_lib"
    tail -n 30 "$mvn_log" >&2
    die "maven failed (full log: $mvn_log)"
  fi
  rm -rf "$JAVA_LIB"
  mv "$tmp_lib" "$JAVA_LIB"
  [ -f "$java_main_jar" ] || die "missing $java_main_jar after maven run"
  echo "$want_stamp" > "$JAVA_STAMP"
fi

# Smoke check: the main classes must load (prints usage, exits non-zero).
java_usage="$(java -cp "$JAVA_LIB/*" io.grpc.testing.integration.TestServiceClient --help 2>&1 || true)"
case "$java_usage" in
  *--server_host_override*) ;;
  *) printf '%s\n' "$java_usage" | tail -n 20 >&2
     die "grpc-java TestServiceClient does not start (classpath $JAVA_LIB/*)" ;;
esac

# ------------------------------------------------------------------ certs ----
# The classic interop certs (testdata/ca.pem, server1.pem, server1.key in
# grpc-go; certs/ca.pem, ... in io.grpc:grpc-testing) are byte-identical.
# grpc-java's TestServiceServer/Client use the copies embedded in
# grpc-testing.jar, so every peer ends up with the same CA.
certs_ok() {
  [ -s "$CERTS_DIR/ca.pem" ] && [ -s "$CERTS_DIR/server1.pem" ] && [ -s "$CERTS_DIR/server1.key" ]
}

if [ "$FORCE" != 1 ] && certs_ok; then
  log "test certificates already in $CERTS_DIR"
else
  src=""
  # Run outside any go.mod so 'go mod download MODULE@VERSION' is module-less.
  go_mod_dir="$(cd "${TMPDIR:-/tmp}" && GOFLAGS= go mod download -json "google.golang.org/grpc@$GRPC_GO_VERSION" 2>/dev/null |
                sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1 || true)"
  if [ -n "$go_mod_dir" ] && [ -f "$go_mod_dir/testdata/ca.pem" ]; then
    src="$go_mod_dir/testdata"
    for f in ca.pem server1.pem server1.key; do
      install -m 0644 "$src/$f" "$CERTS_DIR/$f"
    done
  else
    testing_jar="$(ls "$JAVA_LIB"/grpc-testing-[0-9]*.jar 2>/dev/null | head -n1 || true)"
    [ -n "$testing_jar" ] || die "no source for test certificates (grpc-go module or grpc-testing jar)"
    src="$testing_jar!/certs"
    for f in ca.pem server1.pem server1.key; do
      # unzip may be missing on a fresh machine; 'jar' ships with the JDK.
      if command -v unzip >/dev/null 2>&1; then
        unzip -p "$testing_jar" "certs/$f" > "$CERTS_DIR/$f"
      else
        (cd "$CERTS_DIR" && jar xf "$testing_jar" "certs/$f" && mv "certs/$f" "$f" && rmdir certs 2>/dev/null || true)
      fi
      chmod 0644 "$CERTS_DIR/$f"
    done
  fi
  certs_ok || die "failed to extract test certificates into $CERTS_DIR"
  log "test certificates copied from $src"
fi

# ----------------------------------------------------------------- report ----
cat <<EOF
grpc-go  $GRPC_GO_VERSION  server: $GO_BIN_DIR/server
                 client: $GO_BIN_DIR/client
grpc-java $GRPC_JAVA_VERSION classpath: $JAVA_LIB/*
                 server: java -cp '$JAVA_LIB/*' io.grpc.testing.integration.TestServiceServer
                 client: java -cp '$JAVA_LIB/*' io.grpc.testing.integration.TestServiceClient
certs            GRPC_INTEROP_CERTS_DIR=$CERTS_DIR  (ca.pem server1.pem server1.key; host override foo.test.google.fr)
EOF
