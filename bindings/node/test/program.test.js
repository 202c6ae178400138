'use strict';
// A grpc-js program runs unchanged on grpc-core except for its require line.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');

const SRC = path.join(__dirname, 'fixtures', 'grpcjs_program.js');

function run(file) {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [file], { timeout: 20000, cwd: path.dirname(file) }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout))),
  );
}

test('grpc-js program: same output with only the require line changed', async () => {
  const original = fs.readFileSync(SRC, 'utf8');
  const line = "const grpc = require('@grpc/grpc-js');";
  assert.ok(original.includes(line));
  const ported = original.replace(line, `const grpc = require(${JSON.stringify(path.join(__dirname, '..'))});`);
  const changed = original.split('\n').filter((l, i) => l !== ported.split('\n')[i]);
  assert.deepEqual(changed, [line], 'exactly one line differs');
  const portedFile = path.join(__dirname, 'fixtures', `.grpcjs_program.grpc-core.${process.pid}.js`);
  fs.writeFileSync(portedFile, ported);
  try {
    const [a, b] = await Promise.all([run(SRC), run(portedFile)]);
    const expected = [
      'unary Hello world 1',
      'error 5 bad oops 5 NOT_FOUND: bad oops',
      'client-stream sum 10',
      'server-stream 0,1,2',
      'bidi a!,b! 0',
      'done',
    ];
    assert.deepEqual(a.trim().split('\n'), expected, 'grpc-js');
    assert.deepEqual(b.trim().split('\n'), expected, 'grpc-core');
  } finally {
    fs.rmSync(portedFile, { force: true });
  }
});
