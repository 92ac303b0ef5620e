//! The `aws` provider's end-to-end fixture: a project of its own on the emulators (its own
//! name, bucket and table, so tests sharing one emulator never meet), and direct looks into
//! S3 and DynamoDB for what the CLI cannot show.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use lumo_testkit::{Emulators, unique};

use super::TestProject;

pub struct AwsProject {
    pub p: TestProject,
    pub emulators: &'static Emulators,
    pub name: String,
    pub bucket: String,
    pub table: String,
}

impl AwsProject {
    /// A project of its own (its own name, bucket and table) on the emulators, or `None` when
    /// they are not installed here.
    pub fn new() -> Option<AwsProject> {
        AwsProject::with_harness_args(&[])
    }

    /// [`AwsProject::new`] on a harness started with `harness_args` (the same in every test of
    /// a test binary: see `lumo_testkit::emulators_with`).
    pub fn with_harness_args(harness_args: &[&str]) -> Option<AwsProject> {
        let emulators = lumo_testkit::emulators_with(harness_args)?;
        let name = unique("e2e");
        let bucket = unique("e2e-bundles");
        let table = unique("e2e-audit");
        block_on(emulators.create_bucket_and_table(&bucket, &table));
        let mut p = TestProject::new();
        for (key, value) in emulators.aws_env() {
            p.set_env(key, &value);
        }
        p.set_env("LUMO_RUNNER", &emulators.runner_bin.to_string_lossy());
        Some(AwsProject {
            p,
            emulators,
            name,
            bucket,
            table,
        })
    }

    /// `lumo.config.js` with this project's name and `aws` block, then `tasks`.
    pub fn config(&self, tasks: &str) -> &TestProject {
        self.config_with("", tasks)
    }

    /// Like [`AwsProject::config`], with more top-level keys (`extra`, e.g. `access: {...},`).
    pub fn config_with(&self, extra: &str, tasks: &str) -> &TestProject {
        self.p.config(&format!(
            "export default {{
               projectName: '{}', provider: 'aws', region: 'us-east-1',
               aws: {{ bucket: '{}', table: '{}', roleArn: '{}', architecture: '{}' }},
               secrets: {{ token: {{ value: () => process.env.E2E_TOKEN ?? 'tok-9f8e7d6c5b' }} }},
               {extra}
               tasks: {tasks},
             }};",
            self.name,
            self.bucket,
            self.table,
            self.emulators.runner_role_arn,
            lumo_testkit::HOST_ARCHITECTURE
        ))
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        self.emulators.sdk_config().await
    }

    /// Every item of the table (small test tables only).
    pub fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        block_on(async {
            let dynamo = aws_sdk_dynamodb::Client::new(&self.sdk().await);
            dynamo
                .scan()
                .table_name(&self.table)
                .send()
                .await
                .unwrap()
                .items
                .unwrap_or_default()
        })
    }

    /// Every object of the bucket: key → bytes.
    pub fn objects(&self) -> Vec<(String, Vec<u8>)> {
        block_on(async {
            let s3 = s3(&self.sdk().await);
            let listed = s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .send()
                .await
                .unwrap();
            let mut objects = Vec::new();
            for object in listed.contents() {
                let key = object.key().unwrap().to_string();
                let body = s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .send()
                    .await
                    .unwrap()
                    .body;
                objects.push((key, body.collect().await.unwrap().into_bytes().to_vec()));
            }
            objects
        })
    }
}

pub fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[macro_export]
macro_rules! aws_project {
    () => {
        match $crate::support::aws::AwsProject::new() {
            Some(project) => project,
            None => return,
        }
    };
}
