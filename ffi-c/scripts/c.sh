#!/usr/bin/env bash
# The C ABI's build, checks, tests and demo (driven by mk/c.mk).
#
#   c.sh cbindgen          install the pinned cbindgen into .tools/ if needed
#   c.sh header            regenerate include/grpc_core.h
#   c.sh test              everything below; ends with 'N passed, M failed'
#   c.sh demo              the C and C++ greeter examples
#   c.sh install PREFIX    install libs, header and grpc_core.pc under PREFIX
#
# `test`:
#   - the checked-in header equals a fresh cbindgen run, compiles alone as
#     C11 and C++17, and declares exactly the functions the library exports;
#   - C tests (ffi-c/tests/*.c, -Wall -Wextra -Werror -pedantic) linked
#     against libgrpc_core.so and libgrpc_core.a, run normally, under
#     AddressSanitizer and under valgrind (zero definite leaks, zero errors):
#       client_test   the C client against the Rust interop server (plaintext, TLS)
#                     and against the C interop server
#       misuse_test   misuse, server-call surface, mutual TLS (in-process)
#       auth_test     fused unary calls, auth context over mutual TLS, call
#                     credentials (callback, access token, per channel and
#                     per call; TLS vs plaintext), the health service
#                     (in-process servers)
#       interop_server  grpc.testing.TestService in C, driven by the Rust
#                     interop client (and grpc-go's, if .peers/ has it),
#                     plaintext and TLS; under valgrind and ASan too
#   - libgrpc_core.so's SONAME is libgrpc_core.so.0 and linked programs need it;
#   - the examples build (from the tree, and installed via pkg-config) and run.
#
# Env: CBINDGEN_VERSION (pinned in mk/c.mk), CARGO, KEEP_C_LOGS=1 keeps the
# work dir, C_TEST_QUICK=1 skips the valgrind runs.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
CBINDGEN_VERSION="${CBINDGEN_VERSION:-0.29.4}"
TOOLS="$ROOT/.tools"
CBINDGEN="$TOOLS/bin/cbindgen"
LIBDIR="$ROOT/target/release"
OUT="$ROOT/target/c"
NATIVE_LIBS="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
CFLAGS_COMMON="-std=c11 -g -O1 -Wall -Wextra -Werror -pedantic -I$ROOT/include -I$ROOT/ffi-c/tests"

log() { echo "c.sh: $*" >&2; }

ensure_cbindgen() {
  if [ -x "$CBINDGEN" ] && [ "$("$CBINDGEN" --version 2>/dev/null)" = "cbindgen $CBINDGEN_VERSION" ]; then
    return 0
  fi
  log "installing cbindgen $CBINDGEN_VERSION into $TOOLS"
  "$CARGO" install cbindgen --version "$CBINDGEN_VERSION" --locked --root "$TOOLS" --force >&2
}

gen_header() { # OUTFILE
  "$CBINDGEN" -q --config ffi-c/cbindgen.toml --crate grpc-core-ffi --output "$1" ffi-c
}

build_libs() {
  log "building libgrpc_core and the interop binaries (release)"
  "$CARGO" build --release -q -p grpc-core-ffi -p interop >&2 && soname_link
}

