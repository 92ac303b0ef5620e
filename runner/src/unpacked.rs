//! Unpacked bundles kept between runs (`<cache>/<sha256>/tree`), so running a task again does
//! not hash and unzip its bundle again (a 200 MB bundle took 0.6 s a run).
//!
//! The task contract gives a task its unpacked bundle as its working directory, which it may
//! change. No run's changes may reach the next run, so a kept tree is only reused when it is
//! provably as unpacked: after unpacking, every entry of the tree (directories included) is
//! recorded with its inode, size, mode, mtime and ctime, and before each reuse the tree is
//! walked and compared. Any write, truncation, chmod, rename, new or removed file, or new hard
//! link changes a ctime (of the file or of its directory), and no program can set a ctime
//! back, so a changed tree is always noticed and unpacked anew. (Hard links into a shared tree
//! would not be safe: an in-place write changes every link; reflinks would be, but most
//! filesystems here have none.)
//!
//! Except within one tick of a coarse clock: a kernel before Linux 6.13 stamps files with the
//! time of its last timer tick (1–10 ms), a file system may keep whole seconds, and a file
//! rewritten in place, at its size, in the tick it was recorded in keeps its stamp. So the
//! record also keeps the file system's time just before the tree was recorded (`taken`), and
//! a file whose change time is not older than that is "racy" (git's word for the same case): its
//! content is compared with the zip before the tree is reused, after which the record is
//! renewed and the file is not racy any more. Only the files unpacked in the tick before the
//! record was taken are compared, once: all of a small bundle's, the last few of a big one's.
//!
//! One run at a time uses a tree: it holds the tree's lock (`flock`) for the whole run, and a
//! run that finds it locked (the same bundle running concurrently) unpacks a private copy as
//! before. The zip's own stat is recorded with the hash check, so an unchanged zip is not
//! hashed again either; a zip that changed is hashed (and refused if it no longer matches).
//!
//! The record (`state.json`) is stored data: versioned, and one that cannot be read is the
//! same as none (the tree is unpacked anew).
//!
//! Which trees stay: the [`KEPT_TREES`] most recently used whatever their size (a `lumo run` of
//! a big bundle finds its tree), and after them more, most recently used first, while all kept
//! trees together take at most [`KEPT_BYTES`] and number at most [`MAX_KEPT_TREES`]. So a
//! deploy's small tasks find their trees on the next deploy: keeping only eight made a deploy of
//! ten tasks unpack and delete every tree on every deploy, and creating and deleting files is
//! what a run costs most on some file systems (ext4 without a journal scans past every inode
//! deleted in the last minutes to allocate one). Each tree's size is written in its lock file
//! when it is unpacked, so choosing what to evict reads no tree. Eviction runs after the first
//! tree a cache unpacks and then after every [`EVICT_EVERY_TREES`] trees or
//! [`EVICT_EVERY_BYTES`] unpacked, not after each one: a deploy of many tasks does not list the
//! cache once per task.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::bundle::{self, BundleError};
use crate::contract::BundleManifest;
use crate::ids::BundleHash;

/// The record's shape; another version reads as no record.
const STATE_VERSION: u32 = 1;

/// How many unpacked bundles are kept whatever their size (the most recently used ones).
pub const KEPT_TREES: usize = 8;

/// How much all kept trees may take together (their files' bytes, plus [`ENTRY_OVERHEAD`] an
/// entry) for trees beyond the [`KEPT_TREES`] most recent to be kept.
pub const KEPT_BYTES: u64 = 256 * 1024 * 1024;

/// The most trees kept, however small.
pub const MAX_KEPT_TREES: usize = 2048;

/// What a file or directory takes on disk beyond its bytes, roughly (an inode, a block's slack).
const ENTRY_OVERHEAD: u64 = 4096;

/// A cache looks for trees to evict again once it has unpacked this many trees, or
/// [`EVICT_EVERY_BYTES`], since it last did.
pub const EVICT_EVERY_TREES: usize = 64;

