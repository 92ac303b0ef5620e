//! DynamoDB: the audit trail and environment state in one table (PRODUCT.md §9).
//!
//! ```text
//! pk = ENV#<project>#<env>
//!   sk = RUN#<run-id>         a run       (+ gsi1pk = TASK#<project>#<env>#<task>, gsi1sk = <run-id>,
//!                                            gsi2pk = RUN#<run-id>)
//!   sk = DEPLOY#<id>          a deployment
//!   sk = STATE                the environment's version and deployed bundles
//!   sk = TASK#<task>          a task's last successful bundle in the environment
//!   sk = ACTIVE#<id>          a run or deployment still `running` (found and abandoned when
//!                             its writer died)
//! ```
//! Run and deployment ids are ULIDs, so sort-key order is time order: "latest N runs of an
//! environment" is one Query on the partition, "of a task" one Query on `by-task`, "the run with
//! this id" one Query on `by-id`. "The runs whose id starts with `01KBQZ`" (a shortened run id)
//! is one Query per environment the config names, `begins_with(sk, "RUN#01KBQZ")` on the
//! partition: `by-id` cannot answer it (DynamoDB matches a prefix only on a sort key, and its
//! key is the whole id), so a prefix finds runs of those environments only, while a whole id
//! finds a run of any environment. Nothing scans. Items stay far below 400 KB: messages and
//! tails are capped, large `data` lives in S3 and the item keeps a pointer.
//!
//! Every item this lumo writes carries its shape's version ([`ITEM_VERSION`] in the number
//! attribute `schemaVersion`). Items without one were written by lumo 15aa6e6 (version 1) and
//! read the same: every attribute added since has a default (a run's `kind` is `task`, its
//! `args` empty, `fromSource` false, `command` none; version 3 added `fromSource`, version 4
//! `command`). Readers ignore attributes they do not know, so an item from a newer lumo reads
//! as far as this one understands it; a table is shared by every lumo of a team, so a change
//! an older reader would misread takes a new attribute, never a new meaning for an old one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use lumo_runner::contract::RunStatus;
use lumo_runner::{BundleHash, RunId, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AwsTarget;
use super::errors::sdk_error;
use super::s3::S3Store;
use crate::backend::records::{
    AuditEvent, Deployment, DeploymentStatus, EnvState, RunKind, TaskRun, Timestamp,
};
use crate::backend::{AuditStore, BackendError, BackendErrorKind, BackendResult};

pub(super) type Item = HashMap<String, AttributeValue>;

/// `data` larger than this (as JSON) goes to S3 and the item keeps a pointer.
const MAX_INLINE_DATA: usize = 64 * 1024;
const BY_TASK: &str = "by-task";
const BY_ID: &str = "by-id";
/// How many environments' partitions a run-id prefix is looked up in at once.
const PARALLEL_PREFIX_QUERIES: usize = 8;

/// The shape version of the items this lumo writes (see the module's doc). 4: a run may
/// carry `command` (an `exec` run's masked program and arguments).
pub(super) const ITEM_VERSION: u32 = 4;
/// The attribute holding it; absent = version 1.
pub(super) const VERSION_ATTRIBUTE: &str = "schemaVersion";

fn item_version() -> AttributeValue {
    AttributeValue::N(ITEM_VERSION.to_string())
}

pub struct DynamoStore {
    pub(super) client: Client,
    s3: S3Store,
    target: Arc<AwsTarget>,
}

/// The `STATE` item.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateItem {
    version: Version,
    previous_version: Option<Version>,
    deployment_id: String,
    deployed_at: Timestamp,
    bundles: BTreeMap<String, BundleHash>,
}

/// A `TASK#<task>` item.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskStateItem {
    task: String,
    last_success_hash: BundleHash,
    /// A run that succeeded with `last_success_hash`: here the latest (the item is rewritten in
    /// the same transaction as every success); the local store keeps the first since the bundle
    /// changed, and leaves the row alone while it does not.
    last_success_run: RunId,
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Whether a TransactWriteItems was cancelled because one of its conditions did not hold, as
/// its cancellation reasons say (`ConditionalCheckFailed`).
fn condition_failed(e: &SdkError<TransactWriteItemsError, HttpResponse>) -> bool {
    matches!(
        e.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
            if cancelled
                .cancellation_reasons()
                .iter()
                .any(|reason| reason.code() == Some("ConditionalCheckFailed"))
    )
}

