//! `lumo completions SHELL`: the shell's completion script for every command and flag, generated
//! from the same clap definition the binary parses with, so it cannot drift from the CLI.

use std::fmt;

use clap::CommandFactory;
use serde::Serialize;

use super::{CommandResult, Outcome};
use crate::args::{Cli, CompletionsArgs, Shell};

pub fn run(args: CompletionsArgs) -> CommandResult {
    let mut command = Cli::command();
    let mut script = Vec::new();
    let generator = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut command, "lumo", &mut script);
    Ok(Outcome::report(Completions {
        shell: args.shell,
        script: String::from_utf8_lossy(&script).into_owned(),
    }))
}

/// With `--json`, the script as a string; otherwise the script itself, ready to `source`.
#[derive(Serialize)]
pub struct Completions {
    pub shell: Shell,
    pub script: String,
}

impl fmt::Display for Completions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.script)
    }
}
