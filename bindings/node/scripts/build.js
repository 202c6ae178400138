#!/usr/bin/env node
// Builds the addon into lib/grpc_core_node.node: with @napi-rs/cli when it is
// installed (a development checkout), else with cargo directly (an install
// of the packed tarball, where devDependencies are absent).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
fs.mkdirSync(path.join(root, 'lib'), { recursive: true });
const debug = process.env.GRPC_CORE_NODE_DEBUG === '1';
const cli = path.join(root, 'node_modules', '.bin', 'napi');
if (fs.existsSync(cli)) {
  const args = ['build', '--output-dir', 'lib', '--dts', 'native.d.ts'];
  if (!debug) args.push('--release');
  execFileSync(cli, args, { cwd: root, stdio: 'inherit' });
} else {
  const args = ['build', '-p', 'grpc-core-node', '--manifest-path', path.join(root, 'Cargo.toml')];
  if (!debug) args.push('--release');
  execFileSync('cargo', args, { cwd: root, stdio: 'inherit' });
  const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: root }));
  const lib = { linux: 'libgrpc_core_node.so', darwin: 'libgrpc_core_node.dylib', win32: 'grpc_core_node.dll' }[process.platform];
  fs.copyFileSync(path.join(meta.target_directory, debug ? 'debug' : 'release', lib), path.join(root, 'lib', 'grpc_core_node.node'));
}
