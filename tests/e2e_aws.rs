//! End-to-end tests of the `lumo` binary on the `aws` provider, against the emulators on
//! 127.0.0.1: moto for S3, DynamoDB and the Lambda control plane, and the harness's router
//! executing the real `lumo-runner` for every Invoke (`tests/emulators/`). The spine's scenarios
//! again — same config, same CLI, same records, same exit codes — plus what only AWS has: no
//! re-upload when nothing changed, a tampered bundle refused by the runner, large output kept
//! out of DynamoDB items.
//!
//! Without the emulator venv every test here says SKIPPED and passes; with `CI=true` a
//! missing emulator fails them (see `lumo_testkit::emulators`).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::RwLock;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use support::aws::{block_on, s3};
use support::{DeploymentStatus, RunStatus, TaskContext, TestProject, Trigger};

/// The router's counters are global: the test that counts requests runs alone (write), every
/// other test shares (read). So is `Emulators::reset_lambda`, which kills every function's
/// instances, busy ones too: a test that needs it must hold the write lock.
static COUNTING: RwLock<()> = RwLock::new(());

const OBSERVER: &str = r#"
cat > "@OUT@/$LUMO_TRIGGER.stdin.json"
echo "observed $LUMO_TRIGGER in $LUMO_ENVIRONMENT"
"#;

fn context(p: &TestProject, trigger: &str) -> TaskContext {
    serde_json::from_str(&p.read_out(&format!("{trigger}.stdin.json"))).unwrap()
}

#[test]
fn first_deploy_then_update_as_seen_by_the_task_and_the_records() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ observe: { copyAssets: [{ from: 'migrations' }], config: { db: 'app' } } }")
        .write("migrations/0001.sql", "select 1;")
        .task(
            "observe",
            &format!("{OBSERVER}\nls migrations > \"@OUT@/files\""),
        );

    let first = a.p.deploy(&["--deploy-version", "v1"], 0);
    assert!(first.is_first_deploy);
    assert_eq!(first.provider, "aws");
    assert_eq!(first.status, Some(DeploymentStatus::Succeeded));
    let ctx = context(&a.p, "deploy");
    assert!(ctx.deployment.is_first_deploy);
    assert_eq!(ctx.deployment.previous_version, None);
    assert_eq!(ctx.deployment.version, "v1");
    assert_eq!(ctx.trigger, Trigger::Deploy);
    assert_eq!(ctx.config, json!({ "db": "app" }));
    assert_eq!(
        a.p.read_out("files").trim(),
        "0001.sql",
        "copyAssets reached the runner"
    );

    let second = a.p.deploy(&["--deploy-version", "v2"], 0);
    assert!(!second.is_first_deploy);
    assert_eq!(second.previous_version.as_deref(), Some("v1"));
    let ctx = context(&a.p, "update");
    assert!(!ctx.deployment.is_first_deploy);
    assert_eq!(ctx.deployment.previous_version.as_deref(), Some("v1"));
    assert_eq!(ctx.deployment.version, "v2");

    // History, status and logs come back from DynamoDB and S3.
    let runs = a.p.history();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].id, ctx.run_id, "runId is the recorded run id");
    assert!(
        runs.iter()
            .all(|r| r.status == RunStatus::Succeeded && r.actor == support::ACTOR)
    );
    let status = a.p.status();
    assert_eq!(status.provider, "aws");
    assert_eq!(status.state.version.as_deref(), Some("v2"));
    assert_eq!(status.state.previous_version.as_deref(), Some("v1"));
    let logs = a.p.logs(&runs[1].id);
    assert!(logs.complete, "the full log is in S3");
    assert!(logs.output.unwrap().contains("observed update in dev"));
    assert!(
        runs[1]
            .log_ref
            .as_deref()
            .unwrap()
            .starts_with(&format!("s3://{}/{}/logs/", a.bucket, a.name))
    );
}