# libgrpc_core.so has the SONAME libgrpc_core.so.0 (ffi-c/build.rs), so
# programs linked against it load libgrpc_core.so.0: make that name exist
# next to the build output.
SONAME=libgrpc_core.so.0
soname_link() { ln -sf libgrpc_core.so "$LIBDIR/$SONAME"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # PORT PID SECONDS
  local i
  for i in $(seq 1 $(($3 * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- results ---
PASSED=0
FAILED=0
FAILURES=()
pass() { PASSED=$((PASSED + 1)); echo "PASS $*"; }
section() { echo "== $* (at ${SECONDS}s)"; }
fail() { FAILED=$((FAILED + 1)); FAILURES+=("$*"); echo "FAIL $*"; }

# run_c_test LABEL LOG CMD...: counts the PASS/FAIL lines a C test prints;
# a non-zero exit without FAIL lines (crash, leak, sanitizer) is one failure.
run_c_test() {
  local label="$1" logf="$2" rc p f
  shift 2
  "$@" >"$logf" 2>&1
  rc=$?
  p=$(grep -c '^PASS ' "$logf")
  f=$(grep -c '^FAIL ' "$logf")
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  if [ "$f" -gt 0 ]; then
    FAILURES+=("$label: $(grep '^FAIL ' "$logf" | tr '\n' ' ')")
    echo "FAIL $label: $f of $((p + f)) tests failed (log: $logf)"
    grep -v '^PASS ' "$logf" | head -20
  elif [ "$rc" != 0 ]; then
    fail "$label: exit $rc after $p passing tests (log: $logf)"
    grep -E 'ERROR SUMMARY|definitely lost|Sanitizer|CHECK|panicked|Invalid|uninitialised' "$logf" | head -10
  else
    echo "PASS $label ($p tests)"
  fi
}

VALGRIND=(valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1
  --suppressions="$ROOT/ffi-c/tests/valgrind.supp" --num-callers=30)

# ------------------------------------------------------------------- steps ---
check_header() {
  local tmp="$WORK/grpc_core.h"
  if gen_header "$tmp" && diff -u include/grpc_core.h "$tmp" >"$WORK/header.diff"; then
    pass "header: include/grpc_core.h matches cbindgen $CBINDGEN_VERSION output"
  else
    fail "header: include/grpc_core.h is stale; run 'make header-c' (diff in $WORK/header.diff)"
    head -30 "$WORK/header.diff"
  fi
  echo '#include "grpc_core.h"' >"$WORK/h.c"
  cp "$WORK/h.c" "$WORK/h.cpp"
  if gcc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude -c "$WORK/h.c" -o "$WORK/h.o" 2>"$WORK/h.log"; then
    pass "header: compiles alone as C11"
  else
    fail "header: does not compile as C11"; cat "$WORK/h.log"
  fi
  if g++ -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -c "$WORK/h.cpp" -o "$WORK/h2.o" 2>"$WORK/h2.log"; then
    pass "header: compiles alone as C++17"
  else
    fail "header: does not compile as C++17"; cat "$WORK/h2.log"
  fi
  # Every declared function is exported, and nothing else is.
  grep -oE '\bgrpc_core_[a-z_0-9]+\(' include/grpc_core.h | tr -d '(' | sort -u >"$WORK/declared"
  nm -D --defined-only "$LIBDIR/libgrpc_core.so" | awk '$2 == "T" { print $3 }' | sort -u >"$WORK/exported"
  if diff "$WORK/declared" "$WORK/exported" >"$WORK/symbols.diff"; then
    pass "header: declares exactly the $(wc -l <"$WORK/exported") functions libgrpc_core.so exports"
  else
    fail "header: declared and exported functions differ"; cat "$WORK/symbols.diff"
  fi
}

check_soname() {
  # The SONAME, and what a program linked with -lgrpc_core asks the loader for.
  if readelf -d "$LIBDIR/libgrpc_core.so" | grep -q "Library soname: \[$SONAME\]" &&
    readelf -d "$OUT/client_test.so" 2>/dev/null | grep -q "Shared library: \[$SONAME\]"; then
    pass "soname: libgrpc_core.so is $SONAME and programs linked with -lgrpc_core need $SONAME"
  else
    fail "soname: expected SONAME $SONAME in libgrpc_core.so and NEEDED by client_test"
  fi
}

build_tests() {
  local t ok=1
  mkdir -p "$OUT"
  for t in client_test misuse_test auth_test interop_server; do
    gcc $CFLAGS_COMMON "ffi-c/tests/$t.c" -o "$OUT/$t.so" -L"$LIBDIR" -lgrpc_core -Wl,-rpath,"$LIBDIR" \
      -lpthread 2>>"$WORK/build.log" || ok=0
    gcc $CFLAGS_COMMON "ffi-c/tests/$t.c" -o "$OUT/$t.a" "$LIBDIR/libgrpc_core.a" $NATIVE_LIBS \
      2>>"$WORK/build.log" || ok=0
    gcc $CFLAGS_COMMON -fsanitize=address -fno-omit-frame-pointer "ffi-c/tests/$t.c" -o "$OUT/$t.asan.so" \
      -L"$LIBDIR" -lgrpc_core -Wl,-rpath,"$LIBDIR" -lpthread 2>>"$WORK/build.log" || ok=0
    gcc $CFLAGS_COMMON -fsanitize=address -fno-omit-frame-pointer "ffi-c/tests/$t.c" -o "$OUT/$t.asan.a" \
      "$LIBDIR/libgrpc_core.a" $NATIVE_LIBS 2>>"$WORK/build.log" || ok=0
  done
  if [ "$ok" = 1 ]; then
    pass "build: C tests compile with -Wall -Wextra -Werror -pedantic (shared, static, ASan)"
  else
    fail "build: C tests do not compile"; cat "$WORK/build.log"
  fi
  [ "$ok" = 1 ]
}

SERVER_PID=""
start_bg() { # LOG CMD... -> SERVER_PID
  local logf="$1"
  shift
  "$@" >"$logf" 2>&1 &
  SERVER_PID=$!
}
stop_bg() { # PID -> its exit code in STOP_RC
  STOP_RC=0
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null
  local i
  for i in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  STOP_RC=$?
}
ALL_PIDS=()
cleanup() {
  local p
  for p in "${ALL_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [ "${KEEP_C_LOGS:-0}" != 1 ] && [ "$FAILED" = 0 ]; then rm -rf "$WORK"; fi
}

RUST_CASES="empty_unary large_unary client_compressed_unary client_compressed_unary_noprobe
  server_compressed_unary client_streaming client_compressed_streaming client_compressed_streaming_noprobe
  server_streaming server_compressed_streaming ping_pong empty_stream timeout_on_sleeping_server
  cancel_after_begin cancel_after_first_response status_code_and_message special_status_message
  custom_metadata unimplemented_method unimplemented_service very_large_request rpc_soak channel_soak"
# Under valgrind and ASan: every call shape and ending, without the soak
# and 10 MiB cases (slow under valgrind, and covered by the plain runs).
RUST_QUICK_CASES="empty_unary large_unary client_compressed_unary server_compressed_streaming
  client_streaming server_streaming ping_pong empty_stream timeout_on_sleeping_server cancel_after_begin
  cancel_after_first_response status_code_and_message custom_metadata unimplemented_method"
GO_CASES="empty_unary large_unary client_streaming server_streaming ping_pong empty_stream
  timeout_on_sleeping_server cancel_after_begin cancel_after_first_response status_code_and_message
  special_status_message custom_metadata unimplemented_method unimplemented_service"
GO_CLIENT="$ROOT/.peers/go/bin/client"

# interop_cases LABEL CLIENT(rust|go) PORT MODE(plain|tls) CASES...
interop_cases() {
  local label="$1" who="$2" port="$3" mode="$4" c logf flags
  shift 4
  mkdir -p "$WORK/interop"
  for c in "$@"; do
    logf="$WORK/interop/$label-$c.log"
    if [ "$mode" = tls ]; then
      flags=(--use_tls=true --use_test_ca=true --server_host_override=foo.test.google.fr)
      [ "$who" = go ] && flags+=(--ca_file="$CERTS/ca.pem")
    else
      flags=(--use_tls=false)
    fi
    local bin="$LIBDIR/interop-client"
    [ "$who" = go ] && bin="$GO_CLIENT"
    local t0=$SECONDS
    if timeout -k 5 90 "$bin" --server_host=127.0.0.1 --server_port="$port" --test_case="$c" "${flags[@]}" \
      >"$logf" 2>&1; then
      pass "$label $c$([ $((SECONDS - t0)) -ge 2 ] && echo " ($((SECONDS - t0))s)")"
    else
      fail "$label $c: $(tail -n 2 "$logf" | tr '\n' ' ' | cut -c1-300)"
    fi
  done
}

# c_interop_server LABEL MODE(plain|tls) WRAPPER BINARY CLIENTS...: starts the
# C interop server (under WRAPPER: "", valgrind or nothing), runs the interop
# clients against it, stops it with SIGTERM and checks it exited cleanly.
c_interop_server() {
  local label="$1" mode="$2" wrapper="$3" bin="$4" port logf
  shift 4
  port=$(free_port)
  logf="$WORK/server-$label.log"
  local cmd=("$bin" --port="$port" --use_tls=$([ "$mode" = tls ] && echo true || echo false))
  [ "$wrapper" = valgrind ] && cmd=("${VALGRIND[@]}" "${cmd[@]}")
  start_bg "$logf" "${cmd[@]}"
  local pid=$SERVER_PID
  ALL_PIDS+=("$pid")
  if ! wait_port "$port" "$pid" 60; then
    fail "$label: the C interop server did not start"; tail -20 "$logf"; stop_bg "$pid"; return
  fi
  local client
  for client in "$@"; do
    case "$client" in
      rust) interop_cases "$label rust-client" rust "$port" "$mode" $RUST_CASES ;;
      rust-quick) interop_cases "$label rust-client" rust "$port" "$mode" $RUST_QUICK_CASES ;;
      go)
        if [ -x "$GO_CLIENT" ]; then
          interop_cases "$label go-client" go "$port" "$mode" $GO_CASES
        else
          echo "SKIP $label go-client: $GO_CLIENT not installed (tests/interop/scripts/install-peers.sh)"
        fi
        ;;
      c-client)
        if [ "$mode" = tls ]; then
          run_c_test "$label client_test" "$WORK/$label-client.log" "$OUT/client_test.so" "127.0.0.1:$port" \
            "$CERTS/ca.pem" foo.test.google.fr
        else
          run_c_test "$label client_test" "$WORK/$label-client.log" "$OUT/client_test.so" "127.0.0.1:$port"
        fi
        ;;
    esac
  done
  stop_bg "$pid"
  if [ "$STOP_RC" = 0 ] && grep -q 'clean exit' "$logf"; then
    pass "$label: the C interop server shut down cleanly${wrapper:+ ($wrapper: no errors, no definite leaks)}"
  else
    fail "$label: the C interop server exited with $STOP_RC (log: $logf)"
    grep -E 'ERROR SUMMARY|definitely lost|Sanitizer|interop_server' "$logf" | head -10
  fi
}

