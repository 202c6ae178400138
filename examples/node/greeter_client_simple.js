// Calls helloworld.Greeter/SayHello on any greeter server with grpc-core,
// grpc-js style (proto-loader + loadPackageDefinition) and with await.
// Usage: node greeter_client_simple.js TARGET [NAME]
const grpc = require('grpc-core');
const protoLoader = require('@grpc/proto-loader');
const path = require('path');

const def = protoLoader.loadSync(path.join(__dirname, 'helloworld.proto'), { keepCase: true, defaults: true });
const hello = grpc.loadPackageDefinition(def).helloworld;

async function main(target, name) {
  const client = new hello.Greeter(target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('x-client', 'node');
  const reply = await new Promise((resolve, reject) =>
    client.SayHello({ name }, md, (err, r) => (err ? reject(err) : resolve(r))),
  );
  console.log(`node client: SayHello -> ${JSON.stringify(reply.message)}`);
  client.close();
}

main(process.argv[2], process.argv[3] || 'node').catch((e) => {
  console.error(e.message);
  process.exit(1);
});