#[test]
fn run_on_each_value_and_manual_runs_with_args() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    let record = r#"echo "$LUMO_TRIGGER" >> "@OUT@/$LUMO_TASK.log""#;
    a.config(
        "{ first: { runOn: ['deploy'] }, later: { runOn: ['update'] }, both: {},
           changed: { runOn: ['change'], copyAssets: [{ from: 'data.txt' }] },
           manual: { runOn: [], args: { target: { required: true }, mode: { default: 'soft' } } } }",
    )
    .write("data.txt", "one")
    .task("first", record)
    .task("later", record)
    .task("both", record)
    .task("changed", record)
    .task(
        "manual",
        r#"echo "$LUMO_ARG_TARGET/$LUMO_ARG_MODE" > "@OUT@/manual"
printf '{"success":true,"message":"purged %s","data":{"target":"%s"}}' "$LUMO_ARG_TARGET" "$LUMO_ARG_TARGET" > "$LUMO_RESULT_FILE""#,
    );

    let first = a.p.deploy(&[], 0);
    assert_eq!(
        first.with_status(RunStatus::Succeeded),
        ["first", "both", "changed"]
    );
    let second = a.p.deploy(&[], 0);
    assert_eq!(
        second.with_status(RunStatus::Succeeded),
        ["later", "both"],
        "unchanged `change` task skipped"
    );
    a.p.write("data.txt", "two");
    let third = a.p.deploy(&[], 0);
    assert_eq!(
        third.with_status(RunStatus::Succeeded),
        ["later", "both", "changed"]
    );
    assert_eq!(a.p.out_lines("changed.log"), ["deploy", "update"]);
    assert!(!a.p.has_out("manual"));

    a.p.lumo(&["run", "manual", "--env", "dev"])
        .code(2)
        .stderr_has(&["`target`"]);
    let run: support::TaskRun =
        a.p.lumo(&[
            "run",
            "manual",
            "--env",
            "dev",
            "--arg",
            "target=sessions",
            "--json",
        ])
        .code(0)
        .json();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.trigger, Trigger::Manual);
    assert_eq!(run.data, Some(json!({ "target": "sessions" })));
    assert_eq!(a.p.read_out("manual").trim(), "sessions/soft");
}

#[test]
fn a_failure_stops_the_deploy_skips_the_rest_and_keeps_the_version() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ one: {}, two: {}, three: {} }")
        .task("one", "echo one ok")
        .task("two", "echo two breaks >&2; exit 7")
        .task("three", "echo three > \"@OUT@/three\"");
    a.p.deploy(&["--deploy-version", "v1"], 1);
    let history = a.p.history();
    let by_task = |t: &str| history.iter().find(|r| r.task == t).unwrap().clone();
    assert_eq!(by_task("one").status, RunStatus::Succeeded);
    assert_eq!(by_task("two").status, RunStatus::Failed);
    assert_eq!(by_task("two").exit_code, Some(7));
    assert!(by_task("two").message.unwrap().contains("two breaks"));
    assert_eq!(by_task("three").status, RunStatus::Skipped);
    assert!(!a.p.has_out("three"));
    let status = a.p.status();
    assert_eq!(
        status.state.version, None,
        "a failed first deploy leaves the environment undeployed"
    );
    assert_eq!(
        status.last_deployment.unwrap().status,
        DeploymentStatus::Failed
    );

    a.p.task("two", "echo fixed");
    let next = a.p.deploy(&["--deploy-version", "v2"], 0);
    assert!(next.is_first_deploy, "still the first successful deploy");
    assert_eq!(a.p.status().state.version.as_deref(), Some("v2"));
}

#[test]
fn a_timeout_is_recorded_timed_out_with_the_output_so_far() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ slow: { timeout: 1 } }")
        .task("slow", "echo before the timeout\nsleep 30\necho never");
    let report = a.p.deploy(&[], 1);
    assert_eq!(report.task("slow").status, RunStatus::TimedOut);
    let run = a.p.history().pop().unwrap();
    assert_eq!(run.status, RunStatus::TimedOut);
    assert!(
        run.duration_ms.unwrap() < 15_000,
        "stopped near its timeout, not the function's"
    );
    let logs = a.p.logs(&run.id);
    let output = logs.output.unwrap();
    assert!(
        output.contains("before the timeout") && !output.contains("never"),
        "{output}"
    );
}

