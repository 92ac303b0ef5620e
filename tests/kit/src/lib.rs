//! The AWS emulators (`tests/emulators/harness.py`: moto behind a loopback router that runs the
//! real `lumo-runner` for Invoke) as seen from Rust tests: started once per test process,
//! stopped by the harness itself when the process ends.
//!
//! [`emulators`] returns `None` (and says so) when the emulator venv is missing, so `cargo
//! test` works on a machine without Python; with `CI=true` a missing emulator is a failure.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde::Deserialize;

/// A running harness.
pub struct Emulators {
    pub endpoint: String,
    pub runner_role_arn: String,
    pub runner_bin: PathBuf,
    pub log_dir: PathBuf,
    _child: Mutex<Child>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ready {
    endpoint: String,
    runner_role_arn: String,
    runner_bin: PathBuf,
    log_dir: PathBuf,
}

/// Request counts seen by the router (`GET /_harness/counters`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub s3_put_object: u64,
    pub lambda_create_function: u64,
    pub lambda_update_function_code: u64,
    pub lambda_update_function_configuration: u64,
    pub lambda_invoke: u64,
    #[serde(default)]
    pub lambda_invoke_by_function: BTreeMap<String, u64>,
}

/// `aws.architecture` for the host: the emulators run the runner built for this machine, and a
/// deploy refuses a runner built for another architecture than the config's.
pub const HOST_ARCHITECTURE: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "x86_64"
};

/// The repository root (this crate lives in `tests/kit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The emulator venv: `LUMO_EMULATOR_VENV`, else the default `tests/emulators/setup` uses.
fn venv() -> Option<PathBuf> {
    let path = std::env::var_os("LUMO_EMULATOR_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lumo/emulators-venv"))
        })?;
    path.join("bin/python").is_file().then_some(path)
}

/// The shared harness, started on first use. `None` when the emulators are not installed and
/// this is not CI (the caller skips, loudly); panics in CI or when the harness fails to start.
pub fn emulators() -> Option<&'static Emulators> {
    emulators_with(&[])
}

/// [`emulators`], the harness started with `harness_args` too (`--lambda-env K=V`, ...). One
/// harness serves the whole test process, so every caller in it must pass the same arguments.
pub fn emulators_with(harness_args: &[&str]) -> Option<&'static Emulators> {
    static HARNESS: OnceLock<(Vec<String>, Option<Emulators>)> = OnceLock::new();
    let wanted: Vec<String> = harness_args.iter().map(|a| a.to_string()).collect();
    let (args, harness) = HARNESS.get_or_init(|| {
        let harness = match venv() {
            Some(venv) => Some(start(&venv, &wanted)),
            None if in_ci() => panic!(
                "CI=true but the AWS emulators are not installed: run `tests/emulators/setup` \
                 (or set LUMO_EMULATOR_VENV)"
            ),
            None => {
                eprintln!(
                    "SKIPPED: AWS emulator tests: no emulator venv (run `tests/emulators/setup`, or use `tests/run`)"
                );
                None
            }
        };
        (wanted.clone(), harness)
    });
    assert_eq!(
        args, &wanted,
        "one test process asked for the emulator harness with different arguments"
    );
    harness.as_ref()
}

fn start(venv: &Path, harness_args: &[String]) -> Emulators {
    let root = repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let log_dir = target
        .join("emulators")
        .join(format!("harness-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    let stderr = std::fs::File::create(log_dir.join("harness-stderr.log")).unwrap();
    let mut child = Command::new(venv.join("bin/python"))
        .arg(root.join("tests/emulators/harness.py"))
        .arg("--workspace")
        .arg(&root)
        .arg("--log-dir")
        .arg(&log_dir)
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        // A cold build of the runner happens here, once; give it time on a busy machine.
        .args(["--startup-timeout", "900"])
        .args(harness_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the emulator harness: {e}"));
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let ready: Ready = serde_json::from_str(&line).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(log_dir.join("harness-stderr.log")).unwrap_or_default();
        panic!("the emulator harness did not start ({e}); its stderr:\n{log}")
    });
    Emulators {
        endpoint: ready.endpoint,
        runner_role_arn: ready.runner_role_arn,
        runner_bin: ready.runner_bin,
        log_dir: ready.log_dir,
        _child: Mutex::new(child),
    }
}

impl Emulators {
    /// The environment a process needs to talk to the emulators (and nothing else).
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }

    fn get(&self, path: &str) -> String {
        ureq::get(format!("{}{path}", self.endpoint))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    }

    fn post(&self, path: &str, body: &str) -> String {
        ureq::post(format!("{}{path}", self.endpoint))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    }

    pub fn counters(&self) -> Counters {
        serde_json::from_str(&self.get("/_harness/counters")).unwrap()
    }

    /// Every connection is dropped for `seconds` (0 ends an outage).
    pub fn outage(&self, seconds: f64) {
        self.post("/_harness/outage", &format!("{{\"seconds\": {seconds}}}"));
    }

    /// The next `count` requests `method path` take effect in moto but lose their response
    /// (the connection is closed instead): what the SDK sees when the network fails late.
    pub fn lose_responses(&self, method: &str, path: &str, count: u32) {
        self.post(
            "/_harness/lose-response",
            &serde_json::json!({ "method": method, "path": path, "count": count }).to_string(),
        );
    }

    /// Stops every runner instance: the next Invoke is a cold start with an empty cache.
    pub fn reset_lambda(&self) {
        self.post("/_harness/lambda/reset", "{}");
    }

    /// An SDK config pointed at the emulators with test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "lumo-testkit",
            ))
            .load()
            .await
    }

    /// Creates a bucket and a table shaped as `infra/lumo.yaml` makes them.
    pub async fn create_bucket_and_table(&self, bucket: &str, table: &str) {
        let sdk = self.sdk_config().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .unwrap()
        };
        let all = Projection::builder()
            .projection_type(ProjectionType::All)
            .build();
        dynamo
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .attribute_definitions(attr("gsi1pk"))
            .attribute_definitions(attr("gsi1sk"))
            .attribute_definitions(attr("gsi2pk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("by-task")
                    .key_schema(key("gsi1pk", KeyType::Hash))
                    .key_schema(key("gsi1sk", KeyType::Range))
                    .projection(all.clone())
                    .build()
                    .unwrap(),
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("by-id")
                    .key_schema(key("gsi2pk", KeyType::Hash))
                    .projection(all)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
}

/// A name unique in this test process and across processes: `prefix-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}
