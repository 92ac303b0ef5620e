//! Tests of `load` end to end: real config files written to a temp dir, evaluated in the
//! engine and validated, checked through the public types only.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// A temp project holding `files` (path, contents); the config is `lumo.config.js`.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, contents) in files {
        let path = dir.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(path, contents).expect("write fixture");
    }
    dir
}

fn config_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join(CONFIG_FILE_NAME)
}

fn load_source(source: &str) -> Result<ProjectConfig, ConfigError> {
    let dir = project(&[(CONFIG_FILE_NAME, source)]);
    load(&config_path(&dir))
}

fn loads(source: &str) -> ProjectConfig {
    match load_source(source) {
        Ok(config) => config,
        Err(error) => panic!("config should load, got: {error}"),
    }
}

fn invalid(source: &str) -> Vec<ConfigProblem> {
    match load_source(source) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("expected validation problems, got: {other}"),
        Ok(config) => panic!("expected validation problems, config loaded: {config:?}"),
    }
}

/// The config as far as it validated, for a source that has problems.
fn invalid_partial(source: &str) -> ProjectConfig {
    match load_source(source) {
        Err(ConfigError::Invalid {
            partial: Some(partial),
            ..
        }) => *partial,
        Err(other) => panic!("expected validation problems, got: {other}"),
        Ok(config) => panic!("expected validation problems, config loaded: {config:?}"),
    }
}

/// The message of the problem at `key`, failing with every problem shown if there is none.
fn problem_at<'a>(problems: &'a [ConfigProblem], key: &str) -> &'a str {
    match problems.iter().find(|p| p.key == key) {
        Some(problem) => &problem.message,
        None => panic!("no problem at `{key}`; problems: {problems:#?}"),
    }
}

fn assert_problem(problems: &[ConfigProblem], key: &str, fragment: &str) {
    let message = problem_at(problems, key);
    assert!(
        message.contains(fragment),
        "problem at `{key}` should contain {fragment:?}, got {message:?}"
    );
}

fn evaluate_error(source: &str) -> (Option<u32>, Option<u32>, String, std::path::PathBuf) {
    match load_source(source) {
        Err(ConfigError::Evaluate {
            line,
            column,
            message,
            path,
        }) => (line, column, message, path),
        Err(other) => panic!("expected an evaluation error, got: {other}"),
        Ok(_) => panic!("expected an evaluation error, config loaded"),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

#[test]
fn es_module_default_export() {
    let config = loads("export default { projectName: 'my-app', tasks: { migrate: {} } };");
    assert_eq!(config.project_name, "my-app");
    assert_eq!(config.provider, Provider::Local);
    assert_eq!(config.tasks["migrate"], TaskConfig::default());
    assert!(config.ignored_keys.is_empty());
}

#[test]
fn commonjs_module_exports() {
    let config = loads(
        "module.exports = { projectName: 'cjs-app', provider: 'aws',
           aws: { bucket: 'cjs-bucket', table: 'cjs-table' } };",
    );
    assert_eq!(config.project_name, "cjs-app");
    assert_eq!(config.provider, Provider::Aws);
}

#[test]
fn commonjs_exports_properties() {
    let config = loads("exports.projectName = 'props'; exports.tasks = { a: { timeout: 5 } };");
    assert_eq!(config.project_name, "props");
    assert_eq!(config.tasks["a"].timeout, 5);
}

#[test]
fn define_config_and_env_from_the_core_module() {
    let config = loads(
        "import { defineConfig, env } from '@lumo-framework/core';
         export default defineConfig({
           projectName: env('LUMO_TEST_SURELY_UNSET_VARIABLE', 'from-fallback'),
           // As in the Lumo Framework, the fallback defaults to '' (not `undefined`).
           region: env('LUMO_TEST_SURELY_UNSET_VARIABLE') === '' ? 'eu-west-2' : 'set',
         });",
    );
    assert_eq!(config.project_name, "from-fallback");
    assert_eq!(config.region.as_deref(), Some("eu-west-2"));
}

#[test]
fn require_of_the_core_module() {
    let config = loads(
        "const { defineConfig, env } = require('@lumo-framework/core');
         module.exports = defineConfig({ projectName: env('LUMO_TEST_SURELY_UNSET_VARIABLE', 'req') });",
    );
    assert_eq!(config.project_name, "req");
}

#[test]
fn process_env_holds_the_real_environment_and_cwd_is_the_config_directory() {
    let Ok(path_var) = std::env::var("PATH") else {
        return; // nothing to compare against on this machine
    };
    let dir = project(&[(
        CONFIG_FILE_NAME,
        "import { env } from '@lumo-framework/core';
         export default {
           projectName: 'env',
           tasks: {
             a: { description: process.env.PATH },
             b: { description: env('PATH', 'fallback') },
             c: { description: process.cwd() },
             d: { description: __dirname },
           },
         };",
    )]);
    let config = load(&config_path(&dir)).expect("loads");
    assert_eq!(
        config.tasks["a"].description.as_deref(),
        Some(path_var.as_str())
    );
    assert_eq!(
        config.tasks["b"].description.as_deref(),
        Some(path_var.as_str())
    );
    let root = config.root.to_string_lossy().into_owned();
    assert_eq!(
        config.tasks["c"].description.as_deref(),
        Some(root.as_str())
    );
    assert_eq!(
        config.tasks["d"].description.as_deref(),
        Some(root.as_str())
    );
    assert!(config.root.is_absolute());
    assert_eq!(
        config.root.canonicalize().expect("root exists"),
        dir.path().canonicalize().expect("dir exists")
    );
}

#[test]
fn relative_imports_of_js_mjs_and_json_resolve_from_the_importing_file() {
    let dir = project(&[
        (
            CONFIG_FILE_NAME,
            "import shared from './config/shared.js';
             import { timeout } from './config/numbers.mjs';
             import settings from './settings.json';
             export default { projectName: settings.name, tasks: { ...shared, b: { timeout } } };",
        ),
        // Imports relative to itself, not to the config.
        (
            "config/shared.js",
            "import extra from '../settings.json';\n\
             export default { a: { description: extra.name } };",
        ),
        ("config/numbers.mjs", "export const timeout = 42;"),
        ("settings.json", "{ \"name\": \"from-json\" }"),
    ]);
    let config = load(&config_path(&dir)).expect("loads");
    assert_eq!(config.project_name, "from-json");
    assert_eq!(config.tasks["a"].description.as_deref(), Some("from-json"));
    assert_eq!(config.tasks["b"].timeout, 42);
}

#[test]
fn require_of_relative_commonjs_and_json_files() {
    let dir = project(&[
        (
            CONFIG_FILE_NAME,
            "const tasks = require('./lib/tasks');
             const settings = require('./settings.json');
             module.exports = { projectName: settings.name, tasks };",
        ),
        (
            "lib/tasks.js",
            "const { timeout } = require('./numbers.js');\n\
             module.exports = { migrate: { timeout, description: __filename } };",
        ),
        ("lib/numbers.js", "exports.timeout = 77;"),
        ("settings.json", "{ \"name\": \"required-json\" }"),
    ]);
    let config = load(&config_path(&dir)).expect("loads");
    assert_eq!(config.project_name, "required-json");
    assert_eq!(config.tasks["migrate"].timeout, 77);
    let filename = config.tasks["migrate"]
        .description
        .clone()
        .unwrap_or_default();
    assert!(filename.ends_with("lib/tasks.js"), "{filename}");
}

#[test]
fn an_es_module_config_can_import_a_commonjs_helper() {
    let dir = project(&[
        (
            CONFIG_FILE_NAME,
            "import helper from './helper.js';\nexport default { projectName: helper.name };",
        ),
        ("helper.js", "module.exports = { name: 'cjs-helper' };"),
    ]);
    assert_eq!(
        load(&config_path(&dir)).expect("loads").project_name,
        "cjs-helper"
    );
}

#[test]
fn a_lumo_framework_config_loads_unchanged_with_its_keys_ignored() {
    let source = "import { defineConfig, env } from '@lumo-framework/core';

         export default defineConfig({
           projectName: 'shop',
           environment: 'dev',
           provider: 'aws',
           region: env('LUMO_TEST_SURELY_UNSET_VARIABLE', 'eu-west-2'),
           networking: { natGateways: 1 },
           routes: { '/api': { handler: () => 'hi' } },
           domainName: 'api.example.com',
           events: { subscribers: { 'send-welcome-email': { events: ['user.registered'] } } },
           build: { exclude: ['*.test.ts'] },
           secrets: {
             databaseUrl: {
               value: () => 'postgres://db/' + 'shop',
               description: 'PostgreSQL connection string',
             },
           },
           tasks: {
             'run-migrations': {
               timeout: 120,
               runOn: ['deploy', 'update'],
               copyAssets: [{ from: 'migrations', to: 'migrations' }],
             },
             'seed-database': {
               runOn: ['deploy'],
               copyAssets: [
                 { from: 'seed-data', to: 'data' },
                 { from: 'scripts/setup.sql' },
               ],
             },
           },
         });";
    // It loads as it is; only opening the `aws` backend needs lumo's bucket and table, and a
    // run with `--provider local` needs neither (PRODUCT.md §7).
    let config = loads(source);
    assert_eq!(config.provider, Provider::Aws);
    assert!(config.backend_ready().is_err());
    let dir = project(&[(CONFIG_FILE_NAME, source)]);
    let local = load_with_provider(&config_path(&dir), Some(Provider::Local)).expect("loads");
    assert_eq!(local.provider, Provider::Local);
    assert!(local.backend_ready().is_ok());
    assert_eq!(config.project_name, "shop");
    assert_eq!(config.region.as_deref(), Some("eu-west-2"));
    assert_eq!(config.environment.as_deref(), Some("dev"));
    assert_eq!(
        config.ignored_keys,
        ["networking", "routes", "domainName", "events", "build"]
    );
    let secret = &config.secrets["databaseUrl"];
    assert_eq!(secret.value, Ok("postgres://db/shop".to_string()));
    assert_eq!(
        secret.description.as_deref(),
        Some("PostgreSQL connection string")
    );

    let migrate = &config.tasks["run-migrations"];
    assert_eq!(migrate.timeout, 120);
    assert_eq!(migrate.run_on, [RunOn::Deploy, RunOn::Update]);
    assert_eq!(
        migrate.copy_assets,
        [CopyAsset {
            from: "migrations".into(),
            to: "migrations".into(),
            index: 0,
        }]
    );
    let seed = &config.tasks["seed-database"];
    assert_eq!(seed.timeout, 300);
    assert_eq!(seed.run_on, [RunOn::Deploy]);
    assert_eq!(
        seed.copy_assets[1].to, "setup.sql",
        "`to` defaults to the basename"
    );
}

#[test]
fn a_secret_function_that_throws_never_shows_what_it_threw() {
    // JSON.parse quotes part of its input in its SyntaxError: here, part of a password.
    let config = loads(
        r#"export default {
           projectName: 'secrets',
           secrets: {
             dbUrl: { value: () => JSON.parse('postgres://app:password@h') },
             thrownString: { value: () => { throw 'hunter2'; } },
             renamed: { value: () => { const e = new Error('x'); e.name = 'hunter2'; throw e; } },
             rejects: { value: async () => { throw new TypeError('hunter2'); } },
           },
         };"#,
    );
    let value = |name: &str| config.secrets[name].value.clone().unwrap_err();
    assert_eq!(
        value("dbUrl"),
        "the function threw a SyntaxError (its message is not shown: it may contain the secret)"
    );
    assert_eq!(
        value("thrownString"),
        "the function threw a string (not shown: it may contain the secret)"
    );
    assert_eq!(
        value("renamed"),
        "the function threw an exception (not shown: it may contain the secret)"
    );
    assert_eq!(
        value("rejects"),
        "the function threw a TypeError (its message is not shown: it may contain the secret)"
    );
    for name in ["dbUrl", "thrownString", "renamed", "rejects"] {
        let message = value(name);
        assert!(
            !message.contains("password")
                && !message.contains("hunter2")
                && !message.contains("app:"),
            "{name}: {message}"
        );
    }
}

