//! [`TaskStore`] on a DynamoDB table: one item per task, read by status through a GSI.

use crate::error_message;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::RequestId;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, Select,
};
use aws_sdk_dynamodb::Client;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_attribute_value, to_item};
use serde_json::{Map, Value};
use std::collections::HashMap;
use tasks_core::model::task::NextAttempt;
use tasks_core::model::time::rfc3339_millis;
use tasks_core::{
    settle_create, status_shard, Event, Page, StatusQuery, StoreError, Task, TaskStatus, TaskStore,
    Transition, STATUS_SHARDS,
};

/// The GSI that lists tasks by status, ordered by `startExecutionAt`. It is keyed by
/// [`SHARD_ATTRIBUTE`], not by `taskStatus`, so that one status's writes are spread over
/// [`STATUS_SHARDS`] partitions; a query reads every shard and merges them by time.
pub const STATUS_INDEX: &str = "statusShardStartExecAtIndex";

/// `<taskStatus>#<shard>`, written with every status ([`TaskStatus::shard_key`]).
pub const SHARD_ATTRIBUTE: &str = "statusShard";

type Item = HashMap<String, AttributeValue>;

/// Errors other than the typed outcomes become [`StoreError::Unavailable`]; throttling and
/// transient failures have by then been retried by the SDK (standard mode, 3 attempts).
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table_name: String,
    /// How long finished tasks are kept (`None`: for ever).
    retention: Option<std::time::Duration>,
}

impl DynamoDbStore {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        DynamoDbStore {
            client,
            table_name: table_name.into(),
            retention: None,
        }
    }

    /// The store that gives a finished task `expiresAt` (the table's TTL attribute) `retention`
    /// after it finished; `None` keeps finished tasks for ever.
    pub fn with_retention(self, retention: Option<std::time::Duration>) -> Self {
        DynamoDbStore { retention, ..self }
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    async fn query_shard(
        &self,
        query: &StatusQuery,
        shard: String,
        start: Option<Item>,
        limit: u32,
    ) -> Result<ShardRead, StoreError> {
        let mut key_condition = "#shard = :shard".to_string();
        let mut request = self
            .client
            .query()
            .table_name(&self.table_name)
            .index_name(STATUS_INDEX)
            .expression_attribute_names("#shard", SHARD_ATTRIBUTE)
            .expression_attribute_values(":shard", AttributeValue::S(shard))
            .scan_index_forward(!query.newest_first)
            // DynamoDB rejects a limit of 0.
            .limit(i32::try_from(limit).unwrap_or(i32::MAX).max(1))
            .set_exclusive_start_key(start);
        let start_condition = match (query.due_from, query.due_by) {
            (Some(_), Some(_)) => Some(" AND #start BETWEEN :dueFrom AND :dueBy"),
            (Some(_), None) => Some(" AND #start >= :dueFrom"),
            (None, Some(_)) => Some(" AND #start <= :dueBy"),
            (None, None) => None,
        };
        if let Some(condition) = start_condition {
            key_condition.push_str(condition);
            request = request.expression_attribute_names("#start", "startExecutionAt");
        }
        if let Some(due_from) = query.due_from {
            request = request
                .expression_attribute_values(":dueFrom", AttributeValue::N(due_from.to_string()));
        }
        if let Some(due_by) = query.due_by {
            request = request
                .expression_attribute_values(":dueBy", AttributeValue::N(due_by.to_string()));
        }
        if let Some(before) = query.updated_before {
            // RFC 3339 with millis and `Z` orders as text the way it orders as time.
            request = request
                .filter_expression("#updated < :updatedBefore")
                .expression_attribute_names("#updated", "lastUpdatedAt")
                .expression_attribute_values(
                    ":updatedBefore",
                    AttributeValue::S(rfc3339_millis::format(&before)),
                );
        }
        let output = request
            .key_condition_expression(key_condition)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(ShardRead {
            items: output.items.unwrap_or_default(),
            last_evaluated: output
                .last_evaluated_key
                .filter(|key| !key.is_empty())
                .map(|key| (item_start(&key), item_id(&key))),
        })
    }

    async fn count_shard(&self, shard: String, from: i64, to: i64) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table_name)
                .index_name(STATUS_INDEX)
                .select(Select::Count)
                .key_condition_expression("#shard = :shard AND #start BETWEEN :from AND :to")
                .expression_attribute_names("#shard", SHARD_ATTRIBUTE)
                .expression_attribute_names("#start", "startExecutionAt")
                .expression_attribute_values(":shard", AttributeValue::S(shard.clone()))
                .expression_attribute_values(":from", AttributeValue::N(from.to_string()))
                .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            count += u64::try_from(output.count).unwrap_or_default();
            match output.last_evaluated_key.filter(|key| !key.is_empty()) {
                Some(key) => start_key = Some(key),
                None => return Ok(count),
            }
        }
    }
}

