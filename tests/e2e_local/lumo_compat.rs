//! Lumo Framework compatibility: its configs (ESM and CommonJS) load and deploy locally.

use serde_json::json;

use crate::support::local::RECORDER;
use crate::support::{self, RunStatus, TaskContext, TaskList, TestProject};

#[test]
fn a_lumo_framework_config_loads_and_deploys_locally() {
    let mut p = TestProject::new();
    p.set_env("DATABASE_URL", "postgres://app:pw-7781@db/app");
    p.config(
        r#"import { defineConfig, env } from '@lumo-framework/core';

export default defineConfig({
  projectName: 'lumo-app',
  provider: 'aws',
  region: env('AWS_REGION', 'eu-west-2'),
  networking: { natGateway: 'managed', vpc: { cidr: '10.0.0.0/16' } },
  routes: { 'GET /users': { handler: 'users' }, 'POST /users': { handler: 'users' } },
  domainName: 'api.example.com',
  events: { 'user.created': ['send-welcome-email'] },
  secrets: {
    databaseUrl: { value: () => process.env.DATABASE_URL, description: 'Postgres connection string' },
  },
  tasks: {
    'run-migrations': {
      timeout: 120,
      runOn: ['deploy', 'update'],
      copyAssets: [{ from: 'migrations', to: 'migrations' }],
    },
    'warm-cache': { timeout: 30, runOn: ['change'] },
  },
});
"#,
    )
    .write("migrations/0001_init.sql", "create table users (id int);")
    .task("run-migrations", r#"ls migrations > "@OUT@/migrations.txt"; echo "db=$DATABASE_URL""#)
    .task("warm-cache", RECORDER);

    let verbose = p
        .lumo(&[
            "deploy",
            "--env",
            "dev",
            "--provider",
            "local",
            "--verbose",
            "--deploy-version",
            "v1",
        ])
        .code(0)
        .clone();
    for key in ["routes", "networking", "domainName", "events"] {
        assert!(
            verbose
                .stderr
                .lines()
                .any(|l| l.contains("note:") && l.contains(&format!("`{key}`"))),
            "--verbose notes the ignored key `{key}`:\n{}",
            verbose.stderr
        );
    }
    verbose.stderr_has(&["db=***"]);
    assert_eq!(p.read_out("migrations.txt").trim(), "0001_init.sql");
    assert_eq!(p.out_lines("warm-cache.log"), ["deploy"]);

    let quiet = p
        .lumo(&["deploy", "--env", "dev", "--provider", "local", "--json"])
        .code(0)
        .clone();
    assert!(
        !quiet.stderr.contains("note:"),
        "notes only with --verbose:\n{}",
        quiet.stderr
    );
    let report: support::DeployReport = quiet.json();
    assert_eq!(report.provider, "local");
    assert_eq!(report.project, "lumo-app");
    assert_eq!(report.task("run-migrations").status, RunStatus::Succeeded);
    let tasks: TaskList = p
        .lumo(&["tasks", "--json", "--provider", "local"])
        .code(0)
        .json();
    assert_eq!(tasks.tasks[0].timeout, 120);
}

#[test]
fn a_commonjs_config_deploys() {
    let p = TestProject::new();
    p.config(
        r#"const { defineConfig } = require('@lumo-framework/core');
const shared = require('./lumo.shared.js');

module.exports = defineConfig({
  projectName: 'cjs-app',
  tasks: { hello: { timeout: shared.timeout, config: { greeting: shared.greeting } } },
});
"#,
    )
    .write(
        "lumo.shared.js",
        "module.exports = { timeout: 42, greeting: 'hi' };\n",
    )
    .task("hello", r#"cat > "@OUT@/ctx.json""#);
    let report = p.deploy(&[], 0);
    assert_eq!(report.project, "cjs-app");
    let ctx: TaskContext = serde_json::from_str(&p.read_out("ctx.json")).unwrap();
    assert_eq!(ctx.config, json!({ "greeting": "hi" }));
    let tasks: TaskList = p.lumo(&["tasks", "--json"]).code(0).json();
    assert_eq!(tasks.tasks[0].timeout, 42);
}