#[test]
fn secret_functions_are_called_and_failures_kept_for_later() {
    let config = loads(
        "export default {
           projectName: 'secrets',
           secrets: {
             plain: { value: 'literal' },
             called: { value: () => 'from-function' },
             number: { value: () => 8080 },
             asynchronous: { value: async () => 'awaited' },
             throws: { value: () => { throw new Error('vault is sealed'); } },
             missing: { value: () => process.env.LUMO_TEST_SURELY_UNSET_VARIABLE },
             unsetStatic: { value: process.env.LUMO_TEST_SURELY_UNSET_VARIABLE, description: 'd' },
           },
         };",
    );
    let value = |name: &str| config.secrets[name].value.clone();
    assert_eq!(value("plain"), Ok("literal".into()));
    assert_eq!(value("called"), Ok("from-function".into()));
    assert_eq!(value("number"), Ok("8080".into()));
    assert_eq!(value("asynchronous"), Ok("awaited".into()));
    assert_eq!(
        value("throws"),
        Err(
            "the function threw an Error (its message is not shown: it may contain the secret)"
                .into()
        )
    );
    assert_eq!(
        value("missing"),
        Err("the function returned undefined".into())
    );
    assert_eq!(value("unsetStatic"), Err("the value is undefined".into()));
    // Declaration order is kept.
    let names: Vec<&str> = config.secrets.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "plain",
            "called",
            "number",
            "asynchronous",
            "throws",
            "missing",
            "unsetStatic"
        ]
    );
}

#[test]
fn a_provider_override_replaces_the_configured_one_unchecked() {
    let dir = project(&[(
        CONFIG_FILE_NAME,
        "export default { projectName: 'edge', provider: 'cloudflare' };",
    )]);
    // It loads (a Lumo Framework provider), but no backend opens without the override.
    let config = load(&config_path(&dir)).expect("loads");
    assert!(config.backend_ready().is_err());
    let config = load_with_provider(&config_path(&dir), Some(Provider::Local)).expect("loads");
    assert_eq!(config.provider, Provider::Local);
}

