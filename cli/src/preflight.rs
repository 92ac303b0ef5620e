//! Pre-flight: before the first task of a deploy (or a manual run) starts, every task about to
//! be deployed or run is checked startable, so that no deploy fails half-way for a reason that
//! was knowable at the start (PRODUCT.md §8) — after three tasks have changed a database, say.
//!
//! It reads what will actually run, the built bundle (its manifest and entry file), not the
//! sources, so it judges every kind of task the same way, however it was bundled:
//! - a JavaScript/TypeScript task (`Entry::Node`) needs Node.js 20+; locally that is `node` on
//!   `PATH` (or `LUMO_NODE`), on `aws` the runner function's managed Node.js runtime has it;
//! - a program entry needs its executable bit and, unless it is a binary, a `#!` line; locally
//!   the interpreter that line names must exist too (Lambda's file system is not this one);
//! - a command (`sh -c`) needs nothing.
//!
//! What it needs of a bundle ([`EntryFacts`]) is read from the zip once, when the bundle is
//! built, and kept with it in the stat cache (`bundle/stat_cache.rs`): a bundle is named by its
//! content, so what it holds never changes, and a redeploy of a thousand unchanged tasks does
//! not open a thousand zips before its first task starts. A bundle without kept facts (a
//! manual run's, one cached by an older build) is read here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use lumo_runner::BundleHash;
use lumo_runner::contract::{BundleManifest, Entry, MANIFEST_PATH};
use lumo_runner::node::{self, NodeError};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigProblem, Provider};

/// Tasks that could not start: the problems, one per task (exit code 2 at the CLI boundary).
#[derive(Debug, thiserror::Error)]
#[error("{} task(s) could not start, so nothing was run", problems.len())]
pub struct PreflightError {
    pub problems: Vec<ConfigProblem>,
}

