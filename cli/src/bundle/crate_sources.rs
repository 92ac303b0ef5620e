//! `.lumo/crate-builds.json`: what each Rust task's binary was last built from, so a plain
//! `lumo run` can tell an unchanged crate from its stats alone. Its drift note compares the
//! working copy with the deployed bundle, and for a crate the working copy's bundle holds a
//! binary: without this record every run started `cargo build` (a no-op build still costs
//! cargo's start and its own fingerprint checks, 100 ms or more) only to learn nothing changed.
//!
//! What a build read: every file of the crate's directory (its `Cargo.toml`, `Cargo.lock`,
//! `build.rs`, `src/**`, `.cargo/`; not `target/`), the `Cargo.toml`, `Cargo.lock` and
//! `.cargo/config.toml` of each directory above it up to the project root (a workspace's), and
//! every local source file cargo's dep-info (`<binary>.d`) lists, path dependencies included
//! (registry sources never change in place). With the build target, the `CARGO*`/`RUST*`
//! environment and the binary's own stat, that is the record; each file by device, inode,
//! size, mode, mtime and ctime, as the bundle stat cache does, for the same reasons (an edit
//! always moves the ctime). A record is only kept when no source changed in the
//! [`RACY_WINDOW`] before the build started, so a file edited during the build is never
//! taken as built.
//!
//! What it cannot see: a new toolchain (`rustup update`) with no change to the crate. Only the
//! drift note relies on it, never a deploy, which always asks cargo; the note is a hint
//! either way.
//!
//! Stored data: versioned, and anything unreadable or of another version is no record (cargo
//! runs, as before). Writing it is best effort.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::stat_cache::RACY_WINDOW;

/// The record file's name in `.lumo/`.
pub const CRATE_BUILDS_FILE: &str = "crate-builds.json";

/// The file's shape; another version reads as no record.
const RECORD_VERSION: u32 = 1;

/// Directories of a crate that are not its sources: cargo's default output, and version
/// control.
const SKIPPED_DIRS: &[&str] = &["target", ".git"];

/// Files above a crate (up to the project root) that change how it builds.
const ENCLOSING_FILES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    ".cargo/config.toml",
    ".cargo/config",
];

/// What changes when a file is changed in any way; `None` in a record is a file that was not
/// there (a `Cargo.lock` created later is a change too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        fs::metadata(path).ok().map(|m| Stamp::from_meta(&m))
    }

    fn from_meta(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// Whether this file changed at or after `instant_ns` (nanoseconds since the epoch).
    fn changed_since(&self, instant_ns: i128) -> bool {
        self.mtime_ns >= instant_ns || self.ctime_ns >= instant_ns
    }
}

/// One task's last build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrateBuild {
    /// The build target and the `CARGO*`/`RUST*` environment, hashed.
    setting: String,
    binary: PathBuf,
    binary_stamp: Stamp,
    /// The crate's own files, by path; a new or removed one is a change.
    crate_files: Vec<(PathBuf, Stamp)>,
    /// The files above the crate and those of the dep-info, present or not.
    other_files: Vec<(PathBuf, Option<Stamp>)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    version: u32,
    tasks: BTreeMap<String, CrateBuild>,
}

/// What a crate is built from, seen just before a build.
#[derive(Debug)]
pub struct Sources {
    setting: String,
    crate_files: Vec<(PathBuf, Stamp)>,
    enclosing: Vec<(PathBuf, Option<Stamp>)>,
    /// When the sources were looked at: a file changed after `RACY_WINDOW` before this is not
    /// trusted as built.
    seen_at: SystemTime,
}

impl Sources {
    /// The sources of the crate in `dir`, a task of the project at `root`, built for `target`.
    /// `None` when the crate's directory cannot be read (cargo then says why).
    pub fn of(root: &Path, dir: &Path, target: &str) -> Option<Sources> {
        let seen_at = SystemTime::now();
        let mut crate_files = Vec::new();
        walk(dir, dir, &mut crate_files).ok()?;
        crate_files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut enclosing = Vec::new();
        for above in dir.ancestors().skip(1) {
            if !above.starts_with(root) {
                break;
            }
            for name in ENCLOSING_FILES {
                let path = above.join(name);
                enclosing.push((Stamp::of(&path), path));
            }
        }
        Some(Sources {
            setting: setting(target),
            crate_files,
            enclosing: enclosing.into_iter().map(|(s, p)| (p, s)).collect(),
            seen_at,
        })
    }

