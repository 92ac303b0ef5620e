//! JS/TS handlers (the Lumo Framework's form of a task): recognising them, and bundling each
//! into the one ES module `handler.mjs` that lumo's Node entry (in the runner) imports.
//!
//! Bundling is in-process with `rolldown` (the bundler behind Vite, built on `oxc`), so building
//! a TS task needs no Node and no npm package; docs/js-handlers.md has the choice against
//! esbuild and its measured cost. The bundle holds everything the handler imports — relative
//! TS/JS, JSON, packages from the project's `node_modules` (CommonJS or ES modules) — with
//! TypeScript compiled (enums and namespaces are real code), Node built-ins left as imports,
//! and `@lumo-framework/core` always lumo's own small module (`core.mjs`), installed or not.
//!
//! The output must be byte-identical for the same inputs on any machine, since the bundle's
//! sha256 decides uploads and `runOn: 'change'`: the project root is the bundler's working
//! directory (module ids in the output are relative to it), nothing is timestamped, no source
//! map is written, and one chunk is produced whatever the handler imports dynamically.

pub mod exports;

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rolldown::plugin::{
    HookLoadArgs, HookLoadOutput, HookLoadReturn, HookResolveIdArgs, HookResolveIdOutput,
    HookResolveIdReturn, HookUsage, Plugin, PluginContext, SharedLoadPluginContext,
};
use rolldown::{
    Bundler, BundlerOptions, CodeSplittingMode, InputItem, OutputFormat, Platform, RawMinifyOptions,
};
use rolldown_error::{BuildDiagnostic, DiagnosticOptions, EventKind};

pub use exports::HANDLER_EXPORTS;

/// File extensions of JS/TS modules, as the Lumo Framework accepts them.
pub const MODULE_EXTENSIONS: [&str; 6] = ["ts", "mts", "cts", "js", "mjs", "cjs"];

/// The bundle's entry for a handler, at the bundle root (the shared interface with the
/// runner's Node entry: `Entry::Node("handler.mjs")`).
pub const BUNDLED_MODULE: &str = "handler.mjs";

/// The specifier Lumo Framework tasks import their helpers and types from.
const CORE_SPECIFIER: &str = "@lumo-framework/core";
/// Its module id inside the bundler; the `\0` prefix is the convention for a virtual module
/// (no file, no path in the output).
const CORE_ID: &str = "\0lumo:core";
const CORE_SOURCE: &str = include_str!("core.mjs");

/// Whether `file_name` is a JS/TS module by its extension.
pub fn is_module_file(file_name: &str) -> bool {
    Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MODULE_EXTENSIONS.contains(&e))
}

/// Whether the module at `path` may export a handler (see [`exports::exports_handler`]).
pub fn file_exports_handler(path: &Path) -> io::Result<bool> {
    let source = fs::read(path)?;
    Ok(exports::exports_handler(&String::from_utf8_lossy(&source)))
}

/// Why a handler could not be bundled. Each message names what to fix; the caller adds the
/// task.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandlerBundleError {
    /// Syntax errors, unresolved imports and the like, one line each with its place
    /// (`functions/tasks/x.ts:3:7: …`).
    #[error("{}", .0.join("; "))]
    Build(Vec<String>),
    #[error(
        "`{module}` exports none of `run`, a default export or `handler`; export the function \
         lumo should call"
    )]
    NoHandler { module: String },
    #[error("the bundler failed: {0}")]
    Internal(String),
}

/// Bundles the handler module `entry` of the project at `root` into the text of
/// `handler.mjs`.
pub fn bundle(root: &Path, entry: &Path) -> Result<String, HandlerBundleError> {
    // rolldown is async and spawns onto the current tokio runtime; a thread of its own keeps
    // this callable from synchronous code and from inside lumo's runtime alike.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| HandlerBundleError::Internal(e.to_string()))?;
                runtime.block_on(bundle_async(root, entry))
            })
            .join()
            .unwrap_or_else(|_| Err(HandlerBundleError::Internal("the bundler panicked".into())))
    })
}

