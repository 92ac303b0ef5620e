//! The identifiers that travel between the CLI, its stores and the runner: a run's id, a
//! bundle's hash and a deployment's version.
//!
//! Each was a plain `String`, so a hash could be passed where a run id was meant and every
//! reader checked (or forgot to check) the text again. A newtype says what its text may be,
//! checks it once where it enters (parsing, deserializing) and is trusted from then on. On the
//! wire and in stores each is the same plain string it always was.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Text that is not a valid identifier of its kind: what it was meant to be, the text, and what
/// is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    /// `run id`, `bundle hash` or `version`.
    pub kind: &'static str,
    pub value: String,
    /// What a valid one looks like.
    pub allowed: &'static str,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} `{}`: {}",
            self.kind,
            self.value.escape_debug(),
            self.allowed
        )
    }
}

impl std::error::Error for IdError {}

/// The id of one task run: one plain path component, since it names the run's work directory
/// and log file. Not empty, not `.` or `..`, and without `/`, `\` or NUL.
///
/// lumo makes them as ULIDs (26 characters that sort by creation time); any text that fits the
/// rule is accepted, so ids recorded by earlier versions stay valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    const ALLOWED: &'static str = "a run id names a directory, so it must not be empty, `.` or `..`, and must not contain `/`, `\\` or NUL";

    pub fn parse(text: &str) -> Result<RunId, IdError> {
        RunId::try_from(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = IdError;

    fn try_from(text: String) -> Result<RunId, IdError> {
        let valid =
            !text.is_empty() && text != "." && text != ".." && !text.contains(['/', '\\', '\0']);
        if valid {
            Ok(RunId(text))
        } else {
            Err(IdError {
                kind: "run id",
                value: text,
                allowed: RunId::ALLOWED,
            })
        }
    }
}

/// The sha256 of a bundle zip, as 64 lowercase hex digits: bundles are stored and cached under
/// it, so it must also be safe as a file name.
///
/// Parsing accepts upper case and surrounding whitespace (a hash pasted by hand) and keeps the
/// canonical lowercase form, so two hashes of the same bundle compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BundleHash(String);

impl BundleHash {
    const ALLOWED: &'static str = "a bundle hash is a sha256 of 64 hex digits";

    pub fn parse(text: &str) -> Result<BundleHash, IdError> {
        let hex = text.trim();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(BundleHash(hex.to_ascii_lowercase()))
        } else {
            Err(IdError {
                kind: "bundle hash",
                value: text.to_owned(),
                allowed: BundleHash::ALLOWED,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for BundleHash {
    type Error = IdError;

    fn try_from(text: String) -> Result<BundleHash, IdError> {
        BundleHash::parse(&text)
    }
}

/// The version a deployment records (PRODUCT.md §5): 1 to 64 of `A-Z a-z 0-9 . _ - + /`.
///
/// Every source of a version fits: `--deploy-version` is held to this rule, a git commit is
/// a short SHA with `-dirty` when the tree has changes, and the fallback is 12 hex digits of
/// the bundles' hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    /// The longest version, in bytes (all allowed characters are one byte).
    pub const MAX_LEN: usize = 64;
    const ALLOWED: &'static str = "use 1 to 64 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`, `+`, `/`";

    pub fn parse(text: &str) -> Result<Version, IdError> {
        Version::try_from(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for Version {
    type Error = IdError;

    fn try_from(text: String) -> Result<Version, IdError> {
        let valid = !text.is_empty()
            && text.len() <= Version::MAX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+/".contains(&b));
        if valid {
            Ok(Version(text))
        } else {
            Err(IdError {
                kind: "version",
                value: text,
                allowed: Version::ALLOWED,
            })
        }
    }
}

/// What the three share: text access, display as the bare text, parsing, and deserializing
/// with the same check as parsing (a payload or a record cannot smuggle in what `parse` would
/// refuse).
macro_rules! string_id {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<$name, IdError> {
                $name::parse(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::try_from(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(RunId);
string_id!(BundleHash);
string_id!(Version);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_is_one_path_component() {
        assert_eq!(
            RunId::parse("01JF3Q8Z5X6Y7W8V9T0S1R2Q3P").unwrap().as_str(),
            "01JF3Q8Z5X6Y7W8V9T0S1R2Q3P"
        );
        for bad in ["", ".", "..", "a/b", "..\\x", "nul\0"] {
            let err = RunId::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid run id"), "{err}");
        }
    }

    #[test]
    fn a_bundle_hash_is_kept_as_64_lowercase_hex_digits() {
        let upper = format!(" {} ", "AB".repeat(32));
        let hash: BundleHash = upper.parse().unwrap();
        assert_eq!(hash.as_str(), "ab".repeat(32));
        assert_eq!(hash, BundleHash::parse(&"ab".repeat(32)).unwrap());
        for bad in [
            "",
            "abc",
            "../../../etc/passwd",
            &"g".repeat(64),
            &"a".repeat(65),
        ] {
            let err = BundleHash::parse(bad).unwrap_err();
            assert!(err.to_string().contains("64 hex digits"), "{err}");
        }
    }

    #[test]
    fn a_version_uses_the_deploy_version_alphabet() {
        for good in [
            "v1.2.3",
            "abc1234-dirty",
            "release/2026+b.7",
            &"x".repeat(64),
        ] {
            assert_eq!(Version::parse(good).unwrap().to_string(), good);
        }
        for bad in ["", "has space", "ü", &"x".repeat(65)] {
            let err = Version::parse(bad).unwrap_err();
            assert!(err.to_string().contains("1 to 64"), "{err}");
        }
    }

    #[test]
    fn on_the_wire_each_is_its_plain_string_and_is_checked_when_read() {
        let hash = BundleHash::parse(&"0f".repeat(32)).unwrap();
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{}\"", "0f".repeat(32)));
        assert_eq!(serde_json::from_str::<BundleHash>(&json).unwrap(), hash);
        let err = serde_json::from_str::<BundleHash>("\"../../x\"").unwrap_err();
        assert!(err.to_string().contains("invalid bundle hash"), "{err}");
        assert!(serde_json::from_str::<RunId>("\"..\"").is_err());
        assert!(serde_json::from_str::<Version>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<Version>("\"v2\"").unwrap(),
            Version::parse("v2").unwrap()
        );
    }
}
