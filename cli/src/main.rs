//! `lumo`: parse, dispatch, print the command's outcome or error once, map to an exit code.
//! Nothing else.

use std::process::ExitCode;
use std::sync::Arc;

use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, Parser};

use commands::{CommandResult, Context, ExitStatus, Outcome, Output};
use error::{CliError, ErrorBody, ErrorDocument, ExitKind};
use lumo_cli::args::{self, Cli, Command};
use lumo_cli::stop::StopSignal;
use lumo_cli::{commands, error, output};
use output::Printer;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(mut e) => {
            if let Some(refused) = lumo_cli::flag_values::negative_duration(&e) {
                e = refused;
            }
            let from_variable = variable_behind(&e);
            if let Some(note) = &from_variable {
                e.insert(
                    ContextKind::Suggested,
                    ContextValue::StyledStrs(vec![note.clone().into()]),
                );
            }
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::from(0);
            }
            // `--json` promises one document on stdout, a usage error included.
            if wants_json() {
                let mut document = usage_error_document(&e);
                document.error.causes.extend(from_variable);
                let _ = Printer::json_only().result(&document);
            }
            return ExitCode::from(ExitKind::Invalid.code() as u8);
        }
    };
    init_tracing(&cli.global);
    // Orphaned grandchildren of a task are reparented to us so they can be reaped.
    lumo_runner::executor::become_subreaper();
    let printer = Arc::new(Printer::new(&cli.global));
    let ctx = Context {
        global: cli.global,
        printer: Arc::clone(&printer),
        stop: StopSignal::new(),
    };

    let mut builder = if commands::needs_worker_threads(&cli.command) {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&format!("cannot start the async runtime: {e}"), &[], None);
            return ExitCode::from(4);
        }
    };
    let result = runtime.block_on(async {
        ctx.stop.listen_for_signals();
        // A command holding an environment's lock winds down by itself on a stop (it stops its
        // task and records why); anything else ends here at once, as without a handler.
        tokio::select! {
            result = dispatch(cli.command, &ctx) => result,
            reason = ctx.stop.unguarded() => Err(CliError::stopped(reason)),
        }
    });
    // Don't wait for stray blocking work (a stuck DNS lookup, a task's pipe) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    let mut partial = None;
    let error = match result {
        // `--json` promises one document: a stopped command's report goes inside the error's.
        Ok(Outcome {
            output,
            status: ExitStatus::Stopped(reason),
        }) if printer.json => {
            if let Output::Report(report) = output {
                partial = report
                    .to_json()
                    .ok()
                    .and_then(|json| serde_json::from_slice(&json).ok());
            }
            CliError::stopped(reason)
        }
        Ok(outcome) => match print(&printer, outcome) {
            Ok(ExitStatus::Success) => return ExitCode::SUCCESS,
            Ok(ExitStatus::TaskFailed) => return ExitCode::from(1),
            // The report says what happened before the stop; the error says why it stopped.
            Ok(ExitStatus::Stopped(reason)) => CliError::stopped(reason),
            Err(e) => CliError::new(ExitKind::Backend, e),
        },
        Err(e) => e,
    };
    report(&printer, &error, partial);
    ExitCode::from(error.kind.code() as u8)
}

/// Prints what the command produced on stdout, once.
fn print(printer: &Printer, outcome: Outcome) -> std::io::Result<ExitStatus> {
    match outcome.output {
        Output::Report(report) => printer.report(report.as_ref())?,
        Output::Raw(bytes) => printer.raw(&bytes)?,
        Output::Stream(mut reader) => printer.raw_from(&mut reader)?,
        Output::Nothing => {}
    }
    Ok(outcome.status)
}

async fn dispatch(command: Command, ctx: &Context) -> CommandResult {
    match command {
        Command::Deploy(args) => commands::deploy::run(args, ctx).await,
        Command::Run(args) => commands::run::run(args, ctx).await,
        Command::Exec(args) => commands::exec::run(args, ctx).await,
        Command::Tasks(args) => commands::tasks::run(args, ctx).await,
        Command::Build(args) => commands::build::run(args, ctx).await,
        Command::History(args) => commands::history::run(args, ctx).await,
        Command::Logs(args) => commands::logs::run(args, ctx).await,
        Command::Status(args) => commands::status::run(args, ctx).await,
        Command::Lock(args) => commands::lock::lock(args, ctx).await,
        Command::Unlock(args) => commands::lock::unlock(args, ctx).await,
        Command::Init(args) => commands::init::run(args).await,
        Command::Completions(args) => commands::completions::run(args),
        Command::Prune(args) => commands::prune::run(args, ctx).await,
    }
}

fn report(printer: &Printer, e: &CliError, partial: Option<serde_json::Value>) {
    let (message, causes) = e.chain();
    printer.error(&message, &causes, e.hint.as_deref());
    if printer.json {
        let doc = ErrorDocument {
            error: ErrorBody {
                kind: e.kind,
                exit_code: e.kind.code(),
                message,
                causes,
                hint: e.hint.clone(),
                problems: e.problems.clone(),
            },
            report: partial,
        };
        let _ = printer.result(&doc);
    }
}

/// Whether `--json` was asked for, when the arguments could not be parsed.
fn wants_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// When clap rejected a value that came from an environment variable (`LUMO_PROVIDER=gcp`)
/// rather than the command line, a note naming the variable: clap's error names only the flag,
/// which the user never typed.
fn variable_behind(e: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    // clap names the argument as `--provider <PROVIDER>`.
    let flag = arg.split_whitespace().next()?;
    let long = flag.strip_prefix("--")?;
    let command = Cli::command();
    let variable = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_string_lossy()
        .into_owned();
    if !lumo_cli::flag_source::value_from_variable(long, &variable) {
        return None;
    }
    Some(format!(
        "the value comes from the environment variable `{variable}`; unset it or pass `{flag}`"
    ))
}

/// A usage error as the `--json` error document: clap's message without its usage lines.
fn usage_error_document(e: &clap::Error) -> ErrorDocument {
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let message = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_string();
    ErrorDocument {
        error: ErrorBody {
            kind: ExitKind::Invalid,
            exit_code: ExitKind::Invalid.code(),
            message,
            causes: Vec::new(),
            hint: Some(
                "`lumo --help` lists the commands, `lumo COMMAND --help` their flags".to_string(),
            ),
            problems: Vec::new(),
        },
        report: None,
    }
}

fn init_tracing(global: &args::GlobalArgs) {
    // The SDK's own warnings (an unreachable instance metadata service while it looks for a
    // region, say; an `AWS_CONFIG_FILE` that is not there) are multi-line debug dumps or come
    // before lumo's own error about the same thing; lumo reports what failed in its own words.
    let default = if global.verbose {
        "lumo=debug,warn"
    } else {
        "warn,aws_config=error,aws_runtime=error,aws_smithy_runtime=error,aws_smithy_http_client=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LUMO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let color = lumo_cli::color::enabled_for_stderr(global.color);
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false);
    if global.verbose || std::env::var_os("LUMO_LOG").is_some() {
        let _ = subscriber.try_init();
    } else {
        let plain = lumo_cli::diagnostics::PlainDiagnostics { color };
        let _ = subscriber.event_format(plain).try_init();
    }
}