cmd_test() {
  local t0=$SECONDS
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/grpc-core-c.XXXXXX")"
  trap cleanup EXIT
  ensure_cbindgen || { fail "cbindgen $CBINDGEN_VERSION could not be installed"; }
  build_libs || { fail "cargo build failed"; echo "$PASSED passed, $FAILED failed"; return 1; }
  command -v valgrind >/dev/null || {
    log "installing valgrind"
    { apt-get update -qq && apt-get install -y -qq valgrind; } >&2 || log "could not install valgrind"
  }
  section "header"
  check_header
  section "build the C tests"
  build_tests || { echo "$PASSED passed, $FAILED failed"; return 1; }
  check_soname
  CERTS="$WORK/certs"
  ffi-c/tests/gen-certs.sh "$CERTS" || fail "certs: openssl could not make the test PKI"
  export GRPC_INTEROP_CERTS_DIR="$CERTS"

  section "the C client against the Rust interop server"
  # The C client against the Rust interop server.
  local port tport rpid tpid
  port=$(free_port)
  start_bg "$WORK/rust-server-plain.log" "$LIBDIR/interop-server" --port "$port" --use_tls=false
  rpid=$SERVER_PID; ALL_PIDS+=("$rpid")
  tport=$(free_port)
  start_bg "$WORK/rust-server-tls.log" "$LIBDIR/interop-server" --port "$tport" --use_tls=true
  tpid=$SERVER_PID; ALL_PIDS+=("$tpid")
  if wait_port "$port" "$rpid" 30 && wait_port "$tport" "$tpid" 30; then
    run_c_test "client_test (shared) -> rust server" "$WORK/ct-so.log" "$OUT/client_test.so" "127.0.0.1:$port"
    run_c_test "client_test (static) -> rust server" "$WORK/ct-a.log" "$OUT/client_test.a" "127.0.0.1:$port"
    run_c_test "client_test (shared, ASan) -> rust server" "$WORK/ct-asan-so.log" "$OUT/client_test.asan.so" \
      "127.0.0.1:$port"
    run_c_test "client_test (static, ASan) -> rust server" "$WORK/ct-asan-a.log" "$OUT/client_test.asan.a" \
      "127.0.0.1:$port"
    run_c_test "client_test (shared, TLS) -> rust server" "$WORK/ct-tls.log" "$OUT/client_test.so" \
      "127.0.0.1:$tport" "$CERTS/ca.pem" foo.test.google.fr
    if [ "${C_TEST_QUICK:-0}" != 1 ]; then
      run_c_test "client_test (shared, valgrind) -> rust server" "$WORK/ct-vg-so.log" "${VALGRIND[@]}" \
        "$OUT/client_test.so" "127.0.0.1:$port"
      run_c_test "client_test (static, valgrind, TLS) -> rust server" "$WORK/ct-vg-a.log" "${VALGRIND[@]}" \
        "$OUT/client_test.a" "127.0.0.1:$tport" "$CERTS/ca.pem" foo.test.google.fr
    fi
  else
    fail "the Rust interop server did not start"; tail -5 "$WORK"/rust-server-*.log
  fi
  stop_bg "$rpid"
  stop_bg "$tpid"

  section "misuse and the server-call surface"
  # Misuse and the server-call surface, in one process.
  run_c_test "misuse_test (shared)" "$WORK/mt-so.log" "$OUT/misuse_test.so" "$CERTS"
  run_c_test "misuse_test (static)" "$WORK/mt-a.log" "$OUT/misuse_test.a" "$CERTS"
  run_c_test "misuse_test (shared, ASan)" "$WORK/mt-asan-so.log" "$OUT/misuse_test.asan.so" "$CERTS"
  run_c_test "misuse_test (static, ASan)" "$WORK/mt-asan-a.log" "$OUT/misuse_test.asan.a" "$CERTS"
  if [ "${C_TEST_QUICK:-0}" != 1 ]; then
    run_c_test "misuse_test (shared, valgrind)" "$WORK/mt-vg-so.log" "${VALGRIND[@]}" "$OUT/misuse_test.so" "$CERTS"
    run_c_test "misuse_test (static, valgrind)" "$WORK/mt-vg-a.log" "${VALGRIND[@]}" "$OUT/misuse_test.a" "$CERTS"
  fi

  section "fused unary, auth context, call credentials, health"
  run_c_test "auth_test (shared)" "$WORK/at-so.log" "$OUT/auth_test.so" "$CERTS"
  run_c_test "auth_test (static)" "$WORK/at-a.log" "$OUT/auth_test.a" "$CERTS"
  run_c_test "auth_test (shared, ASan)" "$WORK/at-asan-so.log" "$OUT/auth_test.asan.so" "$CERTS"
  run_c_test "auth_test (static, ASan)" "$WORK/at-asan-a.log" "$OUT/auth_test.asan.a" "$CERTS"
  if [ "${C_TEST_QUICK:-0}" != 1 ]; then
    run_c_test "auth_test (shared, valgrind)" "$WORK/at-vg-so.log" "${VALGRIND[@]}" "$OUT/auth_test.so" "$CERTS"
    run_c_test "auth_test (static, valgrind)" "$WORK/at-vg-a.log" "${VALGRIND[@]}" "$OUT/auth_test.a" "$CERTS"
  fi

  section "the C interop server"
  # The C interop server, driven by the interop clients.
  c_interop_server "c-server plain" plain "" "$OUT/interop_server.so" rust go c-client
  c_interop_server "c-server tls" tls "" "$OUT/interop_server.a" rust go c-client
  c_interop_server "c-server plain ASan" plain "" "$OUT/interop_server.asan.so" rust-quick c-client
  if [ "${C_TEST_QUICK:-0}" != 1 ]; then
    c_interop_server "c-server plain valgrind" plain valgrind "$OUT/interop_server.so" rust-quick
    c_interop_server "c-server tls valgrind" tls valgrind "$OUT/interop_server.a" rust-quick
  fi

  section "examples and install"
  # The examples: from the tree, and from an installed copy via pkg-config.
  examples_check

  echo "C ABI tests finished in $((SECONDS - t0))s"
  if [ "$FAILED" -gt 0 ]; then
    echo "failures:"
    printf '  %s\n' "${FAILURES[@]}"
    echo "logs kept in $WORK"
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}

