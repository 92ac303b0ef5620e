//! Running a Lumo Framework task (a bundled ES module, [`Entry::Node`]) on Node.js.
//!
//! The bundle holds only the user's code; what calls it is lumo's own entry script
//! (`node/entry.mjs`, built into the runner), written into the run's scratch directory and
//! started as `node <entry> <module>`. Keeping the entry out of the bundle means one runner
//! version runs every bundle the same way, and the bundle hash depends on the user's code only.
//!
//! Node itself is found the same way locally and on Lambda: `LUMO_NODE` if set (the Lambda exec
//! wrapper sets it to the runtime's own Node), else `node` on `PATH`.
//!
//! [`Entry::Node`]: crate::contract::Entry::Node

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tokio::process::Command;

/// The oldest Node.js major version lumo runs tasks on. Node 18 reached its end of life in
/// April 2025 and gets no security fixes; 20 is what CI machines have and the oldest line
/// that still does (until April 2026 upstream, longer in distributions).
pub const MIN_NODE_MAJOR: u32 = 20;

/// The environment variable that names the Node.js binary to use instead of `node` on `PATH`.
pub const NODE_OVERRIDE_VAR: &str = "LUMO_NODE";

/// The name lumo's entry script gets in a run's scratch directory.
pub const ENTRY_FILE_NAME: &str = "lumo-node-entry.mjs";

/// The exit code lumo's entry ends with when the handler threw, rejected or could not be run
/// (as Node's own for an uncaught error), its reason in the result file as `success: false`.
pub const ENTRY_FAILED_EXIT_CODE: i32 = 1;

/// lumo's Node.js entry: imports the module, calls its handler with the context, writes the
/// result. See the file itself for the rules.
pub const ENTRY_SCRIPT: &str = include_str!("node/entry.mjs");