#[test]
fn a_default_export_function_is_called() {
    let config = loads("export default () => ({ projectName: 'from-function' });");
    assert_eq!(config.project_name, "from-function");
    let config = loads("export default async () => ({ projectName: 'from-async' });");
    assert_eq!(config.project_name, "from-async");
}

#[test]
fn top_level_await_works() {
    let config = loads(
        "const name = await Promise.resolve('awaited');\nexport default { projectName: name };",
    );
    assert_eq!(config.project_name, "awaited");
}

#[test]
fn a_promise_that_never_settles_is_an_error() {
    let (_, _, message, _) =
        evaluate_error("await new Promise(() => {});\nexport default { projectName: 'x' };");
    assert_eq!(message, "the config awaits a promise that never settles");
}

#[test]
fn syntax_error_has_line_and_column() {
    let (line, column, message, path) = evaluate_error(
        "export default {\n  projectName: 'x',\n  tasks: { a: { timeout: } },\n};\n",
    );
    assert_eq!(line, Some(3));
    assert!(column.is_some());
    assert!(message.starts_with("SyntaxError: "), "{message}");
    assert!(path.ends_with(CONFIG_FILE_NAME));
}

#[test]
fn thrown_error_has_line_column_and_message() {
    let (line, column, message, _) = evaluate_error(
        "const name = 'x';\n\nfunction check() {\n    throw new Error('DATABASE_URL is not set');\n}\ncheck();\nexport default { projectName: name };\n",
    );
    assert_eq!(message, "Error: DATABASE_URL is not set");
    assert_eq!(line, Some(4));
    // QuickJS points at the `Error` of `new Error(...)`.
    assert_eq!(column, Some(15));
}

#[test]
fn evaluate_error_displays_as_file_line_column() {
    let dir = project(&[(
        CONFIG_FILE_NAME,
        "export default {\n  projectName: 'x',,\n};\n",
    )]);
    let error = load(&config_path(&dir)).expect_err("syntax error");
    let shown = error.to_string();
    let expected_prefix = format!("{}:2:", config_path(&dir).display());
    assert!(shown.starts_with(&expected_prefix), "{shown}");
    assert!(shown.contains(": SyntaxError: "), "{shown}");
}

#[test]
fn an_error_in_an_imported_file_points_at_that_file() {
    let dir = project(&[
        (
            CONFIG_FILE_NAME,
            "import shared from './shared.js';\nexport default shared;",
        ),
        ("shared.js", "const a = 1;\nnull.boom;\nexport default {};"),
    ]);
    match load(&config_path(&dir)) {
        Err(ConfigError::Evaluate {
            path,
            line,
            message,
            ..
        }) => {
            assert!(path.ends_with("shared.js"), "{}", path.display());
            assert_eq!(line, Some(2));
            assert!(message.starts_with("TypeError"), "{message}");
        }
        other => panic!("expected an evaluation error, got {other:?}"),
    }
}

#[test]
fn a_thrown_non_error_is_reported() {
    let (_, _, message, _) = evaluate_error("throw 'no config for you';");
    assert_eq!(message, "uncaught exception: no config for you");
}

#[test]
fn npm_packages_cannot_be_imported() {
    let (_, _, message, _) = evaluate_error("import dotenv from 'dotenv';\nexport default {};");
    assert!(message.contains("cannot load `dotenv`"), "{message}");
    assert!(message.contains("not npm packages"), "{message}");
}

#[test]
fn a_missing_relative_import_names_the_file() {
    let (_, _, message, _) = evaluate_error("import x from './nope.js';\nexport default x;");
    assert!(message.contains("cannot find `./nope.js`"), "{message}");
}

#[test]
fn no_export_is_its_own_error() {
    for source in [
        "const a = 1;",
        "export const projectName = 'x';",
        "export default 'x';",
    ] {
        match load_source(source) {
            Err(ConfigError::NoExport { .. }) => {}
            other => panic!("{source}: expected NoExport, got {other:?}"),
        }
    }
}

#[test]
fn a_config_that_never_ends_is_stopped() {
    let dir = project(&[(CONFIG_FILE_NAME, "while (true) {}\nexport default {};")]);
    let started = Instant::now();
    let error =
        load_within(&config_path(&dir), None, Duration::from_millis(200)).expect_err("loops");
    // 200 ms of the evaluating thread's CPU time: on a loaded machine that takes longer on the
    // clock, so this only checks that the loop is stopped at all.
    assert!(started.elapsed() < Duration::from_secs(60));
    match error {
        ConfigError::Evaluate { message, .. } => {
            assert!(
                message.starts_with("config evaluation took longer than"),
                "{message}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_missing_config_is_not_found_and_find_config_walks_up() {
    let dir = project(&[
        (CONFIG_FILE_NAME, "export default { projectName: 'x' };"),
        ("functions/tasks/deep/.keep", ""),
    ]);
    let found = find_config(&dir.path().join("functions/tasks/deep")).expect("found");
    assert_eq!(
        found.canonicalize().expect("exists"),
        config_path(&dir).canonicalize().expect("exists")
    );
    // `load` of a directory looks for the config in it.
    assert_eq!(load(dir.path()).expect("loads").project_name, "x");

    let missing = dir.path().join("elsewhere").join(CONFIG_FILE_NAME);
    assert!(matches!(load(&missing), Err(ConfigError::NotFound { .. })));

    let empty = tempfile::tempdir().expect("temp dir");
    let found = find_config(empty.path());
    assert!(found.is_none_or(|f| !f.starts_with(empty.path())));
}

// ---------------------------------------------------------------------------------------------
// Validation

#[test]
fn task_declaration_order_is_kept() {
    let config = loads(
        "export default { projectName: 'order', tasks: { zeta: {}, alpha: {}, 'db/migrate': {}, mid: {} } };",
    );
    let names: Vec<&str> = config.tasks.keys().map(String::as_str).collect();
    assert_eq!(names, ["zeta", "alpha", "db/migrate", "mid"]);
}

#[test]
fn every_task_setting_is_read() {
    let config = loads(
        "export default {
           projectName: 'full',
           environments: ['dev', 'staging', 'prod'],
           environment: 'dev',
           tasks: {
             other: {},
             full: {
               timeout: 900,
               runOn: 'change',
               copyAssets: [{ from: 'migrations/', to: 'sql' }],
               description: 'does everything',
               dependsOn: ['other'],
               environments: ['staging', 'prod'],
               permission: 'maintainer',
               command: 'yarn audit',
               env: { KEY: 'value', PORT: 8080, DEBUG: true },
               config: { nested: { any: ['json', 1] } },
               args: { LIMIT: { default: 10 } },
               confirm: 'This drops the cache',
               retries: 10,
               memorySize: 512,
             },
             manual: { runOn: [], args: { TARGET: { description: 'where', required: true } } },
           },
         };",
    );
    let task = &config.tasks["full"];
    assert_eq!(task.timeout, 900);
    assert_eq!(task.run_on, [RunOn::Change]);
    assert_eq!(task.copy_assets[0].to, "sql");
    assert_eq!(task.description.as_deref(), Some("does everything"));
    assert_eq!(task.depends_on, ["other"]);
    assert_eq!(
        task.environments.as_deref(),
        Some(&["staging".to_string(), "prod".to_string()][..])
    );
    assert_eq!(task.permission, Permission::Maintainer);
    assert_eq!(task.command.as_deref(), Some("yarn audit"));
    assert_eq!(task.env["PORT"], "8080");
    assert_eq!(task.env["DEBUG"], "true");
    assert_eq!(task.config, json!({ "nested": { "any": ["json", 1] } }));
    assert_eq!(
        config.tasks["manual"].args["TARGET"],
        ArgDef {
            description: Some("where".into()),
            required: true,
            ..ArgDef::default()
        }
    );
    assert_eq!(task.args["LIMIT"].default.as_deref(), Some("10"));
    assert_eq!(task.confirm.as_deref(), Some("This drops the cache"));
    assert_eq!(task.retries, 10);
    assert_eq!(task.memory_size, Some(512));
    assert!(config.tasks["manual"].run_on.is_empty(), "[] = manual only");
    assert_eq!(config.environments.as_ref().map(Vec::len), Some(3));
}

#[test]
fn timeout_outside_the_range_says_what_is_allowed_and_what_was_given() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: {
           'run-migrations': { timeout: 1200 },
           zero: { timeout: 0 },
           fraction: { timeout: 1.5 },
           text: { timeout: '60' },
         } };",
    );
    assert_eq!(
        problem_at(&problems, "tasks.run-migrations.timeout"),
        "must be a whole number of seconds from 1 to 900, got 1200"
    );
    assert_problem(&problems, "tasks.zero.timeout", "got 0");
    assert_problem(&problems, "tasks.fraction.timeout", "got 1.5");
    assert_problem(&problems, "tasks.text.timeout", "got \"60\"");
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let problems = invalid(
        "export default {
           projectName: 'My App',
           provider: 'AWS',
           taks: {},
           tasks: {
             a: { timout: 10, runOn: ['deploy', 'deplyo', 'deploy'], retries: 11 },
             b: 'not an object',
           },
         };",
    );
    assert_problem(
        &problems,
        "projectName",
        "1 to 40 characters of a-z, 0-9 and `-`, got \"My App\"",
    );
    assert_problem(
        &problems,
        "provider",
        "must be `local` or `aws`, got \"AWS\"; did you mean `aws`?",
    );
    assert_eq!(
        problem_at(&problems, "taks"),
        "unknown key; did you mean `tasks`?"
    );
    assert_eq!(
        problem_at(&problems, "tasks.a.timout"),
        "unknown key; did you mean `timeout`?"
    );
    assert_problem(&problems, "tasks.a.runOn[1]", "did you mean `deploy`?");
    assert_problem(
        &problems,
        "tasks.a.runOn[2]",
        "`deploy` is listed more than once",
    );
    assert_problem(&problems, "tasks.a.retries", "from 0 to 10, got 11");
    assert_problem(&problems, "tasks.b", "must be an object of task settings");
    assert_eq!(problems.len(), 8, "{problems:#?}");

    let shown = ConfigError::Invalid {
        partial: None,
        path: "lumo.config.js".into(),
        problems: problems.clone(),
    }
    .to_string();
    assert_eq!(shown.lines().count(), 1 + problems.len(), "{shown}");
}

