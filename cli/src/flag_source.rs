//! Whether a flag took its value from its environment variable (`LUMO_CONFIG`, `LUMO_PROVIDER`,
//! `LUMO_RUNNER`, the `env = …` of `args.rs`) rather than from the command line. An error about
//! such a value names the variable: the user never typed the flag, so "pass `--config PATH`"
//! alone leaves them looking for where the bad path came from.
//!
//! A leaf, reading only the process's arguments and environment, so the config's validation and
//! the providers can ask it without reaching the clap types.

/// Whether `--<long>` took its value from `variable`: the variable is set and the flag was not
/// typed on the command line (before a `--`, after which words are a command's own).
pub fn value_from_variable(long: &str, variable: &str) -> bool {
    let flag = format!("--{long}");
    let typed = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a.to_string_lossy().split('=').next() == Some(flag.as_str()));
    !typed && std::env::var_os(variable).is_some()
}
