// The Node demo: a greeter server and client in one process on an
// OS-chosen port; exits on its own once both are closed.
const { startServer } = require('./greeter_server');
const { run } = require('./greeter_client');

startServer(0, async (err, server, port) => {
  if (err) throw err;
  console.log(`server on 127.0.0.1:${port}`);
  await run(`127.0.0.1:${port}`, 'Node');
  server.tryShutdown(() => console.log('server stopped'));
});