#[test]
fn project_name_is_required() {
    let problems = invalid("export default { tasks: {} };");
    assert_problem(&problems, "projectName", "is required");
    let problems = problems_of_project_name(&"a".repeat(41));
    assert_problem(&problems, "projectName", "1 to 40 characters");
}

fn problems_of_project_name(name: &str) -> Vec<ConfigProblem> {
    invalid(&format!("export default {{ projectName: '{name}' }};"))
}

#[test]
fn an_unknown_key_far_from_any_known_one_lists_the_allowed_keys() {
    let problems = invalid("export default { projectName: 'x', tasks: { a: { banana: 1 } } };");
    assert_problem(
        &problems,
        "tasks.a.banana",
        "unknown key; expected one of `timeout`",
    );
}

#[test]
fn environments_are_checked_everywhere_they_are_named() {
    let problems = invalid(
        "export default {
           projectName: 'x',
           environments: ['dev', 'prod', 'prod', 'Bad'],
           environment: 'staging',
           tasks: { a: { environments: ['prdo'] }, b: { environments: [] } },
           access: { stage: { developer: ['ana'] } },
         };",
    );
    assert_problem(
        &problems,
        "environments[2]",
        "`prod` is listed more than once",
    );
    assert_problem(
        &problems,
        "environments[3]",
        "starting with a letter or digit, got \"Bad\"",
    );
    assert_problem(
        &problems,
        "environment",
        "`staging` is not one of the project's `environments`",
    );
    assert_problem(&problems, "tasks.a.environments[0]", "did you mean `prod`?");
    assert_problem(&problems, "tasks.b.environments", "lists no environment");
    assert_problem(
        &problems,
        "access.stage",
        "is not one of the project's `environments`",
    );
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

/// A run id's prefix is looked up in these on `aws`: every environment the config names.
#[test]
fn the_named_environments_are_the_declared_ones_else_every_one_mentioned() {
    let declared = loads(
        "export default { projectName: 'x', environments: ['prod', 'dev', 'staging'],
           environment: 'dev', tasks: { a: { environments: ['prod'] } } };",
    );
    assert_eq!(declared.named_environments(), ["dev", "prod", "staging"]);
    let mentioned = loads(
        "export default { projectName: 'x', environment: 'dev',
           tasks: { a: { environments: ['prod', 'qa'] }, b: { environments: ['prod'] } },
           access: { staging: { developer: ['ana'] } } };",
    );
    assert_eq!(
        mentioned.named_environments(),
        ["dev", "prod", "qa", "staging"]
    );
    // `dev` is the default `environment`, as in the Lumo Framework.
    let silent = loads("export default { projectName: 'x', tasks: { a: {} } };");
    assert_eq!(silent.named_environments(), ["dev"]);
}

#[test]
fn environment_names_are_checked_without_a_declared_list() {
    let problems = invalid(
        "export default { projectName: 'x', environment: 'Prod_1', tasks: { a: { environments: ['-x'] } } };",
    );
    assert_problem(&problems, "environment", "got \"Prod_1\"");
    assert_problem(&problems, "tasks.a.environments[0]", "got \"-x\"");
}

#[test]
fn task_names_must_be_paths_under_functions_tasks() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: {
           '/lead': {}, 'trail/': {}, '../escape': {}, 'a/../b': {}, 'sp ace': {}, 'ok/name_1.v2': {},
         } };",
    );
    for bad in ["/lead", "trail/", "../escape", "a/../b", "sp ace"] {
        assert_problem(&problems, &format!("tasks.{bad}"), "invalid task name");
    }
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn run_on_accepts_one_string_and_rejects_other_shapes() {
    let config = loads("export default { projectName: 'x', tasks: { a: { runOn: 'update' } } };");
    assert_eq!(config.tasks["a"].run_on, [RunOn::Update]);
    let problems = invalid("export default { projectName: 'x', tasks: { a: { runOn: 5 } } };");
    assert_problem(
        &problems,
        "tasks.a.runOn",
        "must be a string or an array of strings, got 5",
    );
}

