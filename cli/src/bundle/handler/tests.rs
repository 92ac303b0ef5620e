//! The bundler on a small Lumo-style project: TS with an enum and a namespace, a relative
//! helper, JSON, and a `node_modules` with one CommonJS and one ES module package.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::*;

fn write(root: &Path, rel: &str, body: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

const HANDLER: &str = r#"import { tasks, env } from '@lumo-framework/core';
import { readFileSync } from 'node:fs';
import { join } from 'path';
import { Level, describe } from './lib/level';
import data from './data.json';
import camel from 'cjs-camel';
import { shout } from 'esm-shout';

export namespace Steps {
  export const first = 1;
  export function next(n: number): number { return n + first; }
}

export const run: tasks.TaskHandler = async (ctx) => ({
  success: true,
  message: [
    describe(Level.High),
    data.name,
    camel('warm-the-cache'),
    shout('done'),
    Steps.next(1),
    env('LUMO_TEST_SURELY_UNSET_VARIABLE', 'fallback'),
    typeof readFileSync,
    join('a', 'b'),
  ].join(' '),
  data: { environment: ctx.deployment.environment },
});
"#;

/// A project as a Lumo Framework user writes one (`@lumo-framework/core` not installed).
fn fixture(root: &Path) {
    write(root, "functions/tasks/warm.ts", HANDLER);
    write(
        root,
        "functions/tasks/lib/level.ts",
        "export enum Level { Low = 1, High }\n\
         export const describe = (l: Level): string => `level ${Level[l]}`;\n",
    );
    write(
        root,
        "functions/tasks/data.json",
        "{\"name\": \"fixture\", \"unused\": [1, 2, 3]}\n",
    );
    write(
        root,
        "node_modules/cjs-camel/package.json",
        "{\"name\": \"cjs-camel\", \"version\": \"1.0.0\", \"main\": \"index.js\"}\n",
    );
    write(
        root,
        "node_modules/cjs-camel/index.js",
        "const util = require('util');\n\
         module.exports = function camel(s) {\n\
           return util.format('%s', s.replace(/-(\\w)/g, (_, c) => c.toUpperCase()));\n\
         };\n",
    );
    write(
        root,
        "node_modules/esm-shout/package.json",
        "{\"name\": \"esm-shout\", \"version\": \"1.0.0\", \"type\": \"module\", \
         \"exports\": {\".\": \"./dist/index.js\"}}\n",
    );
    write(
        root,
        "node_modules/esm-shout/dist/index.js",
        "export const shout = (s) => s.toUpperCase() + '!';\n",
    );
}

/// Node runs the bundle on its own (nothing else next to it) and the handler answers.
fn run_on_node(code: &str, dir: &Path) -> Option<serde_json::Value> {
    let alone = dir.join("alone");
    fs::create_dir_all(&alone).unwrap();
    fs::write(alone.join(BUNDLED_MODULE), code).unwrap();
    let script = "import(process.argv[1]).then(m => m.run({ deployment: { environment: 'dev' } }))\
                  .then(r => console.log(JSON.stringify(r)))";
    let output = match Command::new("node")
        .args(["-e", script, "./handler.mjs"])
        .current_dir(&alone)
        .env_remove("LUMO_TEST_SURELY_UNSET_VARIABLE")
        .output()
    {
        Ok(output) => output,
        // Node is part of CI (the handlers run on it); elsewhere this check is skipped, loudly.
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("node not found: the bundle was not run");
            return None;
        }
        Err(e) => panic!("node is needed under CI: {e}"),
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

#[test]
fn a_lumo_handler_is_bundled_into_one_module_that_runs_on_node_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    fixture(&root);
    let code = bundle(&root, &root.join("functions/tasks/warm.ts")).unwrap();
    // Built-ins stay imports; no TypeScript is left; the packages are inside.
    assert!(
        code.contains("from \"node:fs\"") && code.contains("from \"path\""),
        "{code}"
    );
    assert!(!code.contains("namespace Steps") && !code.contains("enum Level"));
    assert!(!code.contains("from \"cjs-camel\"") && !code.contains("from \"esm-shout\""));
    if let Some(result) = run_on_node(&code, dir.path()) {
        assert_eq!(
            result,
            serde_json::json!({
                "success": true,
                "message": "level High fixture warmTheCache DONE! 2 fallback function a/b",
                "data": { "environment": "dev" },
            })
        );
    }
}

#[test]
fn the_same_project_in_another_place_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("elsewhere/second");
    fixture(&first);
    fixture(&second);
    let a = bundle(&first, &first.join("functions/tasks/warm.ts")).unwrap();
    let again = bundle(&first, &first.join("functions/tasks/warm.ts")).unwrap();
    let b = bundle(&second, &second.join("functions/tasks/warm.ts")).unwrap();
    assert_eq!(a, again);
    assert_eq!(a, b, "no absolute path may reach the output");
    assert!(!a.contains(&*dir.path().to_string_lossy()));
}

