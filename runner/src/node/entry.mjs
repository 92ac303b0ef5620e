// lumo's Node.js entry for a Lumo Framework task (PRODUCT.md §4). The runner starts
//   node <this file> <absolute path of the bundled module>
// in the unpacked bundle. It is lumo's, not the bundle's: it ships inside the runner and is
// written next to the run's context and result files, so every bundle runs the same way.
//
// It imports the module, takes its handler (`run`, else the default export — a function, or an
// object with `run` or `handler` — else `handler`), calls it with the TaskContext and writes
// what the handler returns to LUMO_RESULT_FILE, where the runner validates it like any task's
// result. console.* is left alone: it is the task's stdout and stderr, streamed and masked by
// the runner. A throw, a rejected promise, an unhandled rejection or an uncaught exception fails
// the run: the stack goes to stderr and the error's message becomes the run's message.
//
// Once the handler has settled the process exits, without waiting for timers or sockets the
// handler left open: Lambda's Node.js runtime answers as soon as an async handler settles too,
// and a forgotten database pool must not turn a finished task into a timeout.
//
// Keep the syntax old enough for any Node that can load an ES module, so that too old a Node
// reaches the version check below instead of failing to parse this file.

import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const MIN_NODE_MAJOR = 20;

const resultFile = process.env.LUMO_RESULT_FILE;
const modulePath = process.argv[2];
let settled = false;

function writeResult(result) {
  if (!resultFile) return;
  writeFileSync(resultFile, result);
}

function errorMessage(error) {
  if (error instanceof Error) {
    return error.message || error.name || 'Error';
  }
  if (error === undefined) return 'undefined';
  try {
    return typeof error === 'string' ? error : JSON.stringify(error);
  } catch (_) {
    return String(error);
  }
}

function printError(prefix, error) {
  const detail = error instanceof Error && error.stack ? error.stack : errorMessage(error);
  console.error(prefix + detail);
}

// Ends the run as failed with `message`, exit status 1 as Node itself gives an uncaught error.
// The result file is how the entry says why: the runner's judge, knowing the run is a Node
// entry's, takes its message as the run's own ("database is down", not "exit code 1: …").
function fail(message) {
  settled = true;
  try {
    writeResult(JSON.stringify({ success: false, message: message }));
  } catch (writeError) {
    console.error('lumo: could not write the result file: ' + errorMessage(writeError));
  }
  process.exit(1);
}

function pickHandler(mod) {
  if (typeof mod.run === 'function') return { fn: mod.run, self: mod };
  const fallback = mod.default;
  if (typeof fallback === 'function') return { fn: fallback, self: undefined };
  if (fallback !== null && typeof fallback === 'object') {
    if (typeof fallback.run === 'function') return { fn: fallback.run, self: fallback };
    if (typeof fallback.handler === 'function') return { fn: fallback.handler, self: fallback };
  }
  if (typeof mod.handler === 'function') return { fn: mod.handler, self: mod };
  return null;
}

process.on('unhandledRejection', function (reason) {
  printError('Unhandled promise rejection: ', reason);
  if (!settled) fail('unhandled promise rejection: ' + errorMessage(reason));
});
// Node ends a process whose event loop is empty even while a promise is pending: a handler
// awaiting a promise nobody can resolve any more would otherwise end as a success. (An explicit
// process.exit() does not come here: that is the exit code the handler chose.)
process.on('beforeExit', function () {
  if (!settled) {
    fail('the handler never finished: it awaited a promise that nothing was left to settle');
  }
});
process.on('uncaughtException', function (error) {
  printError('Uncaught exception: ', error);
  if (!settled) fail('uncaught exception: ' + errorMessage(error));
});

async function main() {
  const major = Number(process.versions.node.split('.')[0]);
  if (!(major >= MIN_NODE_MAJOR)) {
    fail('Node.js ' + process.versions.node + ' is too old for lumo\'s JavaScript tasks: ' +
      'install Node.js ' + MIN_NODE_MAJOR + ' or later (or set LUMO_NODE to its path)');
    return;
  }
  if (!modulePath) {
    fail('lumo\'s Node entry was started without the module to run');
    return;
  }
  const context = JSON.parse(readFileSync(process.env.LUMO_CONTEXT_FILE, 'utf8'));

  let mod;
  try {
    mod = await import(pathToFileURL(modulePath).href);
  } catch (error) {
    printError('', error);
    fail('could not load `' + process.argv[3] + '`: ' + errorMessage(error));
    return;
  }
  const picked = pickHandler(mod);
  if (!picked) {
    const names = Object.keys(mod).map(function (n) { return '`' + n + '`'; }).join(', ');
    fail('`' + process.argv[3] + '` exports no task handler' +
      (names ? ' (it exports ' + names + ')' : '') +
      ': export `run` (`export const run = async (ctx) => ({ success: true, message: \'…\' })`), ' +
      'a default function, or `handler`');
    return;
  }

  let returned;
  try {
    returned = await picked.fn.call(picked.self, context);
  } catch (error) {
    printError('', error);
    fail(errorMessage(error));
    return;
  }
  settled = true;
  // Nothing returned: the rule for tasks without a result (exit status and last output line).
  if (returned !== undefined && returned !== null) {
    let json;
    try {
      json = JSON.stringify(returned);
    } catch (error) {
      fail('the handler\'s return value cannot be written as JSON: ' + errorMessage(error));
      return;
    }
    // A function or symbol stringifies to undefined: write its text instead (not JSON), which
    // the runner refuses quoting it as what the handler returned, rather than no result at all.
    writeResult(json === undefined ? String(returned) : json);
  }
  process.exit();
}

main().catch(function (error) {
  printError('', error);
  fail(errorMessage(error));
});
