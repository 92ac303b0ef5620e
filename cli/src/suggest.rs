//! "Did you mean" for misspelt keys, task names, environments and flags.

/// The candidate closest to `input`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lowered = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let distance = strsim::damerau_levenshtein(&lowered, &c.to_ascii_lowercase());
            (distance, c)
        })
        .filter(|(distance, c)| {
            // A case-only difference is always a typo; otherwise allow about one edit per
            // three characters so `timout` finds `timeout` but `x` does not find `env`.
            *distance == 0 || *distance <= (c.len().max(input.len()) / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` or nothing, ready to append to a message.
pub fn hint_suffix<'a, I>(input: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match did_you_mean(input, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_close_keys_and_ignores_far_ones() {
        let keys = ["timeout", "runOn", "copyAssets", "dependsOn"];
        assert_eq!(did_you_mean("timout", keys), Some("timeout"));
        assert_eq!(did_you_mean("runon", keys), Some("runOn"));
        assert_eq!(did_you_mean("copyAsset", keys), Some("copyAssets"));
        assert_eq!(did_you_mean("banana", keys), None);
        assert_eq!(hint_suffix("dependOn", keys), "; did you mean `dependsOn`?");
    }
}