    /// The binary built from these sources last time, when nothing the record names changed
    /// and the binary is as that build left it.
    pub fn unchanged_build(&self, records: &Path, task: &str) -> Option<PathBuf> {
        let record = load(records).tasks.remove(task)?;
        let unchanged = record.setting == self.setting
            && record.crate_files == self.crate_files
            && record
                .other_files
                .iter()
                .all(|(path, stamp)| Stamp::of(path) == *stamp)
            && Stamp::of(&record.binary) == Some(record.binary_stamp);
        unchanged.then_some(record.binary)
    }

    /// Records that `binary` was built from these sources (with the local source files its
    /// dep-info `dep_info` lists), unless one of them changed too close to the build to be
    /// trusted. Best effort.
    pub fn record(self, records: &Path, task: &str, binary: &Path, dep_info: &Path) {
        let Some(racy_after) = self
            .seen_at
            .checked_sub(RACY_WINDOW)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
        else {
            return;
        };
        let Some(binary_stamp) = Stamp::of(binary) else {
            return;
        };
        let Some(listed) = fs::read_to_string(dep_info)
            .ok()
            .map(|d| dep_info_sources(&d))
        else {
            tracing::debug!("no dep-info `{}`: crate not recorded", dep_info.display());
            return;
        };
        let mut other_files = self.enclosing;
        for path in listed {
            if !self.crate_files.iter().any(|(p, _)| *p == path) {
                let stamp = Stamp::of(&path);
                other_files.push((path, stamp));
            }
        }
        let racy = self
            .crate_files
            .iter()
            .map(|(_, s)| s)
            .chain(other_files.iter().filter_map(|(_, s)| s.as_ref()))
            .any(|s| s.changed_since(racy_after));
        let mut file = load(records);
        if racy {
            // Built from files that may change again unseen: asked of cargo next time.
            if file.tasks.remove(task).is_some() {
                save(records, &file);
            }
            return;
        }
        file.tasks.insert(
            task.to_string(),
            CrateBuild {
                setting: self.setting,
                binary: binary.to_path_buf(),
                binary_stamp,
                crate_files: self.crate_files,
                other_files,
            },
        );
        save(records, &file);
    }
}

/// The build target and every `CARGO*`/`RUST*` variable (toolchain, flags, target dir), as
/// one hash.
fn setting(target: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(target.as_bytes());
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .filter(|(k, _)| k.starts_with("CARGO") || k.starts_with("RUST"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        for part in [name.as_bytes(), value.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    lumo_runner::bundle::to_hex(&hasher.finalize())
}

/// Every file under `dir` but the skipped directories, by path, with its stamp; symlinks are
/// followed for their stamp, as cargo reads through them.
fn walk(crate_dir: &Path, dir: &Path, found: &mut Vec<(PathBuf, Stamp)>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let skipped = dir == crate_dir
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| SKIPPED_DIRS.contains(&n));
            if !skipped {
                walk(crate_dir, &path, found)?;
            }
            continue;
        }
        if let Some(stamp) = Stamp::of(&path) {
            found.push((path, stamp));
        }
    }
    Ok(())
}

/// The source files a Makefile-style dep-info (`target: a.rs b\ c.rs`) names, first rule
/// only: cargo writes the binary's rule first, with every local source it was built from.
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let Some(line) = text.lines().next() else {
        return Vec::new();
    };
    // The rule's target ends at the first unescaped `: `.
    let mut rest = None;
    let bytes = line.as_bytes();
    for i in 0..bytes.len().saturating_sub(1) {
        if bytes[i] == b':' && bytes[i + 1] == b' ' && (i == 0 || bytes[i - 1] != b'\\') {
            rest = Some(&line[i + 2..]);
            break;
        }
    }
    let Some(rest) = rest else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => {
                if !current.is_empty() {
                    paths.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(PathBuf::from(current));
    }
    paths
}

fn load(path: &Path) -> RecordFile {
    fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<RecordFile>(&bytes).ok())
        .filter(|file| file.version == RECORD_VERSION)
        .unwrap_or_default()
}

/// Writes the records atomically (a temporary file renamed over them); a failure is logged.
fn save(path: &Path, file: &RecordFile) {
    let file = RecordFile {
        version: RECORD_VERSION,
        tasks: file.tasks.clone(),
    };
    let written = (|| -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".crate-builds-")
            .tempfile_in(dir)?;
        serde_json::to_writer(&mut tmp, &file)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    })();
    if let Err(e) = written {
        tracing::warn!("could not write `{}`: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_the_sources_of_the_first_rule_with_escaped_spaces() {
        let text =
            "/t/release/probe: /w/sdk/src/lib.rs /w/my\\ crate/src/main.rs\n\n/w/sdk/src/lib.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            [
                PathBuf::from("/w/sdk/src/lib.rs"),
                PathBuf::from("/w/my crate/src/main.rs")
            ]
        );
        assert!(dep_info_sources("").is_empty());
    }
}
