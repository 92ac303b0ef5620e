//! A cheap look at what a JS/TS module exports, for discovery: is it a task (it exports `run`,
//! a default export or `handler`) or a helper the tasks import?
//!
//! Discovery reads every module in `functions/tasks/` on every command, so this is a scan of
//! the text, not a parse: comments and string contents are blanked, then the tokens after each
//! `export` are matched. It errs towards "a task" (`export *` might re-export `run`); the
//! bundler then checks the real export list and names the task if the handler is missing.

/// The export names lumo calls, in the order it looks for them (Lumo's `run` first).
pub const HANDLER_EXPORTS: [&str; 3] = ["run", "default", "handler"];

/// Whether `source` (TypeScript or JavaScript, ES module or CommonJS) may export a handler.
pub fn exports_handler(source: &str) -> bool {
    let code = blank_comments_and_strings(source);
    let tokens = tokens(&code);
    let is_handler = |t: &str| HANDLER_EXPORTS.contains(&t);
    for (i, token) in tokens.iter().enumerate() {
        let next = |n: usize| tokens.get(i + n).copied().unwrap_or("");
        match *token {
            // `export` must not be a property (`obj.export`) to count.
            "export" if i == 0 || tokens[i - 1] != "." => match next(1) {
                "default" | "*" | "=" => return true,
                "{" => {
                    let names = tokens[i + 2..].iter().take_while(|t| **t != "}");
                    if names.clone().any(|t| is_handler(t)) {
                        return true;
                    }
                }
                "async" if next(2) == "function" => {
                    let name = if next(3) == "*" { next(4) } else { next(3) };
                    if is_handler(name) {
                        return true;
                    }
                }
                "function" => {
                    let name = if next(2) == "*" { next(3) } else { next(2) };
                    if is_handler(name) {
                        return true;
                    }
                }
                "const" | "let" | "var" | "class" if is_handler(next(2)) => return true,
                _ => {}
            },
            // CommonJS: `module.exports = …`, `exports.run = …`.
            "module" if next(1) == "." && next(2) == "exports" => return true,
            "exports"
                if next(1) == "." && is_handler(next(2)) && (i == 0 || tokens[i - 1] != ".") =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// Identifiers and the single punctuation characters that matter (`{ } * . = ,`); everything
/// else separates tokens.
fn tokens(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in code.char_indices() {
        let ident = c.is_alphanumeric() || c == '_' || c == '$';
        match (ident, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&code[s..i]);
                start = None;
            }
            _ => {}
        }
        if matches!(c, '{' | '}' | '*' | '.' | '=' | ',') {
            out.push(&code[i..i + 1]);
        }
    }
    if let Some(s) = start {
        out.push(&code[s..]);
    }
    out
}

/// `source` with comments and the contents of string and template literals replaced by
/// spaces, so `// export const run` or `'export default'` is not taken for an export.
/// Regular expression literals are not recognised; a quote inside one may blank some code,
/// which at worst makes a module look like a task the bundler then checks.
fn blank_comments_and_strings(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '\'' | '"' | '`' => {
                let quote = c;
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == quote || (c == '\n' && quote != '`') {
                        // A line break ends an unterminated '…' or "…" too.
                        break;
                    }
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lumo_style_and_other_handler_exports_are_found() {
        for source in [
            "import { tasks } from '@lumo-framework/core';\nexport const run: tasks.TaskHandler = async (ctx) => ({ success: true, message: 'ok' });",
            "export async function run(ctx) { return { success: true, message: 'ok' } }",
            "export function* handler() {}",
            "export default async (ctx) => ({ success: true, message: 'ok' });",
            "const go = async () => {};\nexport { go as run };",
            "async function handler() {}\nexport { handler }",
            "export * from './impl';",
            "module.exports = { run: async () => ({ success: true, message: 'ok' }) };",
            "exports.handler = async () => {};",
            "export let run = () => {};",
        ] {
            assert!(exports_handler(source), "{source}");
        }
    }

    #[test]
    fn helpers_and_mentions_in_comments_or_strings_are_not_handlers() {
        for source in [
            "export enum Level { Low, High }\nexport const describe = (l: Level) => `level ${l}`;",
            "export function running() {}\nexport const handlers = [];",
            "// export const run = 1\n/* export default x */\nexport const x = 1;",
            "const s = 'export default 1'; const t = \"export const run\";",
            "const url = 'https://example.com'; export { url };",
            "import { run } from './other';\nrun();",
            "thing.export = 1; other.exports.run = 2;",
        ] {
            assert!(!exports_handler(source), "{source}");
        }
    }
}