/// One shard's page: its items in index order, and where it stopped if it has more.
struct ShardRead {
    items: Vec<Item>,
    last_evaluated: Option<(i64, String)>,
}

/// Where a shard resumes: from its start, after a (startExecutionAt, id), or nowhere (read).
#[derive(Debug, Clone, PartialEq)]
enum Place {
    Start,
    After(i64, String),
    Done,
}

/// Each shard's page: enough for a full merged page when tasks spread evenly over the shards,
/// without reading every shard's full page (up to sixteen times the items returned).
fn shard_page_size(limit: u32) -> u32 {
    limit.min(2 * limit.div_ceil(STATUS_SHARDS) + 10)
}

/// An item's `startExecutionAt` (every item in the index has one, as a number).
fn item_start(item: &Item) -> i64 {
    item.get("startExecutionAt")
        .and_then(|value| value.as_n().ok())
        .and_then(|at| at.parse().ok())
        .unwrap_or_default()
}

/// The key of an index entry, as ExclusiveStartKey takes it: the table's key and the index's.
fn index_key(id: &str, shard: &str, start_execution_at: i64) -> Item {
    Item::from([
        ("id".to_string(), AttributeValue::S(id.to_string())),
        (
            SHARD_ATTRIBUTE.to_string(),
            AttributeValue::S(shard.to_string()),
        ),
        (
            "startExecutionAt".to_string(),
            AttributeValue::N(start_execution_at.to_string()),
        ),
    ])
}

