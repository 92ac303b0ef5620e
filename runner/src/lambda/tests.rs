//! The runner function end to end, short of Lambda itself: [`invoke`] with hand-built requests
//! against a small HTTP server on 127.0.0.1 that stands in for S3's presigned URLs (serves
//! bundle zips on GET, records PUT bodies).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::*;
use crate::bundle::tests::{ZipItem, write_zip};
use crate::bundle::to_hex;
use lambda_runtime::Diagnostic;

use super::run::{cap_message, effective_timeout};
use crate::contract::{
    BundleManifest, DeploymentInfo, Entry, MANIFEST_PATH, RunStatus, TaskContext, Trigger,
};
use crate::executor::DiscardOutput;
use crate::invoke::{RESPONSE_VERSION, UploadTarget};
use crate::task_run::TaskSpec;

/// The part of a presigned URL that must never show: it holds the signature.
const SIGNATURE: &str = "X-Amz-Signature=do-not-print-me";

const SECRET: &str = "s3cr3t-value";

// ---- a stand-in for S3 ------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Put {
    /// Header names in lowercase.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct ServerState {
    /// Path → (status, body) for GET.
    objects: HashMap<String, (u16, Vec<u8>)>,
    gets: HashMap<String, usize>,
    /// The status every PUT gets (200 unless a test says otherwise).
    put_status: Option<u16>,
    puts: HashMap<String, Put>,
}

struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { addr, state }
    }

    /// A presigned-looking URL for `key`.
    fn url(&self, key: &str) -> String {
        format!(
            "http://{}/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&{SIGNATURE}",
            self.addr
        )
    }

    fn serve_object(&self, key: &str, status: u16, body: Vec<u8>) {
        let mut state = self.state.lock().unwrap();
        state.objects.insert(format!("/{key}"), (status, body));
    }

    fn fail_puts(&self, status: u16) {
        self.state.lock().unwrap().put_status = Some(status);
    }

    fn gets(&self, key: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.gets.get(&format!("/{key}")).copied().unwrap_or(0)
    }

    fn put(&self, key: &str) -> Option<Put> {
        self.state
            .lock()
            .unwrap()
            .puts
            .get(&format!("/{key}"))
            .cloned()
    }
}

/// One request per connection (`Connection: close`), which is all the runner needs.
fn serve(stream: TcpStream, state: &Mutex<ServerState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, reply) = {
        let mut state = state.lock().unwrap();
        match method.as_str() {
            "GET" => {
                *state.gets.entry(path.clone()).or_default() += 1;
                state
                    .objects
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, b"NoSuchKey".to_vec()))
            }
            "PUT" => {
                let status = state.put_status.unwrap_or(200);
                if status == 200 {
                    state.puts.insert(path, Put { headers, body });
                }
                (status, Vec::new())
            }
            _ => (405, Vec::new()),
        }
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    );
    let _ = stream.write_all(&reply);
}

// ---- bundles and requests ---------------------------------------------------------------

fn bundle_zip(entry: Entry, files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.zip");
    let manifest = serde_json::to_vec(&BundleManifest {
        task: "migrate".into(),
        entry,
    })
    .unwrap();
    let mut items = vec![ZipItem::File {
        name: MANIFEST_PATH,
        body: &manifest,
        mode: 0o644,
    }];
    for (name, body) in files {
        items.push(ZipItem::File {
            name,
            body,
            mode: 0o755,
        });
    }
    write_zip(&path, &items);
    std::fs::read(&path).unwrap()
}

/// A bundle whose entry `run.sh` is `script`.
fn script_bundle(script: &str) -> Vec<u8> {
    bundle_zip(
        Entry::Program("run.sh".into()),
        &[("run.sh", script.as_bytes())],
    )
}

