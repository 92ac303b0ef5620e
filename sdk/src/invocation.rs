//! One run of a task under the contract (PRODUCT.md §4): read the context, run the handler,
//! hand the result back. Everything the process touches (stdin, the two files, stdout and
//! stderr) is a field, and the exit code is returned rather than acted on, so the tests below
//! drive the whole contract without a child process and without `process::exit`.

use std::any::Any;
use std::env;
use std::fs;
use std::future::Future;
use std::io::{self, IsTerminal, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

use crate::result::{self, IntoTaskResult, TaskResultExt};
use crate::{TaskContext, TaskResult, runtime};

/// Exit code of a run whose result is a success.
pub(crate) const EXIT_SUCCESS: u8 = 0;
/// Exit code of a failed result, a panic, or a result that could not be written.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code when there is no readable context: the task never started.
pub(crate) const EXIT_BAD_CONTEXT: u8 = 2;

/// Where one run reads its context from and writes its result to.
pub(crate) struct Invocation<'a> {
    /// The first place the context is read from; `None` when stdin is a terminal (someone ran
    /// the binary by hand, and reading would wait for them to type).
    pub stdin: Option<Box<dyn Read + 'a>>,
    /// `LUMO_CONTEXT_FILE`: where the context is read from when stdin holds nothing.
    pub context_file: Option<PathBuf>,
    /// `LUMO_RESULT_FILE`: where the result goes; without it, the result is printed on stdout.
    pub result_file: Option<PathBuf>,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// How a run ended: the result handed back (or that would have been) and the exit code.
#[derive(Debug)]
pub(crate) struct Outcome {
    // `run` needs only the exit code; the tests check the result itself.
    #[cfg_attr(not(test), allow(dead_code))]
    pub result: TaskResult,
    pub exit_code: u8,
}

impl<'a> Invocation<'a> {
    /// The process's own stdin, `LUMO_CONTEXT_FILE`, `LUMO_RESULT_FILE`, stdout and stderr.
    pub fn from_process(stdout: &'a mut dyn Write, stderr: &'a mut dyn Write) -> Self {
        let stdin = io::stdin();
        let stdin: Option<Box<dyn Read + 'a>> = if stdin.is_terminal() {
            None
        } else {
            Some(Box::new(stdin.lock()))
        };
        Invocation {
            stdin,
            context_file: path_from_env("LUMO_CONTEXT_FILE"),
            result_file: path_from_env("LUMO_RESULT_FILE"),
            stdout,
            stderr,
        }
    }

    /// Reads the context, runs `handler` on it (a panic becomes a failed result), and writes
    /// the result.
    pub fn run<H, F>(mut self, handler: H) -> Outcome
    where
        H: FnOnce(TaskContext) -> F,
        F: Future,
        F::Output: IntoTaskResult,
    {
        let context = match self.read_context() {
            Ok(context) => context,
            Err(reason) => {
                let message = format!("cannot read the task context: {reason}");
                self.report(&message);
                let result = TaskResult::fail(message);
                // Recorded when there is somewhere to record it; never printed on stdout,
                // where it would pass for the output of a task that did not run.
                if self.result_file.is_some()
                    && let Err(message) = self.deliver(&result)
                {
                    self.report(&message);
                }
                return Outcome {
                    result,
                    exit_code: EXIT_BAD_CONTEXT,
                };
            }
        };

        // The handler's future is created and polled inside `catch_unwind`, so a panic anywhere
        // in the handler is caught. `AssertUnwindSafe` is sound here: nothing the handler
        // touched is used again after a panic; only the payload's message is.
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            runtime::try_block_on(handler(context)).map(IntoTaskResult::into_task_result)
        }));
        let result = match ran {
            Ok(Ok(result)) => result::checked(result),
            Ok(Err(e)) => TaskResult::fail(format!("lumo-task cannot start its runtime: {e}")),
            Err(payload) => TaskResult::fail(panic_message(payload.as_ref())),
        };

        match self.deliver(&result) {
            Ok(()) => Outcome {
                exit_code: if result.success {
                    EXIT_SUCCESS
                } else {
                    EXIT_FAILURE
                },
                result,
            },
            Err(message) => {
                self.report(&message);
                Outcome {
                    result: TaskResult::fail(message),
                    exit_code: EXIT_FAILURE,
                }
            }
        }
    }

    /// The context from stdin when it holds anything, else from `LUMO_CONTEXT_FILE`. A stdin
    /// that holds something that is not a context is an error, not a reason to try the file:
    /// the two are written together, and a mismatch means something is wrong.
    fn read_context(&mut self) -> Result<TaskContext, String> {
        if let Some(stdin) = self.stdin.as_mut() {
            let mut bytes = Vec::new();
            // A read error (stdin closed in a way std does not already treat as end of input)
            // counts as an empty stdin: the file is the documented second source.
            if stdin.read_to_end(&mut bytes).is_ok() && !bytes.trim_ascii().is_empty() {
                return serde_json::from_slice(&bytes)
                    .map_err(|e| format!("stdin does not hold a TaskContext: {e}"));
            }
        }
        let Some(path) = &self.context_file else {
            return Err(
                "stdin is empty and `LUMO_CONTEXT_FILE` is not set; lumo hands a task \
                        its context as JSON on stdin and in that file"
                    .to_owned(),
            );
        };
        let bytes = fs::read(path).map_err(|e| {
            format!(
                "stdin is empty and `{}` (LUMO_CONTEXT_FILE) cannot be read: {e}",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "`{}` (LUMO_CONTEXT_FILE) does not hold a TaskContext: {e}",
                path.display()
            )
        })
    }

    /// Writes `result` to `LUMO_RESULT_FILE`, or as one JSON line on stdout without it.
    fn deliver(&mut self, result: &TaskResult) -> Result<(), String> {
        let json = serde_json::to_vec(result)
            .map_err(|e| format!("cannot serialize the task's result: {e}"))?;
        match &self.result_file {
            Some(path) => fs::write(path, &json).map_err(|e| {
                format!(
                    "cannot write the result to `{}` (LUMO_RESULT_FILE): {e}",
                    path.display()
                )
            }),
            None => self
                .stdout
                .write_all(&json)
                .and_then(|()| self.stdout.write_all(b"\n"))
                .and_then(|()| self.stdout.flush())
                .map_err(|e| format!("cannot print the result on stdout: {e}")),
        }
    }

    /// A line on stderr, where lumo shows and stores it with the task's output.
    fn report(&mut self, message: &str) {
        // Nowhere left to report a failing stderr to; the exit code still tells.
        let _ = writeln!(self.stderr, "lumo-task: error: {message}");
    }
}