#[async_trait]
impl TaskStore for DynamoDbStore {
    async fn create(&self, task: &Task) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table_name)
            .set_item(Some(task_to_item(task)?))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", "id")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        Some(item) => settle_create(task, &item_to_task(item.clone())?),
                        None => Err(StoreError::AlreadyExists(task.id.clone())),
                    }
                }
                _ => Err(unavailable(error)),
            },
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .key("id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.map(item_to_task).transpose()
    }

    /// Reads every shard of the status from its place in the page token, and returns their
    /// items merged by time, as far as every shard has been read: a shard that stopped earlier
    /// (its page was full) could still hold an earlier task. Each shard then resumes after the
    /// last of its items returned.
    async fn query(&self, query: &StatusQuery) -> Result<Page, StoreError> {
        let places = match &query.page_token {
            Some(token) => decode_page_token(token, query)?,
            None => vec![Place::Start; STATUS_SHARDS as usize],
        };
        let limit = shard_page_size(query.limit);
        let reads = query
            .status
            .shard_keys()
            .zip(&places)
            .map(|(shard, place)| async move {
                match place {
                    Place::Done => Ok(None),
                    Place::Start => self.query_shard(query, shard, None, limit).await.map(Some),
                    Place::After(at, id) => {
                        let key = index_key(id, &shard, *at);
                        self.query_shard(query, shard, Some(key), limit)
                            .await
                            .map(Some)
                    }
                }
            });
        let reads = futures::future::try_join_all(reads).await?;

        // Time order, read as ascending `startExecutionAt` whichever way the query runs.
        let order = |at: i64| {
            if query.newest_first {
                at.saturating_neg()
            } else {
                at
            }
        };
        // Every shard has been read up to here; one without a next key, to its end.
        let read_to = reads
            .iter()
            .flatten()
            .filter_map(|read| read.last_evaluated.as_ref().map(|(at, _)| order(*at)))
            .min()
            .unwrap_or(i64::MAX);
        let mut merged: Vec<(i64, usize, usize, &Item)> = reads
            .iter()
            .enumerate()
            .filter_map(|(shard, read)| read.as_ref().map(|read| (shard, read)))
            .flat_map(|(shard, read)| {
                read.items
                    .iter()
                    .enumerate()
                    .map(move |(position, item)| (order(item_start(item)), shard, position, item))
            })
            .filter(|(at, _, _, _)| *at <= read_to)
            .collect();
        // Ties keep each shard's own order, so what is returned of a shard is a prefix of its read.
        merged.sort_unstable_by_key(|(at, shard, position, _)| (*at, *shard, *position));
        merged.truncate(query.limit as usize);

        let mut returned = vec![0usize; places.len()];
        let mut page = Page::default();
        for (_, shard, _, item) in merged {
            returned[shard] += 1;
            let id = item_id(item);
            match item_to_task(item.clone()) {
                Ok(task) => page.tasks.push(task),
                Err(_) => page.undecodable.push(id),
            }
        }
        let next: Vec<Place> = places
            .into_iter()
            .zip(&reads)
            .zip(returned)
            .map(|((place, read), returned)| match read {
                None => place,
                Some(read) if returned == read.items.len() => match &read.last_evaluated {
                    Some((at, id)) => Place::After(*at, id.clone()),
                    None => Place::Done,
                },
                Some(read) if returned > 0 => {
                    let last = &read.items[returned - 1];
                    Place::After(item_start(last), item_id(last))
                }
                Some(_) => place,
            })
            .collect();
        // A filtered page may be empty and still have a successor: the caller follows the token.
        page.next_token = next
            .iter()
            .any(|place| *place != Place::Done)
            .then(|| encode_page_token(query, &next));
        Ok(page)
    }

    /// `Select: COUNT` on every shard of the index: DynamoDB counts (and meters the reads),
    /// nothing is sent back.
    async fn count(&self, status: TaskStatus, from: i64, to: i64) -> Result<u64, StoreError> {
        let counts = status
            .shard_keys()
            .map(|shard| self.count_shard(shard, from, to));
        Ok(futures::future::try_join_all(counts).await?.iter().sum())
    }

    async fn transition(&self, id: &str, change: &Transition) -> Result<Task, StoreError> {
        let update = Update::from_transition(id, change, change.expiry(self.retention))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .key("id", AttributeValue::S(id.to_string()))
            .condition_expression(update.condition)
            .update_expression(update.update)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => item_to_task(output.attributes.unwrap_or_default()),
            Err(error) => {
                if let Some(UpdateItemError::ConditionalCheckFailedException(failed)) =
                    error.as_service_error()
                {
                    return match failed.item() {
                        Some(item) => change.settle(item_to_task(item.clone())?),
                        None => Err(StoreError::NotFound(id.to_string())),
                    };
                }
                Err(unavailable(error))
            }
        }
    }
}

/// No attempt began in the task's current series (see [`Task::attempt_began_in_series`]). A
/// missing `attempts`, `series` or `attemptSeries` reads as 0 (the fields' serde defaults, as
/// `Transition::applies_to` sees them); each comparison is guarded by the existence of its
/// attributes, since what a comparison with a missing attribute gives is not what the decoded
/// task says.
const NO_ATTEMPT_IN_SERIES: &str = "(attribute_not_exists(#attempts) OR #attempts = :zero \
     OR (attribute_exists(#attemptSeries) AND attribute_exists(#series) \
     AND #attemptSeries <> #series) \
     OR (attribute_not_exists(#attemptSeries) AND attribute_exists(#series) AND #series <> :zero) \
     OR (attribute_exists(#attemptSeries) AND attribute_not_exists(#series) \
     AND #attemptSeries <> :zero))";

/// The UpdateItem that says [`Transition::applies_to`] and [`Transition::apply`] in DynamoDB's
/// expression language.
#[derive(Debug, PartialEq)]
struct Update {
    condition: String,
    update: String,
    names: HashMap<String, String>,
    values: Item,
}

