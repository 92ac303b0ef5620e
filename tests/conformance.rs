//! The backend conformance suite: the same contract checks against every provider — `local`
//! on a temp project, and `aws` on the emulators (moto + the real runner; skipped, loudly, when
//! they are not installed, and failing in CI). What `deploy`, `run`, `history` and `logs` rely
//! on is pinned here, once, rather than per backend.
//!
//! The providers are listed once, in [`conformance!`]: a new provider adds its name there and a
//! fixture in [`fixtures`], plus its look behind the traits in the `Fixture` methods that
//! match on the provider, and gets every contract check.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use lumo_cli::backend::aws::settings::AwsFlags;
use lumo_cli::backend::records::{
    AuditEvent, Deployment, DeploymentStatus, EventKind, LockHolder, RunKind, TaskRun, Timestamp,
    new_id, new_run_id,
};
use lumo_cli::backend::{
    Acquired, Backend, BackendErrorKind, ConnectOptions, LockSlot, Prepare, RunRequest,
};
use lumo_cli::bundle::{self, BuildTarget, BuiltBundle};
use lumo_cli::{project::Project, task::Task};
use lumo_runner::contract::{DeploymentInfo, RunStatus, TaskContext, Trigger};
use lumo_runner::{BundleHash, RunId, TaskSpec, Version};
use serde_json::json;
use tempfile::TempDir;

const SECRET: &str = "s3cr3t-conformance-7d1e";

struct Fixture {
    _dir: TempDir,
    project: Project,
    backend: Backend,
    /// The environment the checks work in. The config names it and [`second_env`] (where a
    /// run-id prefix is looked up on `aws`).
    env: String,
    /// On `aws`: a direct look into the bucket and the table, for what the traits do not show.
    aws: Option<AwsStores>,
}

struct AwsStores {
    sdk: aws_config::SdkConfig,
    bucket: String,
    table: String,
}

fn write_project(root: &Path, provider: &str) {
    fs::write(
        root.join("lumo.config.js"),
        format!(
            "export default {{ projectName: 'conf-{}', {provider},
               secrets: {{ token: {{ value: '{SECRET}' }} }},
               tasks: {{ ok: {{}}, fails: {{}} }} }};",
            std::process::id() % 100_000
        ),
    )
    .unwrap();
    let tasks = root.join("functions/tasks");
    fs::create_dir_all(&tasks).unwrap();
    let script = |name: &str, body: &str| {
        let path = tasks.join(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "ok.sh",
        "#!/bin/sh\necho \"hello from $LUMO_TASK in $LUMO_ENVIRONMENT\"\necho \"token=$TOKEN\"\n\
         printf '{\"success\":true,\"message\":\"done with %s\",\"data\":{\"n\":1}}' \"$TOKEN\" > \"$LUMO_RESULT_FILE\"\n",
    );
    script("fails.sh", "#!/bin/sh\necho about to fail\nexit 3\n");
}

/// One fixture per provider, named as the provider; `None` when the provider cannot be tested
/// here (the emulators are missing outside CI).
mod fixtures {
    use super::Fixture;

    pub async fn local() -> Option<Fixture> {
        Some(super::local_fixture().await)
    }

    pub async fn aws() -> Option<Fixture> {
        Some(super::aws_fixture(lumo_testkit::emulators()?).await)
    }
}

async fn local_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        "provider: 'local', environments: ['dev', 'devx']",
    );
    let project = Project::load(Some(&dir.path().join("lumo.config.js")), None).unwrap();
    let backend = lumo_cli::backend::connect(&project, &ConnectOptions::default())
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        project,
        backend,
        env: "dev".into(),
        aws: None,
    }
}

async fn aws_fixture(emulators: &lumo_testkit::Emulators) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bucket = lumo_testkit::unique("conf-bucket");
    let table = lumo_testkit::unique("conf-table");
    emulators.create_bucket_and_table(&bucket, &table).await;
    // Each fixture has its own environment, so suites sharing one emulator never meet.
    let env = lumo_testkit::unique("env").replace('-', "");
    write_project(
        dir.path(),
        &format!(
            "provider: 'aws', region: 'us-east-1', environments: ['{env}', '{env}x'], aws: {{ bucket: '{bucket}', table: '{table}', roleArn: '{}', architecture: '{}' }}",
            emulators.runner_role_arn,
            lumo_testkit::HOST_ARCHITECTURE
        ),
    );
    let project = Project::load(Some(&dir.path().join("lumo.config.js")), None).unwrap();
    let options = ConnectOptions {
        aws: AwsFlags {
            runner: Some(emulators.runner_bin.clone()),
            ..AwsFlags::default()
        },
        ..ConnectOptions::default()
    };
    let sdk = emulators.sdk_config().await;
    let backend = lumo_cli::backend::aws::with_sdk_config(&project, &options, &sdk)
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        project,
        backend,
        env,
        aws: Some(AwsStores { sdk, bucket, table }),
    }
}

/// The other environment the fixture's config names.
fn second_env(f: &Fixture) -> String {
    format!("{}x", f.env)
}

fn task<'a>(f: &'a Fixture, name: &str) -> &'a Task {
    f.project.task(name).unwrap()
}

fn build(f: &Fixture, names: &[&str]) -> Vec<BuiltBundle> {
    let tasks: Vec<&Task> = names.iter().map(|n| task(f, n)).collect();
    bundle::build_all(
        f.project.root(),
        &f.project.lumo_dir().join("bundles"),
        &tasks,
        BuildTarget::Host,
    )
    .unwrap()
}

/// A made-up bundle hash: `seed`'s bytes in hex, padded with zeros to 64 digits.
fn fake_hash(seed: &str) -> BundleHash {
    let hex: String = seed.bytes().map(|b| format!("{b:02x}")).collect();
    BundleHash::parse(&format!("{hex:0>64}")).unwrap()
}

fn version(text: &str) -> Version {
    Version::parse(text).unwrap()
}

