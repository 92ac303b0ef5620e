//! Confirmation before something irreversible runs by hand in an environment (PRODUCT.md §3, a
//! task's `confirm`; `lumo exec`): the prompt names what runs, where, and with which argument
//! values, and only the exact answer the environment asks for (`yes`, or its name under
//! `access.<env>.confirm: 'name'`) lets it run. A reflex `y`, a typo or an empty line declines;
//! a decline is its own outcome (exit 2, `error.kind` `declined`), recorded as a `refused`
//! event, so it reads differently from a mistyped argument in CI logs and in the audit trail.
//! One function for every verb, so a run and an exec ask the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};

use crate::backend::records::EventKind;
use crate::config::ConfirmRule;
use crate::error::{CliError, ExitKind};
use crate::operation::Operation;

/// What is being confirmed.
pub enum Subject<'a> {
    /// A task run by hand, with its `confirm` text (what the task's author wants said).
    Task {
        name: &'a str,
        warning: Option<&'a str>,
    },
    /// An ad-hoc command (`lumo exec`), as the record shows it (secrets masked).
    Command { line: &'a str },
}

impl Subject<'_> {
    /// `task `purge`` / `command `psql -c …``, for messages.
    fn named(&self) -> String {
        match self {
            Subject::Task { name, .. } => format!("task `{name}`"),
            Subject::Command { line } => format!("command `{line}`"),
        }
    }
}

/// One confirmation to ask for.
pub struct Confirmation<'a> {
    pub subject: Subject<'a>,
    /// The environment it runs in.
    pub env: &'a str,
    /// The argument values it runs with, every secret already masked (as the run's record
    /// keeps them: [`crate::backend::records::masked_args`]).
    pub args: &'a BTreeMap<String, String>,
    /// What answers it: [`crate::access::confirm_rule`] of the environment.
    pub rule: ConfirmRule,
}

impl Confirmation<'_> {
    /// The one answer that confirms.
    pub fn expected(&self) -> &str {
        match self.rule {
            ConfirmRule::Yes => "yes",
            ConfirmRule::Name => self.env,
        }
    }

    /// Whether `answer` (a line as typed) confirms: exactly the expected word, surrounding
    /// whitespace aside. `y`, `YES`, `Yes` and the empty line do not.
    pub fn accepts(&self, answer: &str) -> bool {
        answer.trim() == self.expected()
    }

    /// The prompt, on stderr: what, where, with what, and what to type.
    pub fn prompt(&self) -> String {
        let mut text = String::new();
        let (label, what) = match &self.subject {
            Subject::Task { name, warning } => {
                if let Some(warning) = warning {
                    let _ = writeln!(text, "{warning}");
                }
                ("task", *name)
            }
            Subject::Command { line } => ("command", *line),
        };
        let _ = writeln!(text, "  {label:<12} {what}");
        let _ = writeln!(text, "  {:<12} {}", "environment", self.env);
        if !self.args.is_empty() {
            let args = self
                .args
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(text, "  {:<12} {args}", "args");
        }
        let _ = match self.rule {
            ConfirmRule::Yes => write!(text, "Type `yes` to run it (anything else declines): "),
            ConfirmRule::Name => write!(
                text,
                "Type the environment's name (`{}`) to run it (anything else declines): ",
                self.env
            ),
        };
        text
    }
}