build_examples() { # OUTDIR [make args...]
  local out="$1"
  shift
  make -s -C examples/c OUT="$out" "$@" && make -s -C examples/cpp OUT="$out" "$@"
}

# run_greeter DIR [ENV...]: the C server, then the C and C++ clients against it.
run_greeter() {
  local dir="$1" logf="$WORK/greeter-server.log" addr i
  shift
  env "$@" "$dir/greeter_server" 127.0.0.1:0 2 >"$logf" 2>&1 &
  local pid=$!
  ALL_PIDS+=("$pid")
  for i in $(seq 1 50); do
    addr=$(sed -n 's/^listening on //p' "$logf")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  local ok=1
  env "$@" "$dir/greeter_client" "$addr" C | grep -q 'Greeting: Hello C' || ok=0
  env "$@" "$dir/greeter_client_cpp" "$addr" Cpp | grep -q 'Greeting (C++): Hello Cpp' || ok=0
  wait "$pid" || ok=0
  [ "$ok" = 1 ]
}

examples_check() {
  if build_examples "$OUT/examples" >"$WORK/examples-build.log" 2>&1 && run_greeter "$OUT/examples"; then
    pass "examples: the C greeter server and the C and C++ clients build and talk"
  else
    fail "examples: build or run failed"; tail -20 "$WORK/examples-build.log" "$WORK/greeter-server.log"
  fi
  local prefix="$WORK/prefix"
  if cmd_install "$prefix" >"$WORK/install.log" 2>&1 &&
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" build_examples "$WORK/installed" USE_PKG_CONFIG=1 \
      >>"$WORK/install.log" 2>&1 &&
    run_greeter "$WORK/installed" LD_LIBRARY_PATH="$prefix/lib"; then
    pass "install: examples build with pkg-config --cflags --libs grpc_core against an installed copy"
  else
    fail "install: build against the installed copy failed"; tail -20 "$WORK/install.log"
  fi
}