fn run_record(f: &Fixture, task: &str, status: RunStatus) -> TaskRun {
    TaskRun {
        id: new_run_id(),
        deployment_id: None,
        project: f.project.config.project_name.clone(),
        env: f.env.clone(),
        task: task.into(),
        trigger: Trigger::Manual,
        version: Some(version("v1")),
        previous_version: None,
        bundle_hash: Some(BundleHash::parse(&"a".repeat(64)).unwrap()),
        actor: "conformance".into(),
        status,
        attempt: 1,
        started_at: Timestamp::now(),
        ended_at: None,
        duration_ms: None,
        exit_code: None,
        message: None,
        data: None,
        data_ref: None,
        log_ref: None,
        output_tail: None,
        output_bytes: 0,
        kind: RunKind::Task,
        args: BTreeMap::from([("target".into(), "users".into())]),
        from_source: false,
        command: None,
    }
}

fn deployment(
    f: &Fixture,
    version: &str,
    status: DeploymentStatus,
    previous: Option<&str>,
) -> Deployment {
    Deployment {
        id: new_id(),
        project: f.project.config.project_name.clone(),
        env: f.env.clone(),
        version: self::version(version),
        previous_version: previous.map(self::version),
        is_first_deploy: previous.is_none(),
        actor: "conformance".into(),
        status,
        started_at: Timestamp::now(),
        ended_at: Some(Timestamp::now()),
        message: None,
        bundles: BTreeMap::from([("ok".to_string(), fake_hash(&format!("{version}-hash")))]),
    }
}

