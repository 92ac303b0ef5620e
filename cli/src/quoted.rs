//! Names in lumo's messages stand in backticks (`migrate`, `dev`), as uv writes them, and a list
//! of them is comma-separated. One function, so every message lists names the same way.

use std::fmt::Display;

/// `a`, `b`, `c`: each item in backticks, separated by commas; empty for no items.
pub fn list<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_name_is_in_backticks_and_separated_by_commas() {
        assert_eq!(super::list(["migrate", "seed"]), "`migrate`, `seed`");
        assert_eq!(super::list(Vec::<String>::new()), "");
    }
}