#[test]
fn an_unchanged_redeploy_uploads_nothing_and_updates_no_function() {
    let _alone = COUNTING.write().unwrap();
    let a = aws_project!();
    // `change` tasks do not run again when nothing changed: no Invoke, so no log upload either.
    a.config(
        "{ a: { runOn: ['change'] }, b: { runOn: ['change'], copyAssets: [{ from: 'assets' }] } }",
    )
    .write("assets/one.txt", "1")
    .task("a", "echo a")
    .task("b", "echo b");
    a.p.deploy(&["--deploy-version", "v1"], 0);
    let before = a.emulators.counters();
    let again = a.p.deploy(&["--deploy-version", "v1"], 0);
    let after = a.emulators.counters();
    assert_eq!(again.with_status(RunStatus::Succeeded), Vec::<&str>::new());
    assert_eq!(
        after.s3_put_object - before.s3_put_object,
        0,
        "a bundle was uploaded again"
    );
    assert_eq!(
        after.lambda_update_function_code - before.lambda_update_function_code,
        0
    );
    assert_eq!(
        after.lambda_update_function_configuration - before.lambda_update_function_configuration,
        0
    );
    assert_eq!(
        after.lambda_create_function - before.lambda_create_function,
        0
    );

    // A changed asset is one upload, and still no function update.
    a.p.write("assets/one.txt", "2");
    a.p.deploy(&["--deploy-version", "v2"], 0);
    let changed = a.emulators.counters();
    let bundle_and_log = changed.s3_put_object - after.s3_put_object;
    assert_eq!(bundle_and_log, 2, "one bundle upload plus the run's log");
    assert_eq!(
        changed.lambda_update_function_code - after.lambda_update_function_code,
        0
    );

    // A new runner binary is one code update, once.
    let mut a = a;
    let runner = a.p.tmp().join("bootstrap");
    let mut bytes = std::fs::read(&a.emulators.runner_bin).unwrap();
    bytes.extend_from_slice(b"a different build");
    std::fs::write(&runner, bytes).unwrap();
    a.p.set_env("LUMO_RUNNER", &runner.to_string_lossy());
    a.p.deploy(&["--deploy-version", "v2"], 0);
    let updated = a.emulators.counters();
    assert_eq!(
        updated.lambda_update_function_code - changed.lambda_update_function_code,
        1
    );
    a.p.deploy(&["--deploy-version", "v2"], 0);
    assert_eq!(
        a.emulators.counters().lambda_update_function_code,
        updated.lambda_update_function_code
    );
}

/// Regression: a CreateFunction that went through but whose response was lost (so the SDK sent
/// it again) failed the deploy with `ResourceConflictException`. Now the deploy looks at the
/// function again, finds it as wanted, and goes on.
#[test]
fn a_runner_function_created_by_a_lost_request_is_taken_as_it_is() {
    let _alone = COUNTING.write().unwrap();
    let a = aws_project!();
    a.config("{ hello: {} }")
        .task("hello", "echo hello from the runner");
    let before = a.emulators.counters();
    a.emulators
        .lose_responses("POST", "/2015-03-31/functions", 1);
    let report = a.p.deploy(&["--deploy-version", "v1"], 0);
    assert_eq!(report.task("hello").status, RunStatus::Succeeded);
    let after = a.emulators.counters();
    assert_eq!(
        after.lambda_create_function - before.lambda_create_function,
        2,
        "the lost create and the SDK's retry of it"
    );
    assert_eq!(
        after.lambda_update_function_code - before.lambda_update_function_code,
        0,
        "the function created by the lost request already has this runner"
    );
    a.p.deploy(&["--deploy-version", "v2"], 0);
    assert_eq!(
        a.emulators.counters().lambda_create_function,
        after.lambda_create_function
    );
}

#[test]
fn a_tampered_bundle_is_refused_by_the_runner() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ job: { runOn: [] } }")
        .task("job", "echo ran > \"@OUT@/ran\"");
    a.p.deploy(&[], 0);
    let bundle = a.p.status().state.bundles["job"].clone();
    block_on(async {
        s3(&a.sdk().await)
            .put_object()
            .bucket(&a.bucket)
            .key(format!("{}/bundles/{bundle}.zip", a.name))
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"not the bundle that was deployed",
            ))
            .send()
            .await
            .unwrap();
    });
    // Nothing has invoked this project's function yet (`runOn: []`), so no instance holds a
    // cached copy: the runner must download, and check. (No `reset_lambda` here: it kills every
    // test's instances, busy ones included.)
    let run: support::TaskRun =
        a.p.lumo(&["run", "job", "--env", "dev", "--json"])
            .code(1)
            .json();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.message.as_deref().unwrap().contains("sha256"),
        "{:?}",
        run.message
    );
    assert!(!a.p.has_out("ran"), "the tampered bundle ran");
}

