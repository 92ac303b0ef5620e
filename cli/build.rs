//! Links the `lumo` binary with packed relative relocations (`-z pack-relative-relocs`, ELF
//! `DT_RELR`) when the linker rustc uses and this machine's C library both support them.
//!
//! Why: `lumo` is a position-independent executable, so at every start the dynamic loader
//! patches each pointer in its read-only data (vtables, string tables) to where the binary was
//! mapped. The bundler and parser linked in for JS handlers doubled those pointers (74,000);
//! as 24-byte `RELA` entries they are 1.8 MB the loader reads at every start, as `RELR` a
//! bitmap of a few KB (docs/startup.md has the measurements).
//!
//! When: only for a native build on Linux with glibc, and only when a probe program linked the
//! same way runs here: glibc learnt `DT_RELR` in 2.36, and a binary that uses it names the
//! version `GLIBC_ABI_DT_RELR`, so an older glibc would refuse to start it. A linker that does
//! not know the flag fails the probe, never the build. The `lumo-runner` binary is never linked
//! this way (Lambda's images have older glibcs). `LUMO_NO_RELR=1` turns it off, for a binary
//! meant for machines with an older glibc than the one it is built on.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LUMO_NO_RELR");
    if env::var_os("LUMO_NO_RELR").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let native = env::var("TARGET").ok() == env::var("HOST").ok();
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    if native && linux_gnu && probe_runs(&out_dir) {
        println!("cargo:rustc-link-arg-bin=lumo={FLAG}");
    }
}

/// Whether a small position-independent program with a relocated pointer, linked by rustc
/// (its own linker choice and this build's RUSTFLAGS) with the flag, builds, has `DT_RELR`, and
/// runs here with the right answer.
fn probe_runs(out_dir: &Path) -> bool {
    let source = out_dir.join("relr_probe.rs");
    let binary = out_dir.join("relr_probe");
    // A static table of string slices: pointers the loader must relocate.
    let program = "static WORDS: [&str; 2] = [\"relr\", \"probe\"];\n\
                   fn main() { std::process::exit(if WORDS[1].len() == 5 { 0 } else { 1 }) }\n";
    if std::fs::write(&source, program).is_err() {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut compile = Command::new(rustc);
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        compile.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    let built = compile
        .args(["--edition", "2021", "-C", "relocation-model=pie", "-C"])
        .arg(format!("link-arg={FLAG}"))
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let runs = built
        && has_relr(&binary)
        && Command::new(&binary)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    // The probe is megabytes of debug info; only its answer is kept.
    let _ = std::fs::remove_file(&binary);
    let _ = std::fs::remove_file(&source);
    runs
}

/// Whether the ELF file at `path` has a `DT_RELR` dynamic entry: a linker that took the flag
/// but made nothing of it gives no reason to pass it.
fn has_relr(path: &Path) -> bool {
    const DT_RELR: u64 = 36;
    const PT_DYNAMIC: u32 = 2;
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only (x86_64, aarch64): anything else is "no".
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    for i in 0..usize::from(phnum) {
        let header = phoff as usize + i * usize::from(phentsize);
        if u32_at(header) != Some(PT_DYNAMIC) {
            continue;
        }
        let (Some(offset), Some(size)) = (u64_at(header + 0x08), u64_at(header + 0x20)) else {
            return false;
        };
        return (0..size as usize / 16)
            .map(|n| offset as usize + n * 16)
            .map_while(u64_at)
            .any(|tag| tag == DT_RELR);
    }
    false
}
