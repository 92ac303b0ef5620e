//! `lumo logs RUN_ID [--tail N] [--follow]`: the full output of a run, or its last N lines (raw
//! on stdout), or with `--json` the run's record and that output; `--follow` keeps showing a
//! running run's output until it ends (`follow.rs`). A skipped run never started and has none.
//! RUN_ID may be a unique prefix of the id ([`find_run`]); on `aws` a prefix finds only runs of
//! the environments the config names (the table is keyed by environment; see
//! `AuditStore::runs_by_id_prefix`).

mod follow;

use std::fmt;
use std::io::{self, Read};

use lumo_runner::RunId;
use lumo_runner::contract::RunStatus;
use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::args::LogsArgs;
use crate::backend::records::TaskRun;
use crate::backend::{Backend, LogReader};
use crate::config::Provider;
use crate::error::CliError;
use crate::project::Project;

pub async fn run(args: LogsArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let id_or_prefix = run_id_or_prefix(&args.run_id)?;
    let env = args.env.as_deref().map(valid_env).transpose()?;
    let backend = ctx.connect(&project).await?;
    let run = find_run(&backend, &project, &id_or_prefix, env).await?;
    let run_id = run.id.clone();
    if args.follow && ctx.printer.json {
        return Err(CliError::invalid(
            "`--follow` shows output as it comes, as text; it cannot be used with `--json`",
        ));
    }
    if args.follow && run.status == RunStatus::Running {
        follow::follow(ctx, &project, &backend, run, args.tail).await?;
        return Ok(Outcome::nothing());
    }
    if run.status == RunStatus::Skipped {
        // A skipped run never started: its whole output is empty, not lost.
        if ctx.printer.json {
            return Ok(Outcome::report(Logs {
                run,
                output: Some(String::new()),
                complete: true,
            }));
        }
        let why = run
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        ctx.printer.status(format!(
            "run `{run_id}` of `{}` was skipped{why} and never started, so it has no output",
            run.task
        ));
        return Ok(Outcome::nothing());
    }
    let log: Option<LogReader> = match args.tail {
        // The last lines are found in the whole log; only the full output is streamed.
        Some(n) => backend.audit.read_log(&run).await?.map(|mut bytes| {
            let keep = last_lines(&bytes, n).len();
            bytes.drain(..bytes.len() - keep);
            Box::new(io::Cursor::new(bytes)) as LogReader
        }),
        None => backend.audit.open_log(&run).await?,
    };
    if ctx.printer.json {
        return Ok(match log {
            Some(log) => Outcome::stream(Box::new(JsonLogs::new(run, log)?)),
            None => Outcome::report(Logs {
                run,
                output: None,
                complete: false,
            }),
        });
    }
    match log {
        Some(log) => Ok(Outcome::stream(log)),
        None => {
            ctx.printer.warn(format!(
                "the full output of run `{run_id}` is not stored; showing its tail"
            ));
            let tail = run.output_tail.unwrap_or_default().into_bytes();
            let shown = match args.tail {
                Some(n) => last_lines(&tail, n).to_vec(),
                None => tail,
            };
            Ok(Outcome::raw(shown))
        }
    }
}

/// How long a run id is (a ULID).
const RUN_ID_LEN: usize = 26;
/// How many runs an ambiguous prefix lists.
const MAX_MATCHES_SHOWN: usize = 10;

/// A run id as typed: the whole id, or the start of one (as git and docker take them), in any
/// case. Run ids are ULIDs: upper-case Crockford base32, which leaves out `I`, `L`, `O` and `U`.
pub fn run_id_or_prefix(text: &str) -> Result<String, CliError> {
    let id = text.trim().to_ascii_uppercase();
    let not_an_id = |why: String| {
        CliError::invalid(format!(
            "`{text}` is not a run id nor the start of one: {why}"
        ))
        .hint("`lumo history --env ENV` shows run ids")
    };
    if id.is_empty() || id.len() > RUN_ID_LEN {
        return Err(not_an_id(format!(
            "a run id is {RUN_ID_LEN} letters and digits"
        )));
    }
    let in_alphabet =
        |c: char| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c));
    if let Some(bad) = text
        .trim()
        .chars()
        .find(|c| !in_alphabet(c.to_ascii_uppercase()))
    {
        return Err(not_an_id(format!(
            "`{bad}` is never in one (run ids are digits and letters but `I`, `L`, `O` and `U`)"
        )));
    }
    Ok(id)
}

/// `--env` as given: any well-formed name, declared or not, since runs outlive a config's list.
fn valid_env(env: &str) -> Result<&str, CliError> {
    if crate::project::valid_env_name(env) {
        Ok(env)
    } else {
        Err(crate::project::ProjectError::BadEnvironmentName { env: env.into() }.into())
    }
}