#[test]
fn five_megabytes_of_output_stay_out_of_the_dynamodb_item() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ loud: {} }").task(
        "loud",
        "head -c 5000000 /dev/zero | tr '\\0' 'x'\necho\necho the end",
    );
    a.p.deploy(&[], 0);
    let run = a.p.history().pop().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output_bytes, 5_000_000 + 1 + 8);
    assert!(run.output_tail.as_deref().unwrap().len() <= 4096);
    let logs = a.p.logs(&run.id);
    assert_eq!(
        logs.output.unwrap().len(),
        5_000_009,
        "the whole output is in S3"
    );

    let items = a.items();
    let item = items
        .iter()
        .find(|i| i.get("sk") == Some(&AttributeValue::S(format!("RUN#{}", run.id))))
        .expect("the run's item");
    let size: usize = item
        .iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len(),
                    _ => 16,
                }
        })
        .sum();
    assert!(size < 16 * 1024, "the run's item is {size} bytes");
}

#[test]
fn secrets_never_reach_s3_dynamodb_or_the_terminal() {
    let _shared = COUNTING.read().unwrap();
    let mut a = aws_project!();
    let secret = "sup3r-s3cret-value-4411";
    a.p.set_env("E2E_TOKEN", secret);
    a.config("{ leak: {} }").task(
        "leak",
        r#"echo "plain $TOKEN"
printf 'split %s' "$(echo "$TOKEN" | cut -c1-8)"; sleep 0.2; printf '%s\n' "$(echo "$TOKEN" | cut -c9-)"
printf '{"success":true,"message":"msg %s","data":{"token":"%s"}}' "$TOKEN" "$TOKEN" > "$LUMO_RESULT_FILE""#,
    );
    let out =
        a.p.lumo(&["deploy", "--env", "dev", "--json"])
            .code(0)
            .clone();
    let run = a.p.history().pop().unwrap();
    let logs = a.p.lumo(&["logs", &run.id]).code(0).clone();
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("logs", &logs.stdout),
    ] {
        assert!(!text.contains(secret), "the secret is in {what}:\n{text}");
    }
    assert!(out.stderr.contains("plain ***"), "{}", out.stderr);
    assert_eq!(run.message.as_deref(), Some("msg ***"));
    assert_eq!(run.data, Some(json!({ "token": "***" })));
    for (key, bytes) in a.objects() {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "the secret is in s3://{}/{key}",
            a.bucket
        );
    }
    let items = format!("{:?}", a.items());
    assert!(!items.contains(secret), "the secret is in a DynamoDB item");
    assert!(support::TestProject::files_containing(&a.p.lumo_dir(), secret).is_empty());
}