/// See [`EVICT_EVERY_TREES`].
pub const EVICT_EVERY_BYTES: u64 = 64 * 1024 * 1024;

/// A kept tree, checked out for one run: the run's working directory, locked until dropped.
#[derive(Debug)]
pub struct CheckedOut {
    /// The tree, as an absolute path without symlinks (the task's working directory).
    pub dir: PathBuf,
    pub manifest: BundleManifest,
    /// Whether the tree was reused as it was (not unpacked; hashed only when the zip's stamp
    /// moved).
    pub reused: bool,
    _lock: File,
}

/// Why a tree could not be checked out. A hash mismatch is the run's failure; the other errors
/// only mean the run unpacks a private copy instead.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the bundle has sha256 {actual}")]
    HashMismatch { actual: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// `<dir>/<sha256>/{lock,state.json,tree/}`. Clones share their count of what was unpacked
/// since the last eviction: make one per process and clone it for each run.
#[derive(Debug, Clone)]
pub struct UnpackCache {
    dir: PathBuf,
    retention: Retention,
    /// Trees and bytes unpacked since this cache last evicted; `None` before its first
    /// eviction.
    since_eviction: Arc<Mutex<Option<(usize, u64)>>>,
    /// `dir` resolved (absolute, no symlinks) once it exists: every tree handed out is under
    /// it, so no run resolves its working directory's path again.
    resolved: Arc<std::sync::OnceLock<PathBuf>>,
}

/// Which trees are kept and how often eviction runs; see the module docs.
#[derive(Debug, Clone, Copy)]
struct Retention {
    kept_trees: usize,
    kept_bytes: u64,
    max_kept_trees: usize,
    evict_every_trees: usize,
    evict_every_bytes: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            kept_trees: KEPT_TREES,
            kept_bytes: KEPT_BYTES,
            max_kept_trees: MAX_KEPT_TREES,
            evict_every_trees: EVICT_EVERY_TREES,
            evict_every_bytes: EVICT_EVERY_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    version: u32,
    zip: Stamp,
    manifest: BundleManifest,
    tree: Vec<(String, Stamp)>,
    /// The file system's time (a change time it gave the lock file) just before `tree` was
    /// recorded; see the module docs. `None` in a record an older lumo wrote: every file of the
    /// tree is racy once.
    #[serde(default)]
    taken: Option<(i64, i64)>,
}

/// What changes when a file is changed in any way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    nlink: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            nlink: meta.nlink(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl UnpackCache {
    pub fn new(dir: PathBuf) -> UnpackCache {
        UnpackCache::with_retention(dir, Retention::default())
    }

    fn with_retention(dir: PathBuf, retention: Retention) -> UnpackCache {
        UnpackCache {
            dir,
            retention,
            since_eviction: Arc::new(Mutex::new(None)),
            resolved: Arc::default(),
        }
    }

    /// The tree of bundle `hash` (whose zip is `zip`) for one run: the kept one when it is
    /// untouched, else unpacked anew after checking the zip's hash. `Ok(None)` when another
    /// run is using it.
    pub fn checkout(
        &self,
        zip: &Path,
        hash: &BundleHash,
    ) -> Result<Option<CheckedOut>, CheckoutError> {
        self.checkout_stated(zip, &fs::metadata(zip)?, hash)
    }

    /// [`checkout`](Self::checkout) of a zip whose metadata the caller has just read.
    pub fn checkout_stated(
        &self,
        zip: &Path,
        zip_meta: &fs::Metadata,
        hash: &BundleHash,
    ) -> Result<Option<CheckedOut>, CheckoutError> {
        let own_home = self.dir.join(hash.as_str());
        let lock_path = own_home.join("lock");
        let open_lock = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
        };
        // The tree's directory exists on every run but its first: opening its lock says so.
        let lock = match open_lock() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&own_home)?;
                open_lock()?
            }
            opened => opened?,
        };
        // Handed-out paths are resolved: the task's working directory needs no `realpath`.
        let home = self
            .resolved
            .get_or_init(|| resolve(&self.dir))
            .join(hash.as_str());
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        // Marks the tree as recently used, for eviction.
        let _ = lock.set_modified(std::time::SystemTime::now());
        let tree = home.join("tree");
        let state_path = home.join("state.json");
        let zip_stamp = Stamp::of(zip_meta);
        let untouched = read_state(&state_path)
            .filter(|state| snapshot(&tree).ok().as_ref() == Some(&state.tree));
        if let Some(state) = untouched {
            let zip_moved = state.zip != zip_stamp;
            if zip_moved {
                // Only the zip's stamp moved (a deploy refreshing its time so `lumo prune`
                // spares it, a copy): once its content is found to be the bundle still, the
                // untouched tree is still its unpacking and only the record is renewed.
                // Nothing is replaced meanwhile, so the record stays: naming the zip's old
                // stamp, it is trusted again only after this check.
                let actual = bundle::sha256_file(zip)?;
                if actual != hash.as_str() {
                    return Err(CheckoutError::HashMismatch { actual });
                }
            }
            let racy = state.racy_files();
            if racy.is_empty() || same_content(zip, &tree, &racy)? {
                let manifest = state.manifest.clone();
                if zip_moved || !racy.is_empty() {
                    // The racy files are as unpacked: recorded as of this checkout's lock, whose
                    // change time precedes the walk that found the tree untouched.
                    let taken = if racy.is_empty() {
                        state.taken
                    } else {
                        Some(change_time(&lock.metadata()?))
                    };
                    let renewed = State {
                        zip: zip_stamp,
                        taken,
                        ..state
                    };
                    write_state(&state_path, &renewed)?;
                }
                return Ok(Some(CheckedOut {
                    dir: tree,
                    manifest,
                    reused: true,
                    _lock: lock,
                }));
            }
            // A file was rewritten within the tick the record was taken in: unpacked anew.
        }

        // No record while the zip is checked or the tree replaced, so a crash leaves nothing
        // trusted.
        remove_if_present(&state_path)?;
        let actual = bundle::sha256_file(zip)?;
        if actual != hash.as_str() {
            return Err(CheckoutError::HashMismatch { actual });
        }
        remove_dir_if_present(&tree)?;
        let manifest = bundle::unpack(zip, &tree)?;
        // The file system's time now, before the tree is recorded: what is changed after it
        // in the same tick is told by its content ([`State::racy_files`]). A lock whose time
        // cannot be set gives an earlier time, which only makes more files racy.
        let _ = lock.set_modified(std::time::SystemTime::now());
        let taken = lock.metadata().ok().map(|meta| change_time(&meta));
        let state = State {
            version: STATE_VERSION,
            zip: zip_stamp,
            manifest: manifest.clone(),
            tree: snapshot(&tree)?,
            taken,
        };
        write_state(&state_path, &state)?;
        let size = state.tree_size();
        // Best effort: a tree without a recorded size is kept only among the most recent.
        let _ = record_size(&lock, size);
        if self.due_for_eviction(size) {
            self.evict(hash.as_str(), size);
        }
        Ok(Some(CheckedOut {
            dir: tree,
            manifest,
            reused: false,
            _lock: lock,
        }))
    }

    /// Counts a tree of `size` just unpacked; whether it is time to evict (see
    /// [`EVICT_EVERY_TREES`]).
    fn due_for_eviction(&self, size: u64) -> bool {
        let mut since = self
            .since_eviction
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due = match since.as_mut() {
            None => true,
            Some((trees, bytes)) => {
                *trees += 1;
                *bytes = bytes.saturating_add(size);
                *trees >= self.retention.evict_every_trees
                    || *bytes >= self.retention.evict_every_bytes
            }
        };
        if due {
            *since = Some((0, 0));
        }
        due
    }

    /// Removes the least recently used trees that the retention rules (module docs) do not
    /// keep, except `keep` (of `keep_size`, just used) and trees in use. Best effort: a tree
    /// that cannot be removed now is tried again next time.
    fn evict(&self, keep: &str, keep_size: u64) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut trees: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_name().to_str() != Some(keep))
            .filter_map(|e| {
                let used = fs::metadata(e.path().join("lock")).ok()?.modified().ok()?;
                Some((used, e.path()))
            })
            .collect();
        if trees.len() < self.retention.kept_trees {
            return;
        }
        trees.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        let (mut kept, mut kept_bytes) = (1, keep_size);
        let mut full = false;
        for (_, home) in trees {
            if !full {
                let size = recorded_size(&home).unwrap_or(u64::MAX);
                let fits = kept < self.retention.max_kept_trees
                    && kept_bytes.saturating_add(size) <= self.retention.kept_bytes;
                if kept < self.retention.kept_trees || fits {
                    kept += 1;
                    kept_bytes = kept_bytes.saturating_add(size);
                    continue;
                }
                // The most recently used trees that fit are kept; every older one goes.
                full = true;
            }
            let Ok(lock) = File::open(home.join("lock")) else {
                continue;
            };
            if lock.try_lock().is_ok() {
                // The record goes first: a tree without one is never reused.
                let _ = remove_if_present(&home.join("state.json"));
                let _ = fs::remove_dir_all(&home);
            }
        }
    }
}

