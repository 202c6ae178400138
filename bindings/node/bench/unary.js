// Unary calls: grpc-core vs @grpc/grpc-js in the same run. Client and server
// of each library share this process, so CPU-µs per call (process user+sys,
// including grpc-core's runtime threads) covers both ends of the call.
// Then server streaming and client streaming: CPU-µs per message.
// Usage: node bench/unary.js [calls] [concurrency] [stream messages]
'use strict';
const path = require('node:path');
const protoLoader = require('@grpc/proto-loader');

const CALLS = Number(process.argv[2] || 20000);
const CONCURRENCY = Number(process.argv[3] || 32);
const def = protoLoader.loadSync(path.join(__dirname, '..', 'test', 'fixtures', 'test.proto'));

async function measure(name, grpc) {
  const pkg = grpc.loadPackageDefinition(def).test.v1;
  const server = new grpc.Server();
  server.addService(pkg.Tester.service, { Unary: (call, cb) => cb(null, { message: call.request.name, n: call.request.n }) });
  const port = await new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const client = new pkg.Tester(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const one = (i) => new Promise((res, rej) => client.Unary({ name: 'bench', n: i }, (e, r) => (e ? rej(e) : res(r))));
  const run = async (n) => {
    let next = 0;
    const worker = async () => {
      while (next < n) await one(next++);
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  };
  await run(Math.min(2000, CALLS));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await run(CALLS);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  client.close();
  await new Promise((res) => server.tryShutdown(res));
  return { name, callsPerSec: CALLS / wall, cpuUsPerCall: (cpu.user + cpu.system) / CALLS };
}

/** Server streaming: one call of MESSAGES responses; CPU-µs per message. */
async function measureStream(name, grpc, messages) {
  const pkg = grpc.loadPackageDefinition(def).test.v1;
  const server = new grpc.Server();
  server.addService(pkg.Tester.service, {
    ServerStream: (call) => {
      let i = 0;
      const pump = () => {
        while (i < call.request.n) if (!call.write({ message: 'stream', n: i++ })) return call.once('drain', pump);
        call.end();
      };
      pump();
    },
  });
  const port = await new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const client = new pkg.Tester(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const once = (n) => new Promise((res, rej) => {
    let got = 0;
    const call = client.ServerStream({ n });
    call.on('data', () => got++);
    call.on('error', rej);
    call.on('end', () => res(got));
  });
  await once(1000);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const got = await once(messages);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  if (got !== messages) throw new Error(`${name}: got ${got} of ${messages}`);
  client.close();
  await new Promise((res) => server.tryShutdown(res));
  return { name, msgsPerSec: messages / wall, cpuUsPerMsg: (cpu.user + cpu.system) / messages };
}

/** Client streaming: one call of MESSAGES requests written as fast as drain allows. */
async function measureClientStream(name, grpc, messages) {
  const pkg = grpc.loadPackageDefinition(def).test.v1;
  const server = new grpc.Server();
  server.addService(pkg.Tester.service, {
    ClientStream: (call, cb) => {
      let n = 0;
      call.on('data', () => n++);
      call.on('end', () => cb(null, { message: 'done', n }));
    },
  });
  const port = await new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const client = new pkg.Tester(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const once = (n) => new Promise((res, rej) => {
    const call = client.ClientStream((e, r) => (e ? rej(e) : res(r.n)));
    let i = 0;
    const pump = () => {
      while (i < n) if (!call.write({ name: 'stream', n: i++ })) return call.once('drain', pump);
      call.end();
    };
    pump();
  });
  await once(1000);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const got = await once(messages);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  if (got !== messages) throw new Error(`${name}: server got ${got} of ${messages}`);
  client.close();
  await new Promise((res) => server.tryShutdown(res));
  return { name, msgsPerSec: messages / wall, cpuUsPerMsg: (cpu.user + cpu.system) / messages };
}

(async () => {
  const rows = [];
  rows.push(await measure('grpc-core', require('..')));
  rows.push(await measure('@grpc/grpc-js', require('@grpc/grpc-js')));
  const MESSAGES = Number(process.argv[4] || 50000);
  const srows = [];
  srows.push(await measureStream('grpc-core', require('..'), MESSAGES));
  srows.push(await measureStream('@grpc/grpc-js', require('@grpc/grpc-js'), MESSAGES));
  const crows = [];
  crows.push(await measureClientStream('grpc-core', require('..'), MESSAGES));
  crows.push(await measureClientStream('@grpc/grpc-js', require('@grpc/grpc-js'), MESSAGES));
  console.log(`unary, ${CALLS} calls, concurrency ${CONCURRENCY}, client and server in one process`);
  console.log('library         calls/s   CPU-µs/call');
  for (const r of rows) console.log(`${r.name.padEnd(14)} ${r.callsPerSec.toFixed(0).padStart(8)}   ${r.cpuUsPerCall.toFixed(1).padStart(11)}`);
  console.log(`grpc-core uses ${(rows[1].cpuUsPerCall / rows[0].cpuUsPerCall).toFixed(2)}x less CPU per call than grpc-js`);
  console.log('');
  console.log(`server streaming, one call of ${MESSAGES} messages`);
  console.log('library          msgs/s   CPU-µs/msg');
  for (const r of srows) console.log(`${r.name.padEnd(14)} ${r.msgsPerSec.toFixed(0).padStart(8)}   ${r.cpuUsPerMsg.toFixed(1).padStart(10)}`);
  console.log(`grpc-core uses ${(srows[1].cpuUsPerMsg / srows[0].cpuUsPerMsg).toFixed(2)}x less CPU per message than grpc-js`);
  console.log('');
  console.log(`client streaming, one call of ${MESSAGES} messages`);
  console.log('library          msgs/s   CPU-µs/msg');
  for (const r of crows) console.log(`${r.name.padEnd(14)} ${r.msgsPerSec.toFixed(0).padStart(8)}   ${r.cpuUsPerMsg.toFixed(1).padStart(10)}`);
  console.log(`grpc-core uses ${(crows[1].cpuUsPerMsg / crows[0].cpuUsPerMsg).toFixed(2)}x less CPU per message than grpc-js`);
})();
