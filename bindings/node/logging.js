'use strict';
// setLogger, setLogVerbosity and logVerbosity as @grpc/grpc-js has them
// (its src/logging.ts), fed by the engine's log records.
//
// The engine logs nothing until this is enabled: by setLogger, by
// setLogVerbosity, or by GRPC_NODE_VERBOSITY / GRPC_VERBOSITY in the
// environment. Until then no sink is installed and every engine callsite
// stays disabled. Records cross from the engine's threads in batches
// (src/logs.rs) and are formatted here like grpc-js's trace lines.

const path = require('node:path');

const native = require(path.join(__dirname, 'lib', 'grpc_core_node.node'));
const version = require('./package.json').version;

/** grpc-js's `logVerbosity` (its `LogVerbosity` enum). */
const logVerbosity = Object.freeze({ DEBUG: 0, INFO: 1, ERROR: 2, NONE: 3 });

// grpc-js's default logger: console.error with a one-letter severity prefix.
const DEFAULT_LOGGER = {
  error: (message, ...optionalParams) => {
    console.error('E ' + message, ...optionalParams);
  },
  info: (message, ...optionalParams) => {
    console.error('I ' + message, ...optionalParams);
  },
  debug: (message, ...optionalParams) => {
    console.error('D ' + message, ...optionalParams);
  },
};

let logger = DEFAULT_LOGGER;
let verbosity = logVerbosity.ERROR;
let initialized = false;

/** As grpc-js's `log`: at or above the verbosity, the severity's method, else `error`. */
function log(severity, ...args) {
  if (severity < verbosity) return;
  let fn;
  switch (severity) {
    case logVerbosity.DEBUG:
      fn = logger.debug;
      break;
    case logVerbosity.INFO:
      fn = logger.info;
      break;
    case logVerbosity.ERROR:
      fn = logger.error;
      break;
  }
  if (!fn) fn = logger.error;
  if (fn) fn.apply(logger, args);
}

function deliver(records) {
  let thrown;
  for (const r of records) {
    try {
      // grpc-js's trace line: time | version pid | tracer | text.
      log(r.severity, `${new Date(r.time).toISOString()} | v${version} ${process.pid} | ${r.target} | ${r.message}`);
    } catch (e) {
      if (thrown === undefined) thrown = e;
    }
  }
  if (thrown !== undefined) {
    // A logger that throws fails like any throwing callback; the rest of the batch still went out.
    process.nextTick(() => {
      throw thrown;
    });
  }
}

function apply() {
  if (!initialized) {
    native.logInit(deliver);
    initialized = true;
  }
  // Anything but DEBUG, INFO or ERROR logs nothing, as in grpc-js.
  native.logVerbosity(verbosity === 0 || verbosity === 1 || verbosity === 2 ? verbosity : logVerbosity.NONE);
}

/** grpc-js `setLogger(logger)`: engine records go to `logger` (enables them). */
function setLogger(l) {
  logger = l;
  apply();
}

/**
 * grpc-js `setLogVerbosity(v)`: engine records at `v` and above go to the
 * logger; `logVerbosity.NONE` turns them off.
 */
function setLogVerbosity(v) {
  verbosity = v;
  apply();
}

/** The logger in use (grpc-js has it as `logging.getLogger`). */
function getLogger() {
  return logger;
}

const fromEnv = (process.env.GRPC_NODE_VERBOSITY ?? process.env.GRPC_VERBOSITY ?? '').toUpperCase();
if (Object.prototype.hasOwnProperty.call(logVerbosity, fromEnv)) {
  verbosity = logVerbosity[fromEnv];
  if (verbosity !== logVerbosity.NONE) apply();
}

module.exports = { logVerbosity, setLogger, setLogVerbosity, getLogger, log };