#[test]
fn copy_assets_must_stay_inside_the_project_and_the_bundle() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: { a: { copyAssets: [
           { from: '/etc/passwd' },
           { from: 'ok', to: '../outside' },
           { from: 'a/../../b', to: 'b' },
           { to: 'x' },
           'migrations',
           { from: '', to: 'x' },
           { from: 'ok', to: 'ok', mode: 1 },
           { from: '.' },
         ] } } };",
    );
    assert_problem(
        &problems,
        "tasks.a.copyAssets[0].from",
        "without `..` and not absolute, got \"/etc/passwd\"",
    );
    assert_problem(
        &problems,
        "tasks.a.copyAssets[1].to",
        "relative to the bundle root",
    );
    assert_problem(&problems, "tasks.a.copyAssets[2].from", "without `..`");
    assert_problem(&problems, "tasks.a.copyAssets[3].from", "is required");
    assert_problem(
        &problems,
        "tasks.a.copyAssets[4]",
        "must be an object `{ from, to? }`",
    );
    assert_problem(&problems, "tasks.a.copyAssets[5].from", "must not be empty");
    assert_problem(&problems, "tasks.a.copyAssets[6].mode", "unknown key");
    assert_problem(
        &problems,
        "tasks.a.copyAssets[7].to",
        "is required when `from`",
    );
    assert_eq!(problems.len(), 8, "{problems:#?}");

    let problems =
        invalid("export default { projectName: 'x', tasks: { a: { copyAssets: 'x' } } };");
    assert_problem(&problems, "tasks.a.copyAssets", "must be an array");
}

/// Regression: with an invalid entry before it, `{ from: 'nope' }` at [2] was numbered [1] by
/// the bundler, which saw only the valid entries.
#[test]
fn copy_assets_keep_the_index_the_user_wrote() {
    let config = invalid_partial(
        "export default { projectName: 'x', tasks: { a: { copyAssets: [
           { from: '../x' }, { from: 'migrations', to: 'm' }, { from: 'nope' },
         ] } } };",
    );
    let indexes: Vec<_> = config.tasks["a"]
        .copy_assets
        .iter()
        .map(|a| (a.from.as_str(), a.index))
        .collect();
    assert_eq!(indexes, [("migrations", 1), ("nope", 2)]);
}

/// Regression: two assets with the same `to` were merged into one directory of the bundle.
#[test]
fn copy_assets_may_not_share_or_nest_their_to() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: { a: { copyAssets: [
           { from: 'migrations', to: 'm' },
           { from: 'data', to: './m/' },
           { from: 'seeds', to: 'm/seeds' },
           { from: 'static', to: '.' },
           { from: 'more', to: '' },
           { from: 'conf/m' },
           { from: 'docs', to: 'mx' },
           { from: 'root-ok', to: 'r' },
         ] } } };",
    );
    assert_problem(
        &problems,
        "tasks.a.copyAssets[1].to",
        "`./m/` is the same place as `m`, the `to` of `copyAssets[0]`",
    );
    assert_problem(
        &problems,
        "tasks.a.copyAssets[2].to",
        "`m/seeds` is inside `m`",
    );
    // `to: ''` is refused as empty before it can be compared.
    assert_problem(&problems, "tasks.a.copyAssets[4].to", "must not be empty");
    assert_problem(
        &problems,
        "tasks.a.copyAssets[5].to",
        "`m` (the default: the name of `from`) is the same place as `m`",
    );
    // The bundle root holds the task's own files: assets below it are fine; `mx` is not in `m`.
    assert_eq!(problems.len(), 4, "{problems:#?}");

    let problems = invalid(
        "export default { projectName: 'x', tasks: { a: { copyAssets: [
           { from: 'a', to: '.' }, { from: 'b', to: './' },
         ] } } };",
    );
    assert_problem(
        &problems,
        "tasks.a.copyAssets[1].to",
        "the same place as `.`, the `to` of `copyAssets[0]`",
    );
}

/// PRODUCT.md §3's own example declares a required arg ("for manual runs") on a task that also
/// runs on deploy: that loads; `required` binds manual runs, and deployment runs get the
/// defaults (regression: they used to get no args at all).
#[test]
fn required_args_bind_manual_runs_and_defaults_reach_deployment_runs() {
    loads(
        "export default { projectName: 'x', tasks: {
           'run-migrations': { runOn: ['deploy', 'update'], args: { TARGET: { description: 'where', required: true } } },
         } };",
    );
    let config = loads(
        "export default { projectName: 'x', tasks: {
           once: { runOn: ['deploy'], args: { target: { default: 'eu' }, mode: { default: 3 }, note: {} } },
         } };",
    );
    let args = config.tasks["once"].deploy_args();
    assert_eq!(
        args.into_iter().collect::<Vec<_>>(),
        [
            ("mode".to_string(), "3".to_string()),
            ("target".to_string(), "eu".to_string())
        ]
    );
}

#[test]
fn scalar_task_settings_have_types() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: { a: {
           description: 5,
           dependsOn: ['a', ''],
           permission: 'admin',
           command: '  ',
           config: ['not', 'an', 'object'],
           confirm: false,
           memorySize: 64,
         } } };",
    );
    assert_problem(&problems, "tasks.a.description", "must be a string, got 5");
    assert_problem(&problems, "tasks.a.dependsOn[0]", "cannot depend on itself");
    assert_problem(&problems, "tasks.a.dependsOn[1]", "must not be empty");
    assert_problem(
        &problems,
        "tasks.a.permission",
        "must be `guest`, `developer` or `maintainer`, got \"admin\"",
    );
    assert_problem(&problems, "tasks.a.command", "must not be empty");
    assert_problem(
        &problems,
        "tasks.a.config",
        "must be an object (handed to the task as `ctx.config`), got an array",
    );
    assert_problem(&problems, "tasks.a.confirm", "got false");
    assert_problem(&problems, "tasks.a.memorySize", "from 128 to 10240, got 64");
    assert_eq!(problems.len(), 8, "{problems:#?}");
}

#[test]
fn functions_where_data_is_expected_are_reported_not_dropped() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: { a: {
           command: () => 'echo hi',
           config: { callback: () => 1 },
         } } };",
    );
    assert_problem(&problems, "tasks.a.command", "got a function");
    assert_problem(&problems, "tasks.a.config.callback", "must be plain JSON");
}