impl Update {
    /// The conditional update `change` makes; `expiry` is the TTL attribute it sets or removes
    /// ([`Transition::expiry`]).
    fn from_transition(
        id: &str,
        change: &Transition,
        expiry: Option<Option<i64>>,
    ) -> Result<Update, StoreError> {
        let s = AttributeValue::S;
        let mut names: HashMap<String, String> = [
            ("#id", "id"),
            ("#status", "taskStatus"),
            ("#updated", "lastUpdatedAt"),
            ("#shard", SHARD_ATTRIBUTE),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut values = Item::from([
            (":to".to_string(), s(change.event.to().to_string())),
            (":shard".to_string(), s(change.event.to().shard_key(id))),
            (":at".to_string(), s(rfc3339_millis::format(&change.at))),
            (":writeToken".to_string(), s(change.write_token.clone())),
        ]);
        names.insert("#writeToken".into(), "writeToken".into());

        let from: Vec<String> = change
            .event
            .from()
            .iter()
            .enumerate()
            .map(|(i, status)| {
                let placeholder = format!(":from{i}");
                values.insert(placeholder.clone(), s(status.to_string()));
                placeholder
            })
            .collect();
        // A retry of this very write (the SDK's, after a lost answer) never applies twice.
        let mut condition = format!(
            "attribute_exists(#id) AND #status IN ({}) \
             AND (attribute_not_exists(#writeToken) OR #writeToken <> :writeToken)",
            from.join(", ")
        );
        if change.event.requires_no_attempt_in_series() {
            condition.push_str(&format!(" AND {NO_ATTEMPT_IN_SERIES}"));
        }
        if change.requires_attempt_in_series {
            condition.push_str(&format!(" AND NOT {NO_ATTEMPT_IN_SERIES}"));
        }
        if change.event.requires_no_attempt_in_series() || change.requires_attempt_in_series {
            names.insert("#attempts".into(), "attempts".into());
            names.insert("#attemptSeries".into(), "attemptSeries".into());
            names.insert("#series".into(), "series".into());
            values.insert(":zero".into(), AttributeValue::N("0".into()));
        }
        if let Some(series) = change.expected_series {
            // An item without `series` reads as series 0 (the field's serde default).
            names.insert("#series".into(), "series".into());
            values.insert(":series".into(), AttributeValue::N(series.to_string()));
            condition.push_str(if series == 0 {
                " AND (attribute_not_exists(#series) OR #series = :series)"
            } else {
                " AND #series = :series"
            });
        }
        if let Some(attempts) = change.expected_attempts {
            // An item without `attempts` has made none (the field's serde default).
            names.insert("#attempts".into(), "attempts".into());
            values.insert(":attempts".into(), AttributeValue::N(attempts.to_string()));
            condition.push_str(if attempts == 0 {
                " AND (attribute_not_exists(#attempts) OR #attempts = :attempts)"
            } else {
                " AND #attempts = :attempts"
            });
        }
        if let Some(start_by) = change.start_by {
            condition.push_str(" AND #startExecutionAt <= :startBy");
            names.insert("#startExecutionAt".into(), "startExecutionAt".into());
            values.insert(":startBy".into(), AttributeValue::N(start_by.to_string()));
        }
        if change.event == Event::ClaimCallback {
            // Once per series: the series whose callback was taken is not this one.
            condition.push_str(
                " AND (attribute_not_exists(#callbackSeries) OR #callbackSeries <> #series)",
            );
            names.insert("#callbackSeries".into(), "callbackSeries".into());
            names.insert("#series".into(), "series".into());
        }
        if change.requires_no_scheduled_retry {
            condition.push_str(" AND attribute_not_exists(#nextAttempt)");
            names.insert("#nextAttempt".into(), "nextAttempt".into());
        }
        if let Some(expected) = change.expected_last_updated_at {
            condition.push_str(" AND #updated = :expected");
            values.insert(":expected".into(), s(rfc3339_millis::format(&expected)));
        }

        let mut update =
            "SET #status = :to, #shard = :shard, #updated = :at, #writeToken = :writeToken"
                .to_string();
        let mut set = |name: &str, attribute: &str, placeholder: &str, value: AttributeValue| {
            update.push_str(&format!(", {name} = {placeholder}"));
            names.insert(name.into(), attribute.into());
            values.insert(placeholder.into(), value);
        };
        if let Some(error) = &change.last_error {
            set("#lastError", "lastError", ":lastError", s(error.clone()));
        }
        if let Some(at) = change.executed_at {
            set(
                "#executedAt",
                "executedAt",
                ":executedAt",
                s(rfc3339_millis::format(&at)),
            );
        }
        if let Some(at) = change.changes.attempt_at {
            set(
                "#attemptAt",
                "attemptAt",
                ":attemptAt",
                s(rfc3339_millis::format(&at)),
            );
        }
        if let Some(lateness) = change.lateness_ms {
            let n = AttributeValue::N(lateness.to_string());
            set("#latenessMs", "latenessMs", ":latenessMs", n);
        }
        if let Some((timestamp, start_execution_at)) = change.changes.timestamp {
            let at = s(rfc3339_millis::format(&timestamp));
            set("#timestamp", "timestamp", ":timestamp", at);
            let start = AttributeValue::N(start_execution_at.to_string());
            set(
                "#startExecutionAt",
                "startExecutionAt",
                ":startExecutionAt",
                start,
            );
        }
        let mut removed = Vec::new();
        for (name, attribute, value) in [
            (
                "#webhook",
                "webhook",
                attribute_change(&change.changes.webhook)?,
            ),
            (
                "#payload",
                "payload",
                attribute_change(&change.changes.payload)?,
            ),
            ("#retry", "retry", attribute_change(&change.changes.retry)?),
            (
                "#onFailure",
                "onFailure",
                attribute_change(&change.changes.on_failure)?,
            ),
            ("#attemptHistory", "attemptHistory", history_change(change)?),
            ("#slot", "slot", attribute_change(&change.slot_change())?),
            (
                "#nextAttempt",
                "nextAttempt",
                attribute_change(&next_attempt_change(change))?,
            ),
            (
                "#expiresAt",
                "expiresAt",
                expiry.map(|at| at.map(|at| AttributeValue::N(at.to_string()))),
            ),
        ] {
            match value {
                None => {}
                Some(None) => removed.push((name, attribute)),
                Some(Some(value)) => set(name, attribute, &format!(":{attribute}"), value),
            }
        }
        if change.event.resets_redispatches() {
            set(
                "#redispatches",
                "redispatches",
                ":noRedispatches",
                AttributeValue::N("0".into()),
            );
        }
        if change.event == Event::ClaimCallback {
            update.push_str(", #callbackSeries = if_not_exists(#series, :zero)");
            names.insert("#callbackSeries".into(), "callbackSeries".into());
            names.insert("#series".into(), "series".into());
            values.insert(":zero".into(), AttributeValue::N("0".into()));
        }
        if change.event.starts_series() {
            update.push_str(", #seriesStartAttempts = if_not_exists(#attempts, :zero)");
            names.insert("#seriesStartAttempts".into(), "seriesStartAttempts".into());
            names.insert("#attempts".into(), "attempts".into());
            values.insert(":zero".into(), AttributeValue::N("0".into()));
        }
        if change.increments_attempts() {
            // The attempt belongs to the series the task is in (SET reads the item before the
            // update, so this is the series before any ADD below).
            update.push_str(", #attemptSeries = if_not_exists(#series, :zero)");
            names.insert("#attemptSeries".into(), "attemptSeries".into());
            names.insert("#series".into(), "series".into());
            values.insert(":zero".into(), AttributeValue::N("0".into()));
        }
        if let (None, Some(record)) = (
            &change.changes.attempt_history,
            &change.changes.record_attempt,
        ) {
            update.push_str(
                ", #attemptHistory = list_append(if_not_exists(#attemptHistory, :noHistory), \
                 :attempt)",
            );
            names.insert("#attemptHistory".into(), "attemptHistory".into());
            values.insert(":noHistory".into(), AttributeValue::L(Vec::new()));
            values.insert(
                ":attempt".into(),
                AttributeValue::L(vec![attribute_value(record)?]),
            );
        }
        if !removed.is_empty() {
            let names_removed: Vec<&str> = removed.iter().map(|(name, _)| *name).collect();
            update.push_str(&format!(" REMOVE {}", names_removed.join(", ")));
            for (name, attribute) in removed {
                names.insert(name.into(), attribute.into());
            }
        }
        let mut added = Vec::new();
        if change.increments_attempts() {
            added.push(("#attempts", "attempts"));
        }
        if change.event.starts_series() {
            added.push(("#series", "series"));
        }
        if change.event.counts_redispatch() {
            added.push(("#redispatches", "redispatches"));
        }
        if !added.is_empty() {
            let adds: Vec<String> = added
                .iter()
                .map(|(name, attribute)| {
                    names.insert(name.to_string(), attribute.to_string());
                    format!("{name} :one")
                })
                .collect();
            update.push_str(&format!(" ADD {}", adds.join(", ")));
            values.insert(":one".into(), AttributeValue::N("1".into()));
        }
        Ok(Update {
            condition,
            update,
            names,
            values,
        })
    }
}

fn attribute_value<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    to_attribute_value(value).map_err(|e| StoreError::Unavailable {
        message: format!("the change cannot be stored: {e}"),
        request_id: None,
    })
}