/// A run id may be shortened to a unique prefix on `aws` as on `local` (issue 11), in any case;
/// a prefix two runs share is an error listing both. It is looked up in the environments the
/// config names (here only the default, `dev`), or in `--env`, so a run of another one is found
/// by its whole id or with `--env`, and the error says so.
#[test]
fn logs_takes_a_unique_prefix_of_a_run_id() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ one: {}, two: {} }")
        .task("one", "echo from one")
        .task("two", "echo from two");
    a.p.deploy(&[], 0);
    let runs = a.p.history();
    let (one, two) = (&runs[0].id, &runs[1].id);
    let shared = one
        .chars()
        .zip(two.chars())
        .take_while(|(x, y)| x == y)
        .count();

    let unique = one[..shared + 1].to_ascii_lowercase();
    let by_prefix = a.p.lumo(&["logs", &unique]).code(0).clone();
    assert_eq!(by_prefix.stdout, "from one\n", "{}", by_prefix.show());
    let ambiguous = a.p.lumo(&["logs", &one[..shared]]).code(2).clone();
    ambiguous.stderr_has(&["ambiguous", one, two, "2 runs"]);
    assert!(ambiguous.stdout.is_empty());
    a.p.lumo(&["logs", "ZZZZ"])
        .code(2)
        .clone()
        .stderr_has(&["has an id starting with `ZZZZ`"]);

    a.p.lumo(&["deploy", "--env", "pr-7", "--only", "one"])
        .code(0);
    let history: support::History =
        a.p.lumo(&["history", "--env", "pr-7", "--json"])
            .code(0)
            .json();
    let elsewhere = &history.runs[0].id;
    let not_looked_in = a.p.lumo(&["logs", &elsewhere[..20]]).code(2).clone();
    not_looked_in.stderr_has(&[
        "has an id starting with",
        "environments the config names (`dev`)",
        "the whole id finds a run of any environment",
    ]);
    let whole = a.p.lumo(&["logs", elsewhere]).code(0).clone();
    assert_eq!(whole.stdout, "from one\n", "{}", whole.show());
    let with_env =
        a.p.lumo(&["logs", &elsewhere[..20], "--env", "pr-7"])
            .code(0)
            .clone();
    assert_eq!(with_env.stdout, "from one\n", "{}", with_env.show());
}

#[test]
fn a_missing_table_is_a_backend_error_with_a_hint() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.p.config(&format!(
        "export default {{ projectName: '{}', provider: 'aws', region: 'us-east-1',
           aws: {{ bucket: '{}', table: 'no-such-table', roleArn: '{}' }}, tasks: {{ t: {{}} }} }};",
        a.name, a.bucket, a.emulators.runner_role_arn
    ));
    a.p.task("t", "echo t");
    let out = a.p.lumo(&["deploy", "--env", "dev"]).code(4).clone();
    out.stderr_has(&["no-such-table", "infra/"]);
}

#[test]
fn the_aws_provider_needs_a_bucket_and_a_table() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.p.config(&format!(
        "export default {{ projectName: '{}', provider: 'aws', region: 'us-east-1' }};",
        a.name
    ));
    a.p.lumo(&["deploy", "--env", "dev"])
        .code(2)
        .stderr_has(&["`aws.bucket`", "`aws.table`"]);
}

#[test]
fn a_missing_runner_binary_says_how_to_build_it() {
    let _shared = COUNTING.read().unwrap();
    let mut a = aws_project!();
    a.p.set_env("LUMO_RUNNER", "/nonexistent/bootstrap");
    a.config("{ t: {} }").task("t", "echo t");
    a.p.lumo(&["deploy", "--env", "dev"])
        .code(4)
        .stderr_has(&["cargo lambda build --release -p lumo-runner"]);
}

#[test]
fn without_an_actor_the_aws_caller_is_recorded() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ who: {} }").task("who", "echo hi");
    a.p.lumo_without_actor(&["deploy", "--env", "dev"], &[])
        .code(0);
    let run = a.p.history().pop().unwrap();
    assert!(
        run.actor.starts_with("arn:aws:"),
        "the actor is the STS caller: {}",
        run.actor
    );
    // A CI's user comes before the AWS identity.
    a.p.lumo_without_actor(&["deploy", "--env", "dev"], &[("GITHUB_ACTOR", "octocat")])
        .code(0);
    assert_eq!(a.p.history().pop().unwrap().actor, "octocat");
}

/// Regression: a runner that could not fetch its bundle was a failed run (exit 1) on `aws` but
/// a backend error (exit 4) on `local`, and showed Lambda's generic `Unhandled` instead of the
/// runner's error type.
#[test]
fn a_bundle_missing_from_s3_is_a_backend_error_that_says_deploy_again() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ job: { runOn: [] } }")
        .task("job", "echo ran > \"@OUT@/ran\"");
    a.p.deploy(&[], 0);
    let bundle = a.p.status().state.bundles["job"].clone();
    let key = format!("{}/bundles/{bundle}.zip", a.name);
    block_on(async {
        s3(&a.sdk().await)
            .delete_object()
            .bucket(&a.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
    });
    // Nothing has invoked this project's function yet (`runOn: []`): the runner must download.
    a.p.lumo(&["run", "job", "--env", "dev"])
        .code(4)
        .stderr_has(&[
            &format!(
                "the bundle {bundle} of task `job` is missing from `s3://{}/{key}`",
                a.bucket
            ),
            "lumo.BundleDownloadFailed",
            "HTTP 404",
            "hint: deploy again (`lumo deploy --env dev`) to upload it",
        ]);
    assert!(!a.p.has_out("ran"));
    let run = a.p.history().pop().unwrap();
    assert_eq!(run.status, RunStatus::Failed, "the attempt is recorded");

    // As the hint says: a deploy uploads it again, and the run works.
    a.p.deploy(&[], 0);
    a.p.lumo(&["run", "job", "--env", "dev"]).code(0);
    assert!(a.p.has_out("ran"));
}