/// A Node.js that lumo cannot use, said so that the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "Node.js was not found on `PATH`; JavaScript and TypeScript tasks need Node.js \
         {MIN_NODE_MAJOR} or later: install it, or set `{NODE_OVERRIDE_VAR}` to its path"
    )]
    NotFound,
    #[error(
        "`{NODE_OVERRIDE_VAR}` names `{}`, which is not an executable file; set it to a \
         Node.js {MIN_NODE_MAJOR}+ binary or unset it to use `node` on `PATH`",
        path.display()
    )]
    BadOverride { path: PathBuf },
    #[error("could not run `{} --version`", path.display())]
    Run {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{} --version` printed `{output}`, which is not a Node.js version", path.display())]
    Unrecognised { path: PathBuf, output: String },
    #[error(
        "`{}` is Node.js {version}; lumo's JavaScript and TypeScript tasks need Node.js \
         {MIN_NODE_MAJOR} or later: upgrade it, or set `{NODE_OVERRIDE_VAR}` to a newer one",
        path.display()
    )]
    TooOld { path: PathBuf, version: NodeVersion },
}

/// A Node.js version, as `node --version` prints it (`v20.11.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NodeVersion {
    /// Parses `v20.11.1` (the `v` optional, trailing whitespace ignored).
    pub fn parse(text: &str) -> Option<NodeVersion> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = text.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        // A pre-release suffix (`21.0.0-nightly…`) does not change what the version can run.
        let patch_text = parts.next()?;
        let digits = patch_text
            .find(|c: char| !c.is_ascii_digit())
            .map_or(patch_text, |end| &patch_text[..end]);
        let patch = digits.parse().ok()?;
        Some(NodeVersion {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for NodeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The Node.js binary tasks run on: `LUMO_NODE` if set, else the first executable `node` on
/// `PATH`. Does not run it; see [`check_node`] for the version.
pub fn find_node() -> Result<PathBuf, NodeError> {
    find_node_in(
        std::env::var_os(NODE_OVERRIDE_VAR),
        std::env::var_os("PATH"),
    )
}

fn find_node_in(
    override_path: Option<OsString>,
    path_var: Option<OsString>,
) -> Result<PathBuf, NodeError> {
    if let Some(path) = override_path.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(NodeError::BadOverride { path })
        };
    }
    let path_var = path_var.unwrap_or_default();
    std::env::split_paths(&path_var)
        // An empty PATH element means the current directory, which is the bundle: never there.
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("node"))
        .find(|candidate| is_executable_file(candidate))
        .ok_or(NodeError::NotFound)
}

/// Whether `path` is a regular file (after symlinks) that someone may execute.
pub fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds Node.js and checks that it is recent enough, by running `node --version` (a few
/// milliseconds): for a check before anything runs, not for every task.
pub fn check_node() -> Result<(PathBuf, NodeVersion), NodeError> {
    let path = find_node()?;
    let version = check_node_at(&path)?;
    Ok((path, version))
}

/// [`check_node`], remembering the version in `cache_file` so that the next check of the same
/// binary costs a `stat` instead of a Node.js start (`node --version` is ~5 ms of CPU, on
/// every `lumo run` of a JavaScript task). The answer is keyed on the binary's path and its
/// identity after symlinks (device, inode, size, mtime, ctime): an upgrade, a reinstall or a
/// symlink pointed elsewhere changes one of them, and no program can set a ctime back. A binary
/// changed within the last [`RACY_WINDOW`] is not remembered (its next change might not show in
/// the timestamps). The cache is best effort: unreadable is empty, unwritable is ignored.
pub fn check_node_cached(cache_file: &Path) -> Result<(PathBuf, NodeVersion), NodeError> {
    let path = find_node()?;
    let version = node_version_cached(&path, cache_file, std::time::SystemTime::now())?;
    if version.major < MIN_NODE_MAJOR {
        return Err(NodeError::TooOld { path, version });
    }
    Ok((path, version))
}

/// The version of the Node.js at `node`, from `cache_file` when it knows that binary, else
/// from `node --version` (remembered unless the binary changed within [`RACY_WINDOW`] before
/// `now`).
fn node_version_cached(
    node: &Path,
    cache_file: &Path,
    now: std::time::SystemTime,
) -> Result<NodeVersion, NodeError> {
    let stamp = BinaryStamp::of(node);
    if let Some(version) = stamp
        .as_ref()
        .and_then(|stamp| read_cached_version(cache_file, node, stamp))
    {
        return Ok(version);
    }
    let version = node_version(node)?;
    if let Some(stamp) = stamp.filter(|stamp| stamp.settled_at(now)) {
        write_cached_version(cache_file, node, &stamp, version);
    }
    Ok(version)
}

/// A binary changed this recently is not trusted to show its next change in its timestamps.
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// What identifies one Node.js binary without reading it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BinaryStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl BinaryStamp {
    fn of(path: &Path) -> Option<BinaryStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let nanos = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        Some(BinaryStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Whether the binary last changed longer than [`RACY_WINDOW`] before `now`.
    fn settled_at(&self, now: std::time::SystemTime) -> bool {
        let Ok(now) = now.duration_since(std::time::UNIX_EPOCH) else {
            return false;
        };
        let racy_after =
            i128::try_from(now.saturating_sub(RACY_WINDOW).as_nanos()).unwrap_or(i128::MAX);
        self.mtime_ns < racy_after && self.ctime_ns < racy_after
    }
}

/// The cache file's one entry: the last Node.js binary checked.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedNodeVersion {
    path: PathBuf,
    stamp: BinaryStamp,
    version: String,
}

fn read_cached_version(cache_file: &Path, path: &Path, stamp: &BinaryStamp) -> Option<NodeVersion> {
    let bytes = std::fs::read(cache_file).ok()?;
    let cached: CachedNodeVersion = serde_json::from_slice(&bytes).ok()?;
    (cached.path == path && &cached.stamp == stamp)
        .then(|| NodeVersion::parse(&cached.version))
        .flatten()
}

fn write_cached_version(cache_file: &Path, path: &Path, stamp: &BinaryStamp, version: NodeVersion) {
    let entry = CachedNodeVersion {
        path: path.to_owned(),
        stamp: stamp.clone(),
        version: version.to_string(),
    };
    let Ok(bytes) = serde_json::to_vec(&entry) else {
        return;
    };
    // Written aside and renamed, so a concurrent reader sees the old entry or the new one.
    let mut partial = cache_file.as_os_str().to_owned();
    partial.push(format!(".{}.tmp", std::process::id()));
    let partial = PathBuf::from(partial);
    if std::fs::write(&partial, bytes).is_err() || std::fs::rename(&partial, cache_file).is_err() {
        let _ = std::fs::remove_file(&partial);
    }
}

/// Checks that the Node.js at `node` runs and is recent enough.
pub fn check_node_at(node: &Path) -> Result<NodeVersion, NodeError> {
    let version = node_version(node)?;
    if version.major < MIN_NODE_MAJOR {
        return Err(NodeError::TooOld {
            path: node.to_owned(),
            version,
        });
    }
    Ok(version)
}

/// The version `node --version` reports.
pub fn node_version(node: &Path) -> Result<NodeVersion, NodeError> {
    let output = std::process::Command::new(node)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|source| NodeError::Run {
            path: node.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    NodeVersion::parse(&text).ok_or_else(|| NodeError::Unrecognised {
        path: node.to_owned(),
        output: text.trim().chars().take(80).collect(),
    })
}

/// The command that runs the ES module `module` (relative to `working_directory`) through
/// lumo's entry, written to `entry` (a scratch file of the run) first. `Err` with a reason when
/// it cannot start.
///
/// Node's version is not checked here (that would cost a process per task); the entry script
/// checks it as its first step, and deploys check it before the first task runs.
pub(crate) fn task_command(
    module: &str,
    working_directory: &Path,
    entry: &Path,
) -> Result<Command, String> {
    let relative = Path::new(module);
    if module.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("the module must be a relative path inside the bundle".to_owned());
    }
    let module_path =
        std::path::absolute(working_directory.join(relative)).map_err(|e| e.to_string())?;
    if !module_path.is_file() {
        return Err(format!("the bundle has no file `{module}`"));
    }
    let node = find_node().map_err(|e| e.to_string())?;
    std::fs::write(entry, ENTRY_SCRIPT).map_err(|e| {
        format!(
            "could not write lumo's Node entry to `{}`: {e}",
            entry.display()
        )
    })?;
    let mut command = Command::new(node);
    command.arg(entry).arg(module_path).arg(module);
    Ok(command)
}

#[cfg(test)]
mod run_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_node_prints_them() {
        assert_eq!(
            NodeVersion::parse("v20.11.1\n"),
            Some(NodeVersion {
                major: 20,
                minor: 11,
                patch: 1
            })
        );
        assert_eq!(
            NodeVersion::parse("v22.0.0-nightly2024").map(|v| v.major),
            Some(22)
        );
        assert_eq!(NodeVersion::parse("not node"), None);
        assert_eq!(NodeVersion::parse(""), None);
    }

    #[test]
    fn node_is_looked_up_on_path_unless_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let node = bin.join("node");
        std::fs::write(&node, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755)).unwrap();
        let not_exec = dir.path().join("node");
        std::fs::write(&not_exec, "").unwrap();

        let path = std::env::join_paths([dir.path(), bin.as_path()]).unwrap();
        // The first directory's `node` is not executable, so the second one's is taken.
        assert_eq!(find_node_in(None, Some(path.clone())).unwrap(), node);
        assert!(matches!(
            find_node_in(None, Some(OsString::from("/nonexistent"))),
            Err(NodeError::NotFound)
        ));
        assert!(matches!(
            find_node_in(Some(not_exec.clone().into()), Some(path.clone())),
            Err(NodeError::BadOverride { .. })
        ));
        assert_eq!(find_node_in(Some(node.clone().into()), None).unwrap(), node);
        // Too old a Node is said with its version, before any task runs.
        let old = bin.join("old-node");
        std::fs::write(&old, "#!/bin/sh\necho v16.20.2\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_node_at(&old).unwrap_err();
        assert!(matches!(err, NodeError::TooOld { .. }), "{err}");
        assert!(err.to_string().contains("Node.js 16.20.2"), "{err}");
        let odd = bin.join("odd-node");
        std::fs::write(&odd, "#!/bin/sh\necho hello\n").unwrap();
        std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            check_node_at(&odd),
            Err(NodeError::Unrecognised { .. })
        ));

        let message = NodeError::NotFound.to_string();
        assert!(message.contains("Node.js 20 or later") && message.contains("LUMO_NODE"));
    }

    #[test]
    fn a_known_node_binary_is_not_asked_its_version_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        let calls = dir.path().join("calls");
        let fake_node = |version: &str| {
            std::fs::write(
                &node,
                format!(
                    "#!/bin/sh\necho run >> '{}'\necho v{version}\n",
                    calls.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let runs = || {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let cache = dir.path().join("node-version.json");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        let version = |now| node_version_cached(&node, &cache, now).unwrap().to_string();

        fake_node("20.1.0");
        // Just written: not trusted to show its next change, so asked every time.
        assert_eq!(version(std::time::SystemTime::now()), "20.1.0");
        assert_eq!(version(std::time::SystemTime::now()), "20.1.0");
        assert_eq!(runs(), 2);
        // Settled: asked once, then remembered.
        assert_eq!(version(later), "20.1.0");
        assert_eq!(version(later), "20.1.0");
        assert_eq!(runs(), 3);
        // Upgraded in place (a new size, mtime and ctime): asked again.
        fake_node("22.10.0");
        assert_eq!(version(later), "22.10.0");
        assert_eq!(runs(), 4);
        // A cache it cannot read is no cache.
        std::fs::write(&cache, "not json").unwrap();
        assert_eq!(version(later), "22.10.0");
        assert_eq!(runs(), 5);
    }
}