/// The history a change sets as a whole (a retry trims it), with any attempt it adds; an empty
/// one is removed, as a task without attempts is stored. An attempt added alone is appended.
fn history_change(change: &Transition) -> Result<Option<Option<AttributeValue>>, StoreError> {
    let Some(history) = &change.changes.attempt_history else {
        return Ok(None);
    };
    let history: Vec<_> = history
        .iter()
        .chain(&change.changes.record_attempt)
        .collect();
    if history.is_empty() {
        return Ok(Some(None));
    }
    Ok(Some(Some(attribute_value(&history)?)))
}

/// What a change does to the task's handed-over retry: sets it, removes it (a begin, a new
/// series) or leaves it, as [`Transition::apply`] does.
fn next_attempt_change(change: &Transition) -> Option<Option<NextAttempt>> {
    match &change.changes.next_attempt {
        Some(next) => Some(Some(next.clone())),
        None if change.clears_next_attempt() => Some(None),
        None => None,
    }
}

/// A field a change sets (`Some(Some)`), removes (`Some(None)`) or leaves (`None`), as the
/// attribute value to set.
fn attribute_change<T: serde::Serialize>(
    change: &Option<Option<T>>,
) -> Result<Option<Option<AttributeValue>>, StoreError> {
    change
        .as_ref()
        .map(|value| value.as_ref().map(to_attribute_value).transpose())
        .transpose()
        .map_err(|e| StoreError::Unavailable {
            message: format!("the change cannot be stored: {e}"),
            request_id: None,
        })
}

