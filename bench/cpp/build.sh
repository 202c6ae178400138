#!/usr/bin/env bash
# Builds the gRPC C++ peer against Debian's libgrpc++-dev into $1 (default
# bench/.build/cpp-server). Skips the build when the binary is newer than
# its sources.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../.build/cpp-server}"
gen="$here/../.build/cpp-gen"
if [ -x "$out" ] && [ -z "$(find "$here/server.cc" "$here/build.sh" "$here/../proto" -newer "$out" 2>/dev/null)" ]; then
  exit 0
fi
mkdir -p "$gen" "$(dirname "$out")"
protoc -I "$here/../proto" --cpp_out="$gen" --grpc_out="$gen" \
  --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" \
  "$here/../proto/helloworld.proto" "$here/../proto/echo.proto"
# shellcheck disable=SC2046
g++ -O2 -std=c++17 -I "$gen" "$here/server.cc" "$gen"/*.pb.cc \
  $(pkg-config --cflags --libs grpc++ protobuf) -lpthread -o "$out"
