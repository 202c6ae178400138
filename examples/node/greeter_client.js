// Greeter client on grpc-core: the callback API and the Promise API.
// Usage: node greeter_client.js [target] [name]
const grpc = require('grpc-core');
const protoLoader = require('@grpc/proto-loader');
const path = require('path');

const def = protoLoader.loadSync(path.join(__dirname, 'helloworld.proto'), { keepCase: true, defaults: true });
const hello = grpc.loadPackageDefinition(def).helloworld;

async function run(target, name) {
  const client = new hello.Greeter(target, grpc.credentials.createInsecure());
  // grpc-js style: a callback.
  const reply = await new Promise((resolve, reject) =>
    client.SayHello({ name }, (err, r) => (err ? reject(err) : resolve(r))),
  );
  console.log(`callback: ${reply.message}`);
  // Beyond grpc-js: await and for-await.
  const greeter = grpc.promisify(client);
  console.log(`await: ${(await greeter.SayHello({ name })).message}`);
  for await (const r of greeter.SayHelloStream({ name })) console.log(`stream: ${r.message}`);
  client.close();
}

if (require.main === module) {
  run(process.argv[2] || '127.0.0.1:50051', process.argv[3] || 'world').catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}

module.exports = { run };