impl DynamoStore {
    pub fn new(client: Client, s3: S3Store, target: Arc<AwsTarget>) -> Self {
        DynamoStore { client, s3, target }
    }

    pub(super) fn pk(&self, env: &str) -> String {
        format!("ENV#{}#{env}", self.target.project)
    }

    pub(super) fn table(&self) -> &str {
        &self.target.table
    }

    pub(super) fn error<E, R>(&self, what: &str, e: SdkError<E, R>) -> BackendError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let missing = super::errors::code_of(&e) == Some("ResourceNotFoundException");
        let err = sdk_error(what, e);
        if missing {
            let table = self.table().to_string();
            err.hint(format!("the DynamoDB table `{table}` does not exist in this account and region; create it with the stack in `infra/`"))
        } else {
            err
        }
    }

    /// `value`'s attributes and the item version: every record this lumo writes passes here.
    pub(super) fn to_item<T: Serialize>(&self, value: &T, what: &str) -> BackendResult<Item> {
        let mut item: Item = serde_dynamo::to_item(value).map_err(|e| {
            BackendError::with_source(format!("cannot encode {what} for DynamoDB"), e)
        })?;
        item.insert(VERSION_ATTRIBUTE.into(), item_version());
        Ok(item)
    }

    /// A run's item: the record's fields, `data` as JSON text (or moved to S3), and the keys.
    async fn run_item(&self, run: &TaskRun) -> BackendResult<Item> {
        let mut run = run.clone();
        let mut data_json = None;
        if let Some(data) = run.data.take() {
            let text = data.to_string();
            if text.len() > MAX_INLINE_DATA {
                let key = self.s3.data_key(run.id.as_str());
                self.s3
                    .put_bytes(&key, text.into_bytes(), "application/json")
                    .await?;
                run.data_ref = Some(self.s3.url(&key));
            } else {
                data_json = Some(text);
            }
        }
        let mut item = self.to_item(&run, "a run")?;
        item.remove("data");
        if let Some(text) = data_json {
            item.insert("dataJson".into(), s(text));
        }
        item.insert("pk".into(), s(self.pk(&run.env)));
        item.insert("sk".into(), s(format!("RUN#{}", run.id)));
        item.insert(
            "gsi1pk".into(),
            s(format!(
                "TASK#{}#{}#{}",
                self.target.project, run.env, run.task
            )),
        );
        item.insert("gsi1sk".into(), s(run.id.clone()));
        item.insert("gsi2pk".into(), s(format!("RUN#{}", run.id)));
        Ok(item)
    }

    fn run_from_item(&self, mut item: Item) -> BackendResult<TaskRun> {
        let data = match item.remove("dataJson") {
            Some(AttributeValue::S(text)) => serde_json::from_str::<Value>(&text).ok(),
            _ => None,
        };
        let mut run: TaskRun = decode(item, "a run")?;
        run.data = data;
        Ok(run)
    }

    pub(super) fn put(&self, item: Item) -> BackendResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .build()
            .map_err(|e| BackendError::with_source("cannot build a DynamoDB write", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(&self, pk: String, sk: String) -> BackendResult<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(self.table())
            .key("pk", s(pk))
            .key("sk", s(sk))
            .build()
            .map_err(|e| BackendError::with_source("cannot build a DynamoDB delete", e))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn active_marker(&self, env: &str, id: &str, kind: &str) -> Item {
        HashMap::from([
            ("pk".to_string(), s(self.pk(env))),
            ("sk".to_string(), s(format!("ACTIVE#{id}"))),
            ("kind".to_string(), s(kind)),
            ("id".to_string(), s(id)),
            (VERSION_ATTRIBUTE.to_string(), item_version()),
        ])
    }

    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        what: &str,
    ) -> BackendResult<()> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| self.error(what, e))?;
        Ok(())
    }

    /// Like [`transact`](Self::transact), but a condition that did not hold is `Ok(false)`
    /// (nothing was written) rather than an error. Any other cancellation (a conflict with
    /// another transaction, throttling) stays an error: it says nothing about the items.
    async fn transact_if(&self, items: Vec<TransactWriteItem>, what: &str) -> BackendResult<bool> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.error(what, e)),
        }
    }

    /// A put of a run or deployment that leaves the item alone if another writer marked it
    /// `abandoned` (see [`AuditStore::finish_run`]).
    fn put_unless_abandoned(&self, item: Item) -> BackendResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk) OR #status <> :abandoned")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":abandoned", s("abandoned"))
            .build()
            .map_err(|e| BackendError::with_source("cannot build a DynamoDB write", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Every item of a Query, following pages, up to `limit` items when given.
    pub(super) async fn query_all(
        &self,
        query: QueryFluentBuilder,
        limit: Option<usize>,
        what: &str,
    ) -> BackendResult<Vec<Item>> {
        query_pages(query, limit)
            .await
            .map_err(|e| self.error(what, e))
    }

    /// The latest `limit` items of `env`'s partition whose sort key starts with `prefix`
    /// (`RUN#`, `DEPLOY#`, `EVENT#`): ULIDs sort by time, so this is one Query, newest first.
    async fn latest(
        &self,
        env: &str,
        prefix: &str,
        limit: u32,
        what: &str,
    ) -> BackendResult<Vec<Item>> {
        let query = self
            .partition_query(env, prefix)
            .scan_index_forward(false)
            .limit(limit as i32);
        self.query_all(query, Some(limit as usize), what).await
    }

    /// A Query for the items of `env`'s partition whose sort key starts with `prefix`, oldest
    /// first.
    fn partition_query(&self, env: &str, prefix: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(self.pk(env)))
            .expression_attribute_values(":prefix", s(prefix))
    }
}

