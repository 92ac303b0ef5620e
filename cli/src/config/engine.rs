//! Evaluating `lumo.config.js` in QuickJS (rquickjs) and handing back plain JSON.
//!
//! The config is real JavaScript (PRODUCT.md §3): an ES module or CommonJS, importing
//! `@lumo-framework/core` or relative files, reading `process.env`. This module runs it, picks
//! the export, calls secret `value` functions (JSON would drop them), and converts the result
//! with `JSON.stringify` inside the engine, so validation works on a `serde_json::Value` with
//! the declaration order intact. Everything JavaScript-shaped stays in this file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};
use rquickjs::context::EvalOptions;
use rquickjs::{Context, Ctx, Exception, Function, Module, Object, Promise, Runtime, Value};

use super::ConfigError;
use super::modules::{self, CORE_MODULE, ConfigLoader, ConfigResolver};

/// A config needs microseconds to evaluate; anything near this is a loop that will not end.
pub(super) const TIME_LIMIT: Duration = Duration::from_secs(5);

/// Generous for any config, small enough that a runaway allocation fails fast instead of
/// swapping the CI runner.
const MEMORY_LIMIT: usize = 256 * 1024 * 1024;

const PRELUDE: &str = include_str!("prelude.js");
const PRELUDE_NAME: &str = "<lumo prelude>";

/// The key the prelude's JSON replacer uses to mark values JSON cannot hold (functions, BigInt).
pub(super) const UNSERIALIZABLE_MARK: &str = "\u{0}lumo";

/// What evaluation produced, before validation.
#[derive(Debug)]
pub(super) struct Evaluated {
    /// The exported object as JSON; functions appear as `{ UNSERIALIZABLE_MARK: "function" }`.
    pub export: serde_json::Value,
    /// Secrets whose `value` was a function (called here) or undefined/null, by secret name.
    /// A secret with a plain value is not listed: validation reads it from `export`.
    pub secrets: HashMap<String, Result<String, String>>,
}

/// Why evaluation stopped; turned into a [`ConfigError`] with the right file and location.
enum Failure {
    /// An rquickjs call failed; a JavaScript exception may be pending on the context.
    Js(rquickjs::Error),
    NoExport,
    Message(String),
}

impl From<rquickjs::Error> for Failure {
    fn from(error: rquickjs::Error) -> Self {
        Failure::Js(error)
    }
}

/// Runs the config at `path` (as the user gave it; `root` is its directory, absolute).
pub(super) fn evaluate(
    path: &Path,
    root: &Path,
    time_limit: Duration,
) -> Result<Evaluated, ConfigError> {
    let source = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ConfigError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let engine_error = |error: rquickjs::Error| ConfigError::Evaluate {
        path: path.to_path_buf(),
        line: None,
        column: None,
        message: format!("cannot start the JavaScript engine: {error}"),
    };
    let Some(name) = path.to_str() else {
        return Err(ConfigError::Evaluate {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: "the config path is not valid UTF-8".to_string(),
        });
    };

    let clock = EvaluationClock::start();
    let runtime = Runtime::new().map_err(engine_error)?;
    runtime.set_memory_limit(MEMORY_LIMIT);
    runtime.set_interrupt_handler(Some(Box::new(move || clock.elapsed() > time_limit)));
    runtime.set_loader(ConfigResolver, ConfigLoader);
    let context = Context::full(&runtime).map_err(engine_error)?;

    let out_of_memory = || ConfigError::Evaluate {
        path: path.to_path_buf(),
        line: None,
        column: None,
        message: format!(
            "the config ran out of memory (the {} MiB limit)",
            MEMORY_LIMIT / (1024 * 1024)
        ),
    };
    // `None`: the deadline passed; whether that was a loop or a heap being filled is judged
    // below, once the context no longer holds the runtime.
    let outcome = context.with(|ctx| {
        run(&ctx, name, root, source).map_err(|failure| {
            if clock.elapsed() > time_limit {
                return None;
            }
            Some(match failure {
                Failure::Js(error) => {
                    let error = js_error(&ctx, error, path);
                    if ran_out_of_memory(&error) {
                        return Some(out_of_memory());
                    }
                    error
                }
                Failure::NoExport => ConfigError::NoExport {
                    path: path.to_path_buf(),
                },
                Failure::Message(message) => ConfigError::Evaluate {
                    path: path.to_path_buf(),
                    line: None,
                    column: None,
                    message,
                },
            })
        })
    });
    match outcome {
        Ok(evaluated) => Ok(evaluated),
        Err(Some(error)) => Err(error),
        // Filling the heap with many small objects ends in a collector that runs on almost
        // every allocation, so a config that runs out of memory can reach the deadline first
        // (on a slow machine or a debug build). The memory still held tells the two apart: a
        // loop that runs forever holds next to nothing, a config near the limit is filling it.
        Err(None) if filling_the_heap(runtime.memory_usage().malloc_size) => Err(out_of_memory()),
        Err(None) => Err(ConfigError::Evaluate {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: format!(
                "config evaluation took longer than {} s; does it loop forever?",
                time_limit.as_secs()
            ),
        }),
    }
}

