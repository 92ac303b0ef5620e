//! Checking and unpacking a task bundle (the zip `lumo build` makes) before it runs.
//!
//! A bundle comes from storage the runner does not control (S3, `.lumo/`), so unpacking treats
//! it as untrusted: no entry may land outside the destination (`..`, absolute paths, symlinks),
//! and the total size is capped against zip bombs. The manifest inside says what to start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::contract::{BundleManifest, Entry, MANIFEST_PATH};

/// The most bytes a bundle may unpack to. `lumo build` refuses bundles over Lambda's 250 MB
/// limit; this only stops a hostile or corrupt zip from filling the disk.
pub const MAX_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;

/// Unix file type bits of a zip entry's mode.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("could not read the bundle `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the bundle `{}` is not a valid zip archive", path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("the bundle `{}` has an unsafe entry `{entry}`: {reason}", zip.display())]
    UnsafeEntry {
        zip: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("the bundle `{}` has the entry `{entry}` twice", zip.display())]
    DuplicateEntry { zip: PathBuf, entry: String },
    #[error(
        "the bundle `{}` unpacks to more than {} MiB",
        zip.display(),
        MAX_UNPACKED_BYTES / (1024 * 1024)
    )]
    TooLarge { zip: PathBuf },
    #[error("could not unpack the bundle `{}` into `{}`", zip.display(), path.display())]
    Write {
        zip: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the bundle `{}` has no `{MANIFEST_PATH}`; was it made by `lumo build`?", zip.display())]
    MissingManifest { zip: PathBuf },
    #[error("the bundle `{}` has an invalid `{MANIFEST_PATH}`: {reason}", zip.display())]
    InvalidManifest { zip: PathBuf, reason: String },
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// `bytes` as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    hex
}

/// Unpacks the bundle at `zip_path` into `dest` (created if missing; expected to be empty) and
/// returns its manifest.
///
/// Rejects, before writing anything, an archive with an entry that would land outside `dest`
/// (a `..` component, an absolute path) or is a symlink or another special file. Files get mode
/// 0755 when the zip marks them executable for anyone, 0644 otherwise.
pub fn unpack(zip_path: &Path, dest: &Path) -> Result<BundleManifest, BundleError> {
    let read_err = |source| BundleError::Read {
        path: zip_path.to_owned(),
        source,
    };
    let zip_err = |source| BundleError::Zip {
        path: zip_path.to_owned(),
        source,
    };
    let file = File::open(zip_path).map_err(read_err)?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(zip_err)?;
    if let Some(entry) =
        duplicate_entry_name(zip_path, archive.central_directory_start()).map_err(read_err)?
    {
        return Err(BundleError::DuplicateEntry {
            zip: zip_path.to_owned(),
            entry,
        });
    }

    // Check every entry before writing any, so a bad bundle leaves nothing half-unpacked.
    let mut plan = Vec::with_capacity(archive.len());
    let mut declared_size: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive.by_index(index).map_err(zip_err)?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let unsafe_entry = |reason| BundleError::UnsafeEntry {
            zip: zip_path.to_owned(),
            entry: name.clone(),
            reason,
        };
        let relative = safe_relative_path(&name).map_err(unsafe_entry)?;
        let mode = entry.unix_mode();
        let file_type = mode.map_or(0, |m| m & S_IFMT);
        if entry.is_symlink() {
            return Err(unsafe_entry("symlinks are not allowed in a bundle"));
        }
        let is_dir = entry.is_dir() || file_type == S_IFDIR;
        if !is_dir && file_type != 0 && file_type != S_IFREG {
            return Err(unsafe_entry(
                "only files and directories are allowed in a bundle",
            ));
        }
        declared_size = declared_size.saturating_add(entry.size());
        let executable = mode.is_some_and(|m| m & 0o111 != 0);
        plan.push((index, relative, is_dir, executable));
    }
    if declared_size > MAX_UNPACKED_BYTES {
        return Err(BundleError::TooLarge {
            zip: zip_path.to_owned(),
        });
    }

    let write_err = |path: &Path, source| BundleError::Write {
        zip: zip_path.to_owned(),
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(dest).map_err(|e| write_err(dest, e))?;
    let mut written: u64 = 0;
    for (index, relative, is_dir, executable) in plan {
        let target = dest.join(&relative);
        if is_dir {
            fs::create_dir_all(&target).map_err(|e| write_err(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
        }
        // `create_new` refuses to follow or replace anything already there, so two entries with
        // the same name cannot overwrite each other.
        let mut out = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(&target)
        {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BundleError::DuplicateEntry {
                    zip: zip_path.to_owned(),
                    entry: relative.display().to_string(),
                });
            }
            Err(e) => return Err(write_err(&target, e)),
        };
        let mut entry = archive.by_index(index).map_err(zip_err)?;
        // The declared sizes were checked, but a corrupt entry can inflate past what it
        // declares: count what is actually written.
        let budget = MAX_UNPACKED_BYTES - written;
        let copied =
            io::copy(&mut (&mut entry).take(budget + 1), &mut out).map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => BundleError::Zip {
                    path: zip_path.to_owned(),
                    source: zip::result::ZipError::Io(e),
                },
                _ => write_err(&target, e),
            })?;
        if copied > budget {
            return Err(BundleError::TooLarge {
                zip: zip_path.to_owned(),
            });
        }
        written += copied;
        out.flush().map_err(|e| write_err(&target, e))?;
        // The process umask may have narrowed the mode given at creation.
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .map_err(|e| write_err(&target, e))?;
    }

    read_manifest(zip_path, &dest.join(MANIFEST_PATH))
}

