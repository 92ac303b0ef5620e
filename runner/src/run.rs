//! One task run from a bundle zip: verify, unpack, execute, clean up. This is the whole job of
//! the Lambda runner per invocation and of the `local` provider per task, kept in one function
//! so both do exactly the same. A command of the user's (`lumo exec`, [`TaskSpec::argv`]) runs
//! the same way, in a task's unpacked bundle or in an empty directory.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle::{self, BundleError};
use crate::contract::Entry;
use crate::executor::{self, ExecError, OutputObserver, TaskProcess};
use crate::ids::{BundleHash, RunId};
use crate::task_run::{RunOutcome, TaskSpec};
use crate::unpacked::{CheckedOut, CheckoutError, UnpackCache};

/// Everything needed to run one task from its bundle: the shared [`TaskSpec`], the bundle and
/// where this run keeps its files.
#[derive(Debug, Clone)]
pub struct BundleRun {
    /// The run; `context.working_directory` is set by [`run_bundle`].
    pub spec: TaskSpec,
    /// The bundle to unpack and run in; `None` only for a command ([`TaskSpec::argv`]), which
    /// then runs in an empty directory.
    pub bundle: Option<BundleFile>,
    /// Where the run's directory `<work_root>/<run_id>` is made; removed when the run ends.
    pub work_root: PathBuf,
    pub kill_grace: Duration,
    pub log_file: Option<PathBuf>,
    /// See [`TaskProcess::stop`].
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where unpacked bundles are kept between runs; `None` unpacks every run afresh.
    pub unpack_cache: Option<UnpackCache>,
}

/// A bundle zip on disk and the hash it must have, as recorded when it was built.
#[derive(Debug, Clone)]
pub struct BundleFile {
    pub zip: PathBuf,
    pub hash: BundleHash,
    /// The zip's metadata, when the caller has just read it (it is not read again).
    pub stat: Option<std::fs::Metadata>,
}

/// Why a bundle run could not take place (or, for [`RunnerError::Exec`], could not be recorded
/// in full). A task that fails is not an error: it is a [`RunOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "the bundle `{}` has sha256 {actual}, expected {expected}; it was changed or corrupted after it was built, so it was not run",
        path.display()
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("could not hash the bundle `{}`", path.display())]
    Hash {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the run id cannot name the run's directory")]
    InvalidRunId(#[source] crate::ids::IdError),
    #[error("could not prepare the run directory `{}`", path.display())]
    WorkDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a run without a bundle must name a command to run, and this one names none")]
    NothingToRun,
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// Verifies the bundle's sha256 (a mismatch runs nothing), unpacks it into
/// `<work_root>/<run_id>/bundle` (or checks out its kept tree from `unpack_cache`, see
/// [`crate::unpacked`]), runs its entry (or the spec's `argv`) with `context.working_directory`
/// set to the absolute bundle directory, and removes what the run left in `<work_root>`
/// afterwards, whatever happened. Without a bundle, the spec's `argv` runs in the empty
/// directory `<work_root>/<run_id>/work`.
///
/// The scratch files (context, result, Node's entry) go in `<work_root>/<run_id>/` beside the
/// unpacked bundle, or, when the bundle runs from its kept tree and the run needs no directory
/// of its own, straight in `<work_root>` named `<run_id>.result.json` and so on, the context in
/// memory ([`TaskProcess::context_in_memory`]): every file made and removed per run costs a
/// deploy of many tasks on some file systems (on ext4 mounted with `discard`, removing a
/// directory waits for the disk to discard its block; without a journal, every inode created
/// is looked for past the ones deleted in the last minutes). Either way everything named after
/// the run is removed when it ends.
pub async fn run_bundle(
    run: BundleRun,
    observer: &mut dyn OutputObserver,
) -> Result<RunOutcome, RunnerError> {
    let run_id = RunId::parse(run.spec.run_id()).map_err(RunnerError::InvalidRunId)?;
    let kept = match &run.bundle {
        Some(bundle) => {
            let kept = checkout(&run, bundle).await?;
            if kept.is_none() {
                verify_hash(&bundle.zip, &bundle.hash).await?;
            }
            kept
        }
        None if run.spec.argv.is_none() => return Err(RunnerError::NothingToRun),
        None => None,
    };
    let work_root = run.work_root.clone();
    let run_dir = work_root.join(run_id.as_str());
    let small = kept.is_some();
    let result = run_in(&run_dir, run, kept, observer).await;
    let removed = if small {
        // No unpacked bundle to remove (the bundle ran from its kept tree), only the run's
        // scratch files: removed here, quicker than a round trip to a blocking thread.
        remove_run_files(&work_root, run_id.as_str())
    } else {
        let dir = run_dir.clone();
        tokio::task::spawn_blocking(move || remove_dir_if_present(&dir))
            .await
            .map_err(io::Error::other)
            .and_then(|removed| removed)
    };
    if let Err(e) = removed {
        // The outcome matters more than a leftover file; it holds nothing another run could
        // pick up by mistake (run ids are unique, and a rerun clears it first).
        tracing::warn!(
            "could not remove the files of run {run_id} in `{}`: {e}",
            work_root.display()
        );
    }
    result
}

/// Removes everything in `work_root` named after run `run_id`: its scratch files
/// (`<run_id>.context.json`, ...), what the task wrote beside them (`<run_id>.result.json.tmp`)
/// and its run directory, if it has one.
pub fn remove_run_files(work_root: &Path, run_id: &str) -> io::Result<()> {
    let entries = match std::fs::read_dir(work_root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        entries => entries?,
    };
    let mut result = Ok(());
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.as_encoded_bytes().strip_prefix(run_id.as_bytes()) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with(b".")) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => remove_dir_if_present(&path),
            _ => std::fs::remove_file(&path),
        };
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => result = result.and(Err(e)),
            _ => {}
        }
    }
    result
}

