//! The version a deployment records (PRODUCT.md §5): `--deploy-version`, else the git commit
//! (short SHA, `-dirty` when the tree has changes), else a hash of all bundles.

use std::path::Path;
use std::process::{Command, Stdio};

use lumo_runner::Version;
use sha2::{Digest, Sha256};

use crate::bundle::BuiltBundle;
use crate::error::CliError;

/// A `--deploy-version` value: 1 to 64 of `A-Z a-z 0-9 . _ - + /`.
pub fn parse(version: &str) -> Result<Version, CliError> {
    Version::parse(version).map_err(|_| {
        CliError::invalid(format!(
            "invalid `--deploy-version` `{version}`: use 1 to 64 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`, `+`, `/`"
        ))
    })
}

pub fn resolve(flag: Option<Version>, root: &Path, bundles: &[BuiltBundle]) -> Version {
    if let Some(v) = flag {
        return v;
    }
    git_version(root).unwrap_or_else(|| bundles_hash(bundles))
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn git_version(root: &Path) -> Option<Version> {
    let sha = git(root, &["rev-parse", "--short", "HEAD"])?;
    let sha = sha.trim();
    if sha.is_empty() {
        return None;
    }
    // lumo's own `.lumo/` never makes a tree dirty, whether or not it is ignored.
    let status = git(
        root,
        &["status", "--porcelain", "--", ".", ":(exclude).lumo"],
    )?;
    let dirty = status.lines().any(|l| !l.trim().is_empty());
    // Hex digits, always a version; anything else git printed is no version of ours.
    Version::parse(&if dirty {
        format!("{sha}-dirty")
    } else {
        sha.to_string()
    })
    .ok()
}

/// The first 12 hex digits of the sha256 of every task's name and bundle hash.
pub fn bundles_hash(bundles: &[BuiltBundle]) -> Version {
    let mut pairs: Vec<(&str, &str)> = bundles
        .iter()
        .map(|b| (b.task.as_str(), b.sha256.as_str()))
        .collect();
    pairs.sort();
    let mut hasher = Sha256::new();
    for (task, sha) in pairs {
        hasher.update(task.as_bytes());
        hasher.update([0]);
        hasher.update(sha.as_bytes());
        hasher.update([b'\n']);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    // 12 hex digits.
    Version::parse(&hex).unwrap_or_else(|e| unreachable!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_version_flag_is_checked() {
        assert_eq!(parse("v1.2.3").unwrap(), "v1.2.3");
        assert!(parse("release/2026-11").is_ok());
        assert!(parse("").is_err());
        let err = parse("has space").unwrap_err().to_string();
        assert!(
            err.contains("invalid `--deploy-version` `has space`"),
            "{err}"
        );
        assert!(parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn without_git_the_version_is_a_stable_bundle_hash() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = |task: &str, sha: &str| BuiltBundle {
            task: task.into(),
            sha256: lumo_runner::BundleHash::parse(&sha.repeat(64)).unwrap(),
            path: Default::default(),
            size: 0,
            unpacked_size: 0,
            files: 0,
            reused: false,
            entry: None,
        };
        let a = resolve(None, dir.path(), &[bundle("a", "1"), bundle("b", "2")]);
        let b = resolve(None, dir.path(), &[bundle("b", "2"), bundle("a", "1")]);
        let c = resolve(None, dir.path(), &[bundle("a", "1"), bundle("b", "3")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.as_str().len(), 12);
        let v9 = Version::parse("v9").unwrap();
        assert_eq!(resolve(Some(v9), dir.path(), &[]), "v9");
    }
}
