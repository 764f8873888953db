//! [`Tables`] on Azure Table storage (azure_data_tables): entities with ETags,
//! OData queries one page at a time, and entity group transactions.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::Etag;
use azure_core::prelude::Continuable;
use azure_data_tables::IfMatchCondition;
use azure_data_tables::operations::TransactionBuilder;
use azure_data_tables::prelude::{PartitionKeyClient, TableClient, TableServiceClient};
use futures::StreamExt;
use serde_json::{Map, Value};

use super::connection::Endpoint;
use super::entity::{from_json, literal, to_json, url_key};
use super::health::Health;
use super::transport::{classify, status_of, tracking, unavailable};
use crate::storage::{Entity, Page, Result, StorageError, TableOp, Tables};

/// Azure's limit on one entity group transaction.
const MAX_BATCH: usize = 100;

type Json = Map<String, Value>;

/// The tables of one storage account.
pub(crate) struct AzureTables {
    pub client: TableServiceClient,
    pub endpoint: Endpoint,
    pub health: Arc<Health>,
}

/// The continuation token of [`Page`]: the service's NextPartitionKey and
/// NextRowKey joined by a space (both are base64-like, without spaces).
fn continuation_token(partition_key: Option<String>, row_key: Option<String>) -> Option<String> {
    partition_key.map(|pk| match row_key {
        Some(rk) => format!("{pk} {rk}"),
        None => pk,
    })
}

impl AzureTables {
    fn table(&self, table: &str) -> TableClient {
        self.client.table_client(table)
    }

    fn partition(&self, table: &str, partition_key: &str) -> PartitionKeyClient {
        self.table(table)
            .partition_key_client(url_key(partition_key))
    }

    fn error(&self, error: azure_core::Error, what: impl Into<String>) -> StorageError {
        self.health
            .note(classify(error, &what.into(), &self.endpoint))
    }