fn task_to_item(task: &Task) -> Result<Item, StoreError> {
    let mut item: Item = to_item(task).map_err(|e| StoreError::Unavailable {
        message: format!("task {} cannot be stored: {e}", task.id),
        request_id: None,
    })?;
    item.insert(
        SHARD_ATTRIBUTE.to_string(),
        AttributeValue::S(task.task_status.shard_key(&task.id)),
    );
    Ok(item)
}

fn item_id(item: &Item) -> String {
    match item.get("id") {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => "?".to_string(),
    }
}

fn item_to_task(item: Item) -> Result<Task, StoreError> {
    let id = item_id(&item);
    from_item(item).map_err(|e| StoreError::Unavailable {
        message: format!("item {id} is not a valid task: {e}"),
        request_id: None,
    })
}

pub(crate) fn unavailable<E>(error: SdkError<E>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    StoreError::Unavailable {
        request_id: error.request_id().map(str::to_string),
        message: error_message(&error),
    }
}

/// A page token: the query it continues (status, window, direction) and each shard's place, as
/// JSON (`{"query": ["QUEUED", null, 1900000060, false], "shards": ["start", [1900000000, "a-b"],
/// "done", …]}`).
fn encode_page_token(query: &StatusQuery, places: &[Place]) -> String {
    let shards: Vec<Value> = places
        .iter()
        .map(|place| match place {
            Place::Start => Value::from("start"),
            Place::After(at, id) => Value::from(vec![Value::from(*at), Value::from(id.as_str())]),
            Place::Done => Value::from("done"),
        })
        .collect();
    let json = serde_json::json!({"query": query_shape(query), "shards": shards});
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// What a page token continues: a token read with another status, window or direction would skip
/// or repeat tasks.
fn query_shape(query: &StatusQuery) -> Value {
    serde_json::json!([
        query.status.as_str(),
        query.due_from,
        query.due_by,
        query.newest_first
    ])
}

/// Accepts only a token of this query, with a place for every shard and each task in its own
/// shard: anything else would make DynamoDB fail the query or resume another one.
fn decode_page_token(token: &str, query: &StatusQuery) -> Result<Vec<Place>, StoreError> {
    let json: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(StoreError::InvalidPageToken)?;
    if json.get("query") != Some(&query_shape(query)) {
        return Err(StoreError::InvalidPageToken);
    }
    let shards = json
        .get("shards")
        .and_then(Value::as_array)
        .filter(|shards| shards.len() == STATUS_SHARDS as usize)
        .ok_or(StoreError::InvalidPageToken)?;
    shards
        .iter()
        .enumerate()
        .map(|(shard, place)| match place {
            Value::String(word) if word == "start" => Some(Place::Start),
            Value::String(word) if word == "done" => Some(Place::Done),
            Value::Array(key) => match key.as_slice() {
                [Value::Number(at), Value::String(id)] => at
                    .as_i64()
                    // DynamoDB refuses a start key outside the key condition.
                    .filter(|at| query.covers(*at))
                    .filter(|_| status_shard(id) as usize == shard)
                    .map(|at| Place::After(at, id.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or(StoreError::InvalidPageToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use tasks_core::{Event, TaskStatus};

    fn places() -> Vec<Place> {
        let mut places = vec![Place::Start; STATUS_SHARDS as usize];
        places[0] = Place::Done;
        let shard = status_shard("a-b") as usize;
        places[shard] = Place::After(1_900_000_000, "a-b".into());
        places
    }

    #[test]
    fn page_tokens_round_trip_every_shards_place() {
        let query = StatusQuery::new(TaskStatus::Queued, 10);
        let token = encode_page_token(&query, &places());
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(decode_page_token(&token, &query).unwrap(), places());
    }

    #[test]
    fn foreign_or_damaged_page_tokens_are_invalid() {
        let query = StatusQuery::new(TaskStatus::Queued, 10);
        let token = |json: Value| URL_SAFE_NO_PAD.encode(json.to_string());
        let mut wrong_shard = places();
        let shard = status_shard("a-b") as usize;
        wrong_shard.swap(shard, (shard + 1) % STATUS_SHARDS as usize);
        let outside_window = StatusQuery {
            due_from: Some(1_900_000_001),
            ..query.clone()
        };
        let newest_first = StatusQuery {
            newest_first: true,
            ..query.clone()
        };
        let other_status = StatusQuery::new(TaskStatus::Scheduled, 10);
        for (query, token) in [
            (&query, "not base64!".to_string()),
            (&query, URL_SAFE_NO_PAD.encode("[1, 2]")),
            (
                &query,
                token(serde_json::json!({"query": query_shape(&query)})),
            ),
            (
                &query,
                token(serde_json::json!({"query": query_shape(&query), "shards": ["start"]})),
            ),
            (&query, encode_page_token(&other_status, &places())),
            (&query, encode_page_token(&query, &wrong_shard)),
            (&outside_window, encode_page_token(&query, &places())),
            (&newest_first, encode_page_token(&query, &places())),
        ] {
            assert_eq!(
                decode_page_token(&token, query),
                Err(StoreError::InvalidPageToken),
                "{token}"
            );
        }
    }

    #[test]
    fn a_shard_page_is_a_share_of_the_page_and_never_more_than_it() {
        assert_eq!(shard_page_size(1), 1);
        assert_eq!(shard_page_size(10), 10);
        assert_eq!(shard_page_size(100), 24);
        assert_eq!(shard_page_size(1_000), 136);
    }

    #[test]
    fn a_cancel_is_conditional_on_no_attempt_and_the_expected_version() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let update = Update::from_transition(
            "a",
            &Transition::new(Event::Cancel, at).if_last_updated_at(at),
            None,
        )
        .unwrap();
        assert_eq!(
            update.condition,
            "attribute_exists(#id) AND #status IN (:from0, :from1, :from2) \
             AND (attribute_not_exists(#writeToken) OR #writeToken <> :writeToken) \
             AND (attribute_not_exists(#attempts) OR #attempts = :zero \
             OR (attribute_exists(#attemptSeries) AND attribute_exists(#series) \
             AND #attemptSeries <> #series) \
             OR (attribute_not_exists(#attemptSeries) AND attribute_exists(#series) \
             AND #series <> :zero) \
             OR (attribute_exists(#attemptSeries) AND attribute_not_exists(#series) \
             AND #attemptSeries <> :zero)) AND #updated = :expected"
        );
        assert_eq!(
            update.update,
            "SET #status = :to, #shard = :shard, #updated = :at, #writeToken = :writeToken"
        );
        assert_eq!(update.values[":to"], AttributeValue::S("CANCELLED".into()));
        assert_eq!(
            update.values[":expected"],
            AttributeValue::S("2030-06-01T12:00:00.000Z".into())
        );
    }

    #[test]
    fn a_begun_attempt_sets_the_given_fields_and_adds_one_attempt() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let mut change = Transition::new(Event::BeginAttempt, at)
            .in_series(3)
            .if_attempts(2)
            .with_error("boom")
            .executed(at, 5);
        change.changes.attempt_at = Some(at);
        let update = Update::from_transition("a", &change, None).unwrap();
        assert_eq!(
            update.condition,
            "attribute_exists(#id) AND #status IN (:from0, :from1) \
             AND (attribute_not_exists(#writeToken) OR #writeToken <> :writeToken) \
             AND #series = :series AND #attempts = :attempts"
        );
        assert_eq!(update.values[":attempts"], AttributeValue::N("2".into()));
        assert_eq!(
            update.update,
            "SET #status = :to, #shard = :shard, #updated = :at, #writeToken = :writeToken, \
             #lastError = :lastError, #executedAt = :executedAt, #attemptAt = :attemptAt, \
             #latenessMs = :latenessMs, #attemptSeries = if_not_exists(#series, :zero) \
             REMOVE #nextAttempt ADD #attempts :one"
        );
        assert_eq!(
            update.values[":attemptAt"],
            AttributeValue::S("2030-06-01T12:00:00.000Z".into())
        );
        assert_eq!(update.values[":latenessMs"], AttributeValue::N("5".into()));
        assert_eq!(update.values[":series"], AttributeValue::N("3".into()));
    }

    #[test]
    fn a_reschedule_sets_the_new_time_and_webhook_removes_the_payload_in_one_write() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let webhook = tasks_core::Webhook {
            url: "https://example.com/".into(),
            method: "POST".into(),
            headers: Default::default(),
            body: None,
            signing: None,
            keep_response_body: true,
        };
        let change = Transition::new(Event::Reschedule, at)
            .if_last_updated_at(at)
            .with_changes(tasks_core::Changes {
                timestamp: Some((at, 1_906_545_480)),
                webhook: Some(Some(webhook)),
                payload: Some(None),
                ..Default::default()
            });
        let update = Update::from_transition("a", &change, None).unwrap();
        assert_eq!(
            update.update,
            "SET #status = :to, #shard = :shard, #updated = :at, #writeToken = :writeToken, \
             #timestamp = :timestamp, #startExecutionAt = :startExecutionAt, #webhook = :webhook, \
             #redispatches = :noRedispatches, \
             #seriesStartAttempts = if_not_exists(#attempts, :zero) \
             REMOVE #payload, #slot, #nextAttempt ADD #series :one"
        );
        assert_eq!(update.names["#payload"], "payload");
        assert_eq!(
            update.values[":startExecutionAt"],
            AttributeValue::N("1906545480".into())
        );
        assert!(matches!(update.values[":webhook"], AttributeValue::M(_)));
    }

    #[test]
    fn a_claim_is_bounded_by_the_start_it_read() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let change = Transition::new(Event::Claim, at).if_starting_by(1_906_545_600);
        let update = Update::from_transition("a", &change, None).unwrap();
        assert!(
            update
                .condition
                .ends_with(" AND #startExecutionAt <= :startBy"),
            "{}",
            update.condition
        );
        assert_eq!(
            update.values[":startBy"],
            AttributeValue::N("1906545600".into())
        );
    }

    #[test]
    fn a_restart_starts_a_new_series_and_counts_a_redispatch() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let change = Transition::new(Event::Restart, at)
            .in_series(0)
            .if_last_updated_at(at);
        let update = Update::from_transition("a", &change, None).unwrap();
        assert_eq!(
            update.condition,
            "attribute_exists(#id) AND #status IN (:from0, :from1) \
             AND (attribute_not_exists(#writeToken) OR #writeToken <> :writeToken) \
             AND (attribute_not_exists(#series) OR #series = :series) AND #updated = :expected"
        );
        assert_eq!(
            update.update,
            "SET #status = :to, #shard = :shard, #updated = :at, #writeToken = :writeToken, \
             #seriesStartAttempts = if_not_exists(#attempts, :zero) \
             REMOVE #slot, #nextAttempt ADD #series :one, #redispatches :one"
        );
    }

    #[test]
    fn a_claim_names_the_task_s_slot_and_a_begun_attempt_keeps_it() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let claim = Transition::new(Event::Claim, at).with_changes(tasks_core::Changes {
            slot: Some("slot-1".into()),
            ..Default::default()
        });
        let update = Update::from_transition("a", &claim, None).unwrap();
        assert!(update.update.contains("#slot = :slot"), "{}", update.update);
        assert_eq!(update.values[":slot"], AttributeValue::S("slot-1".into()));
        let begin = Transition::new(Event::BeginAttempt, at);
        let update = Update::from_transition("a", &begin, None).unwrap();
        assert!(!update.update.contains("#slot"), "{}", update.update);
    }
}
