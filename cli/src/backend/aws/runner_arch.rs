//! Which machine the runner binary is built for, read from its ELF header, so a deploy refuses
//! an `x86_64` `bootstrap` for an `arm64` function (or the reverse) before uploading it:
//! Lambda would accept the package and fail only at the first Invoke, with "exec format error"
//! in the function's logs. The first 20 bytes of the file say it; no ELF crate is needed.

use std::fmt;
use std::io::Read;
use std::path::Path;

use crate::config::Architecture;

/// `e_machine` of the two architectures Lambda runs.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
/// `e_type` of an executable: `ET_EXEC`, or `ET_DYN` for a position-independent one (what
/// `cargo lambda` builds).
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
/// `e_ident` up to and including `e_machine`.
const HEADER_LEN: usize = 20;

/// What the header says the binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryMachine {
    /// One of Lambda's two architectures.
    Lambda(Architecture),
    /// Another machine, by its `e_machine` number (e.g. 40 for 32-bit ARM).
    Other(u16),
}

impl fmt::Display for BinaryMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinaryMachine::Lambda(Architecture::Arm64) => f.write_str("arm64 (aarch64)"),
            BinaryMachine::Lambda(Architecture::X86_64) => f.write_str("x86_64"),
            BinaryMachine::Other(n) => write!(f, "another machine (ELF e_machine {n})"),
        }
    }
}

/// Why a file cannot be the runner binary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnExecutable {
    #[error("it is not an ELF file (a Linux binary starts with `\\x7fELF`)")]
    NotElf,
    #[error("it is an ELF file but not an executable (ELF type {0})")]
    NotExecutable(u16),
}

/// The machine an ELF executable's header names. `header` is the file's start; fewer than 20
/// bytes is not an ELF executable.
pub fn machine_of(header: &[u8]) -> Result<BinaryMachine, NotAnExecutable> {
    let Some(header) = header.get(..HEADER_LEN) else {
        return Err(NotAnExecutable::NotElf);
    };
    if header[..4] != *b"\x7fELF" {
        return Err(NotAnExecutable::NotElf);
    }
    // EI_DATA: the byte order of every field after `e_ident`.
    let read_u16 = |at: usize| {
        let bytes = [header[at], header[at + 1]];
        match header[5] {
            2 => Some(u16::from_be_bytes(bytes)),
            1 => Some(u16::from_le_bytes(bytes)),
            _ => None,
        }
    };
    let (Some(e_type), Some(e_machine)) = (read_u16(16), read_u16(18)) else {
        return Err(NotAnExecutable::NotElf);
    };
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(NotAnExecutable::NotExecutable(e_type));
    }
    Ok(match e_machine {
        EM_AARCH64 => BinaryMachine::Lambda(Architecture::Arm64),
        EM_X86_64 => BinaryMachine::Lambda(Architecture::X86_64),
        other => BinaryMachine::Other(other),
    })
}

/// Why the runner at a path cannot serve a function of the configured architecture.
#[derive(Debug, thiserror::Error)]
pub enum RunnerMismatch {
    #[error("cannot read the runner `{path}`: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the runner `{path}` is not a Linux executable: {reason}")]
    NotAnExecutable {
        path: String,
        reason: NotAnExecutable,
    },
    #[error("the runner `{path}` is built for {built} but `aws.architecture` is {configured}")]
    WrongMachine {
        path: String,
        built: BinaryMachine,
        configured: &'static str,
    },
}

/// The configured architecture as the config spells it.
pub fn config_name(arch: Architecture) -> &'static str {
    match arch {
        Architecture::Arm64 => "arm64",
        Architecture::X86_64 => "x86_64",
    }
}

/// Checks that the binary at `path` is an ELF executable for `wanted`.
pub fn check_runner(path: &Path, wanted: Architecture) -> Result<(), RunnerMismatch> {
    let shown = path.display().to_string();
    let mut header = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut header))
        .map_err(|source| RunnerMismatch::Unreadable {
            path: shown.clone(),
            source,
        })?;
    match machine_of(&header) {
        Err(reason) => Err(RunnerMismatch::NotAnExecutable {
            path: shown,
            reason,
        }),
        Ok(BinaryMachine::Lambda(built)) if built == wanted => Ok(()),
        Ok(built) => Err(RunnerMismatch::WrongMachine {
            path: shown,
            built,
            configured: config_name(wanted),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF header: 64-bit, the given byte order (1 little, 2 big), type and machine.
    fn header(data: u8, e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend([2, data, 1, 0]);
        h.extend([0; 8]);
        let (t, m) = if data == 2 {
            (e_type.to_be_bytes(), machine.to_be_bytes())
        } else {
            (e_type.to_le_bytes(), machine.to_le_bytes())
        };
        h.extend(t);
        h.extend(m);
        h.extend([0; 44]);
        h
    }

    #[test]
    fn reads_the_machine_of_both_lambda_architectures() {
        assert_eq!(
            machine_of(&header(1, ET_DYN, 183)),
            Ok(BinaryMachine::Lambda(Architecture::Arm64))
        );
        assert_eq!(
            machine_of(&header(1, ET_EXEC, 62)),
            Ok(BinaryMachine::Lambda(Architecture::X86_64))
        );
        assert_eq!(
            machine_of(&header(2, ET_EXEC, 62)),
            Ok(BinaryMachine::Lambda(Architecture::X86_64)),
            "big-endian fields are read as such"
        );
        assert_eq!(
            machine_of(&header(1, ET_DYN, 40)),
            Ok(BinaryMachine::Other(40))
        );
    }

    #[test]
    fn refuses_what_is_not_an_elf_executable() {
        assert_eq!(
            machine_of(b"#!/bin/sh\necho hi\n"),
            Err(NotAnExecutable::NotElf)
        );
        assert_eq!(machine_of(b"\x7fELF"), Err(NotAnExecutable::NotElf));
        assert_eq!(machine_of(b""), Err(NotAnExecutable::NotElf));
        assert_eq!(
            machine_of(&header(1, 1, 183)),
            Err(NotAnExecutable::NotExecutable(1)),
            "an object file (ET_REL)"
        );
    }

    /// The binary running this test is an ELF executable for the host.
    #[test]
    fn the_test_binary_is_recognised_as_the_hosts() {
        let me = std::env::current_exe().unwrap();
        let host = if cfg!(target_arch = "aarch64") {
            Architecture::Arm64
        } else {
            Architecture::X86_64
        };
        let other = match host {
            Architecture::Arm64 => Architecture::X86_64,
            Architecture::X86_64 => Architecture::Arm64,
        };
        check_runner(&me, host).unwrap();
        let err = check_runner(&me, other).unwrap_err().to_string();
        assert!(
            err.contains("is built for") && err.contains(config_name(other)),
            "{err}"
        );
    }

    #[test]
    fn a_script_or_a_missing_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("bootstrap");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = check_runner(&script, Architecture::Arm64)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bootstrap") && err.contains("not a Linux executable"),
            "{err}"
        );
        let err = check_runner(&dir.path().join("none"), Architecture::Arm64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the runner"), "{err}");
    }
}