#[test]
fn task_env_names_and_values_are_checked() {
    let problems = invalid(
        "export default {
           projectName: 'x',
           secrets: { databaseUrl: { value: 'postgres://' } },
           tasks: { a: { env: {
             '1BAD': 'x', 'WITH-DASH': 'x', LUMO_TASK: 'x', NESTED: { a: 1 }, DATABASE_URL: 'y', OK: 'fine',
           } } },
         };",
    );
    assert_problem(&problems, "tasks.a.env.1BAD", "invalid variable name");
    assert_problem(&problems, "tasks.a.env.WITH-DASH", "invalid variable name");
    assert_problem(&problems, "tasks.a.env.LUMO_TASK", "reserved");
    assert_problem(&problems, "tasks.a.env.NESTED", "got an object");
    assert_problem(
        &problems,
        "tasks.a.env.DATABASE_URL",
        "clashes with the secret `databaseUrl`",
    );
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn args_are_checked() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: { a: { args: {
           TARGET: { required: true, default: 'prod' },
           'bad-name': {},
           LIMIT: { requird: true, default: [1] },
           FLAG: 'yes',
         } } } };",
    );
    assert_problem(
        &problems,
        "tasks.a.args.TARGET",
        "is `required` and also has a `default` (\"prod\")",
    );
    assert_problem(&problems, "tasks.a.args.bad-name", "invalid argument name");
    assert_problem(
        &problems,
        "tasks.a.args.LIMIT.requird",
        "did you mean `required`?",
    );
    assert_problem(
        &problems,
        "tasks.a.args.LIMIT.default",
        "must be a string, number or boolean",
    );
    assert_problem(&problems, "tasks.a.args.FLAG", "must be an object");
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn aws_settings_are_checked() {
    let config = loads(
        "export default { projectName: 'x', provider: 'aws', aws: {
           bucket: 'my-bucket', table: 'lumo_audit', roleArn: 'arn:aws:iam::123456789012:role/lumo',
           architecture: 'x86_64', memorySize: 1024, runner: 'target/lambda/bootstrap',
         } };",
    );
    assert_eq!(config.aws.bucket.as_deref(), Some("my-bucket"));
    assert_eq!(config.aws.architecture, Some(Architecture::X86_64));
    assert_eq!(config.aws.memory_size, Some(1024));
    assert_eq!(
        config.aws.runner.as_deref(),
        Some(Path::new("target/lambda/bootstrap"))
    );

    let problems = invalid(
        "export default { projectName: 'x', aws: {
           bucket: 'My_Bucket', table: 't', roleArn: 'role/lumo', architecture: 'x86-64',
           memorySize: 20000, runner: '', regoin: 'x',
         } };",
    );
    assert_problem(&problems, "aws.bucket", "S3 bucket name");
    assert_problem(&problems, "aws.table", "DynamoDB table name");
    assert_problem(&problems, "aws.roleArn", "IAM role ARN");
    assert_problem(&problems, "aws.architecture", "did you mean `x86_64`?");
    assert_problem(&problems, "aws.memorySize", "from 128 to 10240, got 20000");
    assert_problem(&problems, "aws.runner", "must not be empty");
    assert_problem(&problems, "aws.regoin", "unknown key");
    assert_eq!(problems.len(), 7, "{problems:#?}");
}

/// The `aws` provider needs a bucket and a table: the config loads without them (a Lumo
/// Framework config says `provider: 'aws'` for its own reasons, PRODUCT.md §3), and whatever
/// opens the backend gets one config error naming both keys (regression: found only deep in
/// the backend, after bundling).
#[test]
fn the_aws_provider_requires_a_bucket_and_a_table() {
    let missing = |config: &ProjectConfig| match config.backend_ready() {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected missing keys, got {other:?}"),
    };
    let config = loads(
        "export default { projectName: 'x', provider: 'aws', aws: { roleArn: 'arn:aws:iam::1:role/r' } };",
    );
    let problems = missing(&config);
    assert_problem(&problems, "aws.bucket", "is required with provider `aws`");
    assert_problem(&problems, "aws.bucket", "`BucketName` output");
    assert_problem(&problems, "aws.table", "`TableName` output");
    assert_eq!(problems.len(), 2, "{problems:#?}");

    // Through `--provider aws`, on a config without any `aws` section.
    let dir = project(&[(
        CONFIG_FILE_NAME,
        "export default { projectName: 'x', provider: 'local' };",
    )]);
    let config = load_with_provider(&config_path(&dir), Some(Provider::Aws)).expect("loads");
    let problems = missing(&config);
    assert_problem(&problems, "aws.bucket", "is required with `--provider aws`");
    assert_eq!(problems.len(), 2, "{problems:#?}");

    // An invalid value is reported once, as invalid, at load; `local` needs neither.
    let problems = invalid(
        "export default { projectName: 'x', provider: 'aws', aws: { bucket: 'B', table: 'ok-table' } };",
    );
    assert_problem(&problems, "aws.bucket", "S3 bucket name");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let config = loads(
        "export default { projectName: 'x', provider: 'aws', aws: { bucket: 'ok-bucket', table: 'ok-table' } };",
    );
    assert!(config.backend_ready().is_ok());
    assert!(
        loads("export default { projectName: 'x', provider: 'local' };")
            .backend_ready()
            .is_ok()
    );
}

#[test]
fn secrets_are_checked() {
    let problems = invalid(
        "export default { projectName: 'x', secrets: {
           number: { value: 5 },
           noValue: { description: 'd' },
           shorthand: 'value',
           typo: { value: 'v', descripton: 'd' },
           '1password': { value: 'v' },
           '--': { value: 'v' },
           lumoToken: { value: 'v' },
           apiKey: { value: 'a' },
           API_KEY: { value: 'b' },
         } };",
    );
    assert_problem(
        &problems,
        "secrets.number.value",
        "must be a string or a function returning one, got a number",
    );
    assert_problem(&problems, "secrets.noValue.value", "is required");
    assert_problem(
        &problems,
        "secrets.shorthand",
        "must be an object `{ value, description? }`",
    );
    assert_problem(
        &problems,
        "secrets.typo.descripton",
        "did you mean `description`?",
    );
    assert_problem(
        &problems,
        "secrets.1password",
        "`1PASSWORD`, which is not a variable",
    );
    assert_problem(&problems, "secrets.--", "an empty name");
    assert_problem(&problems, "secrets.lumoToken", "`LUMO_TOKEN`");
    assert_problem(&problems, "secrets.API_KEY", "like the secret `apiKey`");
    assert_eq!(problems.len(), 8, "{problems:#?}");
}

