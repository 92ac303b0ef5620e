//! How the numeric flags read their values (`--tail`, `--limit`, `--concurrency`, `--wait`,
//! `--timeout`): each parser says what the flag takes, so `--tail -1` or `--limit ten` is one
//! clear message naming the flag and the value given (clap puts both in front), not clap's
//! generic "unexpected argument '-1' found" or "invalid digit found in string". The flags
//! using them take a negative number as their value (`allow_negative_numbers`), so it reaches
//! the parser instead of being taken for an unknown flag. Not `allow_hyphen_values`: that would
//! also take the next flag (`--wait --json`) or the `--` before `exec`'s command as the value;
//! a negative duration with a unit (`--wait -5s`) is caught after clap instead
//! ([`negative_duration`]).

use std::time::Duration;

/// `--tail N`: a number of lines, 0 or more.
pub fn lines(s: &str) -> Result<usize, String> {
    whole_number(s, 0, usize::MAX as u64, "lines").map(|n| n as usize)
}

/// `--limit N` of `lumo history`: 1 to 10,000 runs.
pub fn run_limit(s: &str) -> Result<u32, String> {
    whole_number(s, 1, 10_000, "runs").map(|n| n as u32)
}

/// `--concurrency N`: 1 to 64 tasks side by side.
pub fn concurrency(s: &str) -> Result<u16, String> {
    whole_number(s, 1, 64, "tasks").map(|n| n as u16)
}

/// `--wait D`, `--timeout D`: a duration (`30s`, `5m`, `1h`; a bare number is seconds), never
/// negative.
pub fn duration(s: &str) -> Result<Duration, String> {
    const ALLOWED: &str = "takes a duration such as `30s`, `5m` or `1h` (a bare number is seconds)";
    if s.trim_start().starts_with('-') {
        return Err(format!("{ALLOWED}, not a negative one"));
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{ALLOWED} ({e})"))
}

/// The flags read with [`duration`].
const DURATION_FLAGS: &[&str] = &["--wait", "--timeout"];

/// `--wait -5s`: a negative duration with a unit is no number, so clap takes it for flags
/// (`-5`, `-s`) and says "unexpected argument '-5' found". When that word follows a duration
/// flag, the error [`duration`] gives for it instead, naming the flag.
pub fn negative_duration(e: &clap::Error) -> Option<clap::Error> {
    if e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let words: Vec<String> = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (flag, value) = words.windows(2).find_map(|pair| {
        let negative = pair[1]
            .strip_prefix('-')?
            .starts_with(|c: char| c.is_ascii_digit());
        (negative && DURATION_FLAGS.contains(&pair[0].as_str())).then(|| (&pair[0], &pair[1]))
    })?;
    let why = duration(value).err()?;
    Some(clap::Error::raw(
        clap::error::ErrorKind::InvalidValue,
        // As clap words a value its parser refused.
        format!(
            "invalid value '{value}' for '{flag} <D>': {why}\n\nFor more information, try '--help'.\n"
        ),
    ))
}

/// A whole number from `min` to `max` (`max` = the type's largest: no upper bound to speak of).
fn whole_number(s: &str, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    let allowed = if max == usize::MAX as u64 || max == u64::MAX {
        format!("takes a whole number of {unit}, {min} or more")
    } else {
        format!("takes a whole number of {unit} from {min} to {max}")
    };
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_or_non_number_count_says_what_is_allowed() {
        assert_eq!(lines("0"), Ok(0));
        assert_eq!(
            lines("-1"),
            Err("takes a whole number of lines, 0 or more".to_string())
        );
        assert_eq!(
            lines("ten"),
            Err("takes a whole number of lines, 0 or more".to_string())
        );
        assert_eq!(run_limit("10000"), Ok(10_000));
        assert_eq!(
            run_limit("0"),
            Err("takes a whole number of runs from 1 to 10000".to_string())
        );
        assert_eq!(concurrency("64"), Ok(64));
        assert_eq!(
            concurrency("-2"),
            Err("takes a whole number of tasks from 1 to 64".to_string())
        );
    }

    #[test]
    fn a_negative_duration_is_refused_as_negative() {
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        let negative = duration("-1").unwrap_err();
        assert!(negative.ends_with("not a negative one"), "{negative}");
        let garbage = duration("soon").unwrap_err();
        assert!(
            garbage.starts_with("takes a duration such as `30s`"),
            "{garbage}"
        );
    }
}