cmd_install() {
  local prefix="${1:?usage: c.sh install PREFIX}"
  local version
  version=$(sed -n 's/^#define GRPC_CORE_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' include/grpc_core.h |
    paste -sd.)
  [ -f "$LIBDIR/libgrpc_core.so" ] || build_libs || return 1
  soname_link
  install -d "$prefix/lib/pkgconfig" "$prefix/include"
  install -m 0755 "$LIBDIR/libgrpc_core.so" "$prefix/lib/$SONAME"
  ln -sf "$SONAME" "$prefix/lib/libgrpc_core.so"
  install -m 0644 "$LIBDIR/libgrpc_core.a" "$prefix/lib/"
  install -m 0644 include/grpc_core.h "$prefix/include/"
  cat >"$prefix/lib/pkgconfig/grpc_core.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: grpc_core
Description: grpc-core gRPC engine (C ABI)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lgrpc_core
Libs.private: $NATIVE_LIBS
EOF
  echo "installed libgrpc_core $version under $prefix"
}

cmd_demo() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/grpc-core-c-demo.XXXXXX")"
  FAILED=0
  trap cleanup EXIT
  build_libs || return 1
  "$CARGO" build --release -q -p examples-rust >&2 || return 1
  build_examples "$OUT/examples" || return 1
  local d="$OUT/examples" logf="$WORK/server.log" addr pid i
  echo "== C greeter server, C and C++ clients =="
  "$d/greeter_server" 127.0.0.1:0 2 >"$logf" 2>&1 &
  pid=$!
  ALL_PIDS+=("$pid")
  for i in $(seq 1 50); do addr=$(sed -n 's/^listening on //p' "$logf"); [ -n "$addr" ] && break; sleep 0.1; done
  echo "server listening on $addr"
  "$d/greeter_client" "$addr" "from C" || return 1
  "$d/greeter_client_cpp" "$addr" "from C++" || return 1
  wait "$pid"
  sed 's/^/  /' "$logf"
  echo "== C client -> Rust greeter server =="
  logf="$WORK/rust-server.log"
  "$LIBDIR/greeter-server" --exit-after 30 >"$logf" 2>&1 &
  pid=$!
  ALL_PIDS+=("$pid")
  for i in $(seq 1 50); do addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$logf"); [ -n "$addr" ] && break; sleep 0.1; done
  "$d/greeter_client" "$addr" "C to Rust" || return 1
  kill "$pid" 2>/dev/null
  grep '^server:' "$logf" | sed 's/^/  /'
}

case "${1:-}" in
  cbindgen) ensure_cbindgen ;;
  header) ensure_cbindgen && gen_header include/grpc_core.h && log "wrote include/grpc_core.h" ;;
  test) cmd_test ;;
  demo) cmd_demo ;;
  install) shift; cmd_install "$@" ;;
  *) echo "usage: $0 cbindgen|header|test|demo|install PREFIX" >&2; exit 2 ;;
esac