/// Regression (issue 9): the Lumo Framework's own full example, with `api-key` and
/// `db-password`, was refused with "invalid secret name".
#[test]
fn any_secret_name_the_lumo_framework_accepts_works_as_its_upper_snake_variable() {
    let config = loads(
        "export default { projectName: 'x', secrets: {
           'api-key': { value: 'a' },
           'db-password': { value: 'b' },
           databaseUrl: { value: 'c' },
           'smtp.user': { value: 'd' },
         } };",
    );
    let vars: Vec<_> = config.secrets.keys().map(|n| secret_env_var(n)).collect();
    assert_eq!(
        vars,
        ["API_KEY", "DB_PASSWORD", "DATABASE_URL", "SMTP_USER"]
    );

    // Two names with one variable: an error naming both, whichever way they are spelt.
    let problems = invalid(
        "export default { projectName: 'x', secrets: {
           'db-password': { value: 'a' },
           dbPassword: { value: 'b' },
           db_password: { value: 'c' },
         } };",
    );
    assert_problem(
        &problems,
        "secrets.dbPassword",
        "is passed as `DB_PASSWORD`, like the secret `db-password`",
    );
    assert_problem(
        &problems,
        "secrets.db_password",
        "is passed as `DB_PASSWORD`, like the secret `db-password`",
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

/// A Lumo Framework config for another provider (`cloudflare`) loads, and opening a backend
/// says how to run it here, as for `aws` without its bucket (issue 9).
#[test]
fn another_lumo_provider_loads_and_the_backend_asks_for_provider_local() {
    let source = "export default { projectName: 'x', provider: 'cloudflare' };";
    let config = loads(source);
    let Err(ConfigError::Invalid { problems, .. }) = config.backend_ready() else {
        panic!("expected a backend problem");
    };
    assert_problem(
        &problems,
        "provider",
        "`cloudflare` is not a provider lumo deploys to",
    );
    assert_problem(&problems, "provider", "`--provider local`");
    let dir = project(&[(CONFIG_FILE_NAME, source)]);
    let local = load_with_provider(&config_path(&dir), Some(Provider::Local)).expect("loads");
    assert!(local.backend_ready().is_ok());
    // Not a string is still a load error.
    let problems = invalid("export default { projectName: 'x', provider: 5 };");
    assert_problem(&problems, "provider", "must be");
}

#[test]
fn access_lists_actors_per_environment_and_role() {
    let config = loads(
        "export default { projectName: 'x', access: {
           prod: { maintainer: ['ana'], developer: ['bo', 'cy'] },
         } };",
    );
    assert_eq!(
        config.access["prod"].roles[&Permission::Maintainer],
        ["ana"]
    );
    assert_eq!(
        config.access["prod"].roles[&Permission::Developer],
        ["bo", "cy"]
    );
    assert_eq!(config.access["prod"].deploy, None);
    assert_eq!(config.access["prod"].confirm, ConfirmRule::Yes);

    let problems = invalid(
        "export default { projectName: 'x', access: {
           prod: { maintainers: ['ana'], guest: 'bo', developer: [''] },
           dev: ['ana'],
         } };",
    );
    assert_problem(
        &problems,
        "access.prod.maintainers",
        "did you mean `maintainer`?",
    );
    assert_problem(
        &problems,
        "access.prod.guest",
        "must be an array of strings",
    );
    assert_problem(&problems, "access.prod.developer[0]", "must not be empty");
    assert_problem(&problems, "access.dev", "must be an object");
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn an_environment_says_which_role_deploys_and_how_to_confirm() {
    let config = loads(
        "export default { projectName: 'x', access: {
           prod: { maintainer: ['ana'], deploy: 'maintainer', confirm: 'name', exec: 'developer' },
           qa: { confirm: 'yes' },
         } };",
    );
    assert_eq!(config.access["prod"].deploy, Some(Permission::Maintainer));
    assert_eq!(config.access["prod"].exec, Some(Permission::Developer));
    assert_eq!(config.access["qa"].exec, None);
    assert_eq!(config.access["prod"].confirm, ConfirmRule::Name);
    assert!(config.access["qa"].roles.is_empty());

    let problems = invalid(
        "export default { projectName: 'x', access: {
           prod: { deploy: 'admin', confirm: 'nme', exec: 'root' },
           dev: { confirm: true, deploys: 'guest' },
         } };",
    );
    assert_problem(
        &problems,
        "access.prod.deploy",
        "must be `guest`, `developer` or `maintainer`, got \"admin\"",
    );
    assert_problem(
        &problems,
        "access.prod.confirm",
        "must be `yes` or `name`, got \"nme\"; did you mean `name`?",
    );
    assert_problem(&problems, "access.dev.confirm", "got true");
    assert_problem(&problems, "access.dev.deploys", "did you mean `deploy`?");
    assert_problem(
        &problems,
        "access.prod.exec",
        "must be `guest`, `developer` or `maintainer`, got \"root\"",
    );
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn top_level_types_are_checked() {
    let problems = invalid(
        "export default { projectName: 'x', region: 5, environments: 'dev', tasks: [], secrets: 1, aws: 'x', access: null };",
    );
    assert_problem(&problems, "region", "got 5");
    assert_problem(
        &problems,
        "environments",
        "must be an array of environment names",
    );
    assert_problem(
        &problems,
        "tasks",
        "must be an object of tasks by name, got an empty array",
    );
    assert_problem(&problems, "secrets", "got a number");
    assert_problem(&problems, "aws", "got \"x\"");
    assert_problem(&problems, "access", "got null");
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn secret_env_var_names_are_upper_snake_case() {
    assert_eq!(secret_env_var("databaseUrl"), "DATABASE_URL");
    assert_eq!(secret_env_var("DATABASE_URL"), "DATABASE_URL");
    assert_eq!(secret_env_var("apiURL"), "API_URL");
    assert_eq!(secret_env_var("apiURLValue"), "API_URL_VALUE");
    assert_eq!(secret_env_var("key2Fa"), "KEY2_FA");
}

/// Regression (adversarial run, issue 10): a config that allocates many small objects until
/// the engine's memory limit said "uncaught exception: null".
#[test]
fn a_config_that_runs_out_of_memory_says_so() {
    for source in [
        "const a = []; for (;;) a.push({ n: a.length }); export default {};",
        "const a = []; for (;;) a.push('x'.repeat(1 << 20) + a.length); export default {};",
        "const a = []; for (;;) a.push(new Array(1000).fill(1)); export default {};",
    ] {
        let dir = project(&[(CONFIG_FILE_NAME, source)]);
        // A generous time limit: on a loaded machine filling 256 MiB can take seconds.
        let error = load_within(&config_path(&dir), None, Duration::from_secs(120))
            .expect_err("cannot load");
        match error {
            ConfigError::Evaluate { message, .. } => assert_eq!(
                message, "the config ran out of memory (the 256 MiB limit)",
                "for {source}"
            ),
            other => panic!("expected an evaluation error, got {other:?}"),
        }
    }
}

/// Regression (issue 10 defect 5): many small objects fill the heap slowly once the collector
/// runs on almost every allocation, so a debug build or a slow machine reaches the real 5 s
/// deadline before the memory limit; the verdict must still be memory, not a loop.
#[test]
fn a_config_filling_memory_says_so_even_when_the_deadline_comes_first() {
    let source = "const a = []; for (;;) a.push({ n: a.length }); export default {};";
    let dir = project(&[(CONFIG_FILE_NAME, source)]);
    match load(&config_path(&dir)).expect_err("cannot load") {
        ConfigError::Evaluate { message, .. } => {
            assert_eq!(message, "the config ran out of memory (the 256 MiB limit)");
        }
        other => panic!("expected an evaluation error, got {other:?}"),
    }
}

/// Regression (adversarial run, issue 10): a secret given in the wrong shape
/// (`secrets: { dbUrl: process.env.DSN }`) was quoted in the error, password and all.
#[test]
fn a_misplaced_secret_value_is_never_quoted() {
    let problems = invalid(
        "export default { projectName: 'x', secrets: {
           dbUrl: 'postgres://app:hunter2@db/app',
           pin: { value: 424242, description: 987654 },
           list: ['postgres://app:hunter3@db'],
         } };",
    );
    assert_problem(&problems, "secrets.dbUrl", "got a string");
    assert_problem(&problems, "secrets.pin.value", "got a number");
    assert_problem(&problems, "secrets.pin.description", "got a number");
    assert_problem(&problems, "secrets.list", "got an array");
    let shown = format!("{problems:?}");
    for secret in ["hunter2", "424242", "987654", "hunter3"] {
        assert!(!shown.contains(secret), "{secret} shown in {shown}");
    }
    let problems =
        invalid("export default { projectName: 'x', secrets: 'postgres://a:hunter4@db' };");
    assert_problem(&problems, "secrets", "got a string");
    assert!(!format!("{problems:?}").contains("hunter4"));
}