    /// One page of a query; the crate's pager makes one request per page.
    async fn page(
        &self,
        table: &str,
        filter: Option<String>,
        top: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Page> {
        let mut query = self.table(table).query();
        if let Some(filter) = filter {
            query = query.filter(filter);
        }
        if let Some(top) = top {
            query = query.top(top);
        }
        if let Some(token) = continuation {
            let (pk, rk) = match token.split_once(' ') {
                Some((pk, rk)) => (pk, Some(rk)),
                None => (token, None),
            };
            query = query.initial_partition_key(pk.to_string());
            if let Some(rk) = rk {
                query = query.initial_row_key(rk.to_string());
            }
        }
        let what = || format!("querying table '{table}'");
        let response = match query.into_stream::<Json>().next().await {
            Some(page) => page.map_err(|e| self.error(e, what()))?,
            None => return Ok(Page::default()),
        };
        let continuation = response.continuation();
        Ok(Page {
            entities: response
                .entities
                .into_iter()
                .map(|e| from_json(e, None))
                .collect(),
            continuation: continuation.and_then(|(pk, rk)| continuation_token(Some(pk), rk)),
        })
    }

    fn add(
        &self,
        table: &str,
        transaction: TransactionBuilder,
        op: &TableOp,
    ) -> Result<TransactionBuilder> {
        let built = match op {
            TableOp::Insert(e) => transaction.insert(to_json(table, e)?),
            TableOp::Upsert(e) => {
                transaction.insert_or_replace(url_key(&e.row_key), to_json(table, e)?)
            }
            TableOp::Merge(e) => {
                transaction.insert_or_merge(url_key(&e.row_key), to_json(table, e)?)
            }
            TableOp::Replace { entity, etag } => transaction.update(
                url_key(&entity.row_key),
                to_json(table, entity)?,
                Some(IfMatchCondition::Etag(Etag::from(etag.clone()))),
            ),
            TableOp::Delete { row_key, etag, .. } => transaction.delete(
                url_key(row_key),
                etag.clone().map(|t| IfMatchCondition::Etag(Etag::from(t))),
            ),
        };
        built.map_err(|e| StorageError::Other(format!("batch for table '{table}': {e}")))
    }

    /// One write, as [`Tables::execute`] makes it (before checking a conflict).
    async fn write(&self, table: &str, op: &TableOp) -> Result<Option<String>> {
        let (partition_key, row_key) = keys(op);
        let what = format!("writing ('{partition_key}', '{row_key}') to table '{table}'");
        let entity = self
            .partition(table, partition_key)
            .entity_client(url_key(row_key));
        let serialize = |e: azure_core::Error| StorageError::Other(format!("{what}: {e}"));
        let etag = match op {
            TableOp::Insert(e) => self
                .table(table)
                .insert::<_, Json>(to_json(table, e)?)
                .map_err(serialize)?
                .await
                .map(|r| r.etag),
            TableOp::Upsert(e) => entity
                .insert_or_replace(to_json(table, e)?)
                .map_err(serialize)?
                .await
                .map(|r| r.etag),
            TableOp::Merge(e) => entity
                .insert_or_merge(to_json(table, e)?)
                .map_err(serialize)?
                .await
                .map(|r| r.etag),
            TableOp::Replace { entity: e, etag } => entity
                .update(
                    to_json(table, e)?,
                    IfMatchCondition::Etag(Etag::from(etag.clone())),
                )
                .map_err(serialize)?
                .await
                .map(|r| r.etag),
            TableOp::Delete { etag, .. } => {
                let mut delete = entity.delete();
                if let Some(etag) = etag {
                    delete = delete.if_match(IfMatchCondition::Etag(Etag::from(etag.clone())));
                }
                return delete
                    .await
                    .map(|_| None)
                    .map_err(|e| self.error(e, what.clone()));
            }
        };
        etag.map(|t| Some(t.to_string()))
            .map_err(|e| self.error(e, what.clone()))
    }

    /// Whether `ops` are all in the table as written (a retried write whose
    /// first attempt was applied, its answer lost): the ETag of each (None
    /// for deletes), or None when any is not (someone else wrote). Another
    /// writer's write of exactly the same values is taken for ours: the table
    /// holds what we meant to write either way. The engine's writes carry
    /// times in ms and sequence numbers, so two of them do not look alike.
    /// One read per op, only on this rare path.
    async fn applied(&self, table: &str, ops: &[TableOp]) -> Result<Option<Vec<Option<String>>>> {
        let mut etags = Vec::with_capacity(ops.len());
        for op in ops {
            let (partition_key, row_key) = keys(op);
            let found = self.get(table, partition_key, row_key).await?;
            let ours = match (op, found) {
                (TableOp::Delete { .. }, None) => {
                    etags.push(None);
                    continue;
                }
                (TableOp::Merge(e), Some(found)) if written(e, &found, false) => found,
                (
                    TableOp::Insert(e) | TableOp::Upsert(e) | TableOp::Replace { entity: e, .. },
                    Some(found),
                ) if written(e, &found, true) => found,
                _ => return Ok(None),
            };
            etags.push(ours.etag);
        }
        Ok(Some(etags))
    }
}

/// Whether `found` holds what `ours` wrote (`exactly`: and nothing else, as
/// an insert or replace leaves it). Null properties are not stored.
fn written(ours: &Entity, found: &Entity, exactly: bool) -> bool {
    let mut count = 0;
    for (name, value) in ours.properties.iter().filter(|(_, v)| !v.is_null()) {
        count += 1;
        if found.properties.get(name) != Some(value) {
            return false;
        }
    }
    !exactly || found.properties.len() == count
}

fn keys(op: &TableOp) -> (&str, &str) {
    match op {
        TableOp::Insert(e)
        | TableOp::Upsert(e)
        | TableOp::Merge(e)
        | TableOp::Replace { entity: e, .. } => (&e.partition_key, &e.row_key),
        TableOp::Delete {
            partition_key,
            row_key,
            ..
        } => (partition_key, row_key),
    }
}

#[async_trait]
impl Tables for AzureTables {
    async fn create_table(&self, table: &str) -> Result<()> {
        match self.table(table).create().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(status_of(&e), Some((409, _))) => Ok(()), // TableAlreadyExists
            Err(e) => Err(self.error(e, format!("creating table '{table}'"))),
        }
    }