fn path_from_env(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The message of a failed result for a handler that panicked with `payload`.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    let Some(text) = text else {
        return "the task panicked".to_owned();
    };
    // What tokio says when its IO or timers are used outside a tokio runtime: the one panic
    // whose fix is in this crate's features, not in the handler.
    if !runtime::TOKIO && text.contains("Tokio 1.x runtime") {
        format!(
            "the task panicked: {text}; the handler uses tokio: enable the `tokio` feature of \
             `lumo-task` to run it on a tokio runtime"
        )
    } else {
        format!("the task panicked: {text}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{DeploymentInfo, Trigger};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn context(environment: &str) -> TaskContext {
        TaskContext {
            deployment: DeploymentInfo {
                is_first_deploy: true,
                previous_version: None,
                environment: environment.into(),
                version: "v1".into(),
            },
            config: json!({}),
            args: BTreeMap::from([("target".to_owned(), "sessions".to_owned())]),
            working_directory: "/bundle".into(),
            task: "seed".into(),
            run_id: "run-1".into(),
            trigger: Trigger::Deploy,
        }
    }

    fn context_json(environment: &str) -> String {
        serde_json::to_string(&context(environment)).unwrap()
    }

    /// What one invocation did: its outcome and what it printed.
    struct Ran {
        outcome: Outcome,
        stdout: String,
        stderr: String,
    }

    /// Runs `handler` with `stdin` (`None`: a terminal) and the two files.
    fn invoke<H, F>(
        stdin: Option<&str>,
        context_file: Option<&Path>,
        result_file: Option<&Path>,
        handler: H,
    ) -> Ran
    where
        H: FnOnce(TaskContext) -> F,
        F: Future,
        F::Output: IntoTaskResult,
    {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let outcome = Invocation {
            stdin: stdin.map(|s| Box::new(io::Cursor::new(s.as_bytes().to_vec())) as Box<_>),
            context_file: context_file.map(Path::to_path_buf),
            result_file: result_file.map(Path::to_path_buf),
            stdout: &mut stdout,
            stderr: &mut stderr,
        }
        .run(handler);
        Ran {
            outcome,
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    fn read_result(path: &Path) -> TaskResult {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    async fn seed(ctx: TaskContext) -> TaskResult {
        TaskResult::ok(format!("seeded {}", ctx.deployment.environment))
            .with_data(json!({ "target": ctx.args.get("target") }))
    }

    #[test]
    fn success_writes_the_result_file_and_exits_0() {
        let dir = tempfile::tempdir().unwrap();
        let result_file = dir.path().join("result.json");
        let ran = invoke(Some(&context_json("dev")), None, Some(&result_file), seed);
        assert_eq!(ran.outcome.exit_code, 0);
        let written = read_result(&result_file);
        assert_eq!(written, ran.outcome.result);
        assert_eq!(
            written,
            TaskResult {
                success: true,
                message: "seeded dev".into(),
                data: Some(json!({"target": "sessions"})),
            }
        );
        assert_eq!(ran.stdout, "", "the result goes to the file, not stdout");
        assert_eq!(ran.stderr, "");
    }

    #[test]
    fn a_failed_result_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let result_file = dir.path().join("result.json");
        let ran = invoke(
            Some(&context_json("dev")),
            None,
            Some(&result_file),
            |_ctx| async { TaskResult::fail("the database is read-only") },
        );
        assert_eq!(ran.outcome.exit_code, 1);
        let written = read_result(&result_file);
        assert!(!written.success);
        assert_eq!(written.message, "the database is read-only");
    }

    #[test]
    fn an_err_from_the_handler_is_a_failed_result() {
        let dir = tempfile::tempdir().unwrap();
        let result_file = dir.path().join("result.json");
        let ran = invoke(
            Some(&context_json("dev")),
            None,
            Some(&result_file),
            |_ctx| async {
                let missing = fs::read_dir("/nonexistent/lumo-task-test")
                    .map_err(|e| format!("cannot list migrations: {e}"))?;
                Ok::<_, String>(TaskResult::ok(format!("{} files", missing.count())))
            },
        );
        assert_eq!(ran.outcome.exit_code, 1);
        let written = read_result(&result_file);
        assert!(
            written.message.starts_with("cannot list migrations: "),
            "{}",
            written.message
        );
    }

    #[test]
    fn a_panic_is_a_failed_result_with_the_panic_message() {
        let dir = tempfile::tempdir().unwrap();
        let result_file = dir.path().join("result.json");
        let ran = invoke(
            Some(&context_json("dev")),
            None,
            Some(&result_file),
            |ctx: TaskContext| async move {
                if ctx.deployment.is_first_deploy {
                    panic!("no seed data for {}", ctx.deployment.environment);
                }
                TaskResult::ok("unreachable")
            },
        );
        assert_eq!(ran.outcome.exit_code, 1);
        let written = read_result(&result_file);
        assert!(!written.success);
        assert_eq!(written.message, "the task panicked: no seed data for dev");

        // A `&'static str` payload, and a panic before the first `.await`.
        let ran = invoke(
            Some(&context_json("dev")),
            None,
            None,
            |_ctx| -> std::future::Ready<TaskResult> { panic!("static message") },
        );
        assert_eq!(ran.outcome.exit_code, 1);
        assert_eq!(
            ran.outcome.result.message,
            "the task panicked: static message"
        );
    }

    #[test]
    fn a_tokio_panic_says_which_feature_to_enable() {
        let ran = invoke(Some(&context_json("dev")), None, None, |_ctx| async {
            panic!(
                "there is no reactor running, must be called from the context of a Tokio 1.x \
                 runtime"
            );
            #[allow(unreachable_code)]
            TaskResult::ok("")
        });
        assert_eq!(ran.outcome.exit_code, 1);
        let message = ran.outcome.result.message;
        assert_eq!(
            message.contains("enable the `tokio` feature"),
            !runtime::TOKIO,
            "{message}"
        );
    }

    #[test]
    fn the_context_comes_from_stdin_before_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let context_file = dir.path().join("context.json");
        fs::write(&context_file, context_json("from-file")).unwrap();
        let ran = invoke(
            Some(&context_json("from-stdin")),
            Some(&context_file),
            None,
            seed,
        );
        assert_eq!(ran.outcome.result.message, "seeded from-stdin");
    }

    #[test]
    fn the_context_comes_from_the_file_when_stdin_is_empty_or_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let context_file = dir.path().join("context.json");
        fs::write(&context_file, context_json("from-file")).unwrap();
        for stdin in [Some(""), Some(" \n"), None] {
            let ran = invoke(stdin, Some(&context_file), None, seed);
            assert_eq!(ran.outcome.exit_code, 0, "stdin {stdin:?}: {}", ran.stderr);
            assert_eq!(ran.outcome.result.message, "seeded from-file");
        }
    }

    #[test]
    fn without_a_result_file_the_result_is_printed_on_stdout() {
        let ran = invoke(Some(&context_json("dev")), None, None, seed);
        assert_eq!(ran.outcome.exit_code, 0);
        let printed: TaskResult = serde_json::from_str(ran.stdout.trim_end()).unwrap();
        assert_eq!(printed.message, "seeded dev");
        assert!(ran.stdout.ends_with("}\n"));
    }

    #[test]
    fn a_context_that_does_not_parse_exits_2_without_running_the_handler() {
        let dir = tempfile::tempdir().unwrap();
        let result_file = dir.path().join("result.json");
        let ran = invoke(
            Some(r#"{"deployment": 1}"#),
            None,
            Some(&result_file),
            |_ctx| async { panic!("the handler must not run") as TaskResult },
        );
        assert_eq!(ran.outcome.exit_code, 2);
        assert!(
            ran.stderr
                .starts_with("lumo-task: error: cannot read the task context: stdin does not hold a TaskContext: "),
            "{}",
            ran.stderr
        );
        let written = read_result(&result_file);
        assert!(!written.success);
        assert!(
            written
                .message
                .starts_with("cannot read the task context: ")
        );
        assert_eq!(ran.stdout, "");
    }

    #[test]
    fn a_context_file_that_does_not_parse_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let context_file = dir.path().join("context.json");
        fs::write(&context_file, "not json").unwrap();
        let ran = invoke(Some(""), Some(&context_file), None, seed);
        assert_eq!(ran.outcome.exit_code, 2);
        assert!(
            ran.stderr
                .contains("(LUMO_CONTEXT_FILE) does not hold a TaskContext")
        );
        assert!(ran.stderr.contains(&context_file.display().to_string()));
        assert_eq!(ran.stdout, "", "no result file: nothing on stdout either");
    }

    #[test]
    fn no_context_at_all_exits_2_saying_where_it_looked() {
        let ran = invoke(None, None, None, seed);
        assert_eq!(ran.outcome.exit_code, 2);
        assert!(
            ran.stderr
                .contains("stdin is empty and `LUMO_CONTEXT_FILE` is not set"),
            "{}",
            ran.stderr
        );
    }

    #[test]
    fn a_result_that_cannot_be_written_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let result_file = dir.path().join("missing-dir/result.json");
        let ran = invoke(Some(&context_json("dev")), None, Some(&result_file), seed);
        assert_eq!(ran.outcome.exit_code, 1);
        assert!(
            ran.stderr.contains("cannot write the result to"),
            "{}",
            ran.stderr
        );
    }

    #[test]
    fn data_that_is_not_an_object_fails_before_it_reaches_the_runner() {
        let dir = tempfile::tempdir().unwrap();
        let result_file = dir.path().join("result.json");
        let ran = invoke(
            Some(&context_json("dev")),
            None,
            Some(&result_file),
            |_ctx| async {
                TaskResult {
                    success: true,
                    message: "counted".into(),
                    data: Some(json!([1, 2])),
                }
            },
        );
        assert_eq!(ran.outcome.exit_code, 1);
        let written = read_result(&result_file);
        assert!(!written.success);
        assert!(
            written
                .message
                .contains("must be a JSON object, not an array")
        );
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn with_tokio_the_handler_can_use_timers_and_io() {
        let ran = invoke(Some(&context_json("dev")), None, None, |_ctx| async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let dir = tokio::fs::read_dir(".").await;
            TaskResult::ok(format!("read_dir ok: {}", dir.is_ok()))
        });
        assert_eq!(ran.outcome.exit_code, 0, "{}", ran.stderr);
        assert_eq!(ran.outcome.result.message, "read_dir ok: true");
    }
}