/// `dir` as an absolute path without symlinks; as it is when it cannot be resolved (the tree
/// is then resolved by the run, as any unpacked bundle is).
fn resolve(dir: &Path) -> PathBuf {
    fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Writes the record in place. Only the holder of the tree's lock reads or writes it, and a
/// record cut short (a crash, a full disk) is not JSON, so it is no record: no temporary file
/// and rename, which cost a new inode and a deleted one a record (every task's, on the first
/// deploy after `lumo prune`'s protection of its bundle was renewed).
fn write_state(path: &Path, state: &State) -> io::Result<()> {
    fs::write(path, serde_json::to_vec(state).map_err(io::Error::other)?)
}

impl State {
    /// The tree's files (by path) whose change time is not older than the record: a rewrite
    /// within that tick of a coarse clock would not have moved their stamps.
    fn racy_files(&self) -> Vec<&str> {
        self.tree
            .iter()
            .filter(|(_, stamp)| stamp.mode & S_IFMT == S_IFREG)
            .filter(|(_, stamp)| self.taken.is_none_or(|taken| stamp.ctime >= taken))
            .map(|(path, _)| path.as_str())
            .collect()
    }

    /// What the tree takes on disk, roughly: its files' bytes and [`ENTRY_OVERHEAD`] an entry.
    fn tree_size(&self) -> u64 {
        self.tree.iter().fold(0u64, |sum, (_, stamp)| {
            sum.saturating_add(stamp.size)
                .saturating_add(ENTRY_OVERHEAD)
        })
    }
}

/// The file type bits of a mode, and a regular file's.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// A change time as a record keeps it.
fn change_time(meta: &fs::Metadata) -> (i64, i64) {
    (meta.ctime(), meta.ctime_nsec())
}

/// Whether each of `paths` in `tree` holds what the zip's entry of that name does.
fn same_content(zip: &Path, tree: &Path, paths: &[&str]) -> Result<bool, CheckoutError> {
    let zip_err = |source| BundleError::Zip {
        path: zip.to_owned(),
        source,
    };
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(File::open(zip)?)).map_err(zip_err)?;
    for path in paths {
        let mut entry = match archive.by_name(path) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(false),
            Err(e) => return Err(zip_err(e).into()),
        };
        let mut file = File::open(tree.join(path))?;
        if file.metadata()?.len() != entry.size() || !same_bytes(&mut entry, &mut file)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `a` and `b` read the same bytes to their ends.
fn same_bytes(a: &mut impl io::Read, b: &mut impl io::Read) -> io::Result<bool> {
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fill(a, &mut x)?;
        let m = fill(b, &mut y[..n.max(1)])?;
        if n == 0 || m != n || x[..n] != y[..n] {
            return Ok(n == 0 && m == 0);
        }
    }
}

