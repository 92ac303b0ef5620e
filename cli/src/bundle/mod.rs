//! Turning each task into a bundle: a deterministic zip of its files, its `copyAssets` and a
//! manifest, stored content-addressed as `.lumo/bundles/<sha256>.zip`.
//!
//! Determinism is the point: the same inputs give byte-identical zips (sorted entries, fixed
//! timestamps and modes), so the sha256 names the content, an unchanged task is never
//! re-uploaded, and `runOn: 'change'` can compare hashes.

pub mod assets;
pub mod cancel;
mod crate_sources;
mod crate_task;
pub mod discover;
pub mod handler;
mod stat_cache;
mod zip_writer;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lumo_runner::BundleHash;
use lumo_runner::contract::{BundleManifest, Entry, MANIFEST_PATH};
use serde::Serialize;

use crate::config::ConfigProblem;
use crate::task::{Task, TaskSource};
use assets::{BundleEntry, EntrySet, EntrySource, MANIFEST_KEY};
pub use cancel::Cancel;
pub use crate_task::{Build, BuildTarget};
use stat_cache::{CachedBundle, StatCache};
pub use zip_writer::write_zip;

/// A task's bundle, built and stored.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltBundle {
    pub task: String,
    pub sha256: BundleHash,
    #[serde(skip)]
    pub path: PathBuf,
    /// Size of the zip.
    pub size: u64,
    pub unpacked_size: u64,
    pub files: usize,
    /// Found unchanged by the stat cache: not read or compressed by this build.
    #[serde(skip)]
    pub reused: bool,
    /// What pre-flight needs of its entry, read from the zip when it was built.
    #[serde(skip)]
    pub entry: Option<crate::preflight::EntryFacts>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot bundle the tasks")]
    Invalid(Vec<ConfigProblem>),
    /// A stop (Ctrl-C, SIGTERM) arrived while bundling; nothing half-written is left.
    #[error("bundling stopped: {0}")]
    Stopped(crate::stop::StopReason),
    #[error("cannot write the bundle store `{}`", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Builds (or finds already built) the bundle of each task into `store_dir`. Every problem of
/// every task is collected before failing, and nothing is written for a task with a problem.
/// A task whose inputs are unchanged since the last build (by their stats, see
/// [`stat_cache`]) is not read or compressed again: its stored bundle is the one it would build.
pub fn build_all(
    root: &Path,
    store_dir: &Path,
    tasks: &[&Task],
    build: impl Into<Build>,
) -> Result<Vec<BuiltBundle>, BundleError> {
    build_all_cancellable(root, store_dir, tasks, build, &Cancel::default())
}

/// [`build_all`], giving up with [`BundleError::Stopped`] soon after `cancel` says so.
pub fn build_all_cancellable(
    root: &Path,
    store_dir: &Path,
    tasks: &[&Task],
    build: impl Into<Build>,
    cancel: &Cancel,
) -> Result<Vec<BuiltBundle>, BundleError> {
    build_all_at(
        root,
        store_dir,
        tasks,
        build.into(),
        cancel,
        SystemTime::now,
        Purpose::Use,
    )
}

/// The bundles a dry run of `tasks` would deploy, touching nothing of the project: a bundle the
/// project's store (`project_store`, `.lumo/bundles`) holds for unchanged inputs (by its stat
/// cache, as a deploy finds it) is used where it is, unmarked; the others are built into
/// `scratch`; no cache is written; a Rust task whose crate is unchanged since its last build
/// is not built again. A dry run of an unchanged 200 MB project re-read and re-compressed all
/// of it (1,572 ms) where the deploy itself took its bundle from the cache (17 ms); now 21 ms.
pub fn build_for_preview(
    root: &Path,
    project_store: &Path,
    scratch: &Path,
    tasks: &[&Task],
    build: Build,
    cancel: &Cancel,
) -> Result<Vec<BuiltBundle>, BundleError> {
    build_all_at(
        root,
        scratch,
        tasks,
        build,
        cancel,
        SystemTime::now,
        Purpose::Preview { project_store },
    )
}

