//! What goes into a task's bundle: the task's own files plus its `copyAssets`, each checked so
//! nothing escapes the project or the bundle root and no two sources write the same path.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use lumo_runner::contract::MANIFEST_PATH;
use nix::unistd::{AccessFlags, access};
use walkdir::WalkDir;

use crate::config::{ConfigProblem, CopyAsset};

/// Lambda's limit on a function's unzipped deployment package (250 MB).
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// Path inside the bundle, `/`-separated, relative.
    pub path: String,
    pub source: EntrySource,
    pub executable: bool,
    pub size: u64,
    /// A file's stamp as its checks read it, which the stat cache fingerprints instead of
    /// asking again (`None`: asked when needed).
    pub stamp: Option<FileStamp>,
}

/// What the stat cache's fingerprint knows of a file: where it is, and every stamp a change
/// moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mode: u32,
    pub(super) changed: Duration,
    pub(super) modified: Duration,
}

impl FileStamp {
    /// `None` for times before 1970, which no fingerprint trusts.
    pub fn of(meta: &fs::Metadata) -> Option<FileStamp> {
        Some(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            changed: Duration::new(
                u64::try_from(meta.ctime()).ok()?,
                u32::try_from(meta.ctime_nsec()).ok()?,
            ),
            modified: Duration::new(
                u64::try_from(meta.mtime()).ok()?,
                u32::try_from(meta.mtime_nsec()).ok()?,
            ),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySource {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Collects a bundle's entries, keyed by bundle path, remembering which config key wrote each
/// so a duplicate can name both writers.
pub struct EntrySet<'a> {
    root: &'a Path,
    canonical_root: PathBuf,
    entries: BTreeMap<String, (BundleEntry, String)>,
    pub problems: Vec<ConfigProblem>,
}

impl<'a> EntrySet<'a> {
    pub fn new(root: &'a Path) -> std::io::Result<Self> {
        Ok(EntrySet::resolved(root, fs::canonicalize(root)?))
    }

    /// [`new`](Self::new) with `root` already resolved (`canonical_root`): a project of many
    /// tasks resolves its root once, not once a task.
    pub fn resolved(root: &'a Path, canonical_root: PathBuf) -> Self {
        EntrySet {
            root,
            canonical_root,
            entries: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    /// Adds one file at `path` in the bundle, written by config key `key`.
    pub fn add(&mut self, path: String, source: EntrySource, key: &str) {
        let (size, executable, stamp) = match &source {
            EntrySource::Bytes(b) => (b.len() as u64, false, None),
            EntrySource::File(p) => match fs::metadata(p) {
                Ok(m) if !m.is_file() => {
                    // A FIFO blocks the bundler for ever on open, a device (`/dev/zero`)
                    // reads until zip's 4 GiB limit: neither can be bundled.
                    self.problem(
                        key,
                        format!(
                            "`{}` is {}; only regular files and directories can be bundled",
                            self.show(p),
                            special_file_kind(&m)
                        ),
                    );
                    return;
                }
                Ok(m) => {
                    // Finding out now that a file cannot be read keeps the error a config
                    // problem naming it, before anything is written, instead of a failed write
                    // of the bundle store. Asking (`access`, one call) rather than opening and
                    // closing it: a `lumo run` checks every asset of its task this way, 2,000
                    // files for a big one.
                    if let Err(e) = access(p, AccessFlags::R_OK) {
                        let e = std::io::Error::from(e);
                        self.problem(key, format!("cannot read `{}`: {e}", self.show(p)));
                        return;
                    }
                    (
                        m.len(),
                        m.permissions().mode() & 0o111 != 0,
                        FileStamp::of(&m),
                    )
                }
                Err(e) => {
                    self.problem(key, format!("cannot read `{}`: {e}", self.show(p)));
                    return;
                }
            },
        };
        if path == MANIFEST_PATH && key != MANIFEST_KEY {
            self.problem(
                key,
                format!("`{MANIFEST_PATH}` is reserved for lumo's bundle manifest"),
            );
            return;
        }
        if let Some((_, first_key)) = self.entries.get(&path) {
            let first_key = first_key.clone();
            self.problem(
                key,
                format!("writes `{path}` in the bundle, which `{first_key}` also writes"),
            );
            return;
        }
        let entry = BundleEntry {
            path: path.clone(),
            source,
            executable,
            size,
            stamp,
        };
        self.entries.insert(path, (entry, key.to_string()));
    }

    /// Adds a `copyAssets` entry: a file, or a directory copied recursively.
    pub fn add_asset(&mut self, asset: &CopyAsset, key: &str) {
        let from_key = format!("{key}.from");
        let to_key = format!("{key}.to");
        let Some(from_rel) = safe_relative(&asset.from) else {
            self.problem(
                &from_key,
                format!(
                    "`{}` must be a path inside the project (relative, without `..`)",
                    asset.from
                ),
            );
            return;
        };
        let Some(to_rel) = safe_relative(&asset.to) else {
            self.problem(
                &to_key,
                format!(
                    "`{}` must be a path inside the bundle (relative, without `..`)",
                    asset.to
                ),
            );
            return;
        };
        let from = self.root.join(&from_rel);
        if fs::symlink_metadata(&from).is_err() {
            self.problem(
                &from_key,
                format!(
                    "`{}` does not exist (paths are relative to the project root `{}`)",
                    asset.from,
                    self.root.display()
                ),
            );
            return;
        }
        if !self.inside_root(&from) {
            self.problem(
                &from_key,
                format!(
                    "`{}` resolves outside the project root through a symlink",
                    asset.from
                ),
            );
            return;
        }
        if from.is_file() {
            if to_rel.is_empty() {
                self.problem(
                    &to_key,
                    "a file needs a file name to land on, not the bundle root".into(),
                );
                return;
            }
            self.add(to_rel, EntrySource::File(from), &from_key);
            return;
        }
        for item in WalkDir::new(&from).follow_links(true).sort_by_file_name() {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    self.problem(&from_key, format!("cannot walk `{}`: {e}", asset.from));
                    return;
                }
            };
            if item.file_type().is_dir() {
                continue;
            }
            if item.path_is_symlink() && !self.inside_root(item.path()) {
                self.problem(
                    &from_key,
                    format!(
                        "`{}` resolves outside the project root through a symlink",
                        self.show(item.path())
                    ),
                );
                continue;
            }
            let Ok(rel) = item.path().strip_prefix(&from) else {
                continue;
            };
            let Some(rel) = rel.to_str() else {
                self.problem(
                    &from_key,
                    format!("`{}` is not valid UTF-8", self.show(item.path())),
                );
                continue;
            };
            let path = join_bundle_path(&to_rel, rel);
            self.add(path, EntrySource::File(item.into_path()), &from_key);
        }
    }

    /// Adds every file of a task directory at the bundle root.
    pub fn add_directory(&mut self, dir: &Path, key: &str) {
        for item in WalkDir::new(dir).follow_links(true).sort_by_file_name() {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    self.problem(key, format!("cannot walk `{}`: {e}", self.show(dir)));
                    return;
                }
            };
            if item.file_type().is_dir() {
                continue;
            }
            if item.path_is_symlink() && !self.inside_root(item.path()) {
                self.problem(
                    key,
                    format!(
                        "`{}` resolves outside the project root through a symlink",
                        self.show(item.path())
                    ),
                );
                continue;
            }
            let Some(rel) = item.path().strip_prefix(dir).ok().and_then(Path::to_str) else {
                continue;
            };
            let rel = rel.to_string();
            self.add(rel, EntrySource::File(item.into_path()), key);
        }
    }

    /// Entries sorted by path, after the last checks that need them all: a path that is both a
    /// file and a directory, and the unzipped size limit.
    pub fn finish(mut self, task_key: &str) -> Result<Vec<BundleEntry>, Vec<ConfigProblem>> {
        let mut clashes = Vec::new();
        // A file `a` and a file `a/b` cannot both exist once unpacked. Sorted order does not put
        // them side by side (`a.txt` sorts between), so look up every ancestor of each path.
        for path in self.entries.keys() {
            let mut prefix = String::new();
            for part in path.split('/').take(path.split('/').count() - 1) {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if let Some((_, key)) = self.entries.get(&prefix) {
                    clashes.push((path.clone(), prefix.clone(), key.clone()));
                }
            }
        }
        for (path, file, key) in clashes {
            let writer = self
                .entries
                .get(&path)
                .map(|(_, k)| k.clone())
                .unwrap_or_default();
            self.problem(
                &writer,
                format!("writes `{path}` below `{file}`, which `{key}` writes as a file"),
            );
        }
        let total: u64 = self.entries.values().map(|(e, _)| e.size).sum();
        if total > MAX_UNZIPPED_BYTES {
            self.problem(
                task_key,
                format!(
                    "the bundle is {} unzipped, over Lambda's limit of 250 MB; trim `copyAssets`",
                    human_bytes(total)
                ),
            );
        }
        if self.problems.is_empty() {
            Ok(self.entries.into_values().map(|(e, _)| e).collect())
        } else {
            Err(self.problems)
        }
    }

    fn inside_root(&self, path: &Path) -> bool {
        fs::canonicalize(path).is_ok_and(|p| p.starts_with(&self.canonical_root))
    }

    fn show(&self, path: &Path) -> String {
        path.strip_prefix(self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(ConfigProblem {
            key: key.to_string(),
            message,
        });
    }
}

/// The config key under which lumo itself writes the manifest.
pub const MANIFEST_KEY: &str = "(lumo manifest)";

/// `a/./b` → `a/b`; `.` or empty → `` (the root); `None` when absolute or containing `..`.
pub fn safe_relative(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn join_bundle_path(base: &str, rel: &str) -> String {
    if base.is_empty() {
        rel.to_string()
    } else {
        format!("{base}/{rel}")
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "a FIFO", "a socket", … for a file that is neither a regular file nor a directory.
pub(crate) fn special_file_kind(metadata: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Regression (adversarial run, issue 10): a FIFO among the assets hung `lumo deploy` for
    /// ever (opened for reading, it blocks), and a device was read until zip's 4 GiB limit.
    #[test]
    fn fifos_sockets_and_devices_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("assets")).unwrap();
        fs::write(root.join("assets/ok.txt"), "fine").unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("assets/pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        let _socket = std::os::unix::net::UnixListener::bind(root.join("assets/sock")).unwrap();
        let mut set = EntrySet::new(root).unwrap();
        set.add_asset(&asset("assets", "assets"), "tasks.t.copyAssets[0]");
        let problems = set.finish("tasks.t").unwrap_err();
        let messages: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("assets/pipe` is a FIFO (named pipe)")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("assets/sock` is a socket")),
            "{messages:?}"
        );
        assert!(
            problems
                .iter()
                .all(|p| p.key == "tasks.t.copyAssets[0].from")
        );

        // A device (what a link inside the project to `/dev/zero` would read).
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut set = EntrySet::new(root).unwrap();
        set.add(
            "zero".into(),
            EntrySource::File(PathBuf::from("/dev/zero")),
            "tasks.t.copyAssets[1].from",
        );
        let problems = set.finish("tasks.t").unwrap_err();
        assert!(
            problems[0].message.contains("is a character device"),
            "{problems:#?}"
        );
    }

    fn asset(from: &str, to: &str) -> CopyAsset {
        CopyAsset {
            from: from.into(),
            to: to.into(),
            index: 0,
        }
    }

    #[test]
    fn copies_files_and_directories_to_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("migrations/sub")).unwrap();
        fs::write(root.join("migrations/0001.sql"), "a").unwrap();
        fs::write(root.join("migrations/sub/0002.sql"), "bb").unwrap();
        fs::write(root.join("seed.json"), "{}").unwrap();
        let mut set = EntrySet::new(root).unwrap();
        set.add_asset(&asset("migrations", "db"), "a[0]");
        set.add_asset(&asset("./seed.json", "data/seed.json"), "a[1]");
        let entries = set.finish("t").unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["data/seed.json", "db/0001.sql", "db/sub/0002.sql"]);
    }

    #[test]
    fn rejects_missing_escaping_and_duplicate_assets() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(outside.path().join("secret"), "x").unwrap();
        symlink(outside.path(), root.join("link")).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::write(root.join("b.txt"), "b").unwrap();
        let mut set = EntrySet::new(root).unwrap();
        set.add_asset(&asset("missing", "m"), "k0");
        set.add_asset(&asset("../etc", "etc"), "k1");
        set.add_asset(&asset("/etc/passwd", "p"), "k2");
        set.add_asset(&asset("link", "l"), "k3");
        set.add_asset(&asset("a.txt", "x.txt"), "k4");
        set.add_asset(&asset("b.txt", "x.txt"), "k5");
        set.add_asset(&asset("a.txt", "../up"), "k6");
        let problems = set.finish("t").unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "k0.from", "k1.from", "k2.from", "k3.from", "k5.from", "k6.to"
            ]
        );
        assert!(problems[0].message.contains("does not exist"));
        assert!(problems[3].message.contains("outside the project root"));
        assert!(
            problems[4].message.contains("`k4.from` also writes"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_symlink_inside_a_copied_directory_may_not_point_outside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(outside.path().join("secret"), "x").unwrap();
        fs::create_dir(root.join("assets")).unwrap();
        symlink(outside.path().join("secret"), root.join("assets/s")).unwrap();
        let mut set = EntrySet::new(root).unwrap();
        set.add_asset(&asset("assets", "assets"), "k");
        let problems = set.finish("t").unwrap_err();
        assert!(problems[0].message.contains("outside the project root"));
    }

    #[test]
    fn a_file_and_a_directory_at_the_same_path_clash() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/x"), "x").unwrap();
        fs::write(root.join("f"), "f").unwrap();
        let mut set = EntrySet::new(root).unwrap();
        set.add_asset(&asset("f", "data"), "k0");
        set.add_asset(&asset("d", "data"), "k1");
        let problems = set.finish("t").unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("which `k0.from` writes as a file"),
            "{problems:?}"
        );
    }

    #[test]
    fn safe_relative_normalises_and_refuses_escapes() {
        assert_eq!(safe_relative("a/./b").as_deref(), Some("a/b"));
        assert_eq!(safe_relative(".").as_deref(), Some(""));
        assert_eq!(safe_relative("a/../b"), None);
        assert_eq!(safe_relative("/abs"), None);
    }
}
