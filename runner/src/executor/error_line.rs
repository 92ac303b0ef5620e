//! Which output line says why a failed task failed, when its last line does not. A task that
//! dies of an uncaught error often ends with something else: Node prints the error, its stack,
//! and then `Node.js v20.20.2`; a Rust panic is followed by a `note: run with RUST_BACKTRACE`
//! hint. The message of a failed run without a result file is the last line that looks like an
//! error, and the last line only when none does (PRODUCT.md §4, issue 11).

/// The last line of `tail` that reads as an error, with the line after it when the error line
/// only introduces it (`thread 'main' panicked at src/main.rs:2:5:` then the panic's text).
pub(super) fn error_line(tail: &str) -> Option<String> {
    let lines: Vec<&str> = tail.lines().map(str::trim).collect();
    let at = lines.iter().rposition(|line| looks_like_an_error(line))?;
    let line = lines[at];
    if line.ends_with(':')
        && let Some(next) = lines[at + 1..].iter().find(|l| !l.is_empty())
    {
        return Some(format!("{line} {next}"));
    }
    Some(line.to_owned())
}

/// `Error: …`, `TypeError: …`, `Error [ERR_X]: …`, `java.io.IOException: …`, `error: …`,
/// `error[E0425]: …`, `fatal: …`, `panic: …`, `… panicked at …`.
fn looks_like_an_error(line: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "error:",
        "error[",
        "fatal:",
        "fatal error:",
        "panic:",
        "uncaught ",
        "critical:",
        "err!",
    ];
    let lower = line.to_ascii_lowercase();
    if PREFIXES.iter().any(|p| lower.starts_with(p)) || line.contains(" panicked at ") {
        return true;
    }
    // A name ending in `Error` or `Exception` (dotted, as Java and Python qualify them),
    // maybe a bracketed code, then a colon: the form of a thrown error's first line.
    let Some((head, _)) = line.split_once(':') else {
        return false;
    };
    let name = match head.split_once(" [") {
        Some((name, code)) if code.ends_with(']') => name,
        Some(_) => return false,
        None => head,
    };
    let name = name.strip_prefix("Uncaught ").unwrap_or(name);
    (name.ends_with("Error") || name.ends_with("Exception"))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_crash_gives_its_error_not_its_version_line() {
        let tail = "\
file:///tmp/b/task.mjs:3
    throw new Error('relation \"orders\" already exists');
    ^

Error: relation \"orders\" already exists
    at file:///tmp/b/task.mjs:3:11
    at ModuleJob.run (node:internal/modules/esm/module_job:234:25)

Node.js v20.20.2
";
        assert_eq!(
            error_line(tail).as_deref(),
            Some("Error: relation \"orders\" already exists")
        );
    }

    #[test]
    fn typed_and_coded_errors_are_errors() {
        for line in [
            "TypeError: x is not a function",
            "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'pg'",
            "java.lang.IllegalStateException: closed",
            "ValueError: bad",
            "error: could not connect",
            "error[E0425]: cannot find value",
            "fatal: not a git repository",
            "Uncaught ReferenceError: foo is not defined",
        ] {
            assert!(looks_like_an_error(line), "{line}");
        }
        for line in [
            "0 errors",
            "Node.js v20.20.2",
            "at ModuleJob.run (node:internal)",
            "applied 3 migrations: ok",
            "Some Error: with a space in its name",
            "",
        ] {
            assert!(!looks_like_an_error(line), "{line}");
        }
    }

    #[test]
    fn a_panic_brings_its_text_along() {
        let tail = "thread 'main' panicked at src/main.rs:2:5:\nno database\n\
                    note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            error_line(tail).as_deref(),
            Some("thread 'main' panicked at src/main.rs:2:5: no database")
        );
    }

    #[test]
    fn output_without_an_error_line_gives_none() {
        assert_eq!(error_line("step 1\nstep 2\n"), None);
        assert_eq!(error_line(""), None);
    }
}
