//! End-to-end tests of the build side of JS/TS handlers (issue 9, PRODUCT.md §2): which files in
//! `functions/tasks/` are tasks, what `--verbose` says about the others, and what `lumo build`
//! makes of a handler. Running the handlers on Node is tested with the Lumo-style fixture
//! project (the run side); here nothing needs Node.

#![allow(clippy::unwrap_used)] // A panic is how a test reports.

mod support;

use std::fs;

use support::{BuildReport, TaskList, TestProject};

const HANDLER: &str = "import { tasks } from '@lumo-framework/core';\n\
    import { Level } from './lib/level';\n\
    export const run: tasks.TaskHandler = async (ctx) => ({\n\
      success: true,\n\
      message: `level ${Level.High} in ${ctx.deployment.environment}`,\n\
    });\n";

/// The Lumo docs' layout: declared and undeclared handlers, a nested one, a helper, and files
/// that are not tasks.
fn lumo_project() -> TestProject {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'shop', provider: 'local', tasks: { 'run-migrations': { timeout: 120 } } };",
    );
    p.write("functions/tasks/run-migrations.ts", HANDLER);
    p.write("functions/tasks/warm-cache.ts", HANDLER);
    p.write(
        "functions/tasks/database/migrate.ts",
        HANDLER.replace("./lib/level", "../lib/level"),
    );
    p.write(
        "functions/tasks/lib/level.ts",
        "export enum Level { Low = 1, High }\n",
    );
    p.write("functions/tasks/types.d.ts", "export type X = 1;\n");
    p.write("functions/tasks/warm-cache.test.ts", HANDLER);
    p.write("functions/tasks/README.md", "# tasks\n");
    p.write("functions/tasks/pages.txt", "/\n");
    p
}

/// Regression (issue 9): an undeclared `warm-cache.ts` was silently ignored ("No tasks"), and
/// a declared `run-migrations.ts` was told to `chmod +x`.
#[test]
fn every_handler_is_a_task_and_the_files_that_are_not_are_listed_under_verbose() {
    let p = lumo_project();
    let out = p.lumo(&["tasks", "--json", "--verbose"]).code(0).clone();
    let list: TaskList = out.json();
    let tasks: Vec<_> = list
        .tasks
        .iter()
        .map(|t| (t.name.as_str(), t.kind.as_str(), t.declared))
        .collect();
    assert_eq!(
        tasks,
        [
            ("run-migrations", "handler", true),
            ("database/migrate", "handler", false),
            ("warm-cache", "handler", false),
        ]
    );
    out.stderr_has(&[
        "`functions/tasks/lib/level.ts` is not a task (it exports none of `run`",
        "`functions/tasks/pages.txt` is not a task",
    ]);
    for quiet in ["types.d.ts", "warm-cache.test.ts", "README.md"] {
        assert!(!out.stderr.contains(quiet), "{quiet}: {}", out.show());
    }
    // Without --verbose, not a word.
    let out = p.lumo(&["tasks", "--json"]).code(0).clone();
    assert!(!out.stderr.contains("not a task"), "{}", out.show());
}

#[test]
fn a_config_naming_a_module_without_a_handler_says_why() {
    let p = lumo_project();
    p.config("export default { projectName: 'shop', tasks: { 'lib/level': {} } };");
    let out = p.lumo(&["tasks"]).code(2).clone();
    out.stderr_has(&[
        "`tasks.lib/level`",
        "`functions/tasks/lib/level.ts` exports none of `run`",
    ]);
    assert!(!out.stderr.contains("chmod"), "{}", out.show());
}

#[test]
fn a_handler_builds_into_one_module_with_the_node_entry_and_the_same_hash_twice() {
    let p = lumo_project();
    let first: BuildReport = p.lumo(&["build", "--json"]).code(0).json();
    let second: BuildReport = p.lumo(&["build", "--json"]).code(0).json();
    let hashes = |r: &BuildReport| -> Vec<(String, String)> {
        r.bundles
            .iter()
            .map(|b| (b.task.clone(), b.sha256.clone()))
            .collect()
    };
    assert_eq!(hashes(&first), hashes(&second));
    let migrate = first
        .bundles
        .iter()
        .find(|b| b.task == "run-migrations")
        .unwrap();
    assert_eq!(migrate.files, 2, "handler.mjs and the manifest");
    let zip = p
        .lumo_dir()
        .join("bundles")
        .join(format!("{}.zip", migrate.sha256));
    let mut archive = zip::ZipArchive::new(fs::File::open(zip).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_reader(archive.by_name("lumo-bundle.json").unwrap()).unwrap();
    assert_eq!(
        manifest,
        serde_json::json!({ "task": "run-migrations", "entry": { "node": "handler.mjs" } })
    );
    let mut code = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("handler.mjs").unwrap(), &mut code).unwrap();
    assert!(code.contains("export { run }"), "{code}");
    assert!(
        !code.contains("@lumo-framework/core"),
        "resolved, not imported: {code}"
    );
}

#[test]
fn a_syntax_error_stops_the_build_naming_the_task_and_the_place() {
    let p = lumo_project();
    p.write(
        "functions/tasks/warm-cache.ts",
        "export const run = async () => {\n  return { success: true, message: 'x' ;\n};\n",
    );
    let out = p.lumo(&["build"]).code(2).clone();
    out.stderr_has(&[
        "cannot bundle the task `warm-cache`",
        "functions/tasks/warm-cache.ts:2:",
    ]);
    assert!(!p.lumo_dir().join("bundles").exists(), "nothing written");
}