/// The time a config has spent evaluating: the CPU time of the evaluating thread, so that a
/// loaded machine (parallel tests, a build beside it) does not turn a config that fills its
/// memory, or merely a slow one, into "does it loop forever?". Evaluation does no waiting (no
/// I/O beyond reading its modules), so on an idle machine this is its wall-clock time. Where
/// the thread's CPU clock cannot be read, wall-clock time is used.
#[derive(Clone, Copy)]
struct EvaluationClock {
    cpu_at_start: Option<Duration>,
    wall_at_start: Instant,
}

impl EvaluationClock {
    fn start() -> Self {
        EvaluationClock {
            cpu_at_start: thread_cpu_time(),
            wall_at_start: Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        match (self.cpu_at_start, thread_cpu_time()) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => self.wall_at_start.elapsed(),
        }
    }
}

fn thread_cpu_time() -> Option<Duration> {
    let now = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(Duration::from(now))
}

/// Whether an engine holding `malloc_size` bytes at the deadline was running out of memory:
/// past half of [`MEMORY_LIMIT`], which no config needs (they take well under 1 MiB).
fn filling_the_heap(malloc_size: i64) -> bool {
    usize::try_from(malloc_size).is_ok_and(|size| size > MEMORY_LIMIT / 2)
}

fn run<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    root: &Path,
    source: Vec<u8>,
) -> Result<Evaluated, Failure> {
    install_prelude(ctx, name, root)?;

    let module = Module::declare(ctx.clone(), name, source)?;
    let (module, evaluation) = module.eval()?;
    settle(evaluation)?;

    let default_export: Value = module.namespace()?.get("default")?;
    let export = if default_export.is_undefined() {
        commonjs_export(ctx)?
    } else {
        default_export
    };
    let export = resolve_value(export)?;
    let Some(export) = export
        .into_object()
        .filter(|o| !o.is_array() && !o.is_function())
    else {
        return Err(Failure::NoExport);
    };

    let secrets = resolve_secrets(ctx, &export)?;

    let internal = internals(ctx)?;
    let replacer: Function = internal.get("replacer")?;
    let json = ctx
        .json_stringify_replacer(export, replacer)
        .map_err(|error| match error {
            rquickjs::Error::Exception => {
                let cause = describe_thrown(&ctx.catch());
                Failure::Message(format!(
                    "the exported configuration cannot be converted to JSON: {cause}"
                ))
            }
            other => Failure::Js(other),
        })?
        .ok_or(Failure::NoExport)?
        .to_string()?;
    let export = serde_json::from_str(&json).map_err(|error| {
        Failure::Message(format!("the exported configuration is not JSON: {error}"))
    })?;
    Ok(Evaluated { export, secrets })
}

