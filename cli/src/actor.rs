//! Who is acting, for the audit trail (PRODUCT.md §6): `--actor`/`LUMO_ACTOR`, else the CI's
//! user, else the AWS caller identity (on `aws`), else the git user, else the OS user.

use std::path::Path;
use std::process::{Command, Stdio};

/// CI systems' "who triggered this" variables, most common first.
const CI_ACTOR_VARS: &[&str] = &[
    "GITHUB_ACTOR",
    "GITLAB_USER_LOGIN",
    "BUILDKITE_BUILD_CREATOR_EMAIL",
    "CIRCLE_USERNAME",
    "BITBUCKET_STEP_TRIGGERER_UUID",
    "DRONE_COMMIT_AUTHOR",
    "BUILD_REQUESTEDFOREMAIL",
];

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The actor from the flag or a CI variable, before asking any backend.
pub fn from_flag_or_ci(flag: Option<&str>) -> Option<String> {
    flag.map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| CI_ACTOR_VARS.iter().find_map(|v| non_empty_var(v)))
}

/// The git user (`user.email`, else `user.name`), then the OS user.
pub fn from_machine(root: &Path) -> String {
    git_user(root)
        .or_else(|| non_empty_var("USER"))
        .or_else(|| non_empty_var("LOGNAME"))
        .unwrap_or_else(os_user)
}

/// The name of the user this process runs as, from the user database (else `uid N`).
fn os_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

fn git_user(root: &Path) -> Option<String> {
    for key in ["user.email", "user.name"] {
        let out = Command::new("git")
            .args(["config", "--get", key])
            .current_dir(root)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !value.is_empty() {
            return Some(value);
        }
    }
    None
}