/// Asks for `confirmation` on the terminal unless `yes` (`--yes`) already gave it. Without a
/// terminal and without `--yes`: an invalid-arguments error (exit 2) saying so, nothing
/// recorded. A decline: recorded as the environment's `refused` event, and an error of kind
/// [`ExitKind::Declined`] (exit 2).
pub async fn confirm(
    op: &Operation,
    confirmation: &Confirmation<'_>,
    yes: bool,
) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    let what = confirmation.subject.named();
    if !std::io::stdin().is_terminal() {
        let why = match &confirmation.subject {
            Subject::Task {
                warning: Some(warning),
                ..
            } => format!(" (\"{warning}\")"),
            _ => String::new(),
        };
        return Err(CliError::invalid(format!(
            "{what} asks for confirmation{why} and there is no terminal to ask on"
        ))
        .hint("pass `--yes` to confirm"));
    }
    let prompt = confirmation.prompt();
    // Read off the async runtime's threads: a Ctrl-C at the prompt still ends the command.
    let answer = tokio::task::spawn_blocking(move || read_answer(&prompt))
        .await
        .map_err(|e| CliError::invalid(format!("cannot read the answer: {e}")))?
        .map_err(|e| CliError::invalid(format!("cannot read the answer: {e}")))?;
    if confirmation.accepts(&answer) {
        return Ok(());
    }
    let env = confirmation.env;
    let answered = answered(answer.trim(), op);
    op.record_event(
        EventKind::Refused,
        format!("declined: {what} in `{env}` was not confirmed ({answered})"),
    )
    .await;
    Err(CliError::new(
        ExitKind::Declined,
        format!(
            "declined: {what} was not run in `{env}`; the answer was {answered}, not `{}`",
            confirmation.expected()
        ),
    )
    .hint(format!(
        "type exactly `{}` to confirm, or pass `--yes`",
        confirmation.expected()
    )))
}

/// The declined answer as the error and the `refused` event quote it: a secret pasted at the
/// prompt by mistake is masked like everywhere else lumo shows or stores text, and a long paste
/// is cut (the event only needs to tell a reflex `y` from a typo).
fn answered(answer: &str, op: &Operation) -> String {
    const SHOWN_CHARS: usize = 40;
    if answer.is_empty() {
        return "no answer".to_string();
    }
    // A secret that cannot be resolved stopped the command before it asked.
    let secrets = op.project.secret_values().unwrap_or_default();
    let masked = lumo_runner::Masker::new(secrets.into_values()).mask_str(answer);
    let mut shown: String = masked.chars().take(SHOWN_CHARS).collect();
    if masked.chars().count() > SHOWN_CHARS {
        shown.push('…');
    }
    format!("`{shown}`")
}

/// Shows `prompt` on stderr and reads one line from stdin (an empty answer at end of input).
fn read_answer(prompt: &str) -> std::io::Result<String> {
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(rule: ConfirmRule, args: &BTreeMap<String, String>) -> Confirmation<'_> {
        Confirmation {
            subject: Subject::Task {
                name: "purge-cache",
                warning: Some("This drops the whole cache"),
            },
            env: "prod",
            args,
            rule,
        }
    }

    #[test]
    fn only_the_exact_word_confirms() {
        let args = BTreeMap::new();
        let yes = asking(ConfirmRule::Yes, &args);
        assert!(yes.accepts("yes\n") && yes.accepts("  yes "));
        for declined in ["y", "Y", "YES", "Yes", "yes please", "", "\n", "prod"] {
            assert!(!yes.accepts(declined), "{declined:?} confirmed");
        }
        let name = asking(ConfirmRule::Name, &args);
        assert!(name.accepts("prod\n"));
        for declined in ["yes", "y", "Prod", "pro"] {
            assert!(!name.accepts(declined), "{declined:?} confirmed");
        }
    }

    #[test]
    fn the_prompt_names_the_task_the_environment_and_every_argument() {
        let args = BTreeMap::from([
            ("mode".to_string(), "hard".to_string()),
            ("url".to_string(), "***".to_string()),
        ]);
        assert_eq!(
            asking(ConfirmRule::Yes, &args).prompt(),
            "This drops the whole cache\n  task         purge-cache\n  environment  prod\n  \
             args         mode=hard url=***\nType `yes` to run it (anything else declines): "
        );
        let command = Confirmation {
            subject: Subject::Command {
                line: "psql -c 'select 1'",
            },
            env: "prod",
            args: &BTreeMap::new(),
            rule: ConfirmRule::Name,
        };
        assert_eq!(
            command.prompt(),
            "  command      psql -c 'select 1'\n  environment  prod\nType the environment's name \
             (`prod`) to run it (anything else declines): "
        );
    }
}
