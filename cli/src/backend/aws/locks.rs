//! Environment locks on DynamoDB: the writer lock is the item `LOCK`, the manual lock `HOLD`,
//! both in the environment's partition. Every take is one conditional transaction that only
//! succeeds if what we read is still true (the slot free, or held by the expired token we saw,
//! and no other actor's `HOLD`), so racing deployers on different machines cannot both win. A
//! holder that died keeps the lock until its lease (`leaseUntil`, epoch ms) passes.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, TransactWriteItem,
};

use super::dynamo::{DynamoStore, Item, decode, s};
use crate::backend::records::{LockHolder, Timestamp};
use crate::backend::{
    Acquired, BackendError, BackendErrorKind, BackendResult, EnvLocks, LockSlot, LockState,
};

/// How many times a take is retried when the lock changed between reading and writing it.
const ATTEMPTS: usize = 5;

fn sk(slot: LockSlot) -> &'static str {
    match slot {
        LockSlot::Writer => "LOCK",
        LockSlot::Manual => "HOLD",
    }
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoStore {
    fn holder_item(&self, env: &str, slot: LockSlot, holder: &LockHolder) -> BackendResult<Item> {
        let mut item = self.to_item(holder, "a lock")?;
        item.insert("pk".into(), s(self.pk(env)));
        item.insert("sk".into(), s(sk(slot)));
        if let Some(expires) = holder.expires_at {
            item.insert("leaseUntil".into(), n(expires.millis()));
        }
        Ok(item)
    }

    async fn read_locks(
        &self,
        env: &str,
    ) -> BackendResult<(Option<LockHolder>, Option<LockHolder>)> {
        // `HOLD` and `LOCK` sort next to each other (nothing starts with I, J or K).
        let query = self
            .client
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND sk BETWEEN :hold AND :lock")
            .expression_attribute_values(":pk", s(self.pk(env)))
            .expression_attribute_values(":hold", s("HOLD"))
            .expression_attribute_values(":lock", s("LOCK"))
            .consistent_read(true);
        let items = self
            .query_all(query, None, &format!("reading the lock of `{env}`"))
            .await?;
        let (mut writer, mut manual) = (None, None);
        for item in items {
            let slot = match item.get("sk") {
                Some(AttributeValue::S(k)) if k == "LOCK" => LockSlot::Writer,
                Some(AttributeValue::S(k)) if k == "HOLD" => LockSlot::Manual,
                _ => continue,
            };
            let holder: LockHolder = decode(item, "a lock")?;
            match slot {
                LockSlot::Writer => writer = Some(holder),
                LockSlot::Manual => manual = Some(holder),
            }
        }
        Ok((writer, manual))
    }

    pub(super) fn cancelled<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    {
        matches!(
            super::errors::code_of(e),
            Some("TransactionCanceledException" | "ConditionalCheckFailedException")
        )
    }
}

