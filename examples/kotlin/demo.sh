#!/usr/bin/env bash
# The Kotlin greeter against the Rust greeter server: prints the greeting, and
# checks that the client exits non-zero when nothing answers. Run by
# `make demo-kotlin` (and `make test-kotlin`), which build both first.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$PWD/target/release
JAR=examples/kotlin/target/greeter-kotlin.jar
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
kt() { java -XX:TieredStopAtLevel=1 -Djna.library.path="$BIN" -jar "$JAR" "$@"; }

"$BIN/greeter-server" --exit-after 60 >"$work/server.log" 2>&1 &
pid=$!
addr=
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$work/server.log")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "greeter server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

out=$(kt "$addr" kotlin)
echo "$out"
[ "$out" = 'kotlin client: SayHello -> "Hello, kotlin!"' ] || { echo "unexpected output from the Kotlin client" >&2; exit 1; }
grep -q '^server: SayHello(name="kotlin") from kotlin' "$work/server.log" || { echo "the server did not see the call" >&2; exit 1; }
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

# Nothing listens on the server's old port now: the client must fail loudly.
if kt "$addr" kotlin 2>"$work/err.log"; then echo "the Kotlin client exited 0 with no server" >&2; exit 1; fi
echo "with no server: $(cat "$work/err.log") (exit non-zero, as it should)"
