//! A person at a terminal, for the prompts lumo shows only there (a task's `confirm`): `lumo`
//! runs with a pseudo-terminal as its stdin, and the answer is typed into it. stdout and
//! stderr stay pipes, so what lumo printed can be read back as with any other run.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// Runs `cmd` with a pseudo-terminal as stdin and types `answer` and Enter into it. Returns
/// the exit code, stdout and stderr.
pub fn answering(mut cmd: Command, answer: &str) -> (Option<i32>, String, String) {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let child = cmd
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lumo starts");
    // The command holds the slave's only other copy; dropping it leaves the child's.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    // The line discipline keeps the line until lumo reads it, however late it asks.
    master
        .write_all(format!("{answer}\n").as_bytes())
        .expect("the answer is typed");
    // The terminal echoes what was typed back to the master; read it so the echo never fills
    // the pty's buffer, until the child's side closes (EIO on Linux).
    let echo = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = master.read_to_end(&mut sink);
    });
    let out = child.wait_with_output().expect("lumo ends");
    drop(echo);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
