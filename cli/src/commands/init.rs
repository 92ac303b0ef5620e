//! `lumo init`: scaffold `lumo.config.js`, an example task and a `.gitignore` entry for `.lumo/`
//! in the current directory. Never overwrites anything, and a failed init leaves nothing behind.

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{CommandResult, Outcome};
use crate::args::InitArgs;
use crate::error::{CliError, ExitKind};

const CONFIG: &str = r#"// lumo: deployment-lifecycle tasks. https://github.com/lumo-dev/lumo#readme
export default {
  projectName: '__NAME__',
  provider: 'local',        // 'aws' runs tasks on Lambda (see the README)
  environment: 'dev',       // used when --env is not given
  environments: ['dev', 'staging', 'prod'],
  tasks: {
    hello: {
      description: 'Says hello on every deploy',
      timeout: 60,
      runOn: ['deploy', 'update'],
    },
  },
};
"#;

const TASK: &str = r#"#!/bin/sh
# A lumo task: any executable. The TaskContext JSON is on stdin and in $LUMO_CONTEXT_FILE.
set -eu
echo "hello from $LUMO_TASK in $LUMO_ENVIRONMENT (version $LUMO_VERSION, first deploy: $LUMO_IS_FIRST_DEPLOY)"
# Optional: a structured result.
printf '{"success": true, "message": "said hello", "data": {"environment": "%s"}}' "$LUMO_ENVIRONMENT" > "$LUMO_RESULT_FILE"
"#;

pub async fn run(args: InitArgs) -> CommandResult {
    let dir = std::env::current_dir().map_err(|e| CliError::new(ExitKind::Backend, e))?;
    let name = match args.name {
        Some(n) => {
            if !valid_project_name(&n) {
                return Err(CliError::invalid(format!(
                    "`--name {n}`: a project name is 1 to 40 of `a-z`, `0-9` and `-`"
                )));
            }
            n
        }
        None => project_name_from(&dir),
    };
    let config_path = dir.join("lumo.config.js");
    let task_path = dir.join("functions/tasks/hello.sh");
    for path in [&config_path, &task_path] {
        if path.exists() {
            return Err(CliError::invalid(format!(
                "`{}` already exists; `lumo init` never overwrites",
                path.display()
            )));
        }
    }
    // Read before anything is written: a `.gitignore` that cannot be read (a directory, say)
    // fails the init while the directory is still as it was.
    let gitignore = dir.join(".gitignore");
    let ignored = match fs::read(&gitignore) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_error("read", &gitignore, e)),
    };
    let ignores_lumo = ignored
        .lines()
        .any(|l| matches!(l.trim(), ".lumo" | ".lumo/" | "/.lumo" | "/.lumo/"));

    let mut scaffold = Scaffold::default();
    let written = scaffold
        .write(&dir, &name, &config_path, &task_path)
        .and_then(|()| {
            if ignores_lumo {
                return Ok(());
            }
            let sep = if ignored.is_empty() || ignored.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            scaffold.append(&gitignore, &format!("{sep}.lumo/\n"))
        });
    if let Err(e) = written {
        scaffold.undo();
        return Err(e);
    }
    let mut created = scaffold.files;
    created.extend(scaffold.appended.map(|(path, _)| path));
    let report = InitReport {
        project: name,
        created,
    };
    Ok(Outcome::report(report))
}

/// What `lumo init` has created so far, so that a failure part-way removes it again and a
/// second `lumo init` finds the directory as it was.
#[derive(Default)]
struct Scaffold {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    /// A file that existed and was appended to, with its length before.
    appended: Option<(PathBuf, u64)>,
}

impl Scaffold {
    fn write(
        &mut self,
        dir: &Path,
        name: &str,
        config_path: &Path,
        task_path: &Path,
    ) -> Result<(), CliError> {
        self.create(config_path, &CONFIG.replace("__NAME__", name))?;
        for sub in ["functions", "functions/tasks"] {
            let path = dir.join(sub);
            if !path.is_dir() {
                fs::create_dir(&path).map_err(|e| io_error("create", &path, e))?;
                self.dirs.push(path);
            }
        }
        self.create(task_path, TASK)?;
        fs::set_permissions(task_path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("write", task_path, e))
    }

    /// Writes a new file; never replaces one (`create_new`).
    fn create(&mut self, path: &Path, text: &str) -> Result<(), CliError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_error("write", path, e))?;
        self.files.push(path.to_path_buf());
        file.write_all(text.as_bytes())
            .map_err(|e| io_error("write", path, e))
    }

    /// Appends to `path`, creating it when absent.
    fn append(&mut self, path: &Path, text: &str) -> Result<(), CliError> {
        let before = fs::metadata(path).ok().map(|m| m.len());
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_error("write", path, e))?;
        match before {
            None => self.files.push(path.to_path_buf()),
            Some(len) => self.appended = Some((path.to_path_buf(), len)),
        }
        file.write_all(text.as_bytes())
            .map_err(|e| io_error("write", path, e))
    }

    /// Removes what was created, newest first; best effort, since the write already failed.
    fn undo(self) {
        if let Some((path, len)) = &self.appended
            && let Ok(file) = fs::OpenOptions::new().write(true).open(path)
        {
            let _ = file.set_len(*len);
        }
        for file in self.files.iter().rev() {
            let _ = fs::remove_file(file);
        }
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::new(
        ExitKind::Backend,
        format!("cannot {action} `{}`: {e}", path.display()),
    )
}

fn valid_project_name(n: &str) -> bool {
    (1..=40).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The directory's name folded into `[a-z0-9-]`, or `my-app`.
fn project_name_from(dir: &Path) -> String {
    let raw = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut name = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    let name: String = name.trim_matches('-').chars().take(40).collect();
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        "my-app".to_string()
    } else {
        name
    }
}

#[derive(Serialize)]
pub struct InitReport {
    pub project: String,
    pub created: Vec<PathBuf>,
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Created project `{}`:", self.project)?;
        for p in &self.created {
            writeln!(f, "  {}", p.display())?;
        }
        writeln!(f, "Next: `lumo deploy --env dev`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_folded_from_directory_names() {
        assert_eq!(project_name_from(Path::new("/x/My App_2")), "my-app-2");
        assert_eq!(project_name_from(Path::new("/x/---")), "my-app");
        assert!(valid_project_name(&project_name_from(Path::new(&format!(
            "/x/{}",
            "a".repeat(80)
        )))));
    }
}
