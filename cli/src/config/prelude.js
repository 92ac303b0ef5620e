// Runs before `lumo.config.js` (see engine.rs) so a config written for Node loads unchanged:
// it installs the CommonJS globals (`module`, `exports`, `require`, `__filename`, `__dirname`),
// `process` and `console`, and keeps the pieces the Rust side and the built-in
// `@lumo-framework/core` module need under one non-enumerable symbol on `globalThis`.
//
// `host` holds the few things only Rust can do: the real environment, the project root, module
// resolution (shared with `import`), reading files, compiling a script under its own file name
// (so errors point into the right file), and writing to stderr.
(function installLumoPrelude(host) {
  'use strict';

  const CORE = '@lumo-framework/core';

  const processObject = {
    env: host.env,
    cwd: () => host.root,
    platform: host.platform,
    argv: [],
  };

  // Lumo's `env` reads `process.env` at call time, so a config may set defaults first. As in
  // the Lumo Framework (`fromEnv` in @lumo-framework/core), an empty variable counts as unset
  // and the fallback defaults to '' (not `undefined`).
  function env(name, fallback = '') {
    const value = processObject.env[name];
    return value === undefined || value === '' ? fallback : value;
  }
  function defineConfig(config) {
    return config;
  }
  const core = Object.freeze({
    defineConfig,
    env,
    fromEnv: env,
    config: Object.freeze({ defineConfig, env, fromEnv: env }),
  });

  // CommonJS: every loaded file is cached by resolved path, like Node, so a cycle sees the
  // partially filled `exports` instead of recursing forever.
  const cache = new Map();

  function loadCommonJs(file) {
    const cached = cache.get(file);
    if (cached !== undefined) {
      return cached.exports;
    }
    if (file.endsWith('.json')) {
      const record = { exports: undefined };
      cache.set(file, record);
      record.exports = host.evalScript('(' + host.read(file) + '\n)', file);
      return record.exports;
    }
    if (file.endsWith('.mjs')) {
      throw new Error(`cannot require() the ES module \`${file}\`; use \`import\` instead`);
    }
    const module = { exports: {} };
    cache.set(file, module);
    // Kept on the first line so line numbers in errors match the file.
    const wrapped =
      '(function (exports, require, module, __filename, __dirname) {' +
      host.read(file) +
      '\n})';
    const body = host.evalScript(wrapped, file);
    body.call(module.exports, module.exports, makeRequire(file), module, file, host.dirname(file));
    return module.exports;
  }

  function makeRequire(base) {
    return function require(name) {
      if (name === CORE) {
        return core;
      }
      return loadCommonJs(host.resolve(base, String(name)));
    };
  }

  function show(value) {
    if (typeof value === 'string') {
      return value;
    }
    if (value instanceof Error) {
      return String(value);
    }
    try {
      const json = JSON.stringify(value);
      return json === undefined ? String(value) : json;
    } catch (_) {
      return String(value);
    }
  }
  const print = (...values) => host.print(values.map(show).join(' '));
  const consoleObject = {
    log: print,
    info: print,
    debug: print,
    warn: print,
    error: print,
    trace: print,
  };

  // JSON.stringify drops functions silently; validation must see them to say "got a function"
  // instead of quietly applying a default.
  const MARK = '\u0000lumo';
  function replacer(_key, value) {
    if (typeof value === 'function') {
      return { [MARK]: 'function' };
    }
    if (typeof value === 'bigint') {
      return { [MARK]: 'bigint' };
    }
    return value;
  }

  const moduleObject = { exports: {} };
  const globals = {
    module: moduleObject,
    exports: moduleObject.exports,
    require: makeRequire(host.configFile),
    __filename: host.configFileAbsolute,
    __dirname: host.root,
    process: processObject,
    console: consoleObject,
  };
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
  }
  Object.defineProperty(globalThis, Symbol.for('lumo.internal'), {
    value: Object.freeze({ core, loadCommonJs, replacer, initialExports: moduleObject.exports }),
  });
});
