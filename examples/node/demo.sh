#!/usr/bin/env bash
# Installs the example (which builds the grpc-core addon) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --loglevel=error
node demo.js
