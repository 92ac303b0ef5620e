//! Rust crate tasks (`functions/tasks/<name>/Cargo.toml`): built with cargo, and the binary
//! becomes the bundle's entry point. The crate uses the `lumo-task` SDK to speak the contract.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::config::Architecture;

/// The entry point's name inside a Rust task's bundle.
pub const ENTRY: &str = "task";

/// What a Rust task is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildTarget {
    /// This machine (the `local` provider).
    Host,
    /// Lambda's Amazon Linux, built with `cargo lambda` (the `aws` provider).
    Lambda(Architecture),
}

/// How Rust tasks are built: what for, and whether cargo shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    pub target: BuildTarget,
    /// `--quiet`: cargo prints its errors only.
    pub quiet: bool,
}

impl From<BuildTarget> for Build {
    fn from(target: BuildTarget) -> Build {
        Build {
            target,
            quiet: false,
        }
    }
}

#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    target: Option<CargoTarget>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
}

/// A crate's binary, as cargo built it.
pub struct BuiltCrate {
    /// The entry point of the bundle.
    pub binary: PathBuf,
    /// Cargo's dep-info beside the binary it built (`<target>/release/<name>.d`): every local
    /// source file the binary was built from.
    pub dep_info: PathBuf,
}

/// Builds the crate in `dir` in release mode and returns its one binary. Cargo's
/// own progress (unless quiet) and diagnostics go to our stderr, where the user sees them. For
/// Lambda, `cargo lambda` moves the binary to `<lambda_dir>/<name>/bootstrap`.
pub fn build(dir: &Path, how: Build, lambda_dir: &Path) -> Result<BuiltCrate, String> {
    let target = how.target;
    let manifest = dir.join("Cargo.toml");
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let mut cmd = match target {
        BuildTarget::Host => {
            let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            c.arg("build");
            c
        }
        BuildTarget::Lambda(arch) => {
            let mut c = Command::new("cargo");
            c.args(["lambda", "build"]);
            c.arg(match arch {
                Architecture::Arm64 => "--arm64",
                Architecture::X86_64 => "--x86-64",
            });
            c.arg("--lambda-dir").arg(lambda_dir);
            c
        }
    };
    cmd.args([
        "--release",
        "--message-format=json-render-diagnostics",
        "--manifest-path",
    ])
    .arg(&manifest)
    .args(how.quiet.then_some("--quiet"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let output = cmd.output().map_err(|e| match target {
        BuildTarget::Host => format!("cannot run `cargo` to build this Rust task: {e}"),
        BuildTarget::Lambda(_) => format!(
            "cannot run `cargo lambda` to build this Rust task for Lambda: {e}; \
             install it with `pip install cargo-lambda` (see https://www.cargo-lambda.info)"
        ),
    })?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build` of this Rust task failed ({})",
            output.status
        ));
    }
    let mut binaries = Vec::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<CargoMessage>(line) else {
            continue;
        };
        if message.reason != "compiler-artifact" {
            continue;
        }
        let same_crate = message
            .manifest_path
            .as_deref()
            .is_some_and(|m| m.canonicalize().is_ok_and(|m| m == manifest));
        if let (true, Some(exe)) = (same_crate, message.executable) {
            let mut dep_info = exe.clone().into_os_string();
            dep_info.push(".d");
            let binary = match (target, message.target) {
                (BuildTarget::Lambda(_), Some(t)) => lambda_dir.join(t.name).join("bootstrap"),
                _ => exe,
            };
            binaries.push(BuiltCrate {
                binary,
                dep_info: dep_info.into(),
            });
        }
    }
    match binaries.len() {
        1 => Ok(binaries.remove(0)),
        0 => Err("this Rust task's crate has no binary target; add `src/main.rs` calling `lumo_task::main!`".into()),
        _ => Err(format!(
            "this Rust task's crate builds {} binaries; a task crate must have exactly one",
            binaries.len()
        )),
    }
}