/// A runner process that dies mid-run is Lambda's `Runtime.ExitError`: a backend error that
/// names it, not a task failure.
#[test]
fn a_runner_that_dies_is_a_backend_error_naming_lambdas_error_type() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    // The task's parent is the runner process.
    a.config("{ killer: { runOn: [] } }")
        .task("killer", "kill -KILL \"$PPID\"\nsleep 5");
    a.p.deploy(&[], 0);
    a.p.lumo(&["run", "killer", "--env", "dev"])
        .code(4)
        .stderr_has(&[
            "crashed or was stopped while running task `killer`",
            "Runtime.ExitError",
            "aws.memorySize",
        ]);
}

/// Regression: with `--provider aws` on a config without an `aws` section, the missing bucket
/// and table were found only after bundling, when the backend opened; now they are one config
/// error naming both keys, before anything is built. The config itself still loads (a Lumo
/// Framework config says `provider: 'aws'` for its own reasons): `lumo tasks` works. No emulator
/// needed.
#[test]
fn provider_aws_without_an_aws_section_is_an_invalid_config() {
    let p = support::TestProject::new();
    p.config("export default { projectName: 'no-aws', tasks: { t: {} } };")
        .task("t", "echo t");
    for command in [
        &["deploy", "--env", "dev"][..],
        &["run", "t", "--env", "dev"],
        &["history", "--env", "dev"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--provider", "aws"]);
        p.lumo(&args).code(2).stderr_has(&[
            "`aws.bucket`: is required with `--provider aws`",
            "`aws.table`: is required with `--provider aws`",
            "BucketName",
        ]);
    }
    assert!(
        !p.lumo_dir().join("bundles").exists(),
        "nothing was bundled before the config was found unusable"
    );
    p.lumo(&["tasks", "--provider", "aws"]).code(0);
}

/// Regression: the error for a missing runner binary named paths relative to nothing in
/// particular and only hinted at where to point lumo. It names the absolute path it looked at,
/// that the path came from `LUMO_RUNNER` (issue 11's check: a variable the user may have
/// forgotten was set), and the three ways to give the binary.
#[test]
fn a_missing_runner_binary_names_the_absolute_path_and_every_way_to_give_it() {
    let _shared = COUNTING.read().unwrap();
    let mut a = aws_project!();
    // Relative to where lumo runs: the project root here.
    a.p.set_env("LUMO_RUNNER", "bin/bootstrap");
    a.config("{ t: {} }").task("t", "echo t");
    let expected = a.p.root().canonicalize().unwrap().join("bin/bootstrap");
    a.p.lumo(&["deploy", "--env", "dev"]).code(4).stderr_has(&[
        &format!(
            "(looked for `{}`, the path in `LUMO_RUNNER`)",
            expected.display()
        ),
        &format!(
            "cargo lambda build --release -p lumo-runner {}",
            if lumo_testkit::HOST_ARCHITECTURE == "arm64" {
                "--arm64"
            } else {
                "--x86-64"
            }
        ),
        "LUMO_RUNNER=/abs/path/bootstrap",
        "--runner /abs/path/bootstrap",
        "aws: { runner: '/abs/path/bootstrap' }",
    ]);
}

/// Regression (issue 10): a runner built for one architecture was deployed to a function of
/// the other, which fails only at the first Invoke on real AWS. The ELF header is read at
/// deploy: a mismatch is refused naming both (exit 2), before any task runs.
#[test]
fn a_runner_built_for_another_architecture_is_refused_at_deploy() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    let (host, other) = if lumo_testkit::HOST_ARCHITECTURE == "arm64" {
        ("arm64 (aarch64)", "x86_64")
    } else {
        ("x86_64", "arm64")
    };
    a.config_with(
        &format!(
            "aws: {{ bucket: '{}', table: '{}', roleArn: '{}', architecture: '{other}' }},",
            a.bucket, a.table, a.emulators.runner_role_arn
        ),
        "{ t: {} }",
    )
    .task("t", "echo ran > ran.txt");
    let out = a.p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    out.stderr_has(&[
        &format!(
            "the runner `{}` is built for {host} but `aws.architecture` is {other}",
            a.emulators.runner_bin.display()
        ),
        &format!(
            "set `aws: {{ architecture: '{}' }}`",
            lumo_testkit::HOST_ARCHITECTURE
        ),
    ]);
}