/// The first name the zip's central directory lists twice, if any.
///
/// The zip crate indexes entries by name, so of two entries with one name only the later is
/// visible through it: a second `lumo-bundle.json` would silently decide what runs. lumo
/// never writes such a zip, so one that has it was tampered with; this reads the central
/// directory's records itself to see every name.
fn duplicate_entry_name(zip_path: &Path, directory_start: u64) -> io::Result<Option<String>> {
    /// `PK\x01\x02`: a central directory file header.
    const SIGNATURE: u32 = 0x0201_4b50;
    const FIXED_LEN: usize = 46;
    let mut reader = io::BufReader::new(File::open(zip_path)?);
    io::Seek::seek(&mut reader, io::SeekFrom::Start(directory_start))?;
    let mut seen = std::collections::HashSet::new();
    let mut header = [0u8; FIXED_LEN];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        if u32::from_le_bytes([header[0], header[1], header[2], header[3]]) != SIGNATURE {
            return Ok(None);
        }
        let field = |at: usize| usize::from(u16::from_le_bytes([header[at], header[at + 1]]));
        let (name_len, extra_len, comment_len) = (field(28), field(30), field(32));
        let mut name = vec![0u8; name_len];
        reader.read_exact(&mut name)?;
        io::Seek::seek_relative(&mut reader, (extra_len + comment_len) as i64)?;
        if !seen.insert(name.clone()) {
            return Ok(Some(String::from_utf8_lossy(&name).into_owned()));
        }
    }
}

