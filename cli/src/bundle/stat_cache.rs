//! `.lumo/bundle-cache.json`: which bundle each task's inputs built last time, so a redeploy of
//! an unchanged project neither re-reads nor re-compresses anything.
//!
//! A task's inputs are fingerprinted without reading them: for each file of the bundle its path
//! in the bundle, its source path, device, inode, size, mode, mtime and ctime (to the
//! nanosecond); for generated entries (the manifest, a bundled JS handler) their bytes; plus the
//! build target, lumo's version and [`BUNDLE_FORMAT`]. The same fingerprint means the same
//! bundle, because bundles are deterministic. Any edit changes the ctime (which no program can
//! set back), so an edit that restores the size and mtime is still noticed; a file replaced by a
//! rename changes the inode. A config change that affects the bundle changes its entries or the
//! manifest.
//!
//! What it cannot see: a file changed within the same clock tick as it was fingerprinted. So a
//! task whose files changed less than [`RACY_WINDOW`] before the build is not cached (git calls
//! this the "racy" case), and it is simply rebuilt next time.
//!
//! Stored data outlives code: the file carries a version, and one that cannot be read, is of
//! another version or another lumo is treated as empty, never as an error. Writing it is best
//! effort too: a failure only costs the next build its shortcut.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::assets::{BundleEntry, EntrySource, FileStamp};
use crate::preflight::EntryFacts;

/// The cache file's shape; another version reads as an empty cache.
const CACHE_VERSION: u32 = 1;

/// Changes whenever the zip writer's output for the same entries changes (compression choices,
/// header fields), so bundles built by an older writer are not reused under a newer one.
pub const BUNDLE_FORMAT: u32 = 2;

/// Files changed this recently before a build are not trusted to show their next change in
/// their timestamps (coarse clocks, filesystems with 1–2 s timestamps).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The built bundle a fingerprint stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedBundle {
    pub fingerprint: String,
    /// Checked when the cache is read: a cache whose hash is not one is no cache.
    pub sha256: lumo_runner::BundleHash,
    pub size: u64,
    pub unpacked_size: u64,
    pub files: usize,
    /// What pre-flight needs of the bundle's entry, read from it when it was built (none when
    /// it could not be read: pre-flight reads it then, and names the problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryFacts>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheFile {
    version: u32,
    lumo: String,
    tasks: BTreeMap<String, CachedBundle>,
}

/// The cache of one project, loaded once per build.
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    tasks: BTreeMap<String, CachedBundle>,
    changed: bool,
}

impl StatCache {
    /// Loads `path`; anything unreadable, of another version or from another lumo is empty.
    pub fn load(path: &Path) -> StatCache {
        let tasks = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|file| file.version == CACHE_VERSION && file.lumo == env!("CARGO_PKG_VERSION"))
            .map(|file| file.tasks)
            .unwrap_or_default();
        StatCache {
            path: path.to_path_buf(),
            tasks,
            changed: false,
        }
    }

    /// The bundle `task` built from inputs with this `fingerprint`, if it is still in the store
    /// (`<store_dir>/<sha256>.zip` with the recorded size), with the stored zip's metadata.
    pub fn lookup(
        &self,
        task: &str,
        fingerprint: &str,
        store_dir: &Path,
    ) -> Option<(&CachedBundle, fs::Metadata)> {
        let cached = self.tasks.get(task)?;
        if cached.fingerprint != fingerprint {
            return None;
        }
        let stored = fs::metadata(store_dir.join(format!("{}.zip", cached.sha256))).ok()?;
        (stored.is_file() && stored.len() == cached.size).then_some((cached, stored))
    }

    pub fn record(&mut self, task: &str, bundle: CachedBundle) {
        self.tasks.insert(task.to_string(), bundle);
        self.changed = true;
    }

    /// Forgets `task`: its inputs changed too recently to be trusted next time.
    pub fn forget(&mut self, task: &str) {
        self.changed |= self.tasks.remove(task).is_some();
    }

    /// Writes the cache back if anything changed, atomically (a temporary file renamed over
    /// it); a failure is only logged.
    pub fn save(self) {
        if !self.changed {
            return;
        }
        let file = CacheFile {
            version: CACHE_VERSION,
            lumo: env!("CARGO_PKG_VERSION").to_string(),
            tasks: self.tasks,
        };
        let written = (|| -> std::io::Result<()> {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".bundle-cache-")
                .tempfile_in(dir)?;
            serde_json::to_writer(&mut tmp, &file)?;
            tmp.persist(&self.path).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(e) = written {
            tracing::warn!("could not write `{}`: {e}", self.path.display());
        }
    }
}

/// The fingerprint of a bundle's inputs, or `None` when one of its files changed within
/// [`RACY_WINDOW`] of `now` (or cannot be stat'ed): such a bundle is built but not cached.
pub fn fingerprint(entries: &[BundleEntry], build: &str, now: SystemTime) -> Option<String> {
    let racy_after = now
        .checked_sub(RACY_WINDOW)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())?;
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        // Length-prefixed, so no two different sequences of fields hash alike.
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(&BUNDLE_FORMAT.to_le_bytes());
    field(build.as_bytes());
    for entry in entries {
        field(entry.path.as_bytes());
        field(&[u8::from(entry.executable)]);
        match &entry.source {
            EntrySource::Bytes(bytes) => {
                field(b"bytes");
                field(bytes);
            }
            EntrySource::File(path) => {
                let stamp = match entry.stamp {
                    Some(stamp) => stamp,
                    None => FileStamp::of(&fs::metadata(path).ok()?)?,
                };
                if stamp.changed >= racy_after || stamp.modified >= racy_after {
                    return None;
                }
                field(b"file");
                field(path.as_os_str().as_encoded_bytes());
                for number in [
                    stamp.dev,
                    stamp.ino,
                    stamp.size,
                    u64::from(stamp.mode),
                    stamp.changed.as_nanos() as u64,
                    stamp.modified.as_nanos() as u64,
                ] {
                    field(&number.to_le_bytes());
                }
            }
        }
    }
    Some(lumo_runner::bundle::to_hex(&hasher.finalize()))
}