fn sha256(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// A test's S3 stand-in, its bundle and its runner directory.
struct Fixture {
    server: Server,
    dir: tempfile::TempDir,
    key: String,
    sha256: String,
}

impl Fixture {
    fn new(zip: Vec<u8>) -> Fixture {
        let server = Server::start();
        let sha256 = sha256(&zip);
        let key = format!("my-app/bundles/{sha256}.zip");
        server.serve_object(&key, 200, zip);
        Fixture {
            server,
            dir: tempfile::tempdir().unwrap(),
            key,
            sha256,
        }
    }

    fn config(&self) -> RunnerConfig {
        RunnerConfig {
            cache_dir: self.dir.path().join("cache"),
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            deadline_margin: Duration::from_millis(500),
            kill_grace: Duration::from_millis(300),
            cancel_poll: Duration::from_millis(50),
            stream_limit: DEFAULT_STREAM_LIMIT,
        }
    }

    fn request(&self, run_id: &str) -> InvokeRequest {
        let target = |key: String| UploadTarget {
            url: self.server.url(&key),
            key,
        };
        let context = TaskContext {
            deployment: DeploymentInfo {
                is_first_deploy: false,
                previous_version: Some("v1".into()),
                environment: "prod".into(),
                version: "v2".into(),
            },
            config: json!({}),
            args: BTreeMap::new(),
            working_directory: String::new(),
            task: "migrate".into(),
            run_id: run_id.into(),
            trigger: Trigger::Update,
        };
        let mut spec = TaskSpec::new(context, Duration::from_secs(20));
        spec.secrets = BTreeMap::from([("API_TOKEN".to_owned(), SECRET.to_owned())]);
        let bundle = BundleLocation {
            key: self.key.clone(),
            sha256: BundleHash::parse(&self.sha256).unwrap(),
            url: self.server.url(&self.key),
        };
        InvokeRequest {
            log_upload: Some(target(format!("my-app/logs/{run_id}.log"))),
            data_upload: Some(target(format!("my-app/logs/{run_id}.data.json"))),
            // Never written unless a test does: every run looks for it and goes on.
            cancel_url: Some(self.server.url(&format!("my-app/logs/{run_id}.cancel"))),
            ..InvokeRequest::new(spec, Some(bundle))
        }
    }

    fn cached_zips(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.config().bundles_dir()) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn far_deadline() -> SystemTime {
    SystemTime::now() + Duration::from_secs(120)
}

// ---- the tests --------------------------------------------------------------------------

#[tokio::test]
async fn the_cli_s_cancel_object_stops_the_task_as_on_a_timeout() {
    let fixture = Fixture::new(script_bundle(
        "#!/bin/sh\n\
         trap 'echo got TERM; exit 143' TERM\n\
         echo started\n\
         sleep 30 &\n\
         wait\n",
    ));
    let config = fixture.config();
    let started = std::time::Instant::now();
    let cancel = async {
        // Looked for and not there: the task runs on.
        while fixture.server.gets("my-app/logs/run-c.cancel") < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fixture
            .server
            .serve_object("my-app/logs/run-c.cancel", 200, b"interrupted".to_vec());
    };
    let mut output = DiscardOutput;
    let both = async {
        tokio::join!(
            invoke(
                &config,
                fixture.request("run-c"),
                far_deadline(),
                &mut output
            ),
            cancel
        )
    };
    let (response, ()) = tokio::time::timeout(Duration::from_secs(20), both)
        .await
        .expect("the cancelled run did not end");
    let response = response.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.outcome.status, RunStatus::Failed, "{response:?}");
    assert_eq!(response.outcome.message, "stopped before it ended");
    assert_eq!(response.outcome.output_tail, "started\ngot TERM\n");
    assert!(response.log_uploaded, "the output is kept");
}

#[tokio::test]
async fn a_cancel_object_s3_refuses_to_show_is_not_there() {
    // S3 answers 403 for a missing key to a signer that may not list the bucket.
    let fixture = Fixture::new(script_bundle("#!/bin/sh\nsleep 0.4; echo ok\n"));
    fixture
        .server
        .serve_object("my-app/logs/run-f.cancel", 403, b"AccessDenied".to_vec());
    let response = invoke(
        &fixture.config(),
        fixture.request("run-f"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(
        response.outcome.status,
        RunStatus::Succeeded,
        "{response:?}"
    );
    assert!(fixture.server.gets("my-app/logs/run-f.cancel") >= 2);
}

#[tokio::test]
async fn a_run_without_a_cancel_url_is_not_watched() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\nsleep 0.3; echo ok\n"));
    let mut request = fixture.request("run-n");
    request.cancel_url = None;
    let response = invoke(
        &fixture.config(),
        request,
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(
        response.outcome.status,
        RunStatus::Succeeded,
        "{response:?}"
    );
    assert_eq!(fixture.server.gets("my-app/logs/run-n.cancel"), 0);
}

/// What a streaming response (issue 11) builds on: the observer gets the task's output as it
/// comes, masked like the log, while the response and the uploaded log stay as they were.
#[tokio::test]
async fn the_observer_sees_the_masked_output_while_the_log_still_gets_it_all() {
    let fixture = Fixture::new(script_bundle(
        "#!/bin/sh\necho starting\necho \"token is $API_TOKEN\" >&2\necho finished\n",
    ));
    let mut seen = Vec::new();
    let response = invoke(
        &fixture.config(),
        fixture.request("run-1"),
        far_deadline(),
        &mut seen,
    )
    .await
    .unwrap();
    let expected = "starting\ntoken is ***\nfinished\n";
    assert_eq!(String::from_utf8(seen).unwrap(), expected);
    assert_eq!(response.outcome.output_tail, expected);
    let log = fixture.server.put("my-app/logs/run-1.log").unwrap();
    assert_eq!(String::from_utf8(log.body).unwrap(), expected);
}

#[tokio::test]
async fn runs_the_task_and_uploads_its_full_masked_output() {
    let fixture = Fixture::new(script_bundle(
        "#!/bin/sh\n\
         echo starting\n\
         echo \"token is $API_TOKEN\" >&2\n\
         printf '{\"success\":true,\"message\":\"done\",\"data\":{\"n\":1}}' > \"$LUMO_RESULT_FILE\"\n\
         echo finished\n",
    ));
    let config = fixture.config();
    let response = invoke(
        &config,
        fixture.request("run-1"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();

    let expected_log = "starting\ntoken is ***\nfinished\n";
    assert_eq!(
        response.outcome.status,
        RunStatus::Succeeded,
        "{response:?}"
    );
    assert_eq!(response.outcome.exit_code, Some(0));
    assert_eq!(response.outcome.signal, None);
    assert_eq!(response.outcome.message, "done");
    assert_eq!(response.outcome.data, Some(json!({"n": 1})));
    assert!(!response.data_uploaded);
    assert_eq!(response.outcome.output_tail, expected_log);
    assert_eq!(response.outcome.output_bytes, expected_log.len() as u64);
    assert!(response.log_uploaded);
    assert_eq!(response.upload_error, None);
    assert_eq!(response.runner_version, env!("CARGO_PKG_VERSION"));
    let wire = serde_json::to_value(&response).unwrap();
    let (started_at_ms, ended_at_ms) = (&wire["startedAtMs"], &wire["endedAtMs"]);
    assert!(started_at_ms.as_i64() > Some(0) && started_at_ms.as_i64() <= ended_at_ms.as_i64());

    let log = fixture.server.put("my-app/logs/run-1.log").unwrap();
    assert_eq!(String::from_utf8(log.body).unwrap(), expected_log);
    assert_eq!(
        log.headers.get("content-type").map(String::as_str),
        Some("text/plain; charset=utf-8")
    );
    // S3 refuses chunked uploads to presigned URLs: the length goes up front.
    assert_eq!(
        log.headers.get("content-length").map(String::as_str),
        Some(expected_log.len().to_string().as_str())
    );
    assert!(!log.headers.contains_key("transfer-encoding"));
    // Small data stays in the response.
    assert!(fixture.server.put("my-app/logs/run-1.data.json").is_none());

    // The bundle is cached under its hash; the run's files are gone.
    assert_eq!(
        fixture.cached_zips(),
        vec![format!("{}.zip", fixture.sha256)]
    );
    assert!(!config.work_dir().join("run-1").exists());
    assert_eq!(std::fs::read_dir(config.logs_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn data_over_256_kib_goes_to_data_upload() {
    let fixture = Fixture::new(script_bundle(
        "#!/bin/sh\n\
         big=$(head -c 300000 /dev/zero | tr '\\0' a)\n\
         printf '{\"success\":true,\"message\":\"big\",\"data\":{\"blob\":\"%s\"}}' \"$big\" > \"$LUMO_RESULT_FILE\"\n",
    ));
    let config = fixture.config();
    let response = invoke(
        &config,
        fixture.request("run-1"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(
        response.outcome.status,
        RunStatus::Succeeded,
        "{response:?}"
    );
    assert_eq!(response.outcome.data, None);
    assert!(response.data_uploaded);
    assert_eq!(response.upload_error, None);
    let put = fixture.server.put("my-app/logs/run-1.data.json").unwrap();
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let uploaded: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(uploaded, json!({"blob": "a".repeat(300_000)}));

    // With nowhere to upload it, data that still fits the response is returned.
    let mut request = fixture.request("run-2");
    request.data_upload = None;
    let response = invoke(&config, request, far_deadline(), &mut DiscardOutput)
        .await
        .unwrap();
    assert_eq!(
        response.outcome.data,
        Some(json!({"blob": "a".repeat(300_000)}))
    );
    assert!(!response.data_uploaded);
}

#[tokio::test]
async fn a_download_with_the_wrong_sha256_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let mut fixture = Fixture::new(bundle_zip(
        Entry::Command(format!("touch '{}'", marker.display())),
        &[],
    ));
    let served = fixture.sha256.clone();
    fixture.sha256 = sha256(b"the bundle that was built");
    let response = invoke(
        &fixture.config(),
        fixture.request("run-1"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();

    assert_eq!(response.outcome.status, RunStatus::Failed, "{response:?}");
    assert_eq!(response.outcome.exit_code, None);
    assert!(
        response.outcome.message.contains("sha256"),
        "{}",
        response.outcome.message
    );
    assert!(
        response
            .outcome
            .message
            .contains(&format!("has sha256 {served}, expected {}", fixture.sha256)),
        "{}",
        response.outcome.message
    );
    assert!(
        response.outcome.message.contains(&fixture.key),
        "{}",
        response.outcome.message
    );
    assert!(!marker.exists(), "the refused bundle ran");
    assert!(!response.log_uploaded);
    assert!(fixture.server.put("my-app/logs/run-1.log").is_none());
    // Neither the download nor a partial file is kept.
    assert_eq!(fixture.cached_zips(), Vec::<String>::new());
}

#[tokio::test]
async fn a_cached_bundle_runs_without_downloading_again() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\necho ok\n"));
    let config = fixture.config();
    let first = invoke(
        &config,
        fixture.request("run-1"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(first.outcome.status, RunStatus::Succeeded, "{first:?}");

    // S3 now fails every GET: only the cache can make the second run work.
    fixture.server.serve_object(&fixture.key, 500, Vec::new());
    let second = invoke(
        &config,
        fixture.request("run-2"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(second.outcome.status, RunStatus::Succeeded, "{second:?}");
    assert_eq!(second.outcome.message, "ok");
    assert_eq!(fixture.server.gets(&fixture.key), 1);
}

#[tokio::test]
async fn a_corrupt_cached_bundle_is_downloaded_again() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\necho ok\n"));
    let config = fixture.config();
    let cached = config.bundles_dir().join(format!("{}.zip", fixture.sha256));
    std::fs::create_dir_all(config.bundles_dir()).unwrap();
    std::fs::write(&cached, b"not the bundle").unwrap();

    let response = invoke(
        &config,
        fixture.request("run-1"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(
        response.outcome.status,
        RunStatus::Succeeded,
        "{response:?}"
    );
    assert_eq!(fixture.server.gets(&fixture.key), 1);
    assert_eq!(crate::bundle::sha256_file(&cached).unwrap(), fixture.sha256);
}

#[tokio::test]
async fn a_task_past_its_timeout_is_timed_out() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\necho waiting\nsleep 30\n"));
    let mut request = fixture.request("run-1");
    request.spec.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let response = invoke(
        &fixture.config(),
        request,
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(response.outcome.status, RunStatus::TimedOut, "{response:?}");
    assert_eq!(response.outcome.message, "timed out after 300ms");
    assert_eq!(response.outcome.output_tail, "waiting\n");
    assert!(response.log_uploaded);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_near_deadline_lowers_the_timeout_so_the_run_ends_before_it() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\nsleep 30\n"));
    let mut request = fixture.request("run-1");
    request.spec.timeout = Duration::from_secs(60);
    // 3 s left, of which 0.5 s margin and 0.3 s kill grace are kept: about 2.2 s for the task,
    // less the download.
    let deadline = SystemTime::now() + Duration::from_secs(3);
    let response = invoke(&fixture.config(), request, deadline, &mut DiscardOutput)
        .await
        .unwrap();
    assert!(
        SystemTime::now() < deadline,
        "the run went past the deadline"
    );
    assert_eq!(response.outcome.status, RunStatus::TimedOut, "{response:?}");
    assert!(
        response.outcome.message.starts_with("timed out after "),
        "{}",
        response.outcome.message
    );
    assert!(
        response
            .outcome
            .message
            .contains("the task's timeout of 60s was lowered"),
        "{}",
        response.outcome.message
    );
    // The output was still uploaded in the time kept for it.
    assert!(response.log_uploaded);
}

#[tokio::test]
async fn a_failed_download_is_an_error_naming_the_key_but_not_the_signature() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\necho ok\n"));
    fixture
        .server
        .serve_object(&fixture.key, 500, b"InternalError".to_vec());
    let err = invoke(
        &fixture.config(),
        fixture.request("run-1"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap_err();
    let message = error_chain(&err);
    assert!(message.contains(&fixture.key), "{message}");
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(!message.contains("do-not-print-me"), "{message}");
    assert!(!format!("{err:?}").contains("do-not-print-me"), "{err:?}");
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "lumo.BundleDownloadFailed");
    assert_eq!(diagnostic.error_message, message);
    assert_eq!(fixture.cached_zips(), Vec::<String>::new());

    // A server that is not there at all.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut request = fixture.request("run-2");
    request.bundle.as_mut().unwrap().url = format!("http://{addr}/{}?{SIGNATURE}", fixture.key);
    let err = invoke(
        &fixture.config(),
        request,
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap_err();
    let message = error_chain(&err);
    assert!(message.contains(&fixture.key), "{message}");
    assert!(!message.contains("do-not-print-me"), "{message}");
}

#[tokio::test]
async fn a_failed_upload_still_returns_the_outcome() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\necho done\nexit 3\n"));
    fixture.server.fail_puts(403);
    let response = invoke(
        &fixture.config(),
        fixture.request("run-1"),
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(response.outcome.status, RunStatus::Failed, "{response:?}");
    assert_eq!(response.outcome.exit_code, Some(3));
    assert_eq!(response.outcome.message, "exit code 3: done");
    assert!(!response.log_uploaded);
    let reason = response.upload_error.unwrap();
    assert!(reason.contains("my-app/logs/run-1.log"), "{reason}");
    assert!(reason.contains("HTTP 403"), "{reason}");
    assert!(!reason.contains("do-not-print-me"), "{reason}");
}

#[tokio::test]
async fn a_payload_that_is_not_an_invoke_request_is_an_error() {
    let err = parse_request(json!({"task": "migrate"})).unwrap_err();
    assert!(matches!(err, InvokeError::Payload { .. }), "{err}");
    assert!(err.to_string().contains("missing field"), "{err}");
    assert_eq!(Diagnostic::from(err).error_type, "lumo.InvalidPayload");

    // A secret never comes back in the message, even where serde would quote it.
    let fixture = Fixture::new(script_bundle("#!/bin/sh\n"));
    let mut payload = serde_json::to_value(fixture.request("run-1")).unwrap();
    payload["timeoutMs"] = json!(SECRET);
    let err = parse_request(payload).unwrap_err();
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(err.to_string().contains("***"), "{err}");

    // A hash that cannot name a cached file is refused before anything is fetched.
    let mut payload = serde_json::to_value(fixture.request("run-1")).unwrap();
    payload["bundle"]["sha256"] = json!("../../../etc/passwd");
    let err = parse_request(payload).unwrap_err();
    assert!(matches!(err, InvokeError::Payload { .. }), "{err}");
    assert_eq!(fixture.server.gets(&fixture.key), 0);
}

/// A CLI before the payload's version sends none, and is served; a newer CLI's payload of a
/// version this runner does not know runs nothing and says so (the CLI then says to deploy).
#[tokio::test]
async fn a_payload_of_an_unknown_version_is_refused_and_one_without_a_version_runs() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\necho ran\n"));
    let mut payload = serde_json::to_value(fixture.request("run-1")).unwrap();
    payload["v"] = json!(INVOKE_VERSION + 1);
    let err = parse_request(payload.clone()).unwrap_err();
    assert!(matches!(err, InvokeError::Payload { .. }), "{err}");
    assert!(
        err.to_string().contains("version 3 of the payload"),
        "{err}"
    );

    payload.as_object_mut().unwrap().remove("v");
    let request = parse_request(payload).unwrap();
    assert_eq!(request.v, 1);
    let response = invoke(
        &fixture.config(),
        request,
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(
        response.outcome.status,
        RunStatus::Succeeded,
        "{response:?}"
    );
    assert_eq!(response.outcome.output_tail, "ran\n");
    assert_eq!(response.v, RESPONSE_VERSION);
}

/// `lumo exec` on Lambda: a version-2 payload with a command and no bundle runs the command in
/// an empty directory (nothing is downloaded), masks the secrets, uploads the log; with the
/// task's bundle, the command sees its files.
#[tokio::test]
async fn a_command_run_runs_its_argv_with_or_without_the_bundle() {
    let fixture = Fixture::new(script_bundle("#!/bin/sh\necho the entry ran\n"));
    let mut request = fixture.request("run-1");
    request.spec.argv = Some(vec![
        "sh".into(),
        "-c".into(),
        "ls -A; echo \"secret $API_TOKEN\"; exit 3".into(),
    ]);
    let payload = serde_json::to_value(InvokeRequest::new(request.spec.clone(), None)).unwrap();
    let request = InvokeRequest {
        log_upload: request.log_upload.clone(),
        ..parse_request(payload).unwrap()
    };
    assert_eq!(request.v, 2);
    let response = invoke(
        &fixture.config(),
        request,
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(response.outcome.status, RunStatus::Failed, "{response:?}");
    assert_eq!(response.outcome.exit_code, Some(3));
    assert_eq!(response.outcome.output_tail, "secret ***\n");
    assert!(response.log_uploaded);
    assert_eq!(fixture.server.gets(&fixture.key), 0, "no bundle fetched");

    let mut request = fixture.request("run-2");
    request.spec.argv = Some(vec!["sh".into(), "-c".into(), "cat run.sh".into()]);
    let request = InvokeRequest::new(request.spec.clone(), request.bundle.clone());
    let response = invoke(
        &fixture.config(),
        request,
        far_deadline(),
        &mut DiscardOutput,
    )
    .await
    .unwrap();
    assert_eq!(
        response.outcome.status,
        RunStatus::Succeeded,
        "{response:?}"
    );
    assert!(
        response.outcome.output_tail.contains("echo the entry ran"),
        "the command read the bundle's file instead of running it: {response:?}"
    );
}

#[test]
fn the_timeout_is_lowered_only_when_the_deadline_needs_it() {
    let now = SystemTime::now();
    let reserve = Duration::from_secs(8);
    let far = now + Duration::from_secs(900);
    assert_eq!(
        effective_timeout(Duration::from_secs(60), far, now, reserve),
        (Duration::from_secs(60), false)
    );
    assert_eq!(
        effective_timeout(Duration::from_secs(900), far, now, reserve),
        (Duration::from_secs(892), true)
    );
    // Past the deadline already: no time at all.
    assert_eq!(
        effective_timeout(
            Duration::from_secs(60),
            now,
            now + Duration::from_secs(1),
            reserve
        ),
        (Duration::ZERO, true)
    );
}

#[test]
fn long_messages_are_cut_at_a_character_boundary() {
    assert_eq!(cap_message("short".into()), "short");
    let long = "é".repeat(MESSAGE_MAX_BYTES);
    let cut = cap_message(long);
    assert!(cut.len() <= MESSAGE_MAX_BYTES);
    assert!(cut.ends_with('…'));
    assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
}

#[test]
fn leftovers_of_an_earlier_process_are_cleared_but_the_cache_stays() {
    let dir = tempfile::tempdir().unwrap();
    let config = RunnerConfig::new(dir.path().to_owned());
    std::fs::create_dir_all(config.work_dir().join("run-9/bundle")).unwrap();
    std::fs::create_dir_all(config.logs_dir()).unwrap();
    std::fs::write(config.logs_dir().join("1-0.log"), b"x").unwrap();
    std::fs::create_dir_all(config.bundles_dir()).unwrap();
    let zip = config.bundles_dir().join(format!("{}.zip", "a".repeat(64)));
    std::fs::write(&zip, b"zip").unwrap();
    std::fs::write(config.bundles_dir().join(".a.1-0.part"), b"half").unwrap();

    config.clear_leftovers();
    assert!(!config.work_dir().exists());
    assert!(!config.logs_dir().exists());
    assert!(zip.exists());
    assert!(!config.bundles_dir().join(".a.1-0.part").exists());
}

#[test]
fn the_cache_directory_comes_from_the_environment() {
    // Only checks the default: tests share the process environment.
    if std::env::var_os(CACHE_DIR_ENV).is_none() {
        assert_eq!(
            RunnerConfig::from_env().cache_dir,
            Path::new(DEFAULT_CACHE_DIR)
        );
    }
}
