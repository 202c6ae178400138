#!/usr/bin/env bash
# Makes a throwaway test PKI in DIR with openssl (P-256 keys, 1 day):
#   ca.pem                      the test CA
#   server.pem / server.key     for localhost, 127.0.0.1 and *.test.google.fr
#   server1.pem / server1.key   the same, under the interop names
#                               (GRPC_INTEROP_CERTS_DIR=DIR works for the
#                               interop server and clients)
#   client.pem / client.key     a client certificate for mutual TLS
set -euo pipefail
dir=${1:?usage: gen-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -days 1 -subj "/CN=grpc-core test CA" -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() { # name cn ext
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:*.test.google.fr"
leaf client grpc-core-test-client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
cp server.pem server1.pem
cp server.key server1.key