#[test]
fn a_syntax_error_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);
    write(
        root,
        "functions/tasks/lib/level.ts",
        "export enum Level { Low = 1, High }\nexport const describe = (l: Level) => ) ;\n",
    );
    let err = bundle(root, &root.join("functions/tasks/warm.ts")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("functions/tasks/lib/level.ts:2:"), "{text}");
    assert!(!text.contains(&*root.to_string_lossy()), "{text}");
}

#[test]
fn an_unresolved_import_names_the_importer_and_the_specifier() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);
    // A package that is not installed is an error too, not an import left for run time.
    write(
        root,
        "functions/tasks/package.ts",
        "import { x } from 'not-installed';\n\
         export const run = async () => ({ success: true, message: x });\n",
    );
    write(
        root,
        "functions/tasks/relative.ts",
        "\nimport { y } from './nope';\n\
         export const run = async () => ({ success: true, message: y });\n",
    );
    for (entry, parts) in [
        (
            "functions/tasks/package.ts",
            ["functions/tasks/package.ts:1:19: ", "'not-installed'"],
        ),
        (
            "functions/tasks/relative.ts",
            ["functions/tasks/relative.ts:2:19: ", "'./nope'"],
        ),
    ] {
        let text = bundle(root, &root.join(entry)).unwrap_err().to_string();
        for part in parts.iter().chain(&["is it installed?"]) {
            assert!(text.contains(part), "{part} in {text}");
        }
    }
}

#[test]
fn a_module_whose_handler_export_is_not_there_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);
    // Looks like a task to discovery (`export *`), but re-exports no handler.
    write(
        root,
        "functions/tasks/reexport.ts",
        "export * from './lib/level';\n",
    );
    let err = bundle(root, &root.join("functions/tasks/reexport.ts")).unwrap_err();
    assert_eq!(
        err,
        HandlerBundleError::NoHandler {
            module: "functions/tasks/reexport.ts".into()
        }
    );
}

/// Regression (verify of issue 9): importing a Lumo helper lumo does not have said it "is
/// not exported by "\0lumo:core"", the bundler's id of the virtual module.
#[test]
fn a_missing_core_export_names_the_package_and_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "functions/tasks/http.ts",
        "import { http } from '@lumo-framework/core';\n\
         export const run = async () => ({ success: true, message: String(http) });\n",
    );
    let text = bundle(root, &root.join("functions/tasks/http.ts"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("\"http\" is not exported by `@lumo-framework/core` (lumo's own, which has"),
        "{text}"
    );
    assert!(!text.contains("lumo:core"), "{text}");
}

#[test]
fn the_core_module_has_lumo_s_runtime_surface() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "functions/tasks/core.mjs",
        "import { defineConfig, env, fromEnv, config, secrets, tasks } from '@lumo-framework/core';\n\
         export default async () => ({ success: true, message: [\n\
           typeof defineConfig, env('LUMO_TEST_SURELY_UNSET_VARIABLE'), typeof fromEnv,\n\
           typeof config.env, await secrets.getSecret('api-key'), JSON.stringify(tasks),\n\
         ].join('|') });\n\
         export const run = undefined;\n",
    );
    let code = bundle(root, &root.join("functions/tasks/core.mjs")).unwrap();
    let alone = dir.path().join("alone");
    fs::create_dir_all(&alone).unwrap();
    fs::write(alone.join(BUNDLED_MODULE), &code).unwrap();
    let Ok(output) = Command::new("node")
        .args([
            "-e",
            "import('./handler.mjs').then(m => m.default()).then(r => console.log(r.message))",
        ])
        .current_dir(&alone)
        .env("API_KEY", "from-api-key")
        .env_remove("LUMO_TEST_SURELY_UNSET_VARIABLE")
        .output()
    else {
        assert!(std::env::var_os("CI").is_none(), "node is needed under CI");
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "function||function|function|from-api-key|{}",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