impl PreflightError {
    /// The problems as the text error lists them. Tasks with the same problem share one line
    /// naming them (no Node.js is one fix for every JavaScript task, not a line each); `--json`
    /// keeps one problem per task, each under its key.
    pub fn listing(&self) -> String {
        let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
        for problem in &self.problems {
            match groups
                .iter_mut()
                .find(|(_, message)| *message == problem.message)
            {
                Some((keys, _)) => keys.push(&problem.key),
                None => groups.push((vec![&problem.key], &problem.message)),
            }
        }
        groups
            .iter()
            .map(|(keys, message)| format!("  - {}: {message}", named_keys(keys)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `` `tasks.a`, `tasks.b` ``; past [`NAMED_KEYS`] the first three and how many others.
fn named_keys(keys: &[&str]) -> String {
    let quoted = |keys: &[&str]| {
        keys.iter()
            .map(|key| format!("`{key}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if keys.len() <= NAMED_KEYS {
        quoted(keys)
    } else {
        format!("{} and {} other tasks", quoted(&keys[..3]), keys.len() - 3)
    }
}

/// How many tasks sharing a problem its line names before it counts the rest.
const NAMED_KEYS: usize = 5;

/// A task's bundle, as pre-flight needs it.
#[derive(Debug, Clone, Copy)]
pub struct PlannedBundle<'a> {
    pub task: &'a str,
    pub zip: &'a Path,
    /// What the zip holds, when known already ([`read_entry`]): the zip is then not read.
    pub entry: Option<&'a EntryFacts>,
}

/// Where a project remembers which Node.js version its `node` is (see
/// [`node::check_node_cached`]), in `.lumo/`.
pub const NODE_VERSION_CACHE: &str = "node-version.json";

/// Checks every bundle and fails with one error listing each task that cannot start and how to
/// fix it (exit code 2). Node.js is looked for once, only when a JavaScript task needs it here,
/// and its version is asked of it only when the project's `lumo_dir` does not already know it
/// for that binary (`None`, a scratch build: always asked, nothing written).
pub fn check<'a>(
    bundles: impl IntoIterator<Item = PlannedBundle<'a>>,
    provider: Provider,
    lumo_dir: Option<&Path>,
) -> Result<(), PreflightError> {
    let check_node = || match lumo_dir {
        Some(dir) => node::check_node_cached(&dir.join(NODE_VERSION_CACHE)),
        None => node::check_node(),
    };
    let mut node: Option<Result<(), NodeError>> = None;
    let mut installed = Installed::default();
    let mut problems = Vec::new();
    for bundle in bundles {
        let read;
        let entry = match bundle.entry {
            Some(known) => Ok(known),
            None => {
                read = read_entry(bundle.zip);
                read.as_ref().map_err(Clone::clone)
            }
        };
        let problem = match entry {
            Err(reason) => Some(reason),
            Ok(EntryFacts::Node) if provider == Provider::Local => node
                .get_or_insert_with(|| check_node().map(|_| ()))
                .as_ref()
                .err()
                .map(ToString::to_string),
            Ok(EntryFacts::Node | EntryFacts::Command) => None,
            Ok(EntryFacts::Program { path, mode, start }) => {
                program_problem(path, *mode, start, provider, &mut installed)
            }
        };
        if let Some(message) = problem {
            problems.push(ConfigProblem {
                key: format!("tasks.{}", bundle.task),
                message,
            });
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(PreflightError { problems })
}

/// Pre-flight of a manual run of `task`, whose deployed bundle is `sha256`. On `local` the
/// bundle is in the project's store and checked like a deploy's (Node.js may have gone since
/// the deploy); on `aws` it was checked when deployed and runs where nothing here changes it.
pub fn check_stored(
    provider: Provider,
    lumo_dir: &Path,
    task: &str,
    sha256: &BundleHash,
) -> Result<(), PreflightError> {
    if provider != Provider::Local {
        return Ok(());
    }
    let zip: PathBuf = lumo_dir.join("bundles").join(format!("{sha256}.zip"));
    if !zip.is_file() {
        // A bundle gone from the store is the backend's error to report, as it always was.
        return Ok(());
    }
    check(
        [PlannedBundle {
            task,
            zip: &zip,
            entry: None,
        }],
        provider,
        Some(lumo_dir),
    )
}

/// What a bundle's manifest says to start, with what pre-flight needs of the entry file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum EntryFacts {
    Node,
    Command,
    Program {
        path: String,
        /// The file's unix mode in the zip, if recorded.
        mode: Option<u32>,
        start: Start,
    },
}

/// How a program entry starts, as far as pre-flight cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Start {
    /// An ELF binary.
    Binary,
    /// A `#!` line: its first line after the `#!`, trimmed.
    Interpreter(String),
    /// Neither.
    Other,
}

impl Start {
    /// How a file whose first bytes are `head` starts.
    fn of(head: &[u8]) -> Start {
        if head.starts_with(b"\x7fELF") {
            return Start::Binary;
        }
        match head.strip_prefix(b"#!") {
            Some(line) => Start::Interpreter(
                String::from_utf8_lossy(line)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            ),
            None => Start::Other,
        }
    }
}

/// The largest bundle [`read_entry`] reads whole rather than seeking through.
const READ_WHOLE_MAX: u64 = 64 * 1024;

trait ReadSeek: io::Read + io::Seek {}
impl<T: io::Read + io::Seek> ReadSeek for T {}

/// What pre-flight needs of the bundle at `zip_path`, read from it; `Err` names what is wrong
/// with it, as a problem of its task.
pub fn read_entry(zip_path: &Path) -> Result<EntryFacts, String> {
    let unreadable = |e: &dyn std::fmt::Display| {
        format!("could not read its bundle `{}`: {e}", zip_path.display())
    };
    let mut file = File::open(zip_path).map_err(|e| unreadable(&e))?;
    let size = file.metadata().map_err(|e| unreadable(&e))?.len();
    // A small bundle (most tasks' are a few hundred bytes) is read in one call and parsed in
    // memory: the zip reader's seeks and short reads were a dozen system calls a task, which a
    // deploy of a thousand tasks paid before its first one started.
    let source: Box<dyn ReadSeek> = if size <= READ_WHOLE_MAX {
        // Exactly its size: `read_to_end` would ask the size and position again first. A
        // file that changed meanwhile fails to parse and is named as unreadable.
        let mut bytes = vec![0; size as usize];
        file.read_exact(&mut bytes).map_err(|e| unreadable(&e))?;
        Box::new(io::Cursor::new(bytes))
    } else {
        Box::new(io::BufReader::new(file))
    };
    let mut archive = zip::ZipArchive::new(source).map_err(|e| unreadable(&e))?;
    let manifest: BundleManifest = {
        let mut entry = archive.by_name(MANIFEST_PATH).map_err(|e| unreadable(&e))?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| unreadable(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?
    };
    match manifest.entry {
        Entry::Node(_) => Ok(EntryFacts::Node),
        // A manifest never holds an argv (it comes with an `exec` run); nothing to check.
        Entry::Command(_) | Entry::Argv(_) => Ok(EntryFacts::Command),
        Entry::Program(path) => {
            let mut entry = match archive.by_name(&path) {
                Ok(entry) => entry,
                Err(zip::result::ZipError::FileNotFound) => {
                    return Err(format!("its entry point `{path}` is not in its bundle"));
                }
                Err(e) => return Err(unreadable(&e)),
            };
            let mode = entry.unix_mode();
            let mut head = Vec::with_capacity(256);
            (&mut entry)
                .take(256)
                .read_to_end(&mut head)
                .map_err(|e| unreadable(&e))?;
            Ok(EntryFacts::Program {
                path,
                mode,
                start: Start::of(&head),
            })
        }
    }
}

/// Which interpreters and programs are installed here, each looked up once per check: a
/// thousand scripts naming `/bin/sh` cost one `stat`, not a thousand.
#[derive(Default)]
struct Installed {
    executable: HashMap<String, bool>,
    on_path: HashMap<String, bool>,
}

impl Installed {
    fn executable(&mut self, path: &str) -> bool {
        *self
            .executable
            .entry(path.to_string())
            .or_insert_with(|| node::is_executable_file(Path::new(path)))
    }

    fn on_path(&mut self, program: &str) -> bool {
        *self
            .on_path
            .entry(program.to_string())
            .or_insert_with(|| on_path(program))
    }
}

fn program_problem(
    path: &str,
    mode: Option<u32>,
    start: &Start,
    provider: Provider,
    installed: &mut Installed,
) -> Option<String> {
    if mode.is_some_and(|m| m & 0o111 == 0) {
        return Some(format!(
            "`{path}` is not executable; run `chmod +x` on it (or, for a JavaScript or \
             TypeScript handler, give it a `.ts`/`.js` extension so lumo runs it on Node.js)"
        ));
    }
    let line = match start {
        Start::Binary => return None,
        Start::Other => {
            return Some(format!(
                "`{path}` has no `#!` line naming its interpreter; add one as its first line, \
                 such as `#!/bin/sh`"
            ));
        }
        Start::Interpreter(line) => line,
    };
    let mut words = line.split_whitespace();
    let Some(interpreter) = words.next() else {
        return Some(format!(
            "`{path}` has an empty `#!` line; name its interpreter, such as `#!/bin/sh`"
        ));
    };
    // Lambda's file system is not this machine's: there only the `#!` line itself is checked.
    if provider != Provider::Local {
        return None;
    }
    if !installed.executable(interpreter) {
        return Some(format!(
            "`{path}` names the interpreter `{interpreter}` on its `#!` line, which is not \
             installed here; install it or change the line"
        ));
    }
    if Path::new(interpreter)
        .file_name()
        .is_some_and(|n| n == "env")
    {
        // `#!/usr/bin/env [-S] python3 -u`: the program is the first word that is not an option.
        let program = words.find(|w| !w.starts_with('-'))?;
        if !installed.on_path(program) {
            return Some(format!(
                "`{path}` runs `{program}` through `{interpreter}` on its `#!` line, and \
                 `{program}` is not on `PATH` here; install it or change the line"
            ));
        }
    }
    None
}

fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return node::is_executable_file(Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| node::is_executable_file(&dir.join(program)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(key: &str, message: &str) -> ConfigProblem {
        ConfigProblem {
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    #[test]
    fn tasks_with_the_same_problem_share_one_line() {
        let no_node = "Node.js was not found on `PATH`";
        let mut problems = vec![
            problem("tasks.a", no_node),
            problem("tasks.b", "`run.sh` is not executable"),
            problem("tasks.c", no_node),
        ];
        let error = PreflightError {
            problems: problems.clone(),
        };
        assert_eq!(
            error.to_string(),
            "3 task(s) could not start, so nothing was run"
        );
        assert_eq!(
            error.listing(),
            "  - `tasks.a`, `tasks.c`: Node.js was not found on `PATH`\n  \
             - `tasks.b`: `run.sh` is not executable"
        );
        problems.extend((0..7).map(|i| problem(&format!("tasks.n{i}"), no_node)));
        let listing = PreflightError { problems }.listing();
        assert!(
            listing.starts_with(
                "  - `tasks.a`, `tasks.c`, `tasks.n0` and 6 other tasks: Node.js was not found"
            ),
            "{listing}"
        );
    }

    #[test]
    fn a_script_without_a_shebang_line_is_refused_with_the_fix() {
        let message = program_problem(
            "run.sh",
            Some(0o100755),
            &Start::of(b"echo hi\n"),
            Provider::Aws,
            &mut Installed::default(),
        );
        assert!(
            message
                .unwrap()
                .contains("add one as its first line, such as `#!/bin/sh`")
        );
        assert_eq!(
            program_problem(
                "run.sh",
                Some(0o100755),
                &Start::of(b"#!/bin/sh\necho\n"),
                Provider::Local,
                &mut Installed::default()
            ),
            None
        );
        assert_eq!(
            program_problem(
                "bootstrap",
                Some(0o100755),
                &Start::of(b"\x7fELF\x02"),
                Provider::Local,
                &mut Installed::default()
            ),
            None
        );
    }

    #[test]
    fn an_interpreter_that_is_not_installed_is_named() {
        let message = program_problem(
            "run.py",
            Some(0o100755),
            &Start::of(b"#!/nonexistent/python9 -u\n"),
            Provider::Local,
            &mut Installed::default(),
        )
        .unwrap();
        assert!(message.contains("`/nonexistent/python9`"), "{message}");
        let message = program_problem(
            "run.py",
            Some(0o100755),
            &Start::of(b"#!/usr/bin/env -S lumo-no-such-interpreter -x\n"),
            Provider::Local,
            &mut Installed::default(),
        )
        .unwrap();
        assert!(
            message.contains("`lumo-no-such-interpreter` is not on `PATH`"),
            "{message}"
        );
        // On aws the interpreter is looked for where the task runs, not here.
        assert_eq!(
            program_problem(
                "run.py",
                Some(0o100755),
                &Start::of(b"#!/nonexistent/python9\n"),
                Provider::Aws,
                &mut Installed::default()
            ),
            None
        );
    }

    /// A zip holding a manifest that starts `run.sh`, the script, and `padding` bytes of an
    /// incompressible asset.
    fn bundle_zip(dir: &Path, script: &[u8], padding: usize) -> PathBuf {
        use std::io::Write;
        use zip::write::SimpleFileOptions;
        let path = dir.join(format!("bundle-{padding}.zip"));
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file(MANIFEST_PATH, stored).unwrap();
        zip.write_all(br#"{"task":"t","entry":{"program":"run.sh"}}"#)
            .unwrap();
        zip.start_file("run.sh", stored.unix_permissions(0o755))
            .unwrap();
        zip.write_all(script).unwrap();
        zip.start_file("data.bin", stored).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..padding)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        zip.write_all(&noise).unwrap();
        zip.finish().unwrap();
        path
    }

    #[test]
    fn small_and_large_bundles_are_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        // Under and over the size read whole.
        for padding in [10, 2 * READ_WHOLE_MAX as usize] {
            let zip = bundle_zip(dir.path(), b"#!/bin/sh\necho hi\n", padding);
            match read_entry(&zip) {
                Ok(EntryFacts::Program { path, mode, start }) => {
                    assert_eq!(path, "run.sh");
                    assert_eq!(mode.map(|m| m & 0o777), Some(0o755));
                    assert_eq!(start, Start::Interpreter("/bin/sh".into()));
                }
                Ok(_) => panic!("{padding}: not read as a program"),
                Err(e) => panic!("{padding}: {e}"),
            }
            let problem = check(
                [PlannedBundle {
                    task: "t",
                    zip: &zip,
                    entry: None,
                }],
                Provider::Local,
                None,
            );
            assert!(problem.is_ok(), "{padding}: {problem:?}");
        }
        // A truncated bundle is named, whichever way it is read.
        for padding in [10, 2 * READ_WHOLE_MAX as usize] {
            let zip = bundle_zip(dir.path(), b"#!/bin/sh\n", padding);
            let bytes = std::fs::read(&zip).unwrap();
            std::fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();
            let Err(message) = read_entry(&zip) else {
                panic!("{padding}: a truncated bundle was read");
            };
            assert!(
                message.contains(&format!("`{}`", zip.display())),
                "{padding}: {message}"
            );
        }
    }

    #[test]
    fn an_interpreter_is_looked_up_once_per_check() {
        let mut installed = Installed::default();
        let script = b"#!/nonexistent/lumo-sh\n";
        for _ in 0..3 {
            let message = program_problem(
                "run.sh",
                Some(0o100755),
                &Start::of(script),
                Provider::Local,
                &mut installed,
            )
            .unwrap();
            assert!(message.contains("`/nonexistent/lumo-sh`"), "{message}");
        }
        assert_eq!(installed.executable.len(), 1);
        assert_eq!(
            installed.executable.get("/nonexistent/lumo-sh"),
            Some(&false)
        );
    }

    /// Facts kept from when the bundle was built are used as they are: the zip is not read.
    #[test]
    fn known_facts_are_judged_without_reading_the_zip() {
        let gone = Path::new("/nonexistent/lumo-bundle.zip");
        let facts = |start: Start| EntryFacts::Program {
            path: "run.sh".into(),
            mode: Some(0o100755),
            start,
        };
        let fine = facts(Start::Interpreter("/bin/sh".into()));
        let planned = |entry| PlannedBundle {
            task: "t",
            zip: gone,
            entry: Some(entry),
        };
        assert!(check([planned(&fine)], Provider::Local, None).is_ok());
        let no_line = facts(Start::Other);
        let Err(refused) = check([planned(&no_line)], Provider::Local, None) else {
            panic!("a script without a `#!` line passed");
        };
        assert!(
            refused.listing().contains("has no `#!` line"),
            "{}",
            refused.listing()
        );
        // Without facts, the zip is read, and its absence named.
        let Err(unread) = check(
            [PlannedBundle {
                task: "t",
                zip: gone,
                entry: None,
            }],
            Provider::Local,
            None,
        ) else {
            panic!("a missing bundle passed");
        };
        assert!(
            unread.listing().contains("could not read its bundle"),
            "{}",
            unread.listing()
        );
    }

    #[test]
    fn a_file_without_its_executable_bit_is_refused() {
        let message = program_problem(
            "run.sh",
            Some(0o100644),
            &Start::of(b"#!/bin/sh\n"),
            Provider::Local,
            &mut Installed::default(),
        );
        assert!(message.unwrap().contains("`chmod +x`"));
    }
}