/// Reads until `buf` is full or `from` ends; how much was read.
fn fill(from: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match from.read(&mut buf[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// Writes the tree's size into its lock file (held by us), where eviction reads it.
fn record_size(mut lock: &File, size: u64) -> io::Result<()> {
    lock.set_len(0)?;
    lock.write_all(size.to_string().as_bytes())
}

/// The size recorded in the lock file of the tree at `home`; `None` when there is none (a tree
/// kept by an older lumo).
fn recorded_size(home: &Path) -> Option<u64> {
    fs::read_to_string(home.join("lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn read_state(path: &Path) -> Option<State> {
    use io::Read;
    // Not `fs::read` (nor `File::read_to_end`), which ask the file's size and position first:
    // a record is a few hundred bytes, read on every run.
    let mut bytes = Vec::with_capacity(4096);
    fs::File::open(path)
        .ok()?
        .take(u64::MAX)
        .read_to_end(&mut bytes)
        .ok()?;
    serde_json::from_slice::<State>(&bytes)
        .ok()
        .filter(|state| state.version == STATE_VERSION)
}

/// Every entry under `root` (and `root` itself, as ``), sorted by path, with its stamp.
/// Symlinks are recorded, not followed (unpacking makes none, so one is a change).
fn snapshot(root: &Path) -> io::Result<Vec<(String, Stamp)>> {
    let mut found = vec![(String::new(), Stamp::of(&fs::symlink_metadata(root)?))];
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = if prefix.is_empty() {
                name.into_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push((entry.path(), path.clone()));
            }
            found.push((path, Stamp::of(&meta)));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::tests::{ZipItem, write_zip};
    use std::os::unix::fs::PermissionsExt;

    fn bundle(dir: &Path) -> (PathBuf, BundleHash) {
        let zip = dir.join("b.zip");
        let manifest = br#"{"task":"t","entry":{"program":"run.sh"}}"#;
        write_zip(
            &zip,
            &[
                ZipItem::File {
                    name: "lumo-bundle.json",
                    body: manifest,
                    mode: 0o644,
                },
                ZipItem::File {
                    name: "run.sh",
                    body: b"#!/bin/sh\n",
                    mode: 0o755,
                },
                ZipItem::File {
                    name: "data/seed.txt",
                    body: b"original",
                    mode: 0o644,
                },
            ],
        );
        let hash = BundleHash::parse(&bundle::sha256_file(&zip).unwrap()).unwrap();
        (zip, hash)
    }

    #[test]
    fn an_untouched_tree_is_reused_and_any_change_unpacks_it_anew() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, hash) = bundle(dir.path());
        let cache = UnpackCache::new(dir.path().join("unpacked"));
        let first = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(!first.reused);
        let seed = first.dir.join("data/seed.txt");
        drop(first);
        let again = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(again.reused, "nothing changed: the tree is reused");
        drop(again);

        // Each of these is what a run might do to its working directory; the next run must
        // see the bundle as built. The in-place write keeps size and mtime, as a careful
        // tool would: only the ctime shows it.
        type Change = Box<dyn Fn(&Path)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "in-place write, size and mtime restored",
                Box::new(|tree: &Path| {
                    let path = tree.join("data/seed.txt");
                    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
                    fs::write(&path, "CHANGED!").unwrap();
                    File::options()
                        .write(true)
                        .open(&path)
                        .unwrap()
                        .set_modified(mtime)
                        .unwrap();
                }),
            ),
            (
                "new file",
                Box::new(|tree: &Path| fs::write(tree.join("data/new.txt"), "x").unwrap()),
            ),
            (
                "removed file",
                Box::new(|tree: &Path| fs::remove_file(tree.join("run.sh")).unwrap()),
            ),
            (
                "chmod",
                Box::new(|tree: &Path| {
                    fs::set_permissions(tree.join("run.sh"), fs::Permissions::from_mode(0o700))
                        .unwrap()
                }),
            ),
            (
                "hard link out of the tree",
                Box::new(|tree: &Path| {
                    let outside = tree.parent().unwrap().parent().unwrap().join("link");
                    let _ = fs::remove_file(&outside);
                    fs::hard_link(tree.join("data/seed.txt"), outside).unwrap()
                }),
            ),
        ];
        for (what, change) in changes {
            let tree = cache.checkout(&zip, &hash).unwrap().unwrap();
            change(&tree.dir);
            drop(tree);
            let next = cache.checkout(&zip, &hash).unwrap().unwrap();
            assert!(!next.reused, "{what}: the changed tree was reused");
            assert_eq!(fs::read_to_string(&seed).unwrap(), "original", "{what}");
            assert!(!next.dir.join("data/new.txt").exists(), "{what}");
            let mode = fs::metadata(next.dir.join("run.sh")).unwrap().mode();
            assert_eq!(mode & 0o777, 0o755, "{what}");
        }
    }

    /// A deploy refreshes the time of a stored bundle it builds again (so `lumo prune` spares
    /// it): the zip is checked again, but its untouched tree is not unpacked again.
    #[test]
    fn a_zip_whose_time_moved_is_hashed_again_and_its_tree_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, hash) = bundle(dir.path());
        let cache = UnpackCache::new(dir.path().join("unpacked"));
        let first = cache.checkout(&zip, &hash).unwrap().unwrap();
        let seed_inode = fs::metadata(first.dir.join("data/seed.txt")).unwrap().ino();
        drop(first);
        File::options()
            .append(true)
            .open(&zip)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        let again = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(again.reused, "the tree was unpacked again");
        let seed = again.dir.join("data/seed.txt");
        assert_eq!(fs::metadata(&seed).unwrap().ino(), seed_inode);
        drop(again);
        assert!(cache.checkout(&zip, &hash).unwrap().unwrap().reused);

        // A tree changed meanwhile is still unpacked anew.
        fs::write(&seed, "changed").unwrap();
        File::options()
            .append(true)
            .open(&zip)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        let fresh = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(!fresh.reused);
        assert_eq!(fs::read_to_string(&seed).unwrap(), "original");
    }

    #[test]
    fn a_zip_whose_time_and_content_moved_is_refused_until_its_content_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, hash) = bundle(dir.path());
        let cache = UnpackCache::new(dir.path().join("unpacked"));
        drop(cache.checkout(&zip, &hash).unwrap().unwrap());
        let record = dir
            .path()
            .join("unpacked")
            .join(hash.as_str())
            .join("state.json");
        let record_inode = fs::metadata(&record).unwrap().ino();

        // Same size, other bytes, a new stamp: the untouched tree is not the bundle's now.
        let good = fs::read(&zip).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        fs::write(&zip, &bad).unwrap();
        for _ in 0..2 {
            let err = cache.checkout(&zip, &hash).unwrap_err();
            assert!(matches!(err, CheckoutError::HashMismatch { .. }), "{err}");
        }

        // The bundle's bytes back (another stamp again): the tree is the bundle's once more,
        // kept, and its record renewed in place.
        fs::write(&zip, &good).unwrap();
        let again = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(again.reused, "the untouched tree was unpacked again");
        assert_eq!(
            fs::read_to_string(again.dir.join("data/seed.txt")).unwrap(),
            "original"
        );
        drop(again);
        assert_eq!(fs::metadata(&record).unwrap().ino(), record_inode);
        let names: Vec<_> = fs::read_dir(record.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        // Renewed: trusted without hashing the zip again.
        let zip_stamp = fs::metadata(&zip).unwrap();
        let renewed = read_state(&record).unwrap();
        assert_eq!(renewed.zip, Stamp::of(&zip_stamp));
    }

    /// On a coarse clock a file rewritten in place, at its size, within the tick its tree was
    /// recorded in keeps its stamp (simulated here: the record is taken again after the
    /// rewrite, with a time not older than it). Such a racy file is compared with the zip
    /// before the tree is reused: a rewritten one has the tree unpacked anew, an intact one
    /// renews the record past it, and a record an older lumo wrote (no time) has every file
    /// compared once.
    #[test]
    fn a_file_rewritten_within_the_tick_of_its_record_is_told_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, hash) = bundle(dir.path());
        let cache = UnpackCache::new(dir.path().join("unpacked"));
        let tree = cache.checkout(&zip, &hash).unwrap().unwrap().dir;
        let record = dir
            .path()
            .join("unpacked")
            .join(hash.as_str())
            .join("state.json");
        let seed = tree.join("data/seed.txt");
        fs::write(&seed, "changed!").unwrap();
        let mut state = read_state(&record).unwrap();
        state.tree = snapshot(&tree).unwrap();
        state.taken = Some(change_time(&fs::metadata(&seed).unwrap()));
        write_state(&record, &state).unwrap();
        let again = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(!again.reused, "the rewritten file went unnoticed");
        assert_eq!(fs::read_to_string(&seed).unwrap(), "original");
        drop(again);

        // Racy, intact: reused, and the record renewed past its files.
        let mut state = read_state(&record).unwrap();
        state.taken = state.tree.iter().map(|(_, stamp)| stamp.ctime).max();
        write_state(&record, &state).unwrap();
        assert!(!state.racy_files().is_empty());
        let intact = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(intact.reused);
        drop(intact);
        let renewed = read_state(&record).unwrap();
        assert!(renewed.racy_files().is_empty(), "{:?}", renewed.taken);
        assert_eq!(renewed.tree, state.tree);

        // A record as the lumo before this one wrote it, without a time.
        let mut old: serde_json::Value =
            serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("taken");
        fs::write(&record, serde_json::to_vec(&old).unwrap()).unwrap();
        let old_state = read_state(&record).unwrap();
        assert_eq!(old_state.taken, None);
        assert_eq!(
            old_state.racy_files(),
            ["data/seed.txt", "lumo-bundle.json", "run.sh"]
        );
        let kept = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(kept.reused, "an older lumo's record of an intact tree");
        drop(kept);
        assert!(read_state(&record).unwrap().racy_files().is_empty());
    }

    /// A bundle of its own for each `n`, with a file of `bytes` bytes.
    fn nth_bundle(dir: &Path, n: usize, bytes: usize) -> (PathBuf, BundleHash) {
        let zip = dir.join(format!("b{n}.zip"));
        let body = vec![b'x'; bytes];
        write_zip(
            &zip,
            &[
                ZipItem::File {
                    name: "lumo-bundle.json",
                    body: format!(r#"{{"task":"t{n}","entry":{{"program":"run.sh"}}}}"#).as_bytes(),
                    mode: 0o644,
                },
                ZipItem::File {
                    name: "run.sh",
                    body: &body,
                    mode: 0o755,
                },
            ],
        );
        let hash = BundleHash::parse(&bundle::sha256_file(&zip).unwrap()).unwrap();
        (zip, hash)
    }

    fn kept(cache_dir: &Path) -> usize {
        fs::read_dir(cache_dir).unwrap().count()
    }

    /// The regression: a deploy of more tasks than the eight always kept unpacked and deleted
    /// every tree on every deploy. Small trees are all kept; big ones only the most recent.
    #[test]
    fn a_deploys_small_trees_are_all_kept_for_the_next_deploy_and_big_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("unpacked");
        let retention = Retention {
            kept_trees: 2,
            kept_bytes: 200_000,
            max_kept_trees: 12,
            evict_every_trees: 1,
            evict_every_bytes: u64::MAX,
        };
        let cache = UnpackCache::with_retention(cache_dir.clone(), retention);
        let small: Vec<_> = (0..10).map(|n| nth_bundle(dir.path(), n, 10)).collect();
        for (zip, hash) in &small {
            assert!(!cache.checkout(zip, hash).unwrap().unwrap().reused);
        }
        assert_eq!(kept(&cache_dir), 10);
        for (zip, hash) in &small {
            let again = cache.checkout(zip, hash).unwrap().unwrap();
            assert!(again.reused, "the second deploy reuses every small tree");
        }

        // Trees of 100 kB: two are kept whatever their size, a third does not fit.
        let big: Vec<_> = (10..14)
            .map(|n| nth_bundle(dir.path(), n, 100_000))
            .collect();
        for (zip, hash) in &big {
            drop(cache.checkout(zip, hash).unwrap());
        }
        assert_eq!(kept(&cache_dir), 2, "only the two most recent big trees");
        for (zip, hash) in big.iter().rev() {
            let again = cache.checkout(zip, hash).unwrap().unwrap();
            assert_eq!(
                again.reused,
                !zip.ends_with("b10.zip") && !zip.ends_with("b11.zip")
            );
        }
    }

    #[test]
    fn eviction_waits_for_enough_new_trees() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("unpacked");
        let retention = Retention {
            kept_trees: 1,
            kept_bytes: 0,
            max_kept_trees: 1,
            evict_every_trees: 3,
            evict_every_bytes: u64::MAX,
        };
        let cache = UnpackCache::with_retention(cache_dir.clone(), retention);
        let mut counts = Vec::new();
        for n in 0..5 {
            let (zip, hash) = nth_bundle(dir.path(), n, 10);
            drop(cache.checkout(&zip, &hash).unwrap());
            counts.push(kept(&cache_dir));
        }
        // The first tree evicts, then every third: the cache grows by at most that in between.
        assert_eq!(counts, [1, 2, 3, 1, 2]);
    }

    #[test]
    fn a_tree_in_use_is_not_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, hash) = bundle(dir.path());
        let cache = UnpackCache::new(dir.path().join("unpacked"));
        let held = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(cache.checkout(&zip, &hash).unwrap().is_none());
        drop(held);
        assert!(cache.checkout(&zip, &hash).unwrap().is_some());
    }

    #[test]
    fn a_changed_zip_is_hashed_again_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, hash) = bundle(dir.path());
        let cache = UnpackCache::new(dir.path().join("unpacked"));
        drop(cache.checkout(&zip, &hash).unwrap());
        let mut bytes = fs::read(&zip).unwrap();
        bytes.push(0);
        fs::write(&zip, bytes).unwrap();
        let err = cache.checkout(&zip, &hash).unwrap_err();
        assert!(matches!(err, CheckoutError::HashMismatch { .. }), "{err}");
    }

    #[test]
    fn an_unreadable_record_means_unpacking_anew() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, hash) = bundle(dir.path());
        let cache = UnpackCache::new(dir.path().join("unpacked"));
        drop(cache.checkout(&zip, &hash).unwrap());
        let state = dir
            .path()
            .join("unpacked")
            .join(hash.as_str())
            .join("state.json");
        fs::write(&state, "{not json").unwrap();
        let tree = cache.checkout(&zip, &hash).unwrap().unwrap();
        assert!(!tree.reused);
        assert_eq!(
            fs::read_to_string(tree.dir.join("data/seed.txt")).unwrap(),
            "original"
        );
    }
}