/// A runner that is not an ELF executable (a script, a zip) is refused at deploy, naming it.
#[test]
fn a_runner_that_is_not_an_elf_executable_is_refused_at_deploy() {
    let _shared = COUNTING.read().unwrap();
    let mut a = aws_project!();
    let fake = a.p.root().join("fake-bootstrap");
    std::fs::write(&fake, "#!/bin/sh\necho not a runner\n").unwrap();
    a.p.set_env("LUMO_RUNNER", &fake.to_string_lossy());
    a.config("{ t: {} }").task("t", "echo t");
    a.p.lumo(&["deploy", "--env", "dev"]).code(2).stderr_has(&[
        "fake-bootstrap",
        "is not a Linux executable",
        "not an ELF file",
    ]);
}

/// The runner function gets 1 GB of `/tmp`: its bundle cache, a download and the unpacked
/// bundle do not fit Lambda's default 512 MB together. A redeploy keeps it without an update.
#[test]
fn the_runner_function_gets_room_in_tmp_for_its_cache_and_the_bundle() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ t: { runOn: [] } }").task("t", "echo t");
    a.p.deploy(&[], 0);
    let storage = block_on(async {
        aws_sdk_lambda::Client::new(&a.sdk().await)
            .get_function_configuration()
            .function_name(format!("{}-dev-lumo-runner", a.name))
            .send()
            .await
            .unwrap()
            .ephemeral_storage()
            .map(|e| e.size())
    });
    assert_eq!(storage, Some(1024));
}

/// AWS files of the test's own (lumo is pointed at them by `AWS_CONFIG_FILE` and
/// `AWS_SHARED_CREDENTIALS_FILE`): profile `prod` in the config file, `ci` in the credentials
/// file. Returns the two paths.
fn aws_files(p: &TestProject) -> (String, String) {
    let config = p.tmp().join("aws-config");
    std::fs::write(&config, "[profile prod]\nregion = us-east-1\n").unwrap();
    let credentials = p.tmp().join("aws-credentials");
    std::fs::write(
        &credentials,
        "[ci]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    (
        config.to_string_lossy().into_owned(),
        credentials.to_string_lossy().into_owned(),
    )
}