/// Defines `module`, `exports`, `require`, `process`, `console` and the core built-in.
fn install_prelude<'js>(ctx: &Ctx<'js>, name: &str, root: &Path) -> Result<(), Failure> {
    let mut options = EvalOptions::default();
    options.filename = Some(PRELUDE_NAME.to_string());
    let install: Function = ctx.eval_with_options(PRELUDE, options)?;

    let host = Object::new(ctx.clone())?;
    let env = Object::new(ctx.clone())?;
    for (key, value) in std::env::vars_os() {
        // A variable that is not UTF-8 cannot be a meaningful config input; skip it rather
        // than mangle it.
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
            env.set(key, value)?;
        }
    }
    let root_string = root.to_string_lossy().into_owned();
    let absolute_file = root.join(Path::new(name).file_name().unwrap_or_default());
    host.set("env", env)?;
    host.set("root", root_string)?;
    host.set("configFile", name)?;
    host.set(
        "configFileAbsolute",
        absolute_file.to_string_lossy().into_owned(),
    )?;
    host.set("platform", node_platform())?;
    host.set(
        "resolve",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, base: String, name: String| {
            modules::resolve_path(&base, &name)
                .map_err(|message| Exception::throw_message(&ctx, &message))
        })?,
    )?;
    host.set(
        "read",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, file: String| {
            std::fs::read_to_string(&file).map_err(|error| {
                Exception::throw_message(&ctx, &format!("cannot read `{file}`: {error}"))
            })
        })?,
    )?;
    host.set(
        "evalScript",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, source: String, file: String| {
                let mut options = EvalOptions::default();
                options.strict = false;
                options.filename = Some(file);
                ctx.eval_with_options::<Value<'js>, _>(source, options)
            },
        )?,
    )?;
    host.set(
        "dirname",
        Function::new(ctx.clone(), |file: String| modules::dirname(&file))?,
    )?;
    host.set(
        "print",
        Function::new(ctx.clone(), |line: String| {
            use std::io::Write as _;
            // The config's own console output is diagnostics: stderr, never stdout (which
            // belongs to `--json`).
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        })?,
    )?;
    install.call::<_, ()>((host,))?;
    Ok(())
}

fn node_platform() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    }
}

fn internals<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let symbol: Value = ctx.eval("Symbol.for('lumo.internal')")?;
    ctx.globals().get(symbol)
}

/// `module.exports` (or `exports.x = ...`) when there is no default export. Undefined when the
/// config exported nothing at all.
fn commonjs_export<'js>(ctx: &Ctx<'js>) -> Result<Value<'js>, Failure> {
    let module: Object = ctx.globals().get("module")?;
    let exports: Value = module.get("exports")?;
    let Some(object) = exports.as_object() else {
        return Ok(exports);
    };
    // Transpiled ES modules (`exports.default = ...; exports.__esModule = true`).
    if object.get::<_, bool>("__esModule").unwrap_or(false) {
        let default: Value = object.get("default")?;
        if !default.is_undefined() {
            return Ok(default);
        }
    }
    let initial: Value = internals(ctx)?.get("initialExports")?;
    let untouched = exports == initial && object.keys::<String>().next().is_none();
    Ok(if untouched {
        Value::new_undefined(ctx.clone())
    } else {
        exports
    })
}