#[async_trait]
impl EnvLocks for DynamoStore {
    async fn acquire(
        &self,
        env: &str,
        slot: LockSlot,
        holder: &LockHolder,
    ) -> BackendResult<Acquired> {
        for _ in 0..ATTEMPTS {
            let (writer, manual) = self.read_locks(env).await?;
            let now = Timestamp::now();
            if let Some(m) = manual.as_ref().filter(|m| m.actor != holder.actor) {
                return Ok(Acquired::Held(m.clone()));
            }
            if let Some(w) = writer.as_ref().filter(|w| !w.expired(now)) {
                return Ok(Acquired::Held(w.clone()));
            }
            let mut writes = Vec::new();
            let item = self.holder_item(env, slot, holder)?;
            let mut put = Put::builder().table_name(self.table()).set_item(Some(item));
            match slot {
                LockSlot::Writer => {
                    // The writer slot is as we read it: empty, or the expired token we saw.
                    put = match &writer {
                        None => put.condition_expression("attribute_not_exists(pk)"),
                        // Taking over: still the holder we saw, and its lease still over
                        // by the table's own record (a late renew wins over us).
                        Some(w) => put
                            .condition_expression(
                                "#token = :seen AND (attribute_not_exists(leaseUntil) OR leaseUntil <= :now)",
                            )
                            .expression_attribute_names("#token", "token")
                            .expression_attribute_values(":seen", s(&w.token))
                            .expression_attribute_values(":now", n(now.millis())),
                    };
                    let hold = ConditionCheck::builder()
                        .table_name(self.table())
                        .key("pk", s(self.pk(env)))
                        .key("sk", s("HOLD"))
                        .condition_expression("attribute_not_exists(pk) OR actor = :me")
                        .expression_attribute_values(":me", s(&holder.actor))
                        .build()
                        .map_err(|e| {
                            BackendError::with_source("cannot build a DynamoDB condition", e)
                        })?;
                    writes.push(TransactWriteItem::builder().condition_check(hold).build());
                }
                LockSlot::Manual => {
                    put = put
                        .condition_expression("attribute_not_exists(pk) OR actor = :me")
                        .expression_attribute_values(":me", s(&holder.actor));
                    let lock = ConditionCheck::builder()
                        .table_name(self.table())
                        .key("pk", s(self.pk(env)))
                        .key("sk", s("LOCK"))
                        .condition_expression("attribute_not_exists(pk) OR leaseUntil < :now")
                        .expression_attribute_values(":now", n(now.millis()))
                        .build()
                        .map_err(|e| {
                            BackendError::with_source("cannot build a DynamoDB condition", e)
                        })?;
                    writes.push(TransactWriteItem::builder().condition_check(lock).build());
                }
            }
            let put = put
                .build()
                .map_err(|e| BackendError::with_source("cannot build a DynamoDB write", e))?;
            writes.push(TransactWriteItem::builder().put(put).build());
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await
            {
                Ok(_) => {
                    let displaced = if slot == LockSlot::Writer {
                        writer
                    } else {
                        None
                    };
                    return Ok(Acquired::Taken { displaced });
                }
                // Someone moved first: read again and decide again.
                Err(e) if Self::cancelled(&e) => continue,
                Err(e) => return Err(self.error(&format!("taking the lock of `{env}`"), e)),
            }
        }
        let (writer, manual) = self.read_locks(env).await?;
        match manual.or(writer) {
            Some(holder) => Ok(Acquired::Held(holder)),
            None => Err(
                BackendError::new(format!("the lock of `{env}` kept changing; try again"))
                    .of_kind(BackendErrorKind::Conflict),
            ),
        }
    }

    async fn renew(&self, env: &str, token: &str, expires_at: Timestamp) -> BackendResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(self.table())
            .key("pk", s(self.pk(env)))
            .key("sk", s("LOCK"))
            .update_expression("SET leaseUntil = :until, expiresAt = :at")
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":until", n(expires_at.millis()))
            .expression_attribute_values(":at", s(expires_at.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if Self::cancelled(&e) => Ok(false),
            Err(e) => Err(self.error(&format!("renewing the lock of `{env}`"), e)),
        }
    }

    async fn release(
        &self,
        env: &str,
        slot: LockSlot,
        token: Option<&str>,
    ) -> BackendResult<Option<LockHolder>> {
        let mut delete = self
            .client
            .delete_item()
            .table_name(self.table())
            .key("pk", s(self.pk(env)))
            .key("sk", s(sk(slot)))
            .return_values(ReturnValue::AllOld);
        if let Some(token) = token {
            delete = delete
                .condition_expression("#token = :token")
                .expression_attribute_names("#token", "token")
                .expression_attribute_values(":token", s(token));
        }
        match delete.send().await {
            Ok(out) => match out.attributes {
                Some(item) if !item.is_empty() => Ok(serde_dynamo::from_item(item).ok()),
                _ => Ok(None),
            },
            Err(e) if Self::cancelled(&e) => Ok(None),
            Err(e) => Err(self.error(&format!("releasing the lock of `{env}`"), e)),
        }
    }

    async fn current(&self, env: &str) -> BackendResult<LockState> {
        let (writer, manual) = self.read_locks(env).await?;
        let now = Timestamp::now();
        Ok(LockState {
            writer: writer.filter(|w| !w.expired(now)),
            manual,
        })
    }
}