/// The largest bundle zip whose kept tree is checked out on the runtime's thread rather than a
/// blocking one: a few files, checked with a few dozen system calls.
const INLINE_CHECKOUT_MAX_ZIP: u64 = 64 * 1024;

/// The kept unpacked tree of the run's bundle, if the run has a cache and the tree is free.
/// A cache that fails (a full disk, a permission) only costs the run its shortcut: it unpacks
/// a private copy as without a cache. A zip that no longer matches its hash is refused.
async fn checkout(run: &BundleRun, bundle: &BundleFile) -> Result<Option<CheckedOut>, RunnerError> {
    let Some(cache) = run.unpack_cache.clone() else {
        return Ok(None);
    };
    let (zip, hash) = (bundle.zip.clone(), bundle.hash.clone());
    let meta = match bundle
        .stat
        .clone()
        .map_or_else(|| std::fs::metadata(&zip), Ok)
    {
        Ok(meta) => meta,
        Err(e) => {
            tracing::warn!("could not use the unpacked-bundle cache: {e}");
            return Ok(None);
        }
    };
    let checked_out = if meta.len() <= INLINE_CHECKOUT_MAX_ZIP {
        // A small bundle's tree is checked (or even unpacked) in less time than a round trip
        // to a blocking thread takes, which a deploy of many small tasks paid once per task.
        Ok(cache.checkout_stated(&zip, &meta, &hash))
    } else {
        tokio::task::spawn_blocking(move || cache.checkout_stated(&zip, &meta, &hash))
            .await
            .map_err(|join| CheckoutError::Io(io::Error::other(join)))
    };
    match checked_out.and_then(|c| c) {
        Ok(kept) => Ok(kept),
        Err(CheckoutError::HashMismatch { actual }) => Err(RunnerError::HashMismatch {
            path: bundle.zip.clone(),
            expected: bundle.hash.to_string(),
            actual,
        }),
        Err(e) => {
            tracing::warn!("could not use the unpacked-bundle cache: {e}");
            Ok(None)
        }
    }
}