/// A function export is called with no arguments; a promise is awaited.
fn resolve_value(value: Value<'_>) -> Result<Value<'_>, Failure> {
    let value = match value.as_function() {
        Some(function) => function.call(())?,
        None => value,
    };
    match value.as_promise() {
        Some(promise) => Ok(settle(promise.clone())?),
        None => Ok(value),
    }
}

/// Drives the job queue until `promise` settles.
fn settle(promise: Promise<'_>) -> Result<Value<'_>, Failure> {
    match promise.finish::<Value>() {
        Err(rquickjs::Error::WouldBlock) => Err(Failure::Message(
            "the config awaits a promise that never settles".to_string(),
        )),
        other => Ok(other?),
    }
}

/// Calls every secret `value` function now (JSON would drop it) and records secrets whose
/// value is missing at run time. A failure here is not a config error: a secret matters only
/// when a task that needs it runs, so `lumo tasks` works without it.
fn resolve_secrets<'js>(
    ctx: &Ctx<'js>,
    export: &Object<'js>,
) -> Result<HashMap<String, Result<String, String>>, Failure> {
    let mut resolved = HashMap::new();
    let secrets: Value = export.get("secrets")?;
    let Some(secrets) = secrets
        .as_object()
        .filter(|o| !o.is_array() && !o.is_function())
    else {
        return Ok(resolved);
    };
    for name in secrets.keys::<String>() {
        let name = name?;
        let entry: Value = secrets.get(name.as_str())?;
        let Some(entry) = entry
            .as_object()
            .filter(|o| !o.is_array() && !o.is_function())
        else {
            continue;
        };
        if !entry.contains_key("value")? {
            continue;
        }
        let value: Value = entry.get("value")?;
        let outcome = if let Some(function) = value.as_function() {
            match function
                .call::<_, Value>(())
                .map_err(Failure::from)
                .and_then(resolve_value)
            {
                Ok(returned) => secret_string(&returned, "returned"),
                Err(Failure::Js(rquickjs::Error::Exception)) => {
                    Err(format!("the function threw {}", thrown_kind(&ctx.catch())))
                }
                Err(other) => return Err(other),
            }
        } else if value.is_undefined() || value.is_null() {
            secret_string(&value, "is")
        } else {
            continue;
        };
        resolved.insert(name, outcome);
    }
    Ok(resolved)
}

fn secret_string(value: &Value<'_>, verb: &str) -> Result<String, String> {
    if let Some(string) = value.as_string() {
        return string.to_string().map_err(|error| error.to_string());
    }
    if let Some(number) = value.as_number() {
        return Ok(format_number(number));
    }
    if let Some(boolean) = value.as_bool() {
        return Ok(boolean.to_string());
    }
    let what = if value.is_undefined() {
        "undefined".to_string()
    } else if value.is_null() {
        "null".to_string()
    } else {
        format!("{} (a secret must be a string)", value.type_name())
    };
    let subject = if verb == "returned" {
        "the function"
    } else {
        "the value"
    };
    Err(format!("{subject} {verb} {what}"))
}

/// What a secret's `value` function threw, never its text: the message of an error thrown
/// while computing a secret can quote the secret (`JSON.parse(process.env.DSN)` quotes part of
/// the DSN in its `SyntaxError`), and the true value is unknown, so it cannot be masked. Only
/// the built-in error names are shown; a config can give an error any `name`.
fn thrown_kind(value: &Value<'_>) -> String {
    const BUILT_IN_ERRORS: [&str; 9] = [
        "Error",
        "AggregateError",
        "EvalError",
        "InternalError",
        "RangeError",
        "ReferenceError",
        "SyntaxError",
        "TypeError",
        "URIError",
    ];
    const NOT_SHOWN: &str = "it may contain the secret";
    let built_in = value
        .as_exception()
        .and_then(|exception| exception.get::<_, Option<String>>("name").ok().flatten())
        .filter(|name| BUILT_IN_ERRORS.contains(&name.as_str()));
    match built_in {
        Some(name) => {
            let article = if name.starts_with(['A', 'E', 'I', 'U']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {name} (its message is not shown: {NOT_SHOWN})")
        }
        None if value.is_object() => {
            format!("an exception (not shown: {NOT_SHOWN})")
        }
        None => {
            let kind = match value.type_name() {
                "int" | "float" => "a number".to_string(),
                "undefined" | "null" => value.type_name().to_string(),
                other => format!("a {other}"),
            };
            format!("{kind} (not shown: {NOT_SHOWN})")
        }
    }
}

/// JavaScript's `String(number)` for the common cases: `8080`, not `8080.0`.
fn format_number(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{number:.0}")
    } else {
        number.to_string()
    }
}

/// `TypeError: x is not a function`, or `uncaught exception: <value>` for a thrown non-Error.
fn describe_thrown(value: &Value<'_>) -> String {
    if let Some(exception) = value.as_exception() {
        let name = exception
            .get::<_, Option<String>>("name")
            .ok()
            .flatten()
            .unwrap_or_else(|| "Error".to_string());
        let message = exception.message().unwrap_or_default();
        return if message.is_empty() {
            name
        } else {
            format!("{name}: {message}")
        };
    }
    let shown = value
        .get::<rquickjs::convert::Coerced<String>>()
        .map(|coerced| coerced.0)
        .unwrap_or_else(|_| value.type_name().to_string());
    format!("uncaught exception: {shown}")
}

/// Whether an evaluation failed because the engine hit [`MEMORY_LIMIT`]. QuickJS throws an
/// `InternalError: out of memory` when it can still allocate the error, and leaves `null` as
/// the exception when even that fails (many small objects fill the heap to the last byte);
/// neither is something a config throws on purpose.
fn ran_out_of_memory(error: &ConfigError) -> bool {
    matches!(
        error,
        ConfigError::Evaluate { message, .. }
            if message == "uncaught exception: null"
                || message == "InternalError: out of memory"
    )
}

/// Turns a failed rquickjs call into `Evaluate`, located at the innermost frame in a user file.
fn js_error(ctx: &Ctx<'_>, error: rquickjs::Error, config: &Path) -> ConfigError {
    let (message, frame) = match error {
        rquickjs::Error::Exception => {
            let thrown = ctx.catch();
            let frame = thrown
                .as_exception()
                .and_then(|exception| exception.stack())
                .and_then(|stack| user_frame(&stack));
            (describe_thrown(&thrown), frame)
        }
        other => (other.to_string(), None),
    };
    let (path, line, column) = match frame {
        Some((file, line, column)) => (PathBuf::from(file), Some(line), Some(column)),
        None => (config.to_path_buf(), None, None),
    };
    ConfigError::Evaluate {
        path,
        line,
        column,
        message,
    }
}

/// The first `file:line:column` of a QuickJS stack trace that is in a user's file.
///
/// Frames look like `    at name (file:line:column)` or, for syntax errors,
/// `    at file:line:column`.
fn user_frame(stack: &str) -> Option<(String, u32, u32)> {
    stack.lines().find_map(|line| {
        let frame = line.trim().strip_prefix("at ")?;
        let location = match (frame.rfind(" ("), frame.strip_suffix(')')) {
            (Some(open), Some(_)) => &frame[open + 2..frame.len() - 1],
            _ => frame,
        };
        let mut parts = location.rsplitn(3, ':');
        let column = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        let file = parts.next()?;
        let internal = file == PRELUDE_NAME || file == CORE_MODULE || file.starts_with('<');
        (!internal).then(|| (file.to_string(), line, column))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_innermost_user_frame() {
        let stack = "    at defineConfig (@lumo-framework/core:2:10)\n    \
                     at explode (shared.js:3:11)\n    at <eval> (lumo.config.js:5:1)\n";
        assert_eq!(user_frame(stack), Some(("shared.js".to_string(), 3, 11)));
        assert_eq!(
            user_frame("    at /tmp/x/lumo.config.js:12:5\n"),
            Some(("/tmp/x/lumo.config.js".to_string(), 12, 5))
        );
        assert_eq!(user_frame("    at require (native)\n"), None);
    }

    #[test]
    fn numbers_format_like_javascript() {
        assert_eq!(format_number(8080.0), "8080");
        assert_eq!(format_number(1.5), "1.5");
    }
}