/// The bundle `task`'s working copy builds to, only to compare it with a deployed one (the
/// drift note of a plain `lumo run`): as [`build_all`], except that a stored bundle it finds
/// is left untouched. Nothing is about to use it, and refreshing its time would change the
/// zip's stamp, so the run that follows would hash the 200 MB bundle again before trusting
/// its unpacked tree (`lumo_runner::unpacked`): 0.76 s a run instead of 28 ms.
pub fn build_for_comparison(
    root: &Path,
    store_dir: &Path,
    task: &Task,
    build: Build,
) -> Result<Option<BuiltBundle>, BundleError> {
    let built = build_all_at(
        root,
        store_dir,
        &[task],
        build,
        &Cancel::default(),
        SystemTime::now,
        Purpose::Compare,
    )?;
    Ok(built.into_iter().next())
}

/// What a build is for, which decides how much it may take on trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose<'a> {
    /// The bundles will be used (deployed, run, written out): a stored bundle found again is
    /// marked in use so `lumo prune` spares it ([`mark_in_use`]), and cargo is always asked
    /// to build Rust tasks.
    Use,
    /// Only their hashes are wanted: stored bundles keep their stamps, and a Rust task whose
    /// crate is unchanged since its last build ([`crate_sources`]) is not built again.
    Compare,
    /// A dry run: as [`Purpose::Compare`], with the bundles found through `project_store`'s
    /// stat cache, built into the given store otherwise, and no cache written anywhere.
    Preview { project_store: &'a Path },
}