async fn bundle_async(root: &Path, entry: &Path) -> Result<String, HandlerBundleError> {
    let relative = entry.strip_prefix(root).unwrap_or(entry);
    let import = format!("./{}", relative.to_string_lossy());
    let options = BundlerOptions {
        input: Some(vec![InputItem {
            name: Some("handler".into()),
            import,
        }]),
        cwd: Some(root.to_path_buf()),
        platform: Some(Platform::Node),
        format: Some(OutputFormat::Esm),
        // One file whatever the handler imports dynamically: the runner imports one module.
        code_splitting: Some(CodeSplittingMode::Bool(false)),
        // rolldown's default re-parses the finished chunk to eliminate dead code once more
        // (a third of the CPU time of bundling a 1 MB package, docs/js-handlers.md): the
        // modules were already tree-shaken one by one, and a Node task is not sent to a
        // browser, so the few bytes it would save are not worth it.
        minify: Some(RawMinifyOptions::Bool(false)),
        ..Default::default()
    };
    let diagnostic_options = DiagnosticOptions {
        cwd: root.to_path_buf(),
    };
    let messages = |diagnostics: &[BuildDiagnostic]| {
        diagnostics
            .iter()
            .map(|d| describe(d, &diagnostic_options))
            .collect::<Vec<_>>()
    };
    let mut bundler = Bundler::with_plugins(options, vec![Arc::new(CoreModule)])
        .map_err(|e| HandlerBundleError::Build(messages(&e.into_vec())))?;
    let output = bundler
        .generate()
        .await
        .map_err(|e| HandlerBundleError::Build(messages(&e.into_vec())))?;
    // rolldown only warns about a package it cannot find (and leaves the import in): the
    // bundle must hold everything, since nothing next to it is installed where it runs. (An
    // optional `require` inside `try` is not warned about, so it stays allowed.)
    let unresolved: Vec<_> = output
        .warnings
        .iter()
        .filter(|w| matches!(w.kind(), EventKind::UnresolvedImport))
        .collect();
    if !unresolved.is_empty() {
        return Err(HandlerBundleError::Build(
            unresolved
                .iter()
                .map(|d| describe(d, &diagnostic_options))
                .collect(),
        ));
    }
    let mut chunks = output.assets.into_iter().filter_map(|asset| match asset {
        rolldown_common::Output::Chunk(chunk) => Some(chunk),
        _ => None,
    });
    let (Some(chunk), None) = (chunks.next(), chunks.next()) else {
        return Err(HandlerBundleError::Internal(
            "expected exactly one output chunk".into(),
        ));
    };
    if !chunk
        .exports
        .iter()
        .any(|name| HANDLER_EXPORTS.contains(&name.as_str()))
    {
        return Err(HandlerBundleError::NoHandler {
            module: relative.to_string_lossy().into_owned(),
        });
    }
    Ok(chunk.code.clone())
}

/// One diagnostic as one line: its place (`file:line:col`, relative to the project root) when
/// the bundler knows it, then the message.
fn describe(diagnostic: &BuildDiagnostic, options: &DiagnosticOptions) -> String {
    // The bundler names the virtual core module by its id, which reads `"\0lumo:core"`; the
    // user imported `@lumo-framework/core`, and needs to hear what it holds here.
    let mut message = diagnostic.to_message_with(options).trim().replace(
        &format!("{CORE_ID:?}"),
        &format!(
            "`{CORE_SPECIFIER}` (lumo's own, which has `defineConfig`, `env`, `fromEnv`, \
                 `config`, `secrets` and `tasks`)"
        ),
    );
    if matches!(diagnostic.kind(), EventKind::UnresolvedImport) {
        message.push_str(
            " (a relative path resolves from the importing file, a package from the \
             project's `node_modules`: is it installed?)",
        );
    }
    match diagnostic
        .to_diagnostic_with(options)
        .get_primary_location()
    {
        // The column is 0-based there; editors and compilers count from 1.
        Some((file, line, column, _)) => format!("{file}:{line}:{}: {message}", column + 1),
        None => message,
    }
}

/// Serves `@lumo-framework/core` from [`CORE_SOURCE`].
#[derive(Debug)]
struct CoreModule;

impl Plugin for CoreModule {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("lumo:core")
    }

    fn register_hook_usage(&self) -> HookUsage {
        HookUsage::ResolveId | HookUsage::Load
    }

    async fn resolve_id(
        &self,
        _ctx: &PluginContext,
        args: &HookResolveIdArgs<'_>,
    ) -> HookResolveIdReturn {
        Ok(
            (args.specifier == CORE_SPECIFIER).then(|| HookResolveIdOutput {
                id: CORE_ID.into(),
                ..Default::default()
            }),
        )
    }

    async fn load(&self, _ctx: SharedLoadPluginContext, args: &HookLoadArgs<'_>) -> HookLoadReturn {
        Ok((args.id == CORE_ID).then(|| HookLoadOutput {
            code: CORE_SOURCE.into(),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests;