fn request(f: &Fixture, bundle: &BuiltBundle, run_id: &str) -> RunRequest {
    let context = TaskContext {
        deployment: DeploymentInfo {
            is_first_deploy: true,
            previous_version: None,
            environment: f.env.clone(),
            version: "v1".into(),
        },
        config: json!({}),
        args: BTreeMap::new(),
        working_directory: String::new(),
        task: bundle.task.clone(),
        run_id: run_id.into(),
        trigger: Trigger::Deploy,
    };
    let mut spec = TaskSpec::new(context, Duration::from_secs(30));
    spec.secrets = f.project.secret_values().unwrap();
    RunRequest {
        bundle: Some(bundle.sha256.clone()),
        spec,
        stop: lumo_cli::stop::StopSignal::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The contract.

/// `BundleStore::put` is idempotent: a stored bundle is never uploaded again.
async fn bundles_are_stored_once(f: Fixture) {
    let built = build(&f, &["ok", "fails"]);
    for b in &built {
        f.backend.bundles.put(b).await.unwrap();
        assert!(
            !f.backend.bundles.put(b).await.unwrap(),
            "second put of {} uploaded again",
            b.task
        );
    }
}

/// The environment's version moves with a successful deployment only, atomically with it.
async fn state_moves_only_with_a_successful_deployment(f: Fixture) {
    let audit = &f.backend.audit;
    let state = audit.env_state(&f.env).await.unwrap();
    assert!(state.is_first_deploy() && state.bundles.is_empty());

    let first = deployment(&f, "v1", DeploymentStatus::Succeeded, None);
    audit
        .start_deployment(&Deployment {
            status: DeploymentStatus::Running,
            ended_at: None,
            ..first.clone()
        })
        .await
        .unwrap();
    assert!(
        audit.env_state(&f.env).await.unwrap().is_first_deploy(),
        "a running deployment moved the version"
    );
    audit.finish_deployment(&first).await.unwrap();
    let state = audit.env_state(&f.env).await.unwrap();
    assert_eq!(state.version, Some(version("v1")));
    assert_eq!(state.bundles["ok"], fake_hash("v1-hash"));

    let failed = deployment(&f, "v2", DeploymentStatus::Failed, Some("v1"));
    audit.start_deployment(&failed).await.unwrap();
    audit.finish_deployment(&failed).await.unwrap();
    let state = audit.env_state(&f.env).await.unwrap();
    assert_eq!(
        state.version,
        Some(version("v1")),
        "a failed deployment moved the version"
    );

    let second = deployment(&f, "v3", DeploymentStatus::Succeeded, Some("v1"));
    audit.start_deployment(&second).await.unwrap();
    audit.finish_deployment(&second).await.unwrap();
    let state = audit.env_state(&f.env).await.unwrap();
    assert_eq!(state.version, Some(version("v3")));
    assert_eq!(state.previous_version, Some(version("v1")));
    assert_eq!(state.deployment_id.as_deref(), Some(second.id.as_str()));

    let listed: Vec<Version> = audit
        .deployments(&f.env, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.version)
        .collect();
    assert_eq!(listed, ["v3", "v2", "v1"], "deployments newest first");
    assert_eq!(audit.deployments(&f.env, 1).await.unwrap().len(), 1);
}

/// Runs are recorded before they start, updated when they end, and queried newest first per
/// environment and per task; a success records the task's bundle as its last success.
async fn runs_are_recorded_and_queried_newest_first(f: Fixture) {
    let audit = &f.backend.audit;
    let mut ids = Vec::new();
    for (i, task) in ["ok", "fails", "ok", "ok"].iter().enumerate() {
        let mut run = run_record(&f, task, RunStatus::Running);
        audit.start_run(&run).await.unwrap();
        assert_eq!(
            audit.run(&run.id).await.unwrap().unwrap().status,
            RunStatus::Running
        );
        run.status = if *task == "ok" {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        run.bundle_hash = Some(fake_hash(&format!("hash-{i}")));
        run.message = Some(format!("message {i}"));
        run.ended_at = Some(Timestamp::now());
        run.duration_ms = Some(1);
        run.data = Some(json!({ "i": i, "nested": { "list": [1, "two", null] } }));
        audit.finish_run(&run).await.unwrap();
        ids.push(run.id);
    }
    let all = audit.runs(&f.env, None, 10).await.unwrap();
    let listed: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(RunId::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(
        all[0].data,
        Some(json!({ "i": 3, "nested": { "list": [1, "two", null] } }))
    );
    assert_eq!(all[0].message.as_deref(), Some("message 3"));

    let ok_runs = audit.runs(&f.env, Some("ok"), 2).await.unwrap();
    assert_eq!(
        ok_runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [ids[3].as_str(), ids[2].as_str()]
    );
    assert!(
        audit
            .runs(&f.env, Some("nope"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        audit.runs("other", None, 10).await.unwrap().is_empty(),
        "runs leak across environments"
    );

    let state = audit.env_state(&f.env).await.unwrap();
    assert_eq!(state.last_success.get("ok"), Some(&fake_hash("hash-3")));
    assert!(
        !state.last_success.contains_key("fails"),
        "a failed run counted as a success"
    );
    assert!(
        audit
            .run(&RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

/// A run is found by a prefix of its id, through an index (`local`) or one Query per
/// environment the config names (`aws`), never a scan: the runs of both environments in id
/// order, at most `limit` (the first ones), finished or still running; with an environment,
/// only its runs.
async fn runs_are_found_by_a_prefix_of_their_id(f: Fixture) {
    fn ids(runs: &[TaskRun]) -> Vec<&str> {
        runs.iter().map(|r| r.id.as_str()).collect()
    }
    let audit = &f.backend.audit;
    let first = run_record(&f, "ok", RunStatus::Succeeded);
    audit.start_run(&first).await.unwrap();
    let mut second = run_record(&f, "fails", RunStatus::Running);
    second.env = second_env(&f);
    audit.start_run(&second).await.unwrap();
    let shared = first
        .id
        .as_str()
        .chars()
        .zip(second.id.as_str().chars())
        .take_while(|(a, b)| a == b)
        .count();
    let found = audit
        .runs_by_id_prefix(&first.id.as_str()[..shared + 1], None, 5)
        .await
        .unwrap();
    assert_eq!(ids(&found), [first.id.as_str()]);
    assert_eq!(found[0].env, f.env);
    assert_eq!(found[0].task, "ok");
    let only_second = audit
        .runs_by_id_prefix(&second.id.as_str()[..shared + 1], None, 5)
        .await
        .unwrap();
    assert_eq!(ids(&only_second), [second.id.as_str()]);
    assert_eq!(only_second[0].env, second_env(&f));
    assert_eq!(only_second[0].status, RunStatus::Running);
    let both = audit
        .runs_by_id_prefix(&first.id.as_str()[..shared], None, 5)
        .await
        .unwrap();
    let mut in_id_order = [first.id.as_str(), second.id.as_str()];
    in_id_order.sort();
    assert_eq!(ids(&both), in_id_order);
    let capped = audit
        .runs_by_id_prefix(&first.id.as_str()[..shared], None, 1)
        .await
        .unwrap();
    assert_eq!(ids(&capped), [in_id_order[0]]);
    assert!(
        audit
            .runs_by_id_prefix("ZZZZ", None, 5)
            .await
            .unwrap()
            .is_empty()
    );
    let in_second = audit
        .runs_by_id_prefix(&first.id.as_str()[..shared], Some(&second_env(&f)), 5)
        .await
        .unwrap();
    assert_eq!(ids(&in_second), [second.id.as_str()]);
    let in_neither = audit
        .runs_by_id_prefix(&first.id.as_str()[..shared], Some("other"), 5)
        .await
        .unwrap();
    assert!(in_neither.is_empty(), "{in_neither:?}");
}

/// The executor runs a bundle under the task contract: result, data, exit code, the full
/// output kept and readable, secrets masked everywhere.
async fn tasks_run_and_their_output_is_kept(f: Fixture) {
    let built = build(&f, &["ok", "fails"]);
    for b in &built {
        f.backend.bundles.put(b).await.unwrap();
    }
    f.backend
        .executor
        .prepare(&f.env, Prepare::Deploy)
        .await
        .unwrap();

    let id = new_id();
    let mut output = Vec::new();
    let report = f
        .backend
        .executor
        .run(request(&f, &built[0], &id), &mut output)
        .await
        .unwrap();
    assert_eq!(report.outcome.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.outcome.message, "done with ***");
    assert_eq!(report.outcome.data, Some(json!({ "n": 1 })));
    let shown = String::from_utf8_lossy(&output);
    assert!(
        shown.contains(&format!("hello from ok in {}", f.env)),
        "{shown}"
    );
    assert!(
        !shown.contains(SECRET) && shown.contains("token=***"),
        "{shown}"
    );

    let mut run = run_record(&f, "ok", RunStatus::Succeeded);
    run.id = RunId::parse(&id).unwrap();
    run.log_ref = report.log_ref.clone();
    let log = f
        .backend
        .audit
        .read_log(&run)
        .await
        .unwrap()
        .expect("the full output is stored");
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("token=***") && !log.contains(SECRET), "{log}");

    let report = f
        .backend
        .executor
        .run(request(&f, &built[1], &new_id()), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(report.outcome.status, RunStatus::Failed);
    assert_eq!(report.outcome.exit_code, Some(3));
    assert!(
        report.outcome.message.contains("about to fail"),
        "{}",
        report.outcome.message
    );
}

/// A command run (`lumo exec`): the executor runs the request's argv instead of a bundle's
/// entry — with no bundle, in an empty directory; with one, among its files — masked, its
/// output kept, its exit code reported.
async fn commands_run_with_or_without_a_bundle(f: Fixture) {
    let built = build(&f, &["ok"]);
    f.backend.bundles.put(&built[0]).await.unwrap();
    f.backend
        .executor
        .prepare(&f.env, Prepare::Deploy)
        .await
        .unwrap();

    let mut bare = request(&f, &built[0], &new_id());
    bare.bundle = None;
    bare.spec.context.task = String::new();
    bare.spec.argv = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo \"token=$TOKEN\"; ls -A; exit 3".into(),
    ]);
    let run_id = bare.spec.context.run_id.clone();
    let mut output = Vec::new();
    let report = f.backend.executor.run(bare, &mut output).await.unwrap();
    assert_eq!(report.outcome.status, RunStatus::Failed, "{report:?}");
    assert_eq!(report.outcome.exit_code, Some(3));
    assert_eq!(
        String::from_utf8_lossy(&output),
        "token=***\n",
        "an empty directory"
    );
    let mut run = run_record(&f, "", RunStatus::Failed);
    run.id = RunId::parse(&run_id).unwrap();
    run.log_ref = report.log_ref.clone();
    let log = f.backend.audit.read_log(&run).await.unwrap().unwrap();
    assert_eq!(String::from_utf8(log).unwrap(), "token=***\n");

    let mut inside = request(&f, &built[0], &new_id());
    inside.spec.argv = Some(vec![
        "sh".into(),
        "-c".into(),
        "ls; cat ok.sh | wc -l".into(),
    ]);
    let mut output = Vec::new();
    let report = f.backend.executor.run(inside, &mut output).await.unwrap();
    assert_eq!(report.outcome.status, RunStatus::Succeeded, "{report:?}");
    let shown = String::from_utf8_lossy(&output);
    assert!(shown.contains("ok.sh\n"), "the bundle's files: {shown}");
    assert!(!shown.contains("hello from"), "the entry ran: {shown}");
}

/// An `exec` run is recorded with its command (as given: masked by the caller) and read back
/// the same; one that succeeds in a task's bundle is not that task's success.
async fn an_exec_run_keeps_its_command_and_is_no_task_success(f: Fixture) {
    let audit = &f.backend.audit;
    let mut run = run_record(&f, "ok", RunStatus::Running);
    run.kind = RunKind::Exec;
    run.args.clear();
    run.command = Some(vec!["psql".into(), "-c".into(), "select '***'".into()]);
    audit.start_run(&run).await.unwrap();
    run.status = RunStatus::Succeeded;
    run.ended_at = Some(Timestamp::now());
    audit.finish_run(&run).await.unwrap();
    assert_eq!(audit.run(&run.id).await.unwrap().as_ref(), Some(&run));
    assert_eq!(audit.runs(&f.env, None, 5).await.unwrap(), [run.clone()]);
    assert!(
        !audit
            .env_state(&f.env)
            .await
            .unwrap()
            .last_success
            .contains_key("ok"),
        "an exec in the bundle of `ok` counted as a success of `ok`"
    );
}

/// Regression (issue 12's check): `history --task T` listed the `exec`s run in T's bundle as
/// runs of T. A task's history is its own runs; an environment's history lists the `exec`s
/// too. An `exec` between two runs of the task, with a limit of 2, must not cost one of them
/// (DynamoDB filters after its page limit).
async fn a_task_history_is_its_own_runs_not_the_execs_in_its_bundle(f: Fixture) {
    let audit = &f.backend.audit;
    let mut recorded = Vec::new();
    for kind in [RunKind::Task, RunKind::Exec, RunKind::Task] {
        let mut run = run_record(&f, "ok", RunStatus::Running);
        run.kind = kind;
        if kind == RunKind::Exec {
            run.args.clear();
            run.command = Some(vec!["ls".into(), "-la".into()]);
        }
        audit.start_run(&run).await.unwrap();
        run.status = RunStatus::Succeeded;
        run.ended_at = Some(Timestamp::now());
        audit.finish_run(&run).await.unwrap();
        recorded.push(run);
    }
    let ids = |runs: &[TaskRun]| {
        runs.iter()
            .map(|r| r.id.as_str().to_string())
            .collect::<Vec<_>>()
    };
    let of_task = audit.runs(&f.env, Some("ok"), 2).await.unwrap();
    assert_eq!(
        ids(&of_task),
        ids(&[recorded[2].clone(), recorded[0].clone()]),
        "the task's own runs, newest first, without the exec in its bundle"
    );
    let of_env = audit.runs(&f.env, None, 10).await.unwrap();
    assert_eq!(
        ids(&of_env),
        ids(&[
            recorded[2].clone(),
            recorded[1].clone(),
            recorded[0].clone()
        ]),
        "the environment's history lists the exec too"
    );
    assert_eq!(of_env[1].kind, RunKind::Exec);
}

/// Data too large for a record (DynamoDB items: 400 KB) is kept whole, by pointer: never lost,
/// and on `aws` never inline in the item.
async fn large_data_is_kept(f: Fixture) {
    const SIZE: usize = 500_000;
    let mut run = run_record(&f, "ok", RunStatus::Running);
    f.backend.audit.start_run(&run).await.unwrap();
    run.status = RunStatus::Succeeded;
    run.data = Some(json!({ "blob": "x".repeat(SIZE) }));
    f.backend.audit.finish_run(&run).await.unwrap();
    let stored = f.backend.audit.run(&run.id).await.unwrap().unwrap();
    let data = match (&stored.data, &stored.data_ref) {
        (Some(data), _) => data.clone(),
        (None, Some(reference)) => {
            assert!(reference.contains(run.id.as_str()), "{reference}");
            let aws = f.aws.as_ref().expect("only `aws` keeps data by pointer");
            serde_json::from_slice(&aws.object(reference).await).unwrap()
        }
        (None, None) => panic!("{SIZE} bytes of data were lost"),
    };
    assert_eq!(data["blob"].as_str().map(str::len), Some(SIZE));

    if let Some(aws) = &f.aws {
        assert!(
            stored.data.is_none() && stored.data_ref.is_some(),
            "on `aws` large data is a pointer"
        );
        let item = aws.run_item(run.id.as_str()).await;
        let size: usize = item.iter().map(|(k, v)| k.len() + attribute_size(v)).sum();
        assert!(
            size < 64 * 1024,
            "the run's item is {size} bytes: the data is inline"
        );
    }
}

impl AwsStores {
    fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk)
                .force_path_style(true)
                .build(),
        )
    }

    /// The bytes of an `s3://bucket/key` pointer.
    async fn object(&self, pointer: &str) -> Vec<u8> {
        let key = pointer
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .unwrap_or_else(|| panic!("`{pointer}` is not in `{}`", self.bucket));
        let out = self
            .s3()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// The DynamoDB item of run `id` as stored (a scan: test tables are small).
    async fn run_item(&self, id: &str) -> HashMap<String, AttributeValue> {
        let items = aws_sdk_dynamodb::Client::new(&self.sdk)
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        let sk = AttributeValue::S(format!("RUN#{id}"));
        items
            .into_iter()
            .find(|item| item.get("sk") == Some(&sk))
            .expect("the run's item")
    }
}

/// Roughly what an attribute weighs in an item.
fn attribute_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::L(items) => items.iter().map(attribute_size).sum(),
        AttributeValue::M(map) => map.iter().map(|(k, v)| k.len() + attribute_size(v)).sum(),
        AttributeValue::Ss(items) | AttributeValue::Ns(items) => {
            items.iter().map(String::len).sum()
        }
        _ => 16,
    }
}

fn lock_holder(actor: &str, lease_ms: i64) -> LockHolder {
    let now = Timestamp::now();
    LockHolder {
        token: new_id(),
        actor: actor.into(),
        operation: format!("deploy by {actor}"),
        reason: None,
        host: "conformance-host".into(),
        pid: None,
        since: now,
        expires_at: Some(Timestamp(now.millis() + lease_ms)),
    }
}

/// One writer at a time; only the holder's token renews or releases it.
async fn the_writer_lock_is_exclusive(f: Fixture) {
    let locks = &f.backend.locks;
    let alice = lock_holder("alice", 60_000);
    let bob = lock_holder("bob", 60_000);
    assert_eq!(
        locks
            .acquire(&f.env, LockSlot::Writer, &alice)
            .await
            .unwrap(),
        Acquired::Taken { displaced: None }
    );
    assert_eq!(
        locks.acquire(&f.env, LockSlot::Writer, &bob).await.unwrap(),
        Acquired::Held(alice.clone())
    );
    assert_eq!(
        locks
            .current(&f.env)
            .await
            .unwrap()
            .writer
            .as_ref()
            .map(|h| h.token.as_str()),
        Some(alice.token.as_str())
    );

    assert!(
        locks
            .renew(
                &f.env,
                &alice.token,
                Timestamp(Timestamp::now().millis() + 90_000)
            )
            .await
            .unwrap()
    );
    assert!(
        !locks
            .renew(
                &f.env,
                &bob.token,
                Timestamp(Timestamp::now().millis() + 90_000)
            )
            .await
            .unwrap()
    );
    assert!(
        locks
            .release(&f.env, LockSlot::Writer, Some(&bob.token))
            .await
            .unwrap()
            .is_none(),
        "a stranger's token released the lock"
    );
    assert!(matches!(
        locks.acquire(&f.env, LockSlot::Writer, &bob).await.unwrap(),
        Acquired::Held(_)
    ));

    assert_eq!(
        locks
            .release(&f.env, LockSlot::Writer, Some(&alice.token))
            .await
            .unwrap()
            .map(|h| h.token),
        Some(alice.token.clone())
    );
    assert_eq!(
        locks.acquire(&f.env, LockSlot::Writer, &bob).await.unwrap(),
        Acquired::Taken { displaced: None }
    );
    assert!(
        !locks
            .renew(&f.env, &alice.token, Timestamp::now())
            .await
            .unwrap(),
        "a released holder renewed"
    );
}

/// A writer whose lease ran out is displaced by the next one, who learns who it was.
async fn an_expired_writer_is_displaced(f: Fixture) {
    let locks = &f.backend.locks;
    let dead = lock_holder("dead", -1);
    assert!(matches!(
        locks
            .acquire(&f.env, LockSlot::Writer, &dead)
            .await
            .unwrap(),
        Acquired::Taken { .. }
    ));
    assert!(
        locks.current(&f.env).await.unwrap().writer.is_none(),
        "an expired writer shows as holding"
    );
    let next = lock_holder("next", 60_000);
    match locks
        .acquire(&f.env, LockSlot::Writer, &next)
        .await
        .unwrap()
    {
        Acquired::Taken { displaced: Some(d) } => assert_eq!(d.token, dead.token),
        other => panic!("expected to displace the expired writer, got {other:?}"),
    }
}

/// A manual lock keeps everyone but its holder out, and only a forced release frees it for others.
async fn a_manual_lock_keeps_others_out(f: Fixture) {
    let locks = &f.backend.locks;
    let manual = LockHolder {
        expires_at: None,
        operation: "lock".into(),
        reason: Some("migrating".into()),
        ..lock_holder("alice", 0)
    };
    assert!(matches!(
        locks
            .acquire(&f.env, LockSlot::Manual, &manual)
            .await
            .unwrap(),
        Acquired::Taken { .. }
    ));
    let bob = lock_holder("bob", 60_000);
    assert_eq!(
        locks.acquire(&f.env, LockSlot::Writer, &bob).await.unwrap(),
        Acquired::Held(manual.clone())
    );
    assert!(matches!(
        locks.acquire(&f.env, LockSlot::Manual, &bob).await.unwrap(),
        Acquired::Held(_)
    ));
    let alice_deploys = lock_holder("alice", 60_000);
    assert!(
        matches!(
            locks
                .acquire(&f.env, LockSlot::Writer, &alice_deploys)
                .await
                .unwrap(),
            Acquired::Taken { .. }
        ),
        "the lock's holder may deploy"
    );
    let state = locks.current(&f.env).await.unwrap();
    assert_eq!(
        state.manual.as_ref().and_then(|m| m.reason.as_deref()),
        Some("migrating")
    );
    assert!(state.writer.is_some());
    locks
        .release(&f.env, LockSlot::Writer, Some(&alice_deploys.token))
        .await
        .unwrap();

    let released = locks.release(&f.env, LockSlot::Manual, None).await.unwrap();
    assert_eq!(released.map(|h| h.actor), Some("alice".to_string()));
    assert!(matches!(
        locks.acquire(&f.env, LockSlot::Writer, &bob).await.unwrap(),
        Acquired::Taken { .. }
    ));
    // A live writer keeps a manual lock out too.
    let carol = LockHolder {
        expires_at: None,
        ..lock_holder("carol", 0)
    };
    assert!(matches!(
        locks
            .acquire(&f.env, LockSlot::Manual, &carol)
            .await
            .unwrap(),
        Acquired::Held(_)
    ));
}

/// Work left `running` by a dead writer becomes `abandoned`; finished work is untouched.
async fn unfinished_work_is_abandoned(f: Fixture) {
    let audit = &f.backend.audit;
    let orphan = run_record(&f, "ok", RunStatus::Running);
    audit.start_run(&orphan).await.unwrap();
    let mut done = run_record(&f, "ok", RunStatus::Running);
    audit.start_run(&done).await.unwrap();
    done.status = RunStatus::Succeeded;
    audit.finish_run(&done).await.unwrap();
    let deploy = Deployment {
        status: DeploymentStatus::Running,
        ended_at: None,
        ..deployment(&f, "v9", DeploymentStatus::Running, None)
    };
    audit.start_deployment(&deploy).await.unwrap();

    let mut abandoned = audit
        .abandon_unfinished(&f.env, "abandoned: writer died")
        .await
        .unwrap();
    abandoned.sort();
    let mut expected = vec![orphan.id.to_string(), deploy.id.clone()];
    expected.sort();
    assert_eq!(abandoned, expected);
    let orphan = audit.run(&orphan.id).await.unwrap().unwrap();
    assert_eq!(orphan.status, RunStatus::Abandoned);
    assert_eq!(orphan.message.as_deref(), Some("abandoned: writer died"));
    assert!(orphan.ended_at.is_some());
    assert_eq!(
        audit.run(&done.id).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(
        audit.deployments(&f.env, 1).await.unwrap()[0].status,
        DeploymentStatus::Abandoned
    );
    assert!(
        audit.env_state(&f.env).await.unwrap().is_first_deploy(),
        "an abandoned deployment moved the version"
    );
    assert!(
        audit
            .abandon_unfinished(&f.env, "again")
            .await
            .unwrap()
            .is_empty()
    );
}

/// A writer that lost its lock finishes late: the abandoned verdict of the writer that took
/// over stands, and neither the task's last success nor the environment's version moves.
async fn a_late_finish_cannot_overwrite_abandoned(f: Fixture) {
    let audit = &f.backend.audit;
    let mut run = run_record(&f, "ok", RunStatus::Running);
    audit.start_run(&run).await.unwrap();
    let mut deploy = Deployment {
        status: DeploymentStatus::Running,
        ended_at: None,
        ..deployment(&f, "late", DeploymentStatus::Running, None)
    };
    audit.start_deployment(&deploy).await.unwrap();
    audit
        .abandon_unfinished(&f.env, "abandoned: taken over")
        .await
        .unwrap();

    run.status = RunStatus::Succeeded;
    run.ended_at = Some(Timestamp::now());
    assert!(
        !audit.finish_run(&run).await.unwrap(),
        "the late finish was written"
    );
    let stored = audit.run(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Abandoned);
    assert_eq!(stored.message.as_deref(), Some("abandoned: taken over"));
    assert!(
        !audit
            .env_state(&f.env)
            .await
            .unwrap()
            .last_success
            .contains_key("ok")
    );

    deploy.status = DeploymentStatus::Succeeded;
    deploy.ended_at = Some(Timestamp::now());
    assert!(!audit.finish_deployment(&deploy).await.unwrap());
    assert_eq!(
        audit.deployments(&f.env, 1).await.unwrap()[0].status,
        DeploymentStatus::Abandoned
    );
    assert!(
        audit.env_state(&f.env).await.unwrap().is_first_deploy(),
        "a late finish moved the version"
    );

    // A run nobody abandoned finishes as usual.
    let mut fresh = run_record(&f, "ok", RunStatus::Running);
    audit.start_run(&fresh).await.unwrap();
    fresh.status = RunStatus::Succeeded;
    assert!(audit.finish_run(&fresh).await.unwrap());

    // A deploy records a run's end with the next run's start: the late end is refused as
    // above, and the next run is recorded `running` all the same.
    let mut late = run_record(&f, "late", RunStatus::Running);
    audit.start_run(&late).await.unwrap();
    audit
        .abandon_unfinished(&f.env, "abandoned: taken over")
        .await
        .unwrap();
    late.status = RunStatus::Succeeded;
    let next = run_record(&f, "next", RunStatus::Running);
    assert!(!audit.finish_run_and_start(&late, &next).await.unwrap());
    let stored = audit.run(&late.id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Abandoned);
    assert_eq!(
        audit.run(&next.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    // Nobody abandoned `next`: its end and a third run's start are both recorded.
    let mut next = next;
    next.status = RunStatus::Succeeded;
    next.ended_at = Some(Timestamp::now());
    let third = run_record(&f, "third", RunStatus::Running);
    assert!(audit.finish_run_and_start(&next, &third).await.unwrap());
    assert_eq!(
        audit.run(&next.id).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(
        audit.run(&third.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    assert!(
        audit
            .env_state(&f.env)
            .await
            .unwrap()
            .last_success
            .contains_key("next"),
        "a success recorded with the next start is the task's last success"
    );
}

/// Cleaning up after a dead writer (`Backend::abandon_unfinished`) stops what its runs left
/// going, not only their records: on `local` the run's processes and its unpacked bundle, on
/// `aws` the runner, through the run's cancel object. Deployments run nothing to stop.
async fn orphans_of_a_dead_writer_are_stopped(f: Fixture) {
    let orphan = run_record(&f, "ok", RunStatus::Running);
    f.backend.audit.start_run(&orphan).await.unwrap();
    let deploy = Deployment {
        status: DeploymentStatus::Running,
        ended_at: None,
        ..deployment(&f, "v9", DeploymentStatus::Running, None)
    };
    f.backend.audit.start_deployment(&deploy).await.unwrap();
    let leftovers = f.leave_running(orphan.id.as_str());

    let mut abandoned = f
        .backend
        .abandon_unfinished(&f.env, "abandoned: writer died")
        .await
        .unwrap();
    abandoned.sort();
    let mut expected = vec![orphan.id.to_string(), deploy.id.clone()];
    expected.sort();
    assert_eq!(abandoned, expected);
    assert_eq!(
        f.backend
            .audit
            .run(&orphan.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Abandoned
    );
    f.assert_stopped(orphan.id.as_str(), leftovers).await;
    f.assert_not_stopped(&deploy.id).await;
}

/// A record the backend cannot read back is an error of kind `Corrupt`, whichever provider
/// stores it: callers can tell it from a backend that is missing, refusing or unreachable.
async fn a_record_that_does_not_read_back_is_corrupt(f: Fixture) {
    let run = run_record(&f, "ok", RunStatus::Running);
    f.backend.audit.start_run(&run).await.unwrap();
    f.damage_run(run.id.as_str()).await;
    let error = f.backend.audit.run(&run.id).await.unwrap_err();
    assert_eq!(error.kind, BackendErrorKind::Corrupt, "{error}");
}

/// What a run of a dead writer left behind, for [`Fixture::assert_stopped`].
enum Leftovers {
    /// A process carrying the run's id, in its own process group as the executor starts
    /// tasks, and the run's unpacked bundle.
    Local {
        process: std::process::Child,
        work_dir: std::path::PathBuf,
    },
    /// Nothing to plant: a Lambda invocation cannot be faked, only its cancel object read.
    Aws,
}

impl Fixture {
    fn leave_running(&self, run_id: &str) -> Leftovers {
        match &self.aws {
            None => {
                use std::os::unix::process::CommandExt;
                let work_dir = self.project.lumo_dir().join("work").join(run_id);
                fs::create_dir_all(&work_dir).unwrap();
                fs::write(work_dir.join("bundle-file"), "x").unwrap();
                let process = std::process::Command::new("sleep")
                    .arg("60")
                    .env("LUMO_RUN_ID", run_id)
                    .process_group(0)
                    .spawn()
                    .unwrap();
                Leftovers::Local { process, work_dir }
            }
            Some(_) => Leftovers::Aws,
        }
    }

    async fn assert_stopped(&self, run_id: &str, leftovers: Leftovers) {
        match leftovers {
            Leftovers::Local {
                mut process,
                work_dir,
            } => {
                let waited = std::time::Instant::now();
                while process.try_wait().unwrap().is_none() {
                    assert!(
                        waited.elapsed() < Duration::from_secs(5),
                        "the orphan's process still runs"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert!(!work_dir.exists(), "the orphan's work dir is still there");
            }
            Leftovers::Aws => {
                let aws = self.aws.as_ref().unwrap();
                let pointer = format!(
                    "s3://{}/{}/logs/{run_id}.cancel",
                    aws.bucket, self.project.config.project_name
                );
                let body = aws.object(&pointer).await;
                assert_eq!(body, b"abandoned: writer died");
            }
        }
    }

    async fn assert_not_stopped(&self, id: &str) {
        if let Some(aws) = &self.aws {
            let key = format!("{}/logs/{id}.cancel", self.project.config.project_name);
            assert!(
                aws.s3()
                    .head_object()
                    .bucket(&aws.bucket)
                    .key(&key)
                    .send()
                    .await
                    .is_err(),
                "a cancel object was written for `{id}`, which is no run"
            );
        }
    }

    /// Makes the stored run `id` unreadable, as a hand edit or a bug would.
    async fn damage_run(&self, id: &str) {
        match &self.aws {
            None => {
                let db =
                    rusqlite::Connection::open(self.project.lumo_dir().join("lumo.db")).unwrap();
                db.execute("UPDATE runs SET status = 'bogus' WHERE id = ?1", [id])
                    .unwrap();
            }
            Some(aws) => {
                let item = aws.run_item(id).await;
                aws_sdk_dynamodb::Client::new(&aws.sdk)
                    .update_item()
                    .table_name(&aws.table)
                    .key("pk", item["pk"].clone())
                    .key("sk", item["sk"].clone())
                    .update_expression("SET #status = :bogus")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":bogus", AttributeValue::S("bogus".into()))
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

/// Events are kept and listed newest first.
async fn events_are_recorded(f: Fixture) {
    for (i, kind) in [
        EventKind::Locked,
        EventKind::ForceUnlocked,
        EventKind::Refused,
    ]
    .into_iter()
    .enumerate()
    {
        let event = AuditEvent {
            id: new_id(),
            project: f.project.config.project_name.clone(),
            env: f.env.clone(),
            kind,
            actor: format!("actor-{i}"),
            at: Timestamp::now(),
            message: format!("event {i}"),
        };
        f.backend.audit.record_event(&event).await.unwrap();
    }
    let events = f.backend.audit.events(&f.env, 2).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Refused, EventKind::ForceUnlocked]);
    assert_eq!(events[0].actor, "actor-2");
}

/// Every contract check against every provider: one test module per provider, one test per
/// check. The list of providers is here and nowhere else.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        conformance!(@providers [local, aws] [$($name),*]);
    };
    (@providers [$($provider:ident),*] $checks:tt) => {
        $(conformance!(@provider $provider $checks);)*
    };
    (@provider $provider:ident [$($name:ident),*]) => {
        mod $provider {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(fixture) = super::fixtures::$provider().await else { return };
                    super::$name(fixture).await;
                }
            )*
        }
    };
}

conformance!(
    bundles_are_stored_once,
    state_moves_only_with_a_successful_deployment,
    runs_are_recorded_and_queried_newest_first,
    runs_are_found_by_a_prefix_of_their_id,
    tasks_run_and_their_output_is_kept,
    commands_run_with_or_without_a_bundle,
    an_exec_run_keeps_its_command_and_is_no_task_success,
    a_task_history_is_its_own_runs_not_the_execs_in_its_bundle,
    large_data_is_kept,
    the_writer_lock_is_exclusive,
    an_expired_writer_is_displaced,
    a_manual_lock_keeps_others_out,
    unfinished_work_is_abandoned,
    a_late_finish_cannot_overwrite_abandoned,
    orphans_of_a_dead_writer_are_stopped,
    a_record_that_does_not_read_back_is_corrupt,
    events_are_recorded,
);

/// What only one provider can be made to do here, asserted on its error's kind.
mod provider_specific {
    use super::*;

    /// A table that is not there (a wrong `aws.table`, another region) is `NotFound`.
    #[tokio::test]
    async fn aws_a_missing_table_is_not_found() {
        let Some(emulators) = lumo_testkit::emulators() else {
            return;
        };
        let mut f = aws_fixture(emulators).await;
        let aws = f.aws.as_mut().unwrap();
        aws.table = lumo_testkit::unique("no-such-table");
        write_project(
            f.project.root(),
            &format!(
                "provider: 'aws', region: 'us-east-1', aws: {{ bucket: '{}', table: '{}' }}",
                aws.bucket, aws.table
            ),
        );
        let project = Project::load(Some(&f.project.root().join("lumo.config.js")), None).unwrap();
        let options = ConnectOptions {
            aws: AwsFlags {
                runner: Some(emulators.runner_bin.clone()),
                ..AwsFlags::default()
            },
            ..ConnectOptions::default()
        };
        let backend = lumo_cli::backend::aws::with_sdk_config(&project, &options, &aws.sdk)
            .await
            .unwrap();
        let error = backend.audit.env_state(&f.env).await.unwrap_err();
        assert_eq!(error.kind, BackendErrorKind::NotFound, "{error}");
    }

    /// On `aws` a prefix is looked up in the environments the config names (the table is keyed
    /// by environment, and `by-id` by the whole id alone): a run of another environment is
    /// found by its whole id only.
    #[tokio::test]
    async fn aws_a_prefix_finds_runs_of_the_named_environments_only() {
        let Some(emulators) = lumo_testkit::emulators() else {
            return;
        };
        let f = aws_fixture(emulators).await;
        let mut elsewhere = run_record(&f, "ok", RunStatus::Succeeded);
        elsewhere.env = format!("{}y", f.env);
        f.backend.audit.start_run(&elsewhere).await.unwrap();
        let found = f
            .backend
            .audit
            .runs_by_id_prefix(&elsewhere.id.as_str()[..20], None, 5)
            .await
            .unwrap();
        assert!(found.is_empty(), "{found:?}");
        let whole = f.backend.audit.run(&elsewhere.id).await.unwrap();
        assert_eq!(whole.map(|r| r.env), Some(elsewhere.env.clone()));
        let named = f
            .backend
            .audit
            .runs_by_id_prefix(&elsewhere.id.as_str()[..20], Some(&elsewhere.env), 5)
            .await
            .unwrap();
        assert_eq!(named.len(), 1, "{named:?}");
    }

    /// On `local` the store's index spans the project: a prefix finds a run of any environment,
    /// named by the config or not.
    #[tokio::test]
    async fn local_a_prefix_finds_runs_of_every_environment() {
        let f = local_fixture().await;
        let mut elsewhere = run_record(&f, "ok", RunStatus::Succeeded);
        elsewhere.env = "unnamed".into();
        f.backend.audit.start_run(&elsewhere).await.unwrap();
        let found = f
            .backend
            .audit
            .runs_by_id_prefix(&elsewhere.id.as_str()[..20], None, 5)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].env, "unnamed");
    }

    /// A `.lumo/lumo.db` that is not a database is `Corrupt`, and says how to start afresh.
    #[tokio::test]
    async fn local_a_store_that_is_not_a_database_is_corrupt() {
        let f = local_fixture().await;
        drop(f.backend);
        fs::write(f.project.lumo_dir().join("lumo.db"), vec![7u8; 8192]).unwrap();
        let error = match lumo_cli::backend::connect(&f.project, &ConnectOptions::default()).await {
            Ok(_) => panic!("a store of garbage opened"),
            Err(e) => e,
        };
        assert_eq!(error.kind, BackendErrorKind::Corrupt, "{error}");
        assert!(error.hint.unwrap_or_default().contains("move it away"));
    }

    /// Regression (issue 10, defect 8): on a full logs disk the task's success was recorded
    /// `failed` "backend error: cannot run task". The outcome stands (status, exit code, the
    /// task's message) and the message names the storage failure, as on `aws`. The log file is
    /// linked to `/dev/full`, where every write fails with ENOSPC as on a full disk.
    ///
    /// Regression: each run warned twice (the runner when the write failed, the backend when
    /// it got the failure with the outcome), shown even with `--quiet`; one warning a run.
    #[tokio::test]
    async fn local_a_full_log_disk_keeps_the_outcome() {
        let full = Path::new("/dev/full");
        assert!(full.exists(), "this test needs /dev/full (Linux)");
        let warnings = CapturedLog::default();
        // The test's runtime runs the whole run on this thread.
        let _capture = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(warnings.clone())
                .finish(),
        );
        let f = local_fixture().await;
        let built = build(&f, &["ok", "fails"]);
        for (bundle, status, exit_code, said) in [
            (&built[0], RunStatus::Succeeded, Some(0), "done with ***"),
            (&built[1], RunStatus::Failed, Some(3), "about to fail"),
        ] {
            let id = new_id();
            let log = f.project.lumo_dir().join("logs").join(format!("{id}.log"));
            std::os::unix::fs::symlink(full, &log).unwrap();
            let report = f
                .backend
                .executor
                .run(request(&f, bundle, &id), &mut Vec::new())
                .await
                .unwrap();
            assert_eq!(report.outcome.status, status, "{report:?}");
            assert_eq!(report.outcome.exit_code, exit_code, "{report:?}");
            let message = &report.outcome.message;
            assert!(
                message.contains(said)
                    && message.contains("(the log could not be stored: No space left on device"),
                "{message}"
            );
            // The cut-off log is not left to pass for the whole output: without it, `lumo logs`
            // says the full output is not stored and shows the record's tail.
            assert!(
                fs::symlink_metadata(&log).is_err(),
                "the partial log `{}` is gone",
                log.display()
            );
            let said = warnings.take();
            assert_eq!(
                said.lines().filter(|l| l.contains("WARN")).count(),
                1,
                "one warning for the run: {said}"
            );
            assert!(said.contains(&format!("{id}.log")), "{said}");
        }
    }

    /// What tracing prints, kept for a test to read.
    #[derive(Clone, Default)]
    struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl CapturedLog {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    impl std::io::Write for CapturedLog {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
        type Writer = CapturedLog;
        fn make_writer(&'a self) -> CapturedLog {
            self.clone()
        }
    }

    /// A config that cannot open the provider is the backend's own error, of kind `Invalid`
    /// (exit code 2 at the CLI), with the config's problems by key path.
    #[tokio::test]
    async fn aws_without_a_bucket_and_table_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), "provider: 'aws', region: 'us-east-1'");
        let project = Project::load(Some(&dir.path().join("lumo.config.js")), None).unwrap();
        let error = match lumo_cli::backend::connect(&project, &ConnectOptions::default()).await {
            Ok(_) => panic!("the aws backend opened without a bucket"),
            Err(e) => e,
        };
        assert_eq!(error.kind, BackendErrorKind::Invalid, "{error}");
        let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["aws.bucket", "aws.table"]);
    }
}