/// [`build_all_cancellable`] with the clock that decides which files changed too recently to
/// be cached (tests move it forward instead of sleeping).
fn build_all_at(
    root: &Path,
    store_dir: &Path,
    tasks: &[&Task],
    build: Build,
    cancel: &Cancel,
    now: impl Fn() -> SystemTime,
    purpose: Purpose<'_>,
) -> Result<Vec<BuiltBundle>, BundleError> {
    let canonical_root = resolve_root(root).map_err(BundleError::Invalid)?;
    let mut collected = Vec::with_capacity(tasks.len());
    let mut problems = Vec::new();
    for task in tasks {
        match collect(root, &canonical_root, task, Some((build, purpose))) {
            Ok(entries) => collected.push((task, entries)),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(BundleError::Invalid(problems));
    }
    fs::create_dir_all(store_dir).map_err(|source| BundleError::Store {
        path: store_dir.to_path_buf(),
        source,
    })?;
    // Where bundles are found by their inputs: the store built into, except for a dry run,
    // which finds them in the project's and builds into a scratch one. The project's store
    // (`.lumo/bundles`) keeps its cache beside it, where it has always been; any other store
    // keeps its own, which goes with it: never one in TMPDIR's parent shared by every project.
    let found_in = match purpose {
        Purpose::Preview { project_store } => project_store,
        Purpose::Use | Purpose::Compare => store_dir,
    };
    let cache_path = match found_in.file_name() {
        Some(name) if name == "bundles" => found_in.parent().unwrap_or(found_in),
        _ => found_in,
    }
    .join(STAT_CACHE_FILE);
    let mut cache = StatCache::load(&cache_path);
    let target = format!("{:?}", build.target);
    let mut built = Vec::with_capacity(collected.len());
    for (task, entries) in collected {
        let fingerprint = stat_cache::fingerprint(&entries, &target, now());
        if let Some((hit, stored)) = fingerprint
            .as_deref()
            .and_then(|f| cache.lookup(&task.name, f, found_in))
        {
            tracing::debug!(
                "task `{}`: inputs unchanged, bundle {} reused",
                task.name,
                hit.sha256
            );
            let path = found_in.join(format!("{}.zip", hit.sha256));
            // The lookup's `stat` tells a bundle marked minutes ago: not opened again.
            if purpose == Purpose::Use && !marked_recently(&stored) {
                mark_in_use(&path);
            }
            let mut bundle = BuiltBundle {
                reused: true,
                task: task.name.clone(),
                sha256: hit.sha256.clone(),
                path,
                size: hit.size,
                unpacked_size: hit.unpacked_size,
                files: hit.files,
                entry: hit.entry.clone(),
            };
            if bundle.entry.is_none() {
                // Cached by a build that kept nothing for pre-flight: read once, kept from now.
                bundle.entry = crate::preflight::read_entry(&bundle.path).ok();
                if let (Some(fingerprint), Some(_)) = (fingerprint, &bundle.entry) {
                    cache.record(&task.name, cached(fingerprint, &bundle));
                }
            }
            built.push(bundle);
            continue;
        }
        let mut bundle = write_bundle(store_dir, &task.name, &entries, cancel, purpose)?;
        // Read back from the zip just written (what will run, as pre-flight judges it), once.
        bundle.entry = crate::preflight::read_entry(&bundle.path).ok();
        match fingerprint {
            Some(fingerprint) => cache.record(&task.name, cached(fingerprint, &bundle)),
            None => cache.forget(&task.name),
        }
        built.push(bundle);
    }
    if !matches!(purpose, Purpose::Preview { .. }) {
        cache.save();
    }
    Ok(built)
}

/// What the stat cache keeps of `bundle`, built from inputs with this `fingerprint`.
fn cached(fingerprint: String, bundle: &BuiltBundle) -> CachedBundle {
    CachedBundle {
        fingerprint,
        sha256: bundle.sha256.clone(),
        size: bundle.size,
        unpacked_size: bundle.unpacked_size,
        files: bundle.files,
        entry: bundle.entry.clone(),
    }
}

/// The stat cache's file, beside the bundle store (`.lumo/bundle-cache.json`).
pub const STAT_CACHE_FILE: &str = "bundle-cache.json";

/// The problems `build_all` would find in `tasks`' files and `copyAssets`, without building
/// Rust tasks or writing anything: a config that has problems elsewhere reports these in the
/// same round.
pub fn check_sources(root: &Path, tasks: &[Task]) -> Vec<ConfigProblem> {
    let canonical_root = match resolve_root(root) {
        Ok(resolved) => resolved,
        Err(problems) => return problems,
    };
    tasks
        .iter()
        .filter_map(|task| collect(root, &canonical_root, task, None).err())
        .flatten()
        .collect()
}

/// The project's root as an absolute path without symlinks, against which every task's files
/// are checked to be inside the project; why not, as the problem to report.
fn resolve_root(root: &Path) -> Result<PathBuf, Vec<ConfigProblem>> {
    fs::canonicalize(root).map_err(|e| {
        vec![ConfigProblem {
            key: root.display().to_string(),
            message: e.to_string(),
        }]
    })
}

/// The files of one task's bundle, every check done. Without a `build`, Rust tasks are not
/// built (their binary is left out): only the other checks run.
fn collect(
    root: &Path,
    canonical_root: &Path,
    task: &Task,
    build: Option<(Build, Purpose<'_>)>,
) -> Result<Vec<BundleEntry>, Vec<ConfigProblem>> {
    let task_key = format!("tasks.{}", task.name);
    let mut set = EntrySet::resolved(root, canonical_root.to_path_buf());
    let entry = match &task.source {
        TaskSource::File { path } => {
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("task")
                .to_string();
            set.add(
                file_name.clone(),
                EntrySource::File(path.clone()),
                &task.display_path,
            );
            Entry::Program(file_name)
        }
        TaskSource::Directory { dir, entry } => {
            set.add_directory(dir, &task.display_path);
            Entry::Program(entry.clone())
        }
        TaskSource::Crate { dir } => {
            if let Some((build, purpose)) = build {
                let binary = crate_binary(root, task, dir, build, purpose).map_err(|message| {
                    vec![ConfigProblem {
                        key: task.display_path.clone(),
                        message,
                    }]
                })?;
                set.add(
                    crate_task::ENTRY.to_string(),
                    EntrySource::File(binary),
                    &task.display_path,
                );
            }
            Entry::Program(crate_task::ENTRY.to_string())
        }
        TaskSource::Handler { path } => {
            // A bundling problem is one more problem of this task: its `copyAssets` are still
            // checked, so one round of fixes is enough.
            match handler::bundle(root, path) {
                Ok(code) => set.add(
                    handler::BUNDLED_MODULE.to_string(),
                    EntrySource::Bytes(code.into_bytes()),
                    &task.display_path,
                ),
                Err(e) => set.problems.push(ConfigProblem {
                    key: task.display_path.clone(),
                    message: format!("cannot bundle the task `{}`: {e}", task.name),
                }),
            }
            Entry::Node(handler::BUNDLED_MODULE.to_string())
        }
        TaskSource::Command { command } => Entry::Command(command.clone()),
    };
    for asset in &task.config.copy_assets {
        // The index the user wrote: validation drops invalid entries, so the position in
        // `copy_assets` can be lower (regression: `nope` at [2] was reported as [1]).
        set.add_asset(asset, &format!("{task_key}.copyAssets[{}]", asset.index));
    }
    let manifest = BundleManifest {
        task: task.name.clone(),
        entry,
    };
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| {
        vec![ConfigProblem {
            key: task_key.clone(),
            message: e.to_string(),
        }]
    })?;
    set.add(
        MANIFEST_PATH.to_string(),
        EntrySource::Bytes(manifest),
        MANIFEST_KEY,
    );
    set.finish(&task_key)
}

/// The binary of the Rust task `task` (its crate in `dir`): built by cargo, or, when only its
/// hash is wanted and the crate is unchanged since its last build, that build's binary
/// without running cargo (see [`crate_sources`]).
fn crate_binary(
    root: &Path,
    task: &Task,
    dir: &Path,
    build: Build,
    purpose: Purpose<'_>,
) -> Result<PathBuf, String> {
    let records = root.join(".lumo").join(crate_sources::CRATE_BUILDS_FILE);
    let sources = crate_sources::Sources::of(root, dir, &format!("{:?}", build.target));
    if purpose != Purpose::Use
        && let Some(binary) = sources
            .as_ref()
            .and_then(|s| s.unchanged_build(&records, &task.name))
    {
        tracing::debug!("task `{}`: crate unchanged since its last build", task.name);
        return Ok(binary);
    }
    // Each task its own: `cargo lambda` names the output after the binary, and two task
    // crates may well share one (a copied example crate).
    let lambda_dir = root.join(".lumo").join("lambda").join(&task.name);
    let built = crate_task::build(dir, build, &lambda_dir)?;
    if let Some(sources) = sources {
        sources.record(&records, &task.name, &built.binary, &built.dep_info);
    }
    Ok(built.binary)
}

/// Writes the zip to a temporary file, hashes it, and moves it to `<sha256>.zip` unless a
/// bundle with that hash is already stored (then the stored one is left untouched).
fn write_bundle(
    store_dir: &Path,
    task: &str,
    entries: &[BundleEntry],
    cancel: &Cancel,
    purpose: Purpose<'_>,
) -> Result<BuiltBundle, BundleError> {
    let store_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| match Cancel::reason_of(&source) {
            Some(reason) => BundleError::Stopped(reason),
            None => BundleError::Store { path, source },
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .suffix(".zip")
        .tempfile_in(store_dir)
        .map_err(store_err(store_dir))?;
    write_zip(tmp.as_file(), entries, cancel).map_err(store_err(tmp.path()))?;
    cancel.check().map_err(store_err(tmp.path()))?;
    let sha256 = lumo_runner::bundle::sha256_file(tmp.path())
        .and_then(|hex| BundleHash::parse(&hex).map_err(io::Error::other))
        .map_err(store_err(tmp.path()))?;
    let size = tmp
        .as_file()
        .metadata()
        .map_err(store_err(tmp.path()))?
        .len();
    let path = store_dir.join(format!("{sha256}.zip"));
    if !path.exists() {
        tmp.persist(&path).map_err(|e| BundleError::Store {
            path: path.clone(),
            source: e.error,
        })?;
    } else if purpose == Purpose::Use {
        mark_in_use(&path);
    }
    Ok(BuiltBundle {
        task: task.to_string(),
        sha256,
        path,
        size,
        unpacked_size: entries.iter().map(|e| e.size).sum(),
        files: entries.len(),
        reused: false,
        entry: None,
    })
}

/// Refreshes the modification time of a stored bundle this build produced again: `lumo prune`
/// never removes a bundle written in the last hour, so a deploy about to use an old bundle
/// (a reverted change) does not lose it to a prune running meanwhile. Best effort: a bundle
/// whose time cannot be set is only less protected.
///
/// A bundle marked in the last [`MARK_AGAIN_AFTER`] is left as it is: it is protected for
/// most of an hour still, and a new time is a new stamp, which makes the run after it hash the
/// zip again before trusting its kept unpacked tree (`lumo_runner::unpacked`) — on every task
/// of every deploy, when each deploy marked every bundle.
pub fn mark_in_use(bundle: &Path) {
    let Ok(file) = fs::File::options().append(true).open(bundle) else {
        return;
    };
    if !file.metadata().is_ok_and(|meta| marked_recently(&meta)) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Whether a stored bundle with this metadata was marked in use in the last
/// [`MARK_AGAIN_AFTER`].
fn marked_recently(meta: &fs::Metadata) -> bool {
    meta.modified().is_ok_and(|marked| {
        SystemTime::now()
            .duration_since(marked)
            .is_ok_and(|age| age < MARK_AGAIN_AFTER)
    })
}

/// How old a stored bundle's time may be before a build that finds it again refreshes it; well
/// under the hour `lumo prune` spares a fresh bundle for.
const MARK_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(10 * 60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CopyAsset, TaskConfig};
    use std::fs::File;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn project() -> (tempfile::TempDir, Task) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("functions/tasks")).unwrap();
        fs::create_dir_all(root.join("migrations")).unwrap();
        let script = root.join("functions/tasks/migrate.sh");
        fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("migrations/0002.sql"), "two").unwrap();
        fs::write(root.join("migrations/0001.sql"), "one").unwrap();
        let config = TaskConfig {
            copy_assets: vec![CopyAsset {
                from: "migrations".into(),
                to: "migrations".into(),
                index: 0,
            }],
            ..TaskConfig::default()
        };
        let task = Task {
            name: "migrate".into(),
            source: TaskSource::File { path: script },
            config,
            declared: true,
            display_path: "functions/tasks/migrate.sh".into(),
        };
        (dir, task)
    }

    #[test]
    fn a_scratch_store_keeps_its_stat_cache_to_itself() {
        let (dir, task) = project();
        let scratch = dir.path().join("tmp/.tmpXYZ");
        // An hour on, so the just-written inputs are old enough to be cached.
        let later = || SystemTime::now() + std::time::Duration::from_secs(3600);
        let build = |store: &Path| {
            build_all_at(
                dir.path(),
                store,
                &[&task],
                BuildTarget::Host.into(),
                &Cancel::default(),
                later,
                Purpose::Use,
            )
            .unwrap()
        };
        build(&scratch);
        assert!(scratch.join(STAT_CACHE_FILE).is_file());
        assert!(
            !dir.path().join("tmp").join(STAT_CACHE_FILE).exists(),
            "a scratch store's cache must not land in TMPDIR, shared by every project"
        );
        build(&dir.path().join(".lumo/bundles"));
        assert!(dir.path().join(".lumo").join(STAT_CACHE_FILE).is_file());
    }

    #[test]
    fn a_dry_run_takes_unchanged_bundles_from_the_project_store_and_touches_nothing() {
        let (dir, task) = project();
        let root = dir.path();
        let store = root.join(".lumo/bundles");
        let scratch = tempfile::tempdir().unwrap();
        // An hour on, so the just-written inputs are old enough to be cached.
        let later = || SystemTime::now() + std::time::Duration::from_secs(3600);
        let build = |store: &Path, purpose| {
            build_all_at(
                root,
                store,
                &[&task],
                BuildTarget::Host.into(),
                &Cancel::default(),
                later,
                purpose,
            )
            .unwrap()
            .remove(0)
        };
        let deployed = build(&store, Purpose::Use);
        // Stamped long ago: a build that uses it would mark it in use again.
        let long_ago = SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
        File::options()
            .write(true)
            .open(&deployed.path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let cache_file = root.join(".lumo").join(STAT_CACHE_FILE);
        let cache = fs::read(&cache_file).unwrap();
        let project_store = Purpose::Preview {
            project_store: &store,
        };

        let preview = build(scratch.path(), project_store);
        assert!(preview.reused, "{preview:?}");
        assert_eq!(preview.sha256, deployed.sha256);
        assert_eq!(preview.path, deployed.path, "used where it is");
        assert_eq!(
            fs::metadata(&deployed.path).unwrap().modified().unwrap(),
            long_ago,
            "a dry run marked the stored bundle in use"
        );
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);

        // Changed inputs: built into the scratch store, the project's left as it was.
        fs::write(root.join("migrations/0003.sql"), "three").unwrap();
        let preview = build(scratch.path(), project_store);
        assert!(!preview.reused);
        assert_ne!(preview.sha256, deployed.sha256);
        assert!(preview.path.starts_with(scratch.path()), "{preview:?}");
        assert_eq!(
            fs::read(&cache_file).unwrap(),
            cache,
            "the project's cache changed"
        );
        assert_eq!(fs::read_dir(&store).unwrap().count(), 1);
        assert!(
            !scratch.path().join(STAT_CACHE_FILE).exists(),
            "a dry run wrote a cache"
        );
        // What the dry run said is what the deploy builds.
        assert_eq!(build(&store, Purpose::Use).sha256, preview.sha256);
    }

    #[test]
    fn same_inputs_give_the_same_sha256_whatever_the_mtimes() {
        let (dir, task) = project();
        let store = dir.path().join(".lumo/bundles");
        let first = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        // Touch every input: new mtimes must not change the bytes.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(dir.path().join("migrations/0001.sql"), "one").unwrap();
        let second = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        assert_eq!(first[0].sha256, second[0].sha256);
        assert_eq!(first[0].files, 4);
        let stored: Vec<_> = fs::read_dir(&store)
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        assert_eq!(stored.len(), 1, "one bundle, no leftovers: {stored:?}");

        fs::write(dir.path().join("migrations/0001.sql"), "changed").unwrap();
        let third = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        assert_ne!(first[0].sha256, third[0].sha256);
    }

    /// `lumo prune` spares bundles written in the last hour; a rebuild that finds its bundle
    /// already stored must count as a write, or a prune could remove the bundle the deploy is
    /// about to run.
    #[test]
    fn rebuilding_a_stored_bundle_marks_it_in_use() {
        let (dir, task) = project();
        let store = dir.path().join(".lumo/bundles");
        let first = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
        fs::File::options()
            .append(true)
            .open(&first[0].path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        let modified = fs::metadata(&first[0].path).unwrap().modified().unwrap();
        assert!(
            modified.elapsed().unwrap() < std::time::Duration::from_secs(600),
            "{modified:?}"
        );
    }

    /// The drift note of `lumo run` builds the working copy only to learn its hash: the
    /// deployed bundle it finds must keep its stamp, or the run's unpacked tree is distrusted
    /// and the whole zip hashed again on every run (a 200 MB bundle's run went 28 → 762 ms).
    #[test]
    fn building_for_comparison_leaves_the_stored_bundle_untouched() {
        let (dir, task) = project();
        let root = dir.path();
        let cached = build_later(root, &task);
        let stamp = |path: &Path| {
            let meta = fs::metadata(path).unwrap();
            (meta.modified().unwrap(), meta.ctime(), meta.ctime_nsec())
        };
        let before = stamp(&cached.path);
        tick();
        let store = root.join(".lumo/bundles");
        // Once answered by the stat cache, once rebuilt (inputs too recent to be trusted).
        let later = || SystemTime::now() + std::time::Duration::from_secs(3600);
        let hit = build_all_at(
            root,
            &store,
            &[&task],
            BuildTarget::Host.into(),
            &Cancel::default(),
            later,
            Purpose::Compare,
        )
        .unwrap();
        assert!(hit[0].reused);
        let rebuilt = build_for_comparison(root, &store, &task, BuildTarget::Host.into())
            .unwrap()
            .unwrap();
        assert!(!rebuilt.reused);
        assert_eq!(rebuilt.sha256, cached.sha256);
        assert_eq!(stamp(&cached.path), before);
    }

    /// Each deploy refreshed the time of every bundle it found again, so each task's kept
    /// unpacked tree was distrusted (its zip's stamp had moved) and the zip hashed again on every
    /// run of every deploy. A bundle marked minutes ago keeps its stamp.
    #[test]
    fn rebuilding_a_bundle_marked_minutes_ago_leaves_its_stamp() {
        let (dir, task) = project();
        let store = dir.path().join(".lumo/bundles");
        let first = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        let minutes_ago = SystemTime::now() - std::time::Duration::from_secs(120);
        fs::File::options()
            .append(true)
            .open(&first[0].path)
            .unwrap()
            .set_modified(minutes_ago)
            .unwrap();
        let stamp = |path: &Path| {
            let meta = fs::metadata(path).unwrap();
            (meta.modified().unwrap(), meta.ctime(), meta.ctime_nsec())
        };
        let before = stamp(&first[0].path);
        build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        assert_eq!(stamp(&first[0].path), before);
    }

    /// A build an hour from now: no file counts as changed too recently to be cached.
    fn build_later(dir: &Path, task: &Task) -> BuiltBundle {
        let store = dir.join(".lumo/bundles");
        let later = || SystemTime::now() + std::time::Duration::from_secs(3600);
        let cancel = Cancel::default();
        let mut built = build_all_at(
            dir,
            &store,
            &[task],
            BuildTarget::Host.into(),
            &cancel,
            later,
            Purpose::Use,
        )
        .unwrap();
        built.remove(0)
    }

    /// Waits out the filesystem's timestamp granularity, so a change gets a new ctime.
    fn tick() {
        std::thread::sleep(std::time::Duration::from_millis(30));
    }

    #[test]
    fn an_unchanged_task_reuses_its_bundle_and_every_kind_of_change_rebuilds_it() {
        let (dir, task) = project();
        let root = dir.path();
        let cold = build_later(root, &task);
        assert!(!cold.reused);
        let again = build_later(root, &task);
        assert!(again.reused, "nothing changed");
        assert_eq!(again.sha256, cold.sha256);
        assert_eq!((again.size, again.files), (cold.size, cold.files));
        // What pre-flight needs is read from the zip when it is built, and kept with it: a
        // reused bundle brings it along, its zip not opened.
        let expected = crate::preflight::EntryFacts::Program {
            path: "migrate.sh".into(),
            mode: crate::preflight::read_entry(&cold.path)
                .ok()
                .and_then(|facts| match facts {
                    crate::preflight::EntryFacts::Program { mode, .. } => mode,
                    _ => None,
                }),
            start: crate::preflight::Start::Interpreter("/bin/sh".into()),
        };
        assert_eq!(cold.entry.as_ref(), Some(&expected));
        assert_eq!(again.entry.as_ref(), Some(&expected));
        // A cache an earlier build wrote without them: read once, then kept.
        let cache_file = root.join(".lumo").join(STAT_CACHE_FILE);
        let mut file: serde_json::Value =
            serde_json::from_slice(&fs::read(&cache_file).unwrap()).unwrap();
        file["tasks"]["migrate"]
            .as_object_mut()
            .unwrap()
            .remove("entry")
            .unwrap();
        fs::write(&cache_file, serde_json::to_vec(&file).unwrap()).unwrap();
        let healed = build_later(root, &task);
        assert!(healed.reused);
        assert_eq!(healed.entry.as_ref(), Some(&expected));
        let file: serde_json::Value =
            serde_json::from_slice(&fs::read(&cache_file).unwrap()).unwrap();
        assert!(file["tasks"]["migrate"]["entry"].is_object(), "{file}");

        // Same size, mtime restored: only the ctime tells.
        tick();
        let seed = root.join("migrations/0001.sql");
        let mtime = fs::metadata(&seed).unwrap().modified().unwrap();
        fs::write(&seed, "ONE").unwrap();
        File::options()
            .write(true)
            .open(&seed)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let edited = build_later(root, &task);
        assert!(!edited.reused, "an edit with size and mtime restored");
        assert_ne!(edited.sha256, cold.sha256);
        // The bundle is the one a cold build makes.
        fs::remove_file(root.join(".lumo").join(STAT_CACHE_FILE)).unwrap();
        let rebuilt = build_later(root, &task);
        assert!(!rebuilt.reused);
        assert_eq!(rebuilt.sha256, edited.sha256);

        let mut previous = rebuilt.sha256;
        type Change<'a> = Box<dyn Fn() + 'a>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "mode",
                Box::new(|| fs::set_permissions(&seed, fs::Permissions::from_mode(0o755)).unwrap()),
            ),
            (
                "added file",
                Box::new(|| fs::write(root.join("migrations/0003.sql"), "three").unwrap()),
            ),
            (
                "removed file",
                Box::new(|| fs::remove_file(root.join("migrations/0002.sql")).unwrap()),
            ),
            (
                "replaced by a rename",
                Box::new(|| {
                    fs::write(root.join("migrations/new"), "one").unwrap();
                    fs::rename(root.join("migrations/new"), &seed).unwrap();
                }),
            ),
        ];
        for (what, change) in changes {
            tick();
            change();
            let built = build_later(root, &task);
            assert!(!built.reused, "{what}");
            if what != "replaced by a rename" {
                assert_ne!(built.sha256, previous, "{what}");
            }
            previous = built.sha256;
            assert!(build_later(root, &task).reused, "{what}: then unchanged");
        }

        // A config change that affects the bundle: the asset lands elsewhere.
        let mut moved = task.clone();
        moved.config.copy_assets[0].to = "db".into();
        let built = build_later(root, &moved);
        assert!(!built.reused);
        assert_ne!(built.sha256, previous);

        // A bundle removed from the store is built again.
        fs::remove_file(&built.path).unwrap();
        let again = build_later(root, &moved);
        assert!(!again.reused && again.path.is_file());
    }

    #[test]
    fn an_unreadable_or_old_cache_is_an_empty_one() {
        let (dir, task) = project();
        let root = dir.path();
        let cold = build_later(root, &task);
        let cache = root.join(".lumo").join(STAT_CACHE_FILE);
        for garbage in [
            "{not json".to_string(),
            fs::read_to_string(&cache)
                .unwrap()
                .replace("\"version\":1", "\"version\":0"),
            String::new(),
        ] {
            fs::write(&cache, garbage).unwrap();
            let built = build_later(root, &task);
            assert!(!built.reused);
            assert_eq!(built.sha256, cold.sha256);
        }
    }

    /// A file changed within the racy window of a build may change again within the same
    /// timestamp tick without showing it: such a task is built but not cached.
    #[test]
    fn files_changed_just_before_a_build_are_not_trusted() {
        let (dir, task) = project();
        let store = dir.path().join(".lumo/bundles");
        let first = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        let second = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        assert!(!first[0].reused && !second[0].reused);
        assert_eq!(first[0].sha256, second[0].sha256);
    }

    #[test]
    fn a_bundle_unpacks_to_its_files_with_the_exec_bit() {
        let (dir, task) = project();
        let store = dir.path().join(".lumo/bundles");
        let built = build_all(dir.path(), &store, &[&task], BuildTarget::Host).unwrap();
        let out = dir.path().join("out");
        let manifest = lumo_runner::bundle::unpack(&built[0].path, &out).unwrap();
        assert_eq!(manifest.entry, Entry::Program("migrate.sh".into()));
        assert_eq!(
            fs::read_to_string(out.join("migrations/0001.sql")).unwrap(),
            "one"
        );
        let mode = fs::metadata(out.join("migrate.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }

    #[test]
    fn problems_of_every_task_are_reported_and_nothing_is_written() {
        let (dir, mut task) = project();
        task.config.copy_assets.push(CopyAsset {
            from: "nope".into(),
            to: "nope".into(),
            index: 1,
        });
        let mut other = task.clone();
        other.name = "other".into();
        other.config.copy_assets = vec![CopyAsset {
            from: "../x".into(),
            to: "x".into(),
            index: 0,
        }];
        let mut good = task.clone();
        good.name = "good".into();
        good.config.copy_assets.pop();
        let store = dir.path().join(".lumo/bundles");
        let Err(BundleError::Invalid(problems)) = build_all(
            dir.path(),
            &store,
            &[&good, &task, &other],
            BuildTarget::Host,
        ) else {
            panic!("expected problems");
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tasks.migrate.copyAssets[1].from",
                "tasks.other.copyAssets[0].from"
            ]
        );
        assert!(
            !store.exists(),
            "nothing written, not even the good task's bundle"
        );
    }
}
