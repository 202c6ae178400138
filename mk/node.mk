# The Node binding (bindings/node, package `grpc-core`): a napi-rs addon plus
# the @grpc/grpc-js-shaped JavaScript layer. Included by the root Makefile.
#   make test-node   npm install (builds the addon), tsc on the typed test,
#                    the node:test suite (ours and @grpc/grpc-js both ways),
#                    then interop-node
#   make interop-node  the Node interop client and server (bindings/node/interop)
#                    against grpc-go's interop server and client, plain and TLS
#   make demo-node   the greeter example in examples/node
#   make bench-node  unary and streaming CPU-µs, grpc-core vs grpc-js, one run
NODE_DIR := bindings/node
NPM ?= npm

.PHONY: node-deps test-node interop-node demo-node bench-node

node-deps: toolchain
	@command -v node >/dev/null || { echo "node not found: install Node.js >= 18"; exit 1; }
	cd $(NODE_DIR) && $(NPM) install --no-audit --no-fund --loglevel=error

test-node: node-deps
	cd $(NODE_DIR) && npx --no-install tsc --noEmit -p test/tsconfig.json
	cd $(NODE_DIR) && node --test --test-reporter=spec test/*.test.js
	$(MAKE) --no-print-directory interop-node

# The cells 'node->go' and 'go->node' of the interop matrix (about 10 s);
# install-peers.sh runs only when grpc-go's binaries are not in .peers yet.
interop-node: node-deps
	@[ -x .peers/go/bin/server ] && [ -x .peers/go/bin/client ] && [ -f .peers/certs/ca.pem ] \
		|| tests/interop/scripts/install-peers.sh
	EXTRA_SERVERS=node EXTRA_CLIENTS=node PEERS=node SKIP_INSTALL=1 \
		NODE_SERVER='node $(CURDIR)/$(NODE_DIR)/interop/server.js' \
		NODE_CLIENT='node $(CURDIR)/$(NODE_DIR)/interop/client.js' \
		INTEROP_LOG_DIR=$(CURDIR)/target/interop-node \
		tests/interop/scripts/run-matrix.sh

demo-node: node-deps
	examples/node/demo.sh

bench-node: node-deps
	cd $(NODE_DIR) && node bench/unary.js