    async fn delete_table(&self, table: &str) -> Result<()> {
        self.table(table)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, format!("deleting table '{table}'")))
    }

    async fn get(&self, table: &str, partition_key: &str, row_key: &str) -> Result<Option<Entity>> {
        let response = self
            .partition(table, partition_key)
            .entity_client(url_key(row_key))
            .get::<Json>()
            .await;
        match response {
            Ok(r) => Ok(Some(from_json(r.entity, Some(r.etag.to_string())))),
            // ResourceNotFound is a missing entity; TableNotFound stays an error.
            Err(e) if matches!(status_of(&e), Some((404, Some("ResourceNotFound")))) => Ok(None),
            Err(e) => Err(self.error(
                e,
                format!("reading ('{partition_key}', '{row_key}') in table '{table}'"),
            )),
        }
    }

    async fn query_partition(&self, table: &str, partition_key: &str) -> Result<Vec<Entity>> {
        let filter = format!("PartitionKey eq {}", literal(partition_key));
        let mut entities = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .page(table, Some(filter.clone()), None, continuation.as_deref())
                .await?;
            entities.extend(page.entities);
            match page.continuation {
                Some(token) => continuation = Some(token),
                None => return Ok(entities),
            }
        }
    }

    async fn query(
        &self,
        table: &str,
        filter: Option<&str>,
        top: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Page> {
        self.page(table, filter.map(str::to_string), top, continuation)
            .await
    }

    async fn execute(&self, table: &str, op: TableOp) -> Result<Option<String>> {
        let (written, retried) = tracking(self.write(table, &op)).await;
        match written {
            // Our own first attempt, applied but unanswered?
            Err(StorageError::Conflict(_) | StorageError::NotFound(_)) if retried => {
                match self.applied(table, std::slice::from_ref(&op)).await? {
                    Some(mut etags) => Ok(etags.pop().flatten()),
                    None => written,
                }
            }
            other => other,
        }
    }

    async fn batch(&self, table: &str, ops: Vec<TableOp>) -> Result<Vec<Option<String>>> {
        let Some(first) = ops.first() else {
            return Ok(Vec::new());
        };
        let partition_key = keys(first).0.to_string();
        let what = format!(
            "batch of {} writes to partition '{partition_key}' of table '{table}'",
            ops.len()
        );
        if ops.len() > MAX_BATCH {
            return Err(StorageError::Other(format!(
                "{what}: Azure takes at most {MAX_BATCH} per batch"
            )));
        }
        if let Some(other) = ops
            .iter()
            .map(|op| keys(op).0)
            .find(|pk| *pk != partition_key)
        {
            return Err(StorageError::Other(format!(
                "{what}: it also writes partition '{other}'; a batch stays in one partition"
            )));
        }
        let count = ops.len();
        let mut transaction = self.partition(table, &partition_key).transaction();
        for op in &ops {
            transaction = self.add(table, transaction, op)?;
        }
        let (response, retried) = tracking(transaction.into_future()).await;
        let response = response.map_err(|e| self.error(e, what.clone()))?;
        // The service answers 202 for the batch and puts the failure of the
        // changeset (one response, e.g. 412) inside: check every one.
        if let Some(failed) = response
            .operation_responses
            .iter()
            .find(|r| !r.status_code.is_success())
        {
            let status = u16::from(failed.status_code);
            // A retried batch whose first attempt was applied meets its own writes.
            if retried
                && matches!(status, 404 | 409 | 412)
                && let Some(etags) = self.applied(table, &ops).await?
            {
                return Ok(etags);
            }
            let message = format!("{what}: nothing was written: a write failed with {status}");
            return Err(match status {
                404 => StorageError::NotFound(format!(
                    "{message} (an entity to replace or delete is missing)"
                )),
                409 => StorageError::Conflict(format!("{message} (an entity to insert exists)")),
                412 => StorageError::Conflict(format!(
                    "{message} (an ETag did not match: someone else wrote first)"
                )),
                408 | 429 | 500..=599 => {
                    unavailable(&self.endpoint, &what, &format!("HTTP {status}"))
                }
                _ => StorageError::Other(message),
            });
        }
        if response.operation_responses.len() != count {
            return Err(StorageError::Other(format!(
                "{what}: the service answered for {} of {count} writes",
                response.operation_responses.len()
            )));
        }
        // Each changeset response carries the new ETag of its entity (none for deletes).
        Ok(response
            .operation_responses
            .into_iter()
            .map(|r| r.etag.map(|t| t.to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_found_when_the_entity_holds_what_it_wrote() {
        let ours = Entity::new("p", "r")
            .with("N", 1)
            .with("S", "x")
            .with("Gone", Value::Null);
        let stored = Entity::new("p", "r").with("N", 1).with("S", "x");
        assert!(written(&ours, &stored, true));
        assert!(!written(&ours, &stored.clone().with("Extra", 2), true));
        assert!(written(&ours, &stored.clone().with("Extra", 2), false));
        assert!(!written(
            &ours,
            &Entity::new("p", "r").with("N", 2).with("S", "x"),
            false
        ));
    }

    #[test]
    fn continuation_tokens_join_both_keys() {
        assert_eq!(
            continuation_token(Some("1!8!cA--".into()), Some("1!4!cg--".into())).as_deref(),
            Some("1!8!cA-- 1!4!cg--")
        );
        assert_eq!(
            continuation_token(Some("pk".into()), None).as_deref(),
            Some("pk")
        );
        assert_eq!(continuation_token(None, Some("rk".into())), None);
    }
}
