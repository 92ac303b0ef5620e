//! Whether lumo paints its output (`--color auto|always|never`). A CI log is not a terminal, yet
//! GitHub Actions and GitLab render colour; a person piping lumo into a pager may want none. So
//! besides the flag, the conventions other tools follow: `NO_COLOR` (no-color.org) turns colour
//! off, `FORCE_COLOR` / `CLICOLOR_FORCE` turn it on. The flag wins over every variable, and
//! `NO_COLOR` over the two that force it.

use std::ffi::OsString;

/// `--color`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless a variable says otherwise.
    #[default]
    Auto,
    Always,
    Never,
}

/// Whether to paint a stream that `is_terminal` or not, with `--color choice`, reading
/// variables through `var`.
pub fn enabled(
    choice: ColorChoice,
    is_terminal: bool,
    var: impl Fn(&str) -> Option<OsString>,
) -> bool {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if set("NO_COLOR").is_some() => false,
        ColorChoice::Auto
            if ["FORCE_COLOR", "CLICOLOR_FORCE"]
                .iter()
                .any(|name| set(name).is_some_and(|v| v != "0")) =>
        {
            true
        }
        ColorChoice::Auto => is_terminal,
    }
}

/// [`enabled`] for stderr (where lumo paints), from this process's environment.
pub fn enabled_for_stderr(choice: ColorChoice) -> bool {
    enabled(
        choice,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        |name| std::env::var_os(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(choice: ColorChoice, tty: bool, vars: &[(&str, &str)]) -> bool {
        enabled(choice, tty, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn the_flag_then_no_color_then_the_forcing_variables_then_the_terminal_decide() {
        use ColorChoice::*;
        assert!(with(Auto, true, &[]));
        assert!(!with(Auto, false, &[]));
        assert!(with(Always, false, &[("NO_COLOR", "1")]));
        assert!(!with(Never, true, &[("FORCE_COLOR", "1")]));
        assert!(!with(Auto, true, &[("NO_COLOR", "1")]));
        assert!(!with(
            Auto,
            false,
            &[("NO_COLOR", "1"), ("FORCE_COLOR", "1")]
        ));
        assert!(with(Auto, false, &[("FORCE_COLOR", "1")]));
        assert!(with(Auto, false, &[("FORCE_COLOR", "true")]));
        assert!(with(Auto, false, &[("CLICOLOR_FORCE", "1")]));
        assert!(!with(Auto, false, &[("FORCE_COLOR", "0")]));
        assert!(!with(Auto, false, &[("CLICOLOR_FORCE", "0")]));
        // Set but empty is not set (as no-color.org says of NO_COLOR).
        assert!(with(Auto, true, &[("NO_COLOR", "")]));
        assert!(!with(Auto, false, &[("FORCE_COLOR", "")]));
    }
}