/// Regression (adversarial run, issue 10): a secret over 128 KiB passed validation, then every
/// task failed with "Argument list too long" after the lock was taken.
#[test]
fn a_secret_too_large_for_the_environment_is_refused_at_load() {
    let problems = invalid(
        "export default { projectName: 'x', secrets: {
           big: { value: 'x'.repeat(200 * 1024) },
           fine: { value: () => 'y'.repeat(100 * 1024) },
         } };",
    );
    assert_problem(&problems, "secrets.big.value", "at most 128 KiB");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problems = invalid(
        "export default { projectName: 'x', secrets: Object.fromEntries(
           Array.from({ length: 12 }, (_, i) => [`s${i}`, { value: 'z'.repeat(100 * 1024) }])) };",
    );
    assert_problem(&problems, "secrets", "at most 1024 KiB together");
    assert!(!format!("{problems:?}").contains("zzzz"));
}

/// As in the Lumo Framework, a config without `environment` means `dev` — unless it lists its
/// environments and `dev` is not one of them (then `--env` has to say which).
#[test]
fn a_config_without_environment_defaults_to_dev_as_in_lumo() {
    let config = loads("export default { projectName: 'x' };");
    assert_eq!(config.environment.as_deref(), Some("dev"));
    let config = loads("export default { projectName: 'x', environments: ['dev', 'prod'] };");
    assert_eq!(config.environment.as_deref(), Some("dev"));
    let config = loads("export default { projectName: 'x', environments: ['staging', 'prod'] };");
    assert_eq!(config.environment, None);
    let config = loads("export default { projectName: 'x', environment: 'prod' };");
    assert_eq!(config.environment.as_deref(), Some("prod"));
}

#[test]
fn typed_args_load_with_their_type_choices_and_a_fitting_default() {
    let config = loads(
        "export default { projectName: 'x', environments: ['dev', 'staging', 'prod'], tasks: {
           copy: { runOn: [], args: {
             source: { type: 'environment', required: true },
             mode: { choices: ['soft', 'hard'], default: 'soft' },
             batch: { type: 'number', choices: [100, 1000], default: 100 },
             dryRun: { type: 'boolean', default: true },
             from: { type: 'environment', choices: ['staging', 'prod'], default: 'prod' },
             note: {},
           } },
         } };",
    );
    let args = &config.tasks["copy"].args;
    assert_eq!(args["source"].kind, ArgType::Environment);
    assert!(args["source"].required);
    assert_eq!(args["mode"].kind, ArgType::String);
    assert_eq!(
        args["mode"].choices.as_deref(),
        Some(&["soft".to_string(), "hard".into()][..])
    );
    assert_eq!(args["batch"].kind, ArgType::Number);
    assert_eq!(
        args["batch"].choices.as_deref(),
        Some(&["100".to_string(), "1000".into()][..])
    );
    assert_eq!(args["dryRun"].default.as_deref(), Some("true"));
    assert_eq!(args["from"].default.as_deref(), Some("prod"));
    assert_eq!(args["note"], ArgDef::default());
}

#[test]
fn an_args_default_is_checked_against_its_type_and_choices_at_load() {
    let problems = invalid(
        "export default { projectName: 'x', environments: ['dev', 'prod'], tasks: { t: { args: {
           mode: { choices: ['soft', 'hard'], default: 'banana' },
           count: { type: 'number', default: 'many' },
           dry: { type: 'boolean', default: 'yes' },
           source: { type: 'environment', default: 'staging' },
           kind: { type: 'text' },
         } } } };",
    );
    assert_eq!(
        problem_at(&problems, "tasks.t.args.mode.default"),
        "must be one of the argument's `choices` (`soft`, `hard`), got \"banana\""
    );
    assert_eq!(
        problem_at(&problems, "tasks.t.args.count.default"),
        "must be a number (like `3`, `-1` or `2.5`) as the argument's `type` is 'number', \
         got \"many\""
    );
    assert_problem(
        &problems,
        "tasks.t.args.dry.default",
        "must be `true` or `false`",
    );
    assert_eq!(
        problem_at(&problems, "tasks.t.args.source.default"),
        "must be one of the project's environments (`dev`, `prod`) as the argument's `type` \
         is 'environment', got \"staging\""
    );
    assert_problem(
        &problems,
        "tasks.t.args.kind.type",
        "must be `string`, `number`, `boolean` or `environment`, got \"text\"",
    );
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn an_environment_arg_without_declared_environments_takes_any_valid_name() {
    let config = loads(
        "export default { projectName: 'x', tasks: { t: { args: {
           source: { type: 'environment', default: 'staging' } } } } };",
    );
    assert_eq!(
        config.tasks["t"].args["source"].default.as_deref(),
        Some("staging")
    );
    let problems = invalid(
        "export default { projectName: 'x', tasks: { t: { args: {
           source: { type: 'environment', default: 'Staging DB' } } } } };",
    );
    assert_problem(
        &problems,
        "tasks.t.args.source.default",
        "must be an environment name",
    );
}

#[test]
fn args_choices_are_a_non_empty_list_of_distinct_values_of_the_type() {
    let problems = invalid(
        "export default { projectName: 'x', environments: ['dev', 'prod'], tasks: { t: { args: {
           none: { choices: [] },
           notList: { choices: 'soft' },
           twice: { choices: ['a', 'a'] },
           blank: { choices: ['a', ''] },
           numbers: { type: 'number', choices: [1, 'two'] },
           envs: { type: 'environment', choices: ['dev', 'qa'] },
         } } } };",
    );
    assert_problem(&problems, "tasks.t.args.none.choices", "a non-empty array");
    assert_problem(&problems, "tasks.t.args.notList.choices", "got \"soft\"");
    assert_problem(&problems, "tasks.t.args.twice.choices[1]", "listed twice");
    assert_problem(&problems, "tasks.t.args.blank.choices[1]", "non-empty");
    assert_problem(
        &problems,
        "tasks.t.args.numbers.choices[1]",
        "must be a number",
    );
    assert_problem(
        &problems,
        "tasks.t.args.envs.choices[1]",
        "one of the project's environments (`dev`, `prod`)",
    );
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

/// `--arg` names are matched without regard to case, so two names a run cannot tell apart are
/// refused where they are declared.
#[test]
fn args_that_differ_only_in_case_are_refused() {
    let problems = invalid(
        "export default { projectName: 'x', tasks: { t: { args: {
           target: {}, TARGET: {}, dryRun: {}, dry_run: {} } } } };",
    );
    assert_problem(
        &problems,
        "tasks.t.args.TARGET",
        "is the same argument as `target`",
    );
    assert_problem(&problems, "tasks.t.args.dry_run", "`LUMO_ARG_DRY_RUN`");
    assert_eq!(problems.len(), 2, "{problems:#?}");
}
