//! The version a deployment records (PRODUCT.md §5): `--deploy-version`, else the git commit
//! (short SHA, `-dirty` when the tree has changes), else a hash of all bundles.

use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::bundle::BuiltBundle;
use crate::error::CliError;

/// Checks a `--deploy-version` value: 1 to 64 of `A-Z a-z 0-9 . _ - + /`.
pub fn check(version: &str) -> Result<(), CliError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CliError::invalid(format!(
            "invalid `--deploy-version` `{version}`: use 1 to 64 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`, `+`, `/`"
        )))
    }
}

pub fn resolve(flag: Option<&str>, root: &Path, bundles: &[BuiltBundle]) -> String {
    if let Some(v) = flag {
        return v.to_string();
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

fn git_version(root: &Path) -> Option<String> {
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
    Some(if dirty {
        format!("{sha}-dirty")
    } else {
        sha.to_string()
    })
}

/// The first 12 hex digits of the sha256 of every task's name and bundle hash.
pub fn bundles_hash(bundles: &[BuiltBundle]) -> String {
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
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_version_flag_is_checked() {
        assert!(check("v1.2.3").is_ok());
        assert!(check("release/2026-11").is_ok());
        assert!(check("").is_err());
        assert!(check("has space").is_err());
        assert!(check(&"x".repeat(65)).is_err());
    }

    #[test]
    fn without_git_the_version_is_a_stable_bundle_hash() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = |task: &str, sha: &str| BuiltBundle {
            task: task.into(),
            sha256: sha.into(),
            path: Default::default(),
            size: 0,
            unpacked_size: 0,
            files: 0,
            reused: false,
        };
        let a = resolve(None, dir.path(), &[bundle("a", "1"), bundle("b", "2")]);
        let b = resolve(None, dir.path(), &[bundle("b", "2"), bundle("a", "1")]);
        let c = resolve(None, dir.path(), &[bundle("a", "1"), bundle("b", "3")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 12);
        assert_eq!(resolve(Some("v9"), dir.path(), &[]), "v9");
    }
}
