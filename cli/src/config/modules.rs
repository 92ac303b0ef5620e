//! How `import` and `require` find code while a config is evaluated: the built-in
//! `@lumo-framework/core`, and files relative to the importing file. npm packages are not
//! available (there is no `node_modules` lookup on purpose: the config must load the same on a
//! machine that never ran `npm install`), and saying so beats a bare "module not found".
//!
//! Module names are file paths as the user spelled them, joined and normalised lexically, so
//! error locations read `lumo.config.js:3:7` or `shared/tasks.js:10:2`, not an engine URL.

use std::path::{Component, Path, PathBuf};

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Exception, Module};

/// The built-in module Lumo configs import `defineConfig` and `env` from.
pub(super) const CORE_MODULE: &str = "@lumo-framework/core";

/// Re-exports what the prelude built, so `import` and `require` hand out the same functions.
const CORE_MODULE_SOURCE: &str = "\
const core = globalThis[Symbol.for('lumo.internal')].core;
export const defineConfig = core.defineConfig;
export const env = core.env;
export const fromEnv = core.fromEnv;
export const config = core.config;
export default core;
";

/// Extensions tried, in order, for `./name` without one (Node's order, plus ES module ones).
const EXTENSIONS: [&str; 4] = ["js", "mjs", "cjs", "json"];

/// Where `name`, imported or required from the file `base`, lives.
///
/// Returns the module name (a normalised path) or a message for the user.
pub(super) fn resolve_path(base: &str, name: &str) -> Result<String, String> {
    let is_path = name.starts_with("./")
        || name.starts_with("../")
        || name == "."
        || name == ".."
        || Path::new(name).is_absolute();
    if !is_path {
        return Err(format!(
            "cannot load `{name}` from `{base}`: a lumo config can import or require \
             `{CORE_MODULE}` and files by relative path (`./shared.js`), not npm packages or \
             Node built-ins"
        ));
    }
    let joined = match Path::new(base).parent() {
        Some(dir) if !Path::new(name).is_absolute() => dir.join(name),
        _ => PathBuf::from(name),
    };
    let candidate = normalize(&joined);
    let mut tried = vec![candidate.clone()];
    if candidate.extension().is_none() {
        tried.extend(EXTENSIONS.iter().map(|ext| candidate.with_extension(ext)));
        tried.push(candidate.join("index.js"));
    }
    tried
        .into_iter()
        .find(|path| path.is_file())
        .map(|path| path.to_string_lossy().into_owned())
        .ok_or_else(|| {
            format!(
                "cannot find `{name}` from `{base}` (looked for `{}`)",
                candidate.display()
            )
        })
}

/// The directory of a module name, for `__dirname`.
pub(super) fn dirname(file: &str) -> String {
    match Path::new(file).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_string_lossy().into_owned(),
        _ => ".".to_string(),
    }
}

/// Resolves `.` and `..` without touching the filesystem (the path may not exist yet, and
/// canonicalising would turn the user's relative names into absolute ones in messages).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_name =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_name {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// How a resolved file is turned into an ES module.
#[derive(Debug, PartialEq, Eq)]
enum ModuleKind {
    EsModule,
    CommonJs,
    Json,
}

fn module_kind(file: &str, source: &str) -> ModuleKind {
    match Path::new(file).extension().and_then(|ext| ext.to_str()) {
        Some("json") => ModuleKind::Json,
        Some("cjs") => ModuleKind::CommonJs,
        Some("mjs") => ModuleKind::EsModule,
        _ if looks_like_commonjs(source) => ModuleKind::CommonJs,
        _ => ModuleKind::EsModule,
    }
}

/// Node decides by `package.json`; a config's helper file has no such context, so guess: no
/// top-level `import`/`export` statement, but `module.exports` or `exports.` in use.
fn looks_like_commonjs(source: &str) -> bool {
    let has_esm_syntax = source.lines().any(|line| {
        let line = line.trim_start();
        ["import ", "import{", "export ", "export{"]
            .iter()
            .any(|keyword| line.starts_with(keyword))
    });
    !has_esm_syntax && (source.contains("module.exports") || source.contains("exports."))
}

/// Resolves `import` specifiers; see [`resolve_path`].
pub(super) struct ConfigResolver;

impl Resolver for ConfigResolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if name == CORE_MODULE {
            return Ok(CORE_MODULE.to_string());
        }
        resolve_path(base, name).map_err(|message| Exception::throw_message(ctx, &message))
    }
}

/// Compiles resolved modules: the built-in, ES modules as they are, JSON as a default export,
/// and CommonJS files through the prelude's `require` machinery.
pub(super) struct ConfigLoader;

impl Loader for ConfigLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        if name == CORE_MODULE {
            return Module::declare(ctx.clone(), name, CORE_MODULE_SOURCE);
        }
        let source = std::fs::read_to_string(name).map_err(|error| {
            Exception::throw_message(ctx, &format!("cannot read `{name}`: {error}"))
        })?;
        let source = match module_kind(name, &source) {
            ModuleKind::EsModule => source,
            // On the first line, so a syntax error in the JSON keeps its line number.
            ModuleKind::Json => format!("export default {source}\n;"),
            ModuleKind::CommonJs => {
                let quoted = serde_json::to_string(name).map_err(|_| rquickjs::Error::Unknown)?;
                format!(
                    "export default globalThis[Symbol.for('lumo.internal')].loadCommonJs({quoted});"
                )
            }
        };
        Module::declare(ctx.clone(), name, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(
            normalize(Path::new("a/./b/../c.js")),
            PathBuf::from("a/c.js")
        );
        assert_eq!(normalize(Path::new("./x.js")), PathBuf::from("x.js"));
        assert_eq!(normalize(Path::new("../x.js")), PathBuf::from("../x.js"));
        assert_eq!(
            normalize(Path::new("/a/../../x.js")),
            PathBuf::from("/x.js")
        );
    }

    #[test]
    fn bare_specifiers_are_refused_with_a_reason() {
        let message = resolve_path("lumo.config.js", "dotenv").expect_err("refused");
        assert!(message.contains("not npm packages"), "{message}");
    }

    #[test]
    fn guesses_commonjs_only_without_esm_syntax() {
        assert!(looks_like_commonjs("module.exports = { a: 1 };"));
        assert!(looks_like_commonjs("exports.a = 1;"));
        assert!(!looks_like_commonjs("export default { a: 1 };"));
        assert!(!looks_like_commonjs(
            "import x from './y.js';\nexports.a = x;"
        ));
        assert!(!looks_like_commonjs("const a = 1;"));
        assert_eq!(module_kind("x.json", "{}"), ModuleKind::Json);
        assert_eq!(
            module_kind("x.cjs", "export default 1"),
            ModuleKind::CommonJs
        );
        assert_eq!(
            module_kind("x.mjs", "module.exports = 1"),
            ModuleKind::EsModule
        );
    }

    #[test]
    fn dirname_of_a_bare_file_is_dot() {
        assert_eq!(dirname("lumo.config.js"), ".");
        assert_eq!(dirname("a/b.js"), "a");
    }
}
