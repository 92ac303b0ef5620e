//! The runner function's bundle cache: `<cache>/bundles/<sha256>.zip`, kept in `/tmp` across
//! warm invocations so a deploy that runs several tasks of one bundle, or runs it again,
//! downloads it once (PRODUCT.md §9).
//!
//! Invariants:
//! - a `<sha256>.zip` only ever appears by renaming a finished download whose sha256 was checked,
//!   so a crash mid-download leaves a `.part` file, never a wrong zip under a trusted name;
//! - the cache stays under its byte budget (the runner function's `/tmp` also holds the run's
//!   unpacked bundle and log; see `DEFAULT_CACHE_MAX_BYTES`): after each download the least
//!   recently used zips go, never the one about to run. A cache hit refreshes the zip's modification time, which is what
//!   "recently used" means here.
//!
//! Blocking file and network I/O: call it from tokio's blocking pool.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::transfer::{self, TransferError};
use crate::invoke::BundleLocation;

/// What [`BundleCache::fetch`] found.
#[derive(Debug)]
pub enum Fetched {
    /// The bundle's zip, under its sha256's name.
    Ready { zip: PathBuf, from_cache: bool },
    /// The download's sha256 is not the one asked for; it was thrown away.
    Mismatch { actual: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// `url` is already redacted: no query string.
    #[error("could not download the bundle `{key}` from `{url}`")]
    Download {
        key: String,
        url: String,
        #[source]
        source: TransferError,
    },
    #[error("could not store the bundle in the cache `{}`", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `<dir>/<sha256>.zip` files, at most `max_bytes` of them in total (the newest zip may exceed
/// it on its own).
#[derive(Debug, Clone)]
pub struct BundleCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl BundleCache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> BundleCache {
        BundleCache { dir, max_bytes }
    }

    /// Where the zip of `sha256` (64 lowercase hex digits, checked by the caller) lives.
    pub fn zip_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.zip"))
    }

    /// The bundle's zip: from the cache when present (its content is checked again when it
    /// runs), else downloaded from `bundle.url` within `timeout`, checked against `sha256` and
    /// stored.
    pub fn fetch(
        &self,
        bundle: &BundleLocation,
        sha256: &str,
        timeout: Duration,
    ) -> Result<Fetched, CacheError> {
        let zip = self.zip_path(sha256);
        if zip.is_file() {
            if let Err(e) = File::open(&zip).and_then(|f| f.set_modified(SystemTime::now())) {
                // Only the eviction order suffers.
                tracing::warn!("could not mark `{}` as used: {e}", zip.display());
            }
            tracing::debug!(key = %bundle.key, "bundle found in the cache");
            return Ok(Fetched::Ready {
                zip,
                from_cache: true,
            });
        }
        self.download(bundle, sha256, timeout)
    }

    /// Downloads the bundle into the cache, replacing any cached copy.
    pub fn download(
        &self,
        bundle: &BundleLocation,
        sha256: &str,
        timeout: Duration,
    ) -> Result<Fetched, CacheError> {
        let store_err = |path: &Path, source| CacheError::Store {
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(|e| store_err(&self.dir, e))?;
        let part = self.part_path(sha256);
        tracing::debug!(key = %bundle.key, "downloading the bundle");
        let actual = match transfer::download(&bundle.url, &part, timeout) {
            Ok(actual) => actual,
            Err(source) => {
                remove_if_present(&part);
                return Err(CacheError::Download {
                    key: bundle.key.clone(),
                    url: transfer::redact(&bundle.url),
                    source,
                });
            }
        };
        if actual != sha256 {
            remove_if_present(&part);
            return Ok(Fetched::Mismatch { actual });
        }
        let zip = self.zip_path(sha256);
        if let Err(e) = fs::rename(&part, &zip) {
            remove_if_present(&part);
            return Err(store_err(&zip, e));
        }
        if let Err(e) = self.evict(&zip) {
            tracing::warn!(
                "could not trim the bundle cache `{}`: {e}",
                self.dir.display()
            );
        }
        Ok(Fetched::Ready {
            zip,
            from_cache: false,
        })
    }

    /// Drops the cached zip of `sha256` (found corrupt).
    pub fn remove(&self, sha256: &str) {
        remove_if_present(&self.zip_path(sha256));
    }

    /// Removes the least recently used zips until the cache fits its budget, never `keep`.
    /// Returns how many bytes were freed.
    pub fn evict(&self, keep: &Path) -> io::Result<u64> {
        let mut zips = Vec::new();
        let mut total: u64 = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "zip") {
                continue;
            }
            // A file that vanished since the listing is simply not counted.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            total += meta.len();
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            zips.push((used, meta.len(), path));
        }
        zips.sort();
        let mut freed = 0;
        for (_, len, path) in zips {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!("evicted `{}` from the bundle cache", path.display());
                    total -= len;
                    freed += len;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => total -= len,
                Err(e) => return Err(e),
            }
        }
        Ok(freed)
    }

    /// Removes the `.part` files of downloads a previous process did not finish.
    pub fn remove_partial_downloads(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "part") {
                remove_if_present(&path);
            }
        }
    }

    /// A name no other download (of this process or an earlier one) uses.
    fn part_path(&self, sha256: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!(".{sha256}.{}-{n}.part", std::process::id()))
    }
}

fn remove_if_present(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("could not remove `{}`: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(dir: &Path, name: &str, len: usize, age_secs: u64) -> PathBuf {
        let path = dir.join(format!("{name}.zip"));
        fs::write(&path, vec![0u8; len]).unwrap();
        let when = SystemTime::now() - Duration::from_secs(age_secs);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        path
    }

    #[test]
    fn eviction_drops_least_recently_used_zips_but_never_the_kept_one() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BundleCache::new(dir.path().to_owned(), 250);
        let oldest = zip_of(dir.path(), "a", 100, 300);
        let old = zip_of(dir.path(), "b", 100, 200);
        let recent = zip_of(dir.path(), "c", 100, 100);
        // The one about to run is the oldest by mtime and alone over budget: it stays.
        let keep = zip_of(dir.path(), "d", 300, 400);
        fs::write(dir.path().join(".x.part"), b"partial").unwrap();

        let freed = cache.evict(&keep).unwrap();
        assert_eq!(freed, 300);
        assert!(keep.exists());
        assert!(!oldest.exists() && !old.exists() && !recent.exists());
        assert!(dir.path().join(".x.part").exists());

        cache.remove_partial_downloads();
        assert!(!dir.path().join(".x.part").exists());
    }

    #[test]
    fn eviction_stops_once_the_cache_fits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BundleCache::new(dir.path().to_owned(), 250);
        let oldest = zip_of(dir.path(), "a", 100, 300);
        let old = zip_of(dir.path(), "b", 100, 200);
        let keep = zip_of(dir.path(), "c", 100, 0);
        assert_eq!(cache.evict(&keep).unwrap(), 100);
        assert!(!oldest.exists());
        assert!(old.exists() && keep.exists());
    }
}
