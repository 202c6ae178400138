// Greeter server on grpc-core: the grpc-js API (change one require line to
// move a grpc-js server over). Usage: node greeter_server.js [port]
const grpc = require('grpc-core');
const protoLoader = require('@grpc/proto-loader');
const path = require('path');

const def = protoLoader.loadSync(path.join(__dirname, 'helloworld.proto'), { keepCase: true, defaults: true });
const hello = grpc.loadPackageDefinition(def).helloworld;

function startServer(port, callback) {
  const server = new grpc.Server();
  server.addService(hello.Greeter.service, {
    // A grpc-js style callback handler...
    SayHello: (call, callback) => callback(null, { message: 'Hello ' + call.request.name }),
    // ...and an async generator (beyond grpc-js).
    SayHelloStream: async function* (call) {
      for (const greeting of ['Hello', 'Hola', 'Bonjour']) yield { message: `${greeting} ${call.request.name}` };
    },
  });
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => callback(err, server, bound));
}

if (require.main === module) {
  startServer(Number(process.argv[2] || 50051), (err, _server, port) => {
    if (err) throw err;
    console.log(`greeter listening on 127.0.0.1:${port}`);
  });
}

module.exports = { startServer };