/// `name` as a path that stays inside the destination, or why it would not.
fn safe_relative_path(name: &str) -> Result<PathBuf, &'static str> {
    if name.contains('\0') {
        return Err("the name contains a NUL byte");
    }
    if name.contains('\\') {
        return Err("the name contains a backslash");
    }
    let mut relative = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` would place it outside the bundle"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed in a bundle");
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err("the name is empty");
    }
    Ok(relative)
}

fn read_manifest(zip_path: &Path, manifest_path: &Path) -> Result<BundleManifest, BundleError> {
    let invalid = |reason: String| BundleError::InvalidManifest {
        zip: zip_path.to_owned(),
        reason,
    };
    let bytes = match fs::read(manifest_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BundleError::MissingManifest {
                zip: zip_path.to_owned(),
            });
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    let manifest: BundleManifest =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    match &manifest.entry {
        Entry::Program(path) | Entry::Node(path) => {
            safe_relative_path(path)
                .map_err(|reason| invalid(format!("entry `{path}`: {reason}")))?;
        }
        Entry::Command(line) => {
            if line.trim().is_empty() {
                return Err(invalid("the command is empty".to_owned()));
            }
        }
        // Never read from a manifest (`#[serde(skip)]`).
        Entry::Argv(_) => return Err(invalid("an argv entry comes with a run".to_owned())),
    }
    Ok(manifest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    /// One entry of a test zip.
    pub(crate) enum ZipItem<'a> {
        File {
            name: &'a str,
            body: &'a [u8],
            mode: u32,
        },
        Dir(&'a str),
        Symlink {
            name: &'a str,
            target: &'a str,
        },
    }

    pub(crate) fn write_zip(path: &Path, items: &[ZipItem<'_>]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        for item in items {
            match item {
                ZipItem::File { name, body, mode } => {
                    let options = SimpleFileOptions::default().unix_permissions(*mode);
                    zip.start_file(*name, options).unwrap();
                    zip.write_all(body).unwrap();
                }
                ZipItem::Dir(name) => {
                    zip.add_directory(*name, SimpleFileOptions::default())
                        .unwrap();
                }
                ZipItem::Symlink { name, target } => {
                    zip.add_symlink(*name, *target, SimpleFileOptions::default())
                        .unwrap();
                }
            }
        }
        zip.finish().unwrap();
    }

    pub(crate) fn manifest_json(entry: &Entry) -> Vec<u8> {
        serde_json::to_vec(&BundleManifest {
            task: "t".into(),
            entry: entry.clone(),
        })
        .unwrap()
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn unpacks_files_dirs_and_exec_bits() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("b.zip");
        let manifest = manifest_json(&Entry::Program("bin/run.sh".into()));
        write_zip(
            &zip_path,
            &[
                ZipItem::File {
                    name: MANIFEST_PATH,
                    body: &manifest,
                    mode: 0o644,
                },
                ZipItem::Dir("migrations/"),
                ZipItem::File {
                    name: "bin/run.sh",
                    body: b"#!/bin/sh\necho hi\n",
                    mode: 0o755,
                },
                ZipItem::File {
                    name: "migrations/0001.sql",
                    body: b"create table t();",
                    mode: 0o600,
                },
            ],
        );
        let dest = dir.path().join("out");
        let got = unpack(&zip_path, &dest).unwrap();
        assert_eq!(got.entry, Entry::Program("bin/run.sh".into()));
        let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/run.sh"), 0o755);
        assert_eq!(mode("migrations/0001.sql"), 0o644);
        assert_eq!(
            fs::read(dest.join("migrations/0001.sql")).unwrap(),
            b"create table t();"
        );
    }

    fn unpack_single(name: &str) -> (Result<BundleManifest, BundleError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("b.zip");
        let manifest = manifest_json(&Entry::Command("true".into()));
        write_zip(
            &zip_path,
            &[
                ZipItem::File {
                    name: MANIFEST_PATH,
                    body: &manifest,
                    mode: 0o644,
                },
                ZipItem::File {
                    name,
                    body: b"x",
                    mode: 0o644,
                },
            ],
        );
        let result = unpack(&zip_path, &dir.path().join("a/out"));
        (result, dir)
    }

    #[test]
    fn rejects_parent_dir_entries() {
        for name in ["../x", "a/../../x", "a/../x"] {
            let (result, dir) = unpack_single(name);
            let err = result.unwrap_err();
            assert!(
                matches!(&err, BundleError::UnsafeEntry { entry, .. } if entry == name),
                "{name}: {err}"
            );
            assert!(err.to_string().contains("`..`"), "{err}");
            assert!(!dir.path().join("a/x").exists());
            assert!(!dir.path().join("x").exists());
            // Nothing is written when any entry is bad.
            assert!(!dir.path().join("a/out").exists());
        }
    }

    #[test]
    fn rejects_absolute_entries() {
        let (result, _dir) = unpack_single("/tmp/lumo-absolute-entry");
        let err = result.unwrap_err();
        assert!(matches!(err, BundleError::UnsafeEntry { .. }), "{err}");
        assert!(err.to_string().contains("absolute"), "{err}");
        assert!(!Path::new("/tmp/lumo-absolute-entry").exists());
    }

    #[test]
    fn rejects_symlink_entries() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("b.zip");
        write_zip(
            &zip_path,
            &[ZipItem::Symlink {
                name: "link",
                target: "/etc",
            }],
        );
        let err = unpack(&zip_path, &dir.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(fs::symlink_metadata(dir.path().join("out/link")).is_err());
    }

    #[test]
    fn missing_or_bad_manifest_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("b.zip");
        write_zip(
            &zip_path,
            &[ZipItem::File {
                name: "run.sh",
                body: b"",
                mode: 0o755,
            }],
        );
        let err = unpack(&zip_path, &dir.path().join("out")).unwrap_err();
        assert!(matches!(err, BundleError::MissingManifest { .. }), "{err}");

        let bad = manifest_json(&Entry::Program("../escape.sh".into()));
        write_zip(
            &zip_path,
            &[ZipItem::File {
                name: MANIFEST_PATH,
                body: &bad,
                mode: 0o644,
            }],
        );
        let err = unpack(&zip_path, &dir.path().join("out2")).unwrap_err();
        assert!(matches!(err, BundleError::InvalidManifest { .. }), "{err}");
    }

    /// Regression (adversarial run, issue 10): a zip with `lumo-bundle.json` twice was
    /// accepted and the later manifest decided what ran.
    #[test]
    fn a_zip_with_an_entry_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("dup.zip");
        let first = manifest_json(&Entry::Command("echo first".into()));
        let second = manifest_json(&Entry::Command("echo later".into()));
        // The zip writer refuses a name twice, so write a look-alike and rename it in place
        // (local header and central directory alike).
        let decoy = "lumo-bundle.jsoX";
        write_zip(
            &zip_path,
            &[
                ZipItem::File {
                    name: MANIFEST_PATH,
                    body: &first,
                    mode: 0o644,
                },
                ZipItem::File {
                    name: decoy,
                    body: &second,
                    mode: 0o644,
                },
            ],
        );
        let mut bytes = fs::read(&zip_path).unwrap();
        let mut renamed = 0;
        for at in 0..bytes.len() - decoy.len() {
            if &bytes[at..at + decoy.len()] == decoy.as_bytes() {
                bytes[at..at + decoy.len()].copy_from_slice(MANIFEST_PATH.as_bytes());
                renamed += 1;
            }
        }
        assert_eq!(
            renamed, 2,
            "the decoy name is in the local and central headers"
        );
        fs::write(&zip_path, &bytes).unwrap();

        let out = dir.path().join("out");
        let err = unpack(&zip_path, &out).unwrap_err();
        assert!(
            matches!(&err, BundleError::DuplicateEntry { entry, .. } if entry == MANIFEST_PATH),
            "{err}"
        );
        assert!(!out.exists(), "nothing is unpacked from a refused bundle");
    }

    #[test]
    fn a_node_entry_may_not_escape_the_bundle_root() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("b.zip");
        for (index, module) in ["../handler.mjs", "/tmp/handler.mjs", ""]
            .iter()
            .enumerate()
        {
            let bad = manifest_json(&Entry::Node((*module).into()));
            write_zip(
                &zip_path,
                &[ZipItem::File {
                    name: MANIFEST_PATH,
                    body: &bad,
                    mode: 0o644,
                }],
            );
            let err = unpack(&zip_path, &dir.path().join(format!("out{index}"))).unwrap_err();
            assert!(
                matches!(err, BundleError::InvalidManifest { .. }),
                "{module}: {err}"
            );
        }
        let good = manifest_json(&Entry::Node("handler.mjs".into()));
        write_zip(
            &zip_path,
            &[ZipItem::File {
                name: MANIFEST_PATH,
                body: &good,
                mode: 0o644,
            }],
        );
        let manifest = unpack(&zip_path, &dir.path().join("ok")).unwrap();
        assert_eq!(manifest.entry, Entry::Node("handler.mjs".into()));
    }

    #[test]
    fn not_a_zip_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("garbage.zip");
        fs::write(&zip_path, b"not a zip").unwrap();
        let err = unpack(&zip_path, &dir.path().join("out")).unwrap_err();
        assert!(matches!(err, BundleError::Zip { .. }));
        assert!(err.to_string().contains("garbage.zip"), "{err}");
    }
}