/// Refuses a bundle whose content is not the one that was built (and recorded) for this run.
async fn verify_hash(bundle_zip: &Path, expected: &BundleHash) -> Result<(), RunnerError> {
    let hash_err = |source| RunnerError::Hash {
        path: bundle_zip.to_owned(),
        source,
    };
    let zip = bundle_zip.to_owned();
    let actual = tokio::task::spawn_blocking(move || bundle::sha256_file(&zip))
        .await
        .map_err(|join| hash_err(io::Error::other(join)))?
        .map_err(hash_err)?;
    if actual == expected.as_str() {
        Ok(())
    } else {
        Err(RunnerError::HashMismatch {
            path: bundle_zip.to_owned(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Everything between a verified bundle and its outcome, inside `run_dir` (or beside it, see
/// [`run_bundle`]).
async fn run_in(
    run_dir: &Path,
    run: BundleRun,
    kept: Option<CheckedOut>,
    observer: &mut dyn OutputObserver,
) -> Result<RunOutcome, RunnerError> {
    let work_dir_err = |path: &Path, source| RunnerError::WorkDir {
        path: path.to_owned(),
        source,
    };
    let bundle_dir = run_dir.join("bundle");
    let (scratch_dir, scratch_prefix) = if kept.is_some() {
        // Nothing of the run needs a directory: its scratch files go in the work root, named
        // after the run. A result file of an earlier attempt with the same id is removed
        // before the task starts.
        let prefix = format!("{}.", run.spec.run_id());
        // One `mkdir` a run (`create_dir_all` makes two calls for a directory that exists, as
        // this one does on every run but the first), not one a process: a work root removed
        // between two runs (by hand, by a task) is made again for the next. Something else by
        // that name fails the run at its first file there.
        match std::fs::create_dir(&run.work_root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => std::fs::create_dir_all(&run.work_root)
                .map_err(|e| work_dir_err(&run.work_root, e))?,
        }
        (run.work_root.clone(), prefix)
    } else {
        // A directory left by an earlier attempt of this run (a Lambda container that was
        // stopped mid-run and is reused) must not mix with this bundle.
        remove_dir_if_present(run_dir).map_err(|e| work_dir_err(run_dir, e))?;
        // The scratch files (context, result, Node's entry) sit in the run directory beside
        // `bundle/`, not in a directory of their own.
        std::fs::create_dir_all(run_dir).map_err(|e| work_dir_err(run_dir, e))?;
        (run_dir.to_path_buf(), String::new())
    };

    // The kept tree's lock is held until the run ends (`_kept` lives to the end of this
    // function): no other run uses the tree meanwhile.
    let (manifest, bundle_dir, _kept) = match (kept, &run.bundle) {
        (Some(kept), _) => (Some(kept.manifest.clone()), kept.dir.clone(), Some(kept)),
        (None, Some(bundle)) => {
            let (zip, dest) = (bundle.zip.clone(), bundle_dir.clone());
            let manifest = tokio::task::spawn_blocking(move || bundle::unpack(&zip, &dest))
                .await
                .map_err(|join| work_dir_err(&bundle_dir, io::Error::other(join)))??;
            (Some(manifest), bundle_dir, None)
        }
        (None, None) => {
            // A command without a bundle: an empty directory of its own.
            let empty = run_dir.join("work");
            std::fs::create_dir_all(&empty).map_err(|e| work_dir_err(&empty, e))?;
            (None, empty, None)
        }
    };
    // A kept tree comes resolved already.
    let bundle_dir = if _kept.is_some() {
        bundle_dir
    } else {
        bundle_dir
            .canonicalize()
            .map_err(|e| work_dir_err(&bundle_dir, e))?
    };
    let mut spec = run.spec;
    if let Some(manifest) = &manifest
        && manifest.task != spec.context.task
    {
        tracing::warn!(
            "the bundle was built for task `{}` but runs as `{}`",
            manifest.task,
            spec.context.task
        );
    }
    spec.context.working_directory = bundle_dir.to_string_lossy().into_owned();
    let entry = match (spec.argv.clone(), manifest) {
        (Some(argv), _) => Entry::Argv(argv),
        (None, Some(manifest)) => manifest.entry,
        (None, None) => return Err(RunnerError::NothingToRun),
    };

    let process = TaskProcess {
        spec,
        entry,
        working_directory: bundle_dir,
        kill_grace: run.kill_grace,
        scratch_dir,
        // A run that needs no directory of its own creates no file of its own either, but its
        // log (and whatever the task writes).
        context_in_memory: !scratch_prefix.is_empty(),
        scratch_prefix,
        log_file: run.log_file,
        stop: run.stop,
    };
    Ok(executor::execute(process, observer).await?)
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
