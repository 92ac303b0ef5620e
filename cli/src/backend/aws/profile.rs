//! A named AWS profile (`--profile`, `AWS_PROFILE`) that neither AWS file defines is a bad
//! input, reported as one. Left to the SDK, its credentials provider fails at the first request
//! and lumo could only say "cannot reach AWS", naming neither the profile, where it came from,
//! nor the files looked in. Checked when the provider is opened, so before anything is bundled,
//! locked or recorded. The files are read by aws-config itself (`aws_config::profile::load`):
//! lumo sees exactly the profiles, paths and `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`
//! the SDK would.

use std::path::PathBuf;

use aws_types::os_shim_internal::{Env, Fs};

use super::errors::one_line;
use crate::backend::{BackendError, BackendResult};

/// `Ok` when `name` is a profile of the AWS files, else the error naming it, where it came
/// from, the files and the profiles they define.
pub async fn check_named_profile(name: &str) -> BackendResult<()> {
    // `default` is the SDK's own choice when none is named: without one, the rest of the chain
    // (environment variables, SSO, an instance role) supplies the credentials.
    if name == "default" {
        return Ok(());
    }
    let files = [
        AwsFile::resolve("AWS_CONFIG_FILE", ".aws/config"),
        AwsFile::resolve("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
    ];
    let looked_in = format!("{} and {}", files[0].label, files[1].label);
    let origin = origin();
    // The default files (`EnvConfigFiles`, aws-runtime's, named through its type only).
    let set = aws_config::profile::load(&Fs::real(), &Env::real(), &Default::default(), None)
        .await
        .map_err(|e| {
            BackendError::invalid(format!(
                "cannot read the AWS profile files for profile `{name}` (from {origin}), \
                 {looked_in}: {}",
                one_line(&e)
            ))
            .hint("fix the file's syntax: `[profile NAME]` sections in the config file, `[NAME]` in the credentials file")
        })?;
    if set.get_profile(name).is_some() {
        return Ok(());
    }
    let mut defined: Vec<&str> = set.profiles().collect();
    defined.sort_unstable();
    let what_is_there = if defined.is_empty() {
        "no profile is defined there".to_string()
    } else {
        format!("profiles there: {}", crate::quoted::list(&defined))
    };
    let choose = match (defined.is_empty(), origin) {
        (true, _) => String::new(),
        (false, Origin::Flag) => "pass one of those to `--profile`, or ".to_string(),
        (false, Origin::Variable) => {
            "set `AWS_PROFILE` to one of those (or unset it), or ".to_string()
        }
    };
    Err(BackendError::invalid(format!(
        "AWS profile `{name}` (from {origin}) does not exist: looked in {looked_in}; {what_is_there}"
    ))
    .hint(format!(
        "{choose}create it with `aws configure --profile {name}` (a `[profile {name}]` section in {})",
        files[0].shown
    )))
}

/// Where the profile name came from: the user never typed `--profile` when it was
/// `AWS_PROFILE`, so the error names the variable.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Flag,
    Variable,
}

fn origin() -> Origin {
    if crate::flag_source::value_from_variable("profile", "AWS_PROFILE") {
        Origin::Variable
    } else {
        Origin::Flag
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Flag => "`--profile`",
            Origin::Variable => "`AWS_PROFILE`",
        })
    }
}

/// One of the two AWS files, as the error names it: the variable's path when it is set, else
/// the default under the home directory; "(not found)" when it is not there, the usual reason
/// a profile is missing.
struct AwsFile {
    /// Its path (and the variable that set it).
    shown: String,
    /// [`shown`](Self::shown), and whether it is missing.
    label: String,
}

impl AwsFile {
    fn resolve(variable: &str, under_home: &str) -> AwsFile {
        let (shown, path) = match std::env::var_os(variable).filter(|v| !v.is_empty()) {
            Some(path) => (
                format!("`{}` (`{variable}`)", PathBuf::from(&path).display()),
                Some(expand_home(PathBuf::from(path))),
            ),
            None => (
                format!("`~/{under_home}`"),
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(under_home)),
            ),
        };
        let missing = path.is_some_and(|p| !p.exists());
        AwsFile {
            label: if missing {
                format!("{shown} (not found)")
            } else {
                shown.clone()
            },
            shown,
        }
    }
}

/// `~/x` as the SDK reads it: under `HOME`.
fn expand_home(path: PathBuf) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path,
    }
}