/// A profile that neither AWS file defines is a bad input (exit 2), named with where it came
/// from, the files looked in and the profiles they define, before anything is bundled, locked
/// or recorded; the SDK's "cannot reach AWS" and its dump are not what the user reads. A profile
/// that exists is taken as before.
#[test]
fn a_profile_that_does_not_exist_is_named_with_the_files_before_anything_is_written() {
    let _shared = COUNTING.read().unwrap();
    let a = aws_project!();
    a.config("{ step: {} }")
        .task("step", "echo ran > \"@OUT@/ran\"");
    let (config, credentials) = aws_files(&a.p);
    let files = [
        ("AWS_CONFIG_FILE", config.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.as_str()),
    ];

    let by_flag =
        a.p.lumo_with_env(&["deploy", "--env", "dev", "--profile", "ghost"], &files);
    by_flag.code(2).stderr_has(&[
        "AWS profile `ghost` (from `--profile`) does not exist",
        &format!("`{config}` (`AWS_CONFIG_FILE`)"),
        &format!("`{credentials}` (`AWS_SHARED_CREDENTIALS_FILE`)"),
        "profiles there: `ci`, `prod`",
        "pass one of those to `--profile`",
    ]);
    assert!(
        !by_flag.stderr.contains("cannot reach AWS") && !by_flag.stderr.contains("Bundling"),
        "one error, before the build:\n{}",
        by_flag.stderr
    );

    let by_variable = [files.as_slice(), &[("AWS_PROFILE", "ghost")]].concat();
    let json =
        a.p.lumo_with_env(&["deploy", "--env", "dev", "--json"], &by_variable);
    let error = json.code(2).json_error();
    assert_eq!(error.kind, "invalid");
    assert!(
        error
            .message
            .contains("AWS profile `ghost` (from `AWS_PROFILE`) does not exist")
            && error.message.contains(&config)
            && error.message.contains("`ci`, `prod`"),
        "{error:?}"
    );
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("set `AWS_PROFILE` to one of those")),
        "{error:?}"
    );
    let text =
        a.p.lumo_with_env(&["history", "--env", "dev"], &by_variable);
    text.code(2)
        .stderr_has(&["AWS profile `ghost` (from `AWS_PROFILE`) does not exist"]);

    assert!(a.items().is_empty(), "no lock taken, nothing recorded");
    assert!(a.objects().is_empty(), "no bundle uploaded");
    assert!(!a.p.lumo_dir().join("bundles").exists(), "nothing bundled");
    assert!(!a.p.out().join("ran").exists(), "nothing ran");

    // A config file named by `AWS_CONFIG_FILE` that is not there: lumo's one error names it,
    // and the SDK's own warning about it does not come first.
    let missing = a.p.tmp().join("no-such-aws-config");
    let missing = missing.to_string_lossy();
    let gone = a.p.lumo_with_env(
        &["history", "--env", "dev", "--profile", "ghost"],
        &[
            ("AWS_CONFIG_FILE", missing.as_ref()),
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.as_str()),
        ],
    );
    gone.code(2).stderr_has(&[
        "AWS profile `ghost` (from `--profile`) does not exist",
        &format!("`{missing}` (`AWS_CONFIG_FILE`)"),
    ]);
    assert!(
        !gone.stderr.contains("overridden via environment variable")
            && gone.stderr.trim_start().starts_with("error"),
        "lumo's error alone:\n{}",
        gone.stderr
    );

    // `prod` exists (with no keys of its own: the environment's are used, as the SDK does).
    let runs = a.p.lumo_with_env(
        &["history", "--env", "dev", "--profile", "prod", "--json"],
        &files,
    );
    runs.code(0);
}

/// An SDK failure is one line a user can read, never the SDK's `{:?}` dump; no usable
/// credentials is said as that, not as an unreachable AWS. No emulator: the endpoint is a
/// closed port, so nothing is sent anywhere.
#[test]
fn an_sdk_failure_is_one_line_and_missing_credentials_are_not_a_network_problem() {
    let mut p = TestProject::new();
    p.config(
        "export default {
           projectName: 'quiet', provider: 'aws', region: 'us-east-1',
           aws: { bucket: 'quiet-bundles', table: 'quiet-audit' },
           tasks: { step: {} },
         };",
    )
    .task("step", "echo step");
    for (key, value) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ] {
        p.set_env(key, value);
    }
    let dump = ["DispatchFailure", "ConnectorError", "{ source"];

    let no_credentials = p.lumo(&["history", "--env", "dev"]);
    no_credentials.code(4).stderr_has(&[
        "no usable AWS credentials while reading the history of `dev`",
        "aws sts get-caller-identity",
    ]);
    for fragment in dump {
        assert!(
            !no_credentials.stderr.contains(fragment),
            "{}",
            no_credentials.stderr
        );
    }

    p.set_env("AWS_ACCESS_KEY_ID", "testing")
        .set_env("AWS_SECRET_ACCESS_KEY", "testing");
    let unreachable = p.lumo(&["history", "--env", "dev", "--json"]);
    let error = unreachable.code(4).json_error();
    assert!(error.message.contains("cannot reach AWS"), "{error:?}");
    let causes = error.causes.join("\n");
    assert!(causes.contains("Connection refused"), "{error:?}");
    for fragment in dump {
        assert!(!causes.contains(fragment), "{error:?}");
    }
}