/// Every item of a Query, following pages, up to `limit` items when given. Owns what it needs,
/// so several can run as tasks at once.
async fn query_pages(
    query: QueryFluentBuilder,
    limit: Option<usize>,
) -> Result<Vec<Item>, SdkError<QueryError, HttpResponse>> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = query
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        items.extend(out.items.unwrap_or_default());
        if let Some(limit) = limit
            && items.len() >= limit
        {
            items.truncate(limit);
            return Ok(items);
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(items),
        }
    }
}

/// An item as a record, or a corrupt-store error naming what it should have been and its sort
/// key (an id, hash or version that is not one is refused here, with the field it was in).
pub(super) fn decode<T: serde::de::DeserializeOwned>(item: Item, what: &str) -> BackendResult<T> {
    let key = match item.get("sk") {
        Some(AttributeValue::S(sk)) => format!(" `{sk}`"),
        _ => String::new(),
    };
    serde_dynamo::from_item(item).map_err(|e| {
        BackendError::with_source(
            format!("{what}{key} in the table has an unexpected shape"),
            e,
        )
        .of_kind(BackendErrorKind::Corrupt)
    })
}

#[async_trait]
impl AuditStore for DynamoStore {
    async fn env_state(&self, env: &str) -> BackendResult<EnvState> {
        // `STATE` and every `TASK#…` sort next to each other: one Query reads them all.
        let query = self
            .client
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(self.pk(env)))
            .expression_attribute_values(":from", s("STATE"))
            .expression_attribute_values(":to", s("TASK$"))
            .consistent_read(true);
        let items = self
            .query_all(query, None, &format!("reading the state of `{env}`"))
            .await?;
        let mut state = EnvState::default();
        for item in items {
            let sk = match item.get("sk") {
                Some(AttributeValue::S(sk)) => sk.clone(),
                _ => continue,
            };
            if sk == "STATE" {
                let st: StateItem = decode(item, "the environment's state")?;
                state.version = Some(st.version);
                state.previous_version = st.previous_version;
                state.deployment_id = Some(st.deployment_id);
                state.deployed_at = Some(st.deployed_at);
                state.bundles = st.bundles;
            } else if sk.starts_with("TASK#") {
                let t: TaskStateItem = decode(item, "a task's state")?;
                state.last_success.insert(t.task, t.last_success_hash);
            }
        }
        Ok(state)
    }

    async fn start_deployment(&self, d: &Deployment) -> BackendResult<()> {
        let mut item = self.to_item(d, "a deployment")?;
        item.insert("pk".into(), s(self.pk(&d.env)));
        item.insert("sk".into(), s(format!("DEPLOY#{}", d.id)));
        let marker = self.active_marker(&d.env, &d.id, "deployment");
        self.transact(
            vec![self.put(item)?, self.put(marker)?],
            "recording the deployment",
        )
        .await
    }

    async fn finish_deployment(&self, d: &Deployment) -> BackendResult<bool> {
        let mut item = self.to_item(d, "a deployment")?;
        item.insert("pk".into(), s(self.pk(&d.env)));
        item.insert("sk".into(), s(format!("DEPLOY#{}", d.id)));
        let mut writes = vec![
            self.put_unless_abandoned(item)?,
            self.delete(self.pk(&d.env), format!("ACTIVE#{}", d.id))?,
        ];
        if d.status == DeploymentStatus::Succeeded {
            let state = StateItem {
                version: d.version.clone(),
                previous_version: d.previous_version.clone(),
                deployment_id: d.id.clone(),
                deployed_at: d.ended_at.unwrap_or(d.started_at),
                bundles: d.bundles.clone(),
            };
            let mut state = self.to_item(&state, "the environment state")?;
            state.insert("pk".into(), s(self.pk(&d.env)));
            state.insert("sk".into(), s("STATE"));
            writes.push(self.put(state)?);
        }
        self.transact_if(writes, "recording the end of the deployment")
            .await
    }

    async fn start_run(&self, run: &TaskRun) -> BackendResult<()> {
        let item = self.run_item(run).await?;
        let mut writes = vec![self.put(item)?];
        if run.status == RunStatus::Running {
            writes.push(self.put(self.active_marker(&run.env, run.id.as_str(), "run"))?);
        }
        self.transact(
            writes,
            &format!("recording run `{}` of `{}`", run.id, run.task),
        )
        .await
    }

    async fn finish_run(&self, run: &TaskRun) -> BackendResult<bool> {
        let item = self.run_item(run).await?;
        let mut writes = vec![
            self.put_unless_abandoned(item)?,
            self.delete(self.pk(&run.env), format!("ACTIVE#{}", run.id))?,
        ];
        // Only a task run is the task's success: an `exec` in its bundle is not.
        // (A task run always ran a bundle; only an `exec` may have none.)
        if run.status == RunStatus::Succeeded
            && run.kind == RunKind::Task
            && let Some(hash) = &run.bundle_hash
        {
            let state = TaskStateItem {
                task: run.task.clone(),
                last_success_hash: hash.clone(),
                last_success_run: run.id.clone(),
            };
            let mut state = self.to_item(&state, "a task state")?;
            state.insert("pk".into(), s(self.pk(&run.env)));
            state.insert("sk".into(), s(format!("TASK#{}", run.task)));
            writes.push(self.put(state)?);
        }
        self.transact_if(
            writes,
            &format!("recording the end of run `{}` of `{}`", run.id, run.task),
        )
        .await
    }

    async fn runs(&self, env: &str, task: Option<&str>, limit: u32) -> BackendResult<Vec<TaskRun>> {
        let what = format!("reading the history of `{env}`");
        let items = match task {
            None => self.latest(env, "RUN#", limit, &what).await?,
            Some(task) => {
                let query = self
                    .client
                    .query()
                    .table_name(self.table())
                    .index_name(BY_TASK)
                    .key_condition_expression("gsi1pk = :task")
                    // The index also holds the `exec`s run in the task's bundle; they are not
                    // the task's runs. (Items from before `kind` are task runs.) DynamoDB
                    // filters after `limit`, so a page may bring fewer: the pages are followed
                    // until `limit` runs are found.
                    .filter_expression("attribute_not_exists(#kind) OR #kind = :task_kind")
                    .expression_attribute_names("#kind", "kind")
                    .expression_attribute_values(
                        ":task",
                        s(format!("TASK#{}#{env}#{task}", self.target.project)),
                    )
                    .expression_attribute_values(":task_kind", s(RunKind::Task.as_str()))
                    .scan_index_forward(false)
                    .limit(limit as i32);
                self.query_all(query, Some(limit as usize), &what).await?
            }
        };
        items.into_iter().map(|i| self.run_from_item(i)).collect()
    }

    async fn run(&self, id: &RunId) -> BackendResult<Option<TaskRun>> {
        let query = self
            .client
            .query()
            .table_name(self.table())
            .index_name(BY_ID)
            .key_condition_expression("gsi2pk = :id")
            .expression_attribute_values(":id", s(format!("RUN#{id}")));
        let items = self
            .query_all(query, None, &format!("looking up run `{id}`"))
            .await?;
        for item in items {
            let run = self.run_from_item(item)?;
            if run.project == self.target.project {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    async fn runs_by_id_prefix(
        &self,
        prefix: &str,
        env: Option<&str>,
        limit: u32,
    ) -> BackendResult<Vec<TaskRun>> {
        // `by-id` is keyed on the whole id alone, and DynamoDB matches a prefix (`begins_with`)
        // only on a sort key: the runs' sort keys in each environment's partition are where a
        // prefix can be found without a Scan, so the environments to look in come from the
        // caller or the config.
        let envs: Vec<&str> = match env {
            Some(env) => vec![env],
            None => self
                .target
                .environments
                .iter()
                .map(String::as_str)
                .collect(),
        };
        // Only a config listing its `environments` without naming any could leave this empty
        // (the default `environment` is `dev`); validation refuses that, but a prefix must
        // still not come back "not found" unlooked.
        if envs.is_empty() {
            return Err(BackendError::invalid(format!(
                "`{prefix}` is not a whole run id, and on `aws` a shortened run id is looked up \
                 in the environments the config names, which names none"
            ))
            .hint(
                "give the whole run id (`lumo history --env ENV` shows it), or `--env ENV`, or \
                 list the project's `environments` in the config",
            ));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let what = format!("looking up the runs whose id starts with `{prefix}`");
        let mut waiting = envs.iter();
        let mut queries = tokio::task::JoinSet::new();
        let mut items = Vec::new();
        loop {
            while queries.len() < PARALLEL_PREFIX_QUERIES
                && let Some(env) = waiting.next()
            {
                // Oldest first in each partition, as `local` lists them: the first `limit` of
                // every environment hold the first `limit` of all.
                let query = self
                    .partition_query(env, &format!("RUN#{prefix}"))
                    .limit(limit as i32);
                queries.spawn(query_pages(query, Some(limit as usize)));
            }
            let Some(done) = queries.join_next().await else {
                break;
            };
            let found = done
                .map_err(|e| BackendError::with_source(format!("{what}: the query stopped"), e))?
                .map_err(|e| self.error(&what, e))?;
            items.extend(found);
        }
        let mut runs = items
            .into_iter()
            .map(|i| self.run_from_item(i))
            .collect::<BackendResult<Vec<_>>>()?;
        runs.sort_by(|a, b| a.id.cmp(&b.id));
        runs.truncate(limit as usize);
        Ok(runs)
    }

    async fn deployments(&self, env: &str, limit: u32) -> BackendResult<Vec<Deployment>> {
        let what = format!("reading the deployments of `{env}`");
        let items = self.latest(env, "DEPLOY#", limit, &what).await?;
        items
            .into_iter()
            .map(|i| decode(i, "a deployment"))
            .collect()
    }

    async fn read_log(&self, run: &TaskRun) -> BackendResult<Option<Vec<u8>>> {
        let Some(key) = run.log_ref.as_deref().and_then(|r| self.s3.key_of(r)) else {
            return Ok(None);
        };
        self.s3.get(key).await
    }

    async fn abandon_unfinished(&self, env: &str, message: &str) -> BackendResult<Vec<String>> {
        let query = self.partition_query(env, "ACTIVE#").consistent_read(true);
        let markers = self
            .query_all(
                query,
                None,
                &format!("looking for unfinished work in `{env}`"),
            )
            .await?;
        let now = Timestamp::now();
        let mut abandoned = Vec::new();
        for marker in markers {
            let (Some(AttributeValue::S(id)), Some(AttributeValue::S(kind))) =
                (marker.get("id"), marker.get("kind"))
            else {
                continue;
            };
            let sk = if kind == "deployment" {
                format!("DEPLOY#{id}")
            } else {
                format!("RUN#{id}")
            };
            let update = aws_sdk_dynamodb::types::Update::builder()
                .table_name(self.table())
                .key("pk", s(self.pk(env)))
                .key("sk", s(sk))
                .update_expression("SET #status = :abandoned, endedAt = :now, message = :message")
                .condition_expression("#status = :running")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":abandoned", s("abandoned"))
                .expression_attribute_values(":running", s("running"))
                .expression_attribute_values(":now", s(now.to_string()))
                .expression_attribute_values(":message", s(message))
                .build()
                .map_err(|e| BackendError::with_source("cannot build a DynamoDB update", e))?;
            let writes = vec![
                TransactWriteItem::builder().update(update).build(),
                self.delete(self.pk(env), format!("ACTIVE#{id}"))?,
            ];
            match self
                .transact_if(writes, &format!("marking `{id}` abandoned"))
                .await?
            {
                true => abandoned.push(id.clone()),
                // Already finished (its writer got that far): only the marker is stale. Any
                // other failure was returned above, leaving the marker for the next writer.
                false => {
                    self.client
                        .delete_item()
                        .table_name(self.table())
                        .key("pk", s(self.pk(env)))
                        .key("sk", s(format!("ACTIVE#{id}")))
                        .send()
                        .await
                        .map_err(|e| self.error(&format!("clearing the marker of `{id}`"), e))?;
                }
            }
        }
        Ok(abandoned)
    }

    async fn record_event(&self, event: &AuditEvent) -> BackendResult<()> {
        let mut item = self.to_item(event, "an event")?;
        item.insert("pk".into(), s(self.pk(&event.env)));
        item.insert("sk".into(), s(format!("EVENT#{}", event.id)));
        self.client
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.error("recording an event", e))?;
        Ok(())
    }

    async fn events(&self, env: &str, limit: u32) -> BackendResult<Vec<AuditEvent>> {
        let what = format!("reading the events of `{env}`");
        let items = self.latest(env, "EVENT#", limit, &what).await?;
        items.into_iter().map(|i| decode(i, "an event")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_item_without_a_version_reads_as_a_task_run_without_args() {
        // The attributes lumo 15aa6e6 wrote for a run (no `schemaVersion`, `kind` or `args`),
        // the keys, and one attribute from a lumo to come.
        let null = AttributeValue::Null(true);
        let item: Item = [
            ("pk", s("ENV#p#dev")),
            ("sk", s("RUN#01KBQZ6N12C3M3JX0V4GQK5T2B")),
            ("gsi2pk", s("RUN#01KBQZ6N12C3M3JX0V4GQK5T2B")),
            ("id", s("01KBQZ6N12C3M3JX0V4GQK5T2B")),
            ("deploymentId", null.clone()),
            ("project", s("p")),
            ("env", s("dev")),
            ("task", s("hello")),
            ("trigger", s("manual")),
            ("version", s("v1")),
            ("previousVersion", null.clone()),
            (
                "bundleHash",
                s("56fb8f04a9c50b2484472c88989cfd30f08e6f299c7fd8bf5c97d19b8d4dacf3"),
            ),
            ("actor", s("alice")),
            ("status", s("succeeded")),
            ("attempt", AttributeValue::N("1".into())),
            ("startedAt", s("2026-12-06T10:00:01.000Z")),
            ("endedAt", null.clone()),
            ("durationMs", null.clone()),
            ("exitCode", AttributeValue::N("0".into())),
            ("message", s("hello")),
            ("dataRef", null.clone()),
            ("logRef", null.clone()),
            ("outputTail", s("hello\n")),
            ("outputBytes", AttributeValue::N("6".into())),
            ("dataJson", s(r#"{"n":1}"#)),
            ("attributeFromTheFuture", s("ignored")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut broken = item.clone();
        let run: TaskRun = decode(item, "a run").unwrap();
        assert_eq!(run.kind, crate::backend::records::RunKind::Task);

        // A hash that is not one (edited by hand, written by something else) is a corrupt
        // item named by its key, never a path or a panic.
        broken.insert("bundleHash".into(), s("../../etc/passwd"));
        let err = decode::<TaskRun>(broken, "a run").unwrap_err();
        assert_eq!(err.kind, BackendErrorKind::Corrupt);
        assert_eq!(
            err.message,
            "a run `RUN#01KBQZ6N12C3M3JX0V4GQK5T2B` in the table has an unexpected shape"
        );
        let cause = err.source.unwrap().to_string();
        assert!(
            cause.contains("invalid bundle hash `../../etc/passwd`"),
            "{cause}"
        );
        assert!(run.args.is_empty());
        assert!(!run.from_source);
        assert_eq!(run.command, None);
        assert_eq!(run.task, "hello");
    }
}