/// The run `id` names, of `env` when given: the run with that whole id, or the one run whose id
/// starts with it. A prefix that several ids start with is an error listing them.
pub async fn find_run(
    backend: &Backend,
    project: &Project,
    id: &str,
    env: Option<&str>,
) -> Result<TaskRun, CliError> {
    let name = &project.config.project_name;
    let in_env = env.map(|e| format!(" in `{e}`")).unwrap_or_default();
    if id.len() == RUN_ID_LEN {
        let whole = RunId::parse(id).map_err(|e| CliError::invalid(e.to_string()))?;
        let run = backend.audit.run(&whole).await?;
        return run
            .filter(|run| env.is_none_or(|e| run.env == e))
            .ok_or_else(|| {
                CliError::invalid(format!("no run `{id}` in project `{name}`{in_env}"))
                    .hint("`lumo history --env ENV` lists recent runs")
            });
    }
    let no_run = || {
        let hint = match (project.config.provider, env) {
            (Provider::Local, _) | (Provider::Aws, Some(_)) => {
                "`lumo history --env ENV` lists recent runs".to_string()
            }
            (Provider::Aws, None) => format!(
                "on `aws` a shortened run id is looked up in the environments the config \
                 names ({}) unless `--env` says which; the whole id finds a run of any \
                 environment, and `lumo history --env ENV` lists recent runs",
                crate::quoted::list(project.config.named_environments())
            ),
        };
        CliError::invalid(format!(
            "no run of project `{name}`{in_env} has an id starting with `{id}`"
        ))
        .hint(hint)
    };
    let mut matches = backend
        .audit
        .runs_by_id_prefix(id, env, MAX_MATCHES_SHOWN as u32 + 1)
        .await?;
    if matches.len() <= 1 {
        return matches.pop().ok_or_else(no_run);
    }
    let count = if matches.len() > MAX_MATCHES_SHOWN {
        format!("more than {MAX_MATCHES_SHOWN} runs")
    } else {
        format!("{} runs", matches.len())
    };
    let listed: Vec<String> = matches
        .iter()
        .take(MAX_MATCHES_SHOWN)
        .map(|r| format!("{}  {} on `{}`, {}", r.id, r.title(), r.env, r.started_at))
        .collect();
    Err(CliError::invalid(format!(
        "the run id `{id}` is ambiguous: {count} start with it:\n  {}",
        listed.join("\n  ")
    ))
    .hint("type more of the run id"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Logs {
    /// The run, in the shape every `--json` document shows one (`report::outcome`).
    #[serde(serialize_with = "crate::report::outcome::serialize_run")]
    pub run: TaskRun,
    /// The whole output; `None` when only the record's tail is left.
    pub output: Option<String>,
    pub complete: bool,
}

impl fmt::Display for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            self.output
                .as_deref()
                .or(self.run.output_tail.as_deref())
                .unwrap_or(""),
        )
    }
}

/// The last `n` lines of `output`. A last line without a newline is a line; a trailing newline
/// does not start an empty one.
fn last_lines(output: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = output.strip_suffix(b"\n").unwrap_or(output);
    let mut newlines = 0;
    for (at, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            newlines += 1;
            if newlines == n {
                return &output[at + 1..];
            }
        }
    }
    output
}

/// The `--json` document of [`Logs`] with its output read from the log as it is written out,
/// byte for byte what serializing a [`Logs`] holding the whole output would print (invalid
/// UTF-8 replaced as `String::from_utf8_lossy` replaces it), without holding the output, nor
/// the three copies of it (bytes, string, JSON) that made a 100 MB log take 300 MB.
struct JsonLogs {
    /// Bytes ready to be read: the document's start, then escaped output, then its end.
    ready: Vec<u8>,
    at: usize,
    log: Option<LogReader>,
    /// The end of the document, after the output string's closing quote.
    end: Vec<u8>,
    /// Raw log bytes not yet escaped: at most an incomplete UTF-8 character between reads.
    raw: Vec<u8>,
    block: Vec<u8>,
}

/// How much of the log is read, and escaped, at a time.
const JSON_LOG_BLOCK: usize = 64 * 1024;

