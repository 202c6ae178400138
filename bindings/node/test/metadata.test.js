'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { ours: grpc } = require('./common');
const { Metadata, status, credentials, ServerCredentials } = grpc;

test('Metadata: set/add/get/getMap/remove', () => {
  const m = new Metadata();
  m.set('Key', 'v1');
  assert.deepEqual(m.get('key'), ['v1']);
  m.add('key', 'v2');
  assert.deepEqual(m.get('KEY'), ['v1', 'v2']);
  m.set('key', 'v3');
  assert.deepEqual(m.get('key'), ['v3']);
  m.add('other', 'x');
  assert.deepEqual(m.getMap(), { key: 'v3', other: 'x' });
  m.remove('key');
  assert.deepEqual(m.get('key'), []);
  assert.deepEqual(m.getMap(), { other: 'x' });
});

test('Metadata: -bin keys take Buffers, others strings', () => {
  const m = new Metadata();
  m.set('data-bin', Buffer.from([1, 2]));
  assert.deepEqual(m.get('data-bin'), [Buffer.from([1, 2])]);
  assert.throws(() => m.set('data-bin', 'str'));
  assert.throws(() => m.set('text', Buffer.from('x')));
  assert.throws(() => m.set('bad key', 'x'));
  assert.throws(() => m.set('k', 'bad\nvalue'));
});

test('Metadata: clone is deep, merge appends', () => {
  const m = new Metadata();
  m.set('a', '1');
  m.set('b-bin', Buffer.from([5]));
  const c = m.clone();
  c.add('a', '2');
  c.get('b-bin')[0][0] = 6;
  assert.deepEqual(m.get('a'), ['1']);
  assert.deepEqual(m.get('b-bin'), [Buffer.from([5])]);
  m.merge(c);
  assert.deepEqual(m.get('a'), ['1', '1', '2']);
  assert.deepEqual(Object.keys(m.toJSON()).sort(), ['a', 'b-bin']);
});

test('status codes match grpc-js', () => {
  const js = require('@grpc/grpc-js').status;
  for (const k of Object.keys(js).filter((k) => isNaN(Number(k)))) assert.equal(status[k], js[k], k);
  assert.equal(status[14], 'UNAVAILABLE');
});

test('credentials: shapes and validation', () => {
  assert.equal(credentials.createInsecure()._isSecure(), false);
  assert.equal(credentials.createSsl()._isSecure(), true);
  assert.throws(() => credentials.createSsl(null, Buffer.from('k')));
  assert.throws(() => credentials.createInsecure().compose(credentials.createFromMetadataGenerator(() => {})));
  assert.equal(ServerCredentials.createInsecure()._isSecure(), false);
  assert.throws(() => ServerCredentials.createSsl(null, []));
  const composed = credentials.combineChannelCredentials(credentials.createSsl(), credentials.createFromMetadataGenerator((_o, cb) => cb(null, new Metadata())));
  assert.equal(composed._isSecure(), true);
});

test('exports the grpc-js names', () => {
  for (const name of ['Metadata', 'status', 'credentials', 'Client', 'Server', 'ServerCredentials', 'ChannelCredentials', 'makeGenericClientConstructor', 'makeClientConstructor', 'loadPackageDefinition', 'waitForClientReady', 'closeClient']) {
    assert.ok(grpc[name] !== undefined, name);
    assert.ok(require('@grpc/grpc-js')[name] !== undefined, `grpc-js has ${name}`);
  }
});
