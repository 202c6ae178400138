# The Node binding (bindings/node, package `grpc-core`): a napi-rs addon plus
# the @grpc/grpc-js-shaped JavaScript layer. Included by the root Makefile.
#   make test-node   npm install (builds the addon), tsc on the typed test,
#                    the node:test suite (ours and @grpc/grpc-js both ways)
#   make demo-node   the greeter example in examples/node
#   make bench-node  unary CPU-µs per call, grpc-core vs grpc-js, one run
NODE_DIR := bindings/node
NPM ?= npm

.PHONY: node-deps test-node demo-node bench-node

node-deps: toolchain
	@command -v node >/dev/null || { echo "node not found: install Node.js >= 18"; exit 1; }
	cd $(NODE_DIR) && $(NPM) install --no-audit --no-fund --loglevel=error

test-node: node-deps
	cd $(NODE_DIR) && npx --no-install tsc --noEmit -p test/tsconfig.json
	cd $(NODE_DIR) && node --test --test-reporter=spec test/*.test.js

demo-node: node-deps
	examples/node/demo.sh

bench-node: node-deps
	cd $(NODE_DIR) && node bench/unary.js