impl JsonLogs {
    fn new(run: TaskRun, log: LogReader) -> Result<JsonLogs, CliError> {
        let empty = Logs {
            run,
            output: Some(String::new()),
            complete: true,
        };
        let mut document = serde_json::to_vec_pretty(&empty)
            .map_err(|e| CliError::new(crate::error::ExitKind::Backend, e))?;
        document.push(b'\n');
        // `output` is followed only by `complete`, a boolean: its last `"output": ""` is the
        // field itself, whatever text the run's record holds before it.
        const FIELD: &[u8] = b"\"output\": \"\"";
        let Some(at) = document.windows(FIELD.len()).rposition(|w| w == FIELD) else {
            return Err(CliError::new(
                crate::error::ExitKind::Backend,
                "the JSON of a run's logs has no `output` field",
            ));
        };
        let split = at + FIELD.len() - 1;
        let end = document.split_off(split);
        Ok(JsonLogs {
            ready: document,
            at: 0,
            log: Some(log),
            end,
            raw: Vec::new(),
            block: vec![0; JSON_LOG_BLOCK],
        })
    }

    /// Reads the next block of the log into `ready`, escaped; the document's end after the last.
    fn refill(&mut self) -> io::Result<()> {
        self.ready.clear();
        self.at = 0;
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        let n = loop {
            match log.read(&mut self.block) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.raw.extend_from_slice(&self.block[..n]);
        let at_end = n == 0;
        let mut rest = &self.raw[..];
        let mut text = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // Checked valid just now.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // A character cut by the block's end: finished by the next block,
                        // or, at the end of the log, one replacement as a whole-log
                        // conversion would give.
                        None if at_end => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let left = rest.len();
        let consumed = self.raw.len() - left;
        self.raw.drain(..consumed);
        // serde_json escapes character by character, so escaping block by block gives the
        // escaping of the whole; the quotes it adds are dropped.
        serde_json::to_writer(&mut self.ready, &text).map_err(io::Error::other)?;
        self.ready.pop();
        self.ready.remove(0);
        if at_end {
            self.log = None;
            self.ready.extend_from_slice(&self.end);
        }
        Ok(())
    }
}

impl Read for JsonLogs {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.ready.len() {
            if self.log.is_none() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.ready.len() - self.at);
        buf[..n].copy_from_slice(&self.ready[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_a_final_line_without_a_newline_and_no_empty_one_after_a_newline() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\nc\n", 1), b"c\n");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\n\n\nb\n", 3), b"\n\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
    }

    /// Hands out its bytes a few at a time, as a pipe or a slow disk might.
    struct Trickle(Vec<u8>, usize, usize);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.2).min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    fn a_run() -> TaskRun {
        // `data` holding an `output` key of its own must not be mistaken for the field.
        serde_json::from_value(serde_json::json!({
            "id": "01JABCDEFGHJKMNPQRSTVWXYZ0", "deploymentId": null, "project": "p", "env": "dev",
            "task": "t", "trigger": "manual", "version": "v1", "previousVersion": null,
            "bundleHash": "", "actor": "me", "status": "succeeded", "attempt": 1,
            "startedAt": "2026-12-06T10:00:00Z", "endedAt": "2026-12-06T10:00:01Z", "durationMs": 1, "exitCode": 0, "message": "ok",
            "data": { "output": "" }, "dataRef": null, "logRef": null, "outputTail": "",
            "outputBytes": 0
        }))
        .unwrap()
    }

    /// The streamed document is byte for byte the one a whole-log `Logs` serializes to.
    #[test]
    fn streamed_json_is_the_whole_document() {
        let mut logs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"plain\nlines \"quoted\" \\ tab\t\x01\n".to_vec(),
            "€😀ü\n".repeat(80).into_bytes(),
            "€ and 😀 everywhere ".repeat(20_000).into_bytes(),
            b"bad \xff\xfe bytes, a cut char \xe2\x82 and a lone \x82".to_vec(),
            b"ends mid-character \xf0\x9f\x98".to_vec(),
        ];
        // A character split exactly at a 64 KiB block boundary.
        let mut split = vec![b'a'; JSON_LOG_BLOCK - 1];
        split.extend_from_slice("€".as_bytes());
        logs.push(split);
        for log in logs {
            let expected = {
                let mut doc = serde_json::to_vec_pretty(&Logs {
                    run: a_run(),
                    output: Some(String::from_utf8_lossy(&log).into_owned()),
                    complete: true,
                })
                .unwrap();
                doc.push(b'\n');
                doc
            };
            for step in [1, 3, 7, JSON_LOG_BLOCK] {
                if step < 10 && log.len() > 1000 {
                    continue;
                }
                let mut streamed = Vec::new();
                JsonLogs::new(a_run(), Box::new(Trickle(log.clone(), 0, step)))
                    .unwrap()
                    .read_to_end(&mut streamed)
                    .unwrap();
                assert!(
                    streamed == expected,
                    "log of {} bytes read {step} at a time:\n{}",
                    log.len(),
                    String::from_utf8_lossy(&streamed[..streamed.len().min(2000)])
                );
            }
        }
    }
}
