// The @grpc/grpc-js peer: the benchmark service loaded with
// @grpc/proto-loader (the common way), grpc-js defaults, message limits
// raised to 64 MiB.
//
//   node server.js [--port 0] [--tls-cert F --tls-key F]; prints "PORT <n>".
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) args[process.argv[i]] = process.argv[i + 1];
const port = Number(args['--port'] || 0);
const protoDir = path.join(__dirname, '..', 'proto');
const def = protoLoader.loadSync(['helloworld.proto', 'echo.proto'], { includeDirs: [protoDir] });
const pkg = grpc.loadPackageDefinition(def);
const MAX = 64 << 20;

const server = new grpc.Server({
  'grpc.max_receive_message_length': MAX,
  'grpc.max_send_message_length': MAX,
});
server.addService(pkg.helloworld.Greeter.service, {
  SayHello(call, callback) {
    callback(null, { message: `Hello, ${call.request.name}!` });
  },
});
server.addService(pkg.bench.Echo.service, {
  Unary(call, callback) {
    callback(null, { data: call.request.data });
  },
  Stream(call) {
    call.on('data', (m) => call.write({ data: m.data }));
    call.on('end', () => call.end());
  },
});

let creds = grpc.ServerCredentials.createInsecure();
if (args['--tls-cert']) {
  creds = grpc.ServerCredentials.createSsl(null, [
    { private_key: fs.readFileSync(args['--tls-key']), cert_chain: fs.readFileSync(args['--tls-cert']) },
  ]);
}
server.bindAsync(`127.0.0.1:${port}`, creds, (err, bound) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  process.stdout.write(`PORT ${bound}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.forceShutdown() || process.exit(0));
