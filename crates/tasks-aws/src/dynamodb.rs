//! [`TaskStore`] on a DynamoDB table: one item per task, read by status through a GSI.

use crate::error_message;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
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
use tasks_core::task::rfc3339_millis;
use tasks_core::{Page, StatusQuery, StoreError, Task, TaskStatus, TaskStore, Transition};

/// The GSI that lists tasks by status, ordered by `startExecutionAt`.
pub const STATUS_INDEX: &str = "statusStartExecAtIndex";

type Item = HashMap<String, AttributeValue>;

/// Errors other than the typed outcomes become [`StoreError::Unavailable`]; throttling and
/// transient failures have by then been retried by the SDK (standard mode, 3 attempts).
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table_name: String,
}

impl DynamoDbStore {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        DynamoDbStore {
            client,
            table_name: table_name.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }
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
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists(task.id.clone()))
            }
            Err(error) => Err(unavailable(error)),
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

    async fn query(&self, query: &StatusQuery) -> Result<Page, StoreError> {
        let exclusive_start_key = query
            .page_token
            .as_deref()
            .map(|token| decode_page_token(token, query))
            .transpose()?;
        let mut key_condition = "#status = :status".to_string();
        let mut request = self
            .client
            .query()
            .table_name(&self.table_name)
            .index_name(STATUS_INDEX)
            .expression_attribute_names("#status", "taskStatus")
            .expression_attribute_values(":status", AttributeValue::S(query.status.to_string()))
            .scan_index_forward(!query.newest_first)
            // DynamoDB rejects a limit of 0.
            .limit(i32::try_from(query.limit).unwrap_or(i32::MAX).max(1))
            .set_exclusive_start_key(exclusive_start_key);
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
        let mut tasks = Vec::new();
        let mut undecodable = Vec::new();
        for item in output.items.unwrap_or_default() {
            let id = item_id(&item);
            match item_to_task(item) {
                Ok(task) => tasks.push(task),
                Err(_) => undecodable.push(id),
            }
        }
        // A filtered page may be empty and still have a successor: the caller follows the token.
        let next_token = output
            .last_evaluated_key
            .filter(|key| !key.is_empty())
            .map(|key| encode_page_token(&key))
            .transpose()?;
        Ok(Page {
            tasks,
            next_token,
            undecodable,
        })
    }

    /// `Select: COUNT` on the index: DynamoDB counts (and meters the reads), nothing is sent back.
    async fn count(&self, status: TaskStatus, from: i64, to: i64) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table_name)
                .index_name(STATUS_INDEX)
                .select(Select::Count)
                .key_condition_expression("#status = :status AND #start BETWEEN :from AND :to")
                .expression_attribute_names("#status", "taskStatus")
                .expression_attribute_names("#start", "startExecutionAt")
                .expression_attribute_values(":status", AttributeValue::S(status.to_string()))
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

    async fn transition(&self, id: &str, change: &Transition) -> Result<Task, StoreError> {
        let update = Update::from_transition(change)?;
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
                        Some(item) => Err(StoreError::Conflict {
                            current: Box::new(item_to_task(item.clone())?),
                        }),
                        None => Err(StoreError::NotFound(id.to_string())),
                    };
                }
                Err(unavailable(error))
            }
        }
    }
}

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
    fn from_transition(change: &Transition) -> Result<Update, StoreError> {
        let s = AttributeValue::S;
        let mut names: HashMap<String, String> = [
            ("#id", "id"),
            ("#status", "taskStatus"),
            ("#updated", "lastUpdatedAt"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut values = Item::from([
            (":to".to_string(), s(change.event.to().to_string())),
            (":at".to_string(), s(rfc3339_millis::format(&change.at))),
        ]);

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
        let mut condition = format!("attribute_exists(#id) AND #status IN ({})", from.join(", "));
        if change.event.requires_no_attempt_in_series() {
            // An item without `attempts` reads as 0 attempts (the field's serde default); one
            // with attempts has `attemptSeries`, and one without `series` is in series 0, which
            // no comparison with a missing attribute can tell apart from its attempt's.
            condition.push_str(
                " AND (attribute_not_exists(#attempts) OR #attempts = :zero \
                 OR #attemptSeries <> #series)",
            );
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
        if let Some(expected) = change.expected_last_updated_at {
            condition.push_str(" AND #updated = :expected");
            values.insert(":expected".into(), s(rfc3339_millis::format(&expected)));
        }

        let mut update = "SET #status = :to, #updated = :at".to_string();
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
    to_item(task).map_err(|e| StoreError::Unavailable {
        message: format!("task {} cannot be stored: {e}", task.id),
        request_id: None,
    })
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

fn unavailable<E>(error: SdkError<E>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    StoreError::Unavailable {
        request_id: error.request_id().map(str::to_string),
        message: error_message(&error),
    }
}

/// The key attributes a page token carries: the table's and the index's.
const KEY_ATTRIBUTES: [&str; 3] = ["id", "taskStatus", "startExecutionAt"];

/// LastEvaluatedKey as DynamoDB JSON (`{"id": {"S": "…"}, "startExecutionAt": {"N": "…"}}`),
/// which keeps numbers as DynamoDB's exact decimal strings.
fn encode_page_token(key: &Item) -> Result<String, StoreError> {
    let mut json = Map::new();
    for (name, value) in key {
        let (kind, text) = match value {
            AttributeValue::S(text) => ("S", text),
            AttributeValue::N(text) => ("N", text),
            other => {
                return Err(StoreError::Unavailable {
                    message: format!("unexpected key attribute {name}: {other:?}"),
                    request_id: None,
                })
            }
        };
        json.insert(
            name.clone(),
            Value::from_iter([(kind.to_string(), Value::from(text.as_str()))]),
        );
    }
    Ok(URL_SAFE_NO_PAD.encode(Value::Object(json).to_string()))
}

/// Accepts only a key of this index for the queried status: anything else would make DynamoDB
/// fail the query or resume another one.
fn decode_page_token(token: &str, query: &StatusQuery) -> Result<Item, StoreError> {
    let json: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(StoreError::InvalidPageToken)?;
    let key: Item = json
        .into_iter()
        .map(|(name, value)| Some((name, key_attribute(value)?)))
        .collect::<Option<_>>()
        .ok_or(StoreError::InvalidPageToken)?;
    let complete = key.len() == KEY_ATTRIBUTES.len()
        && KEY_ATTRIBUTES.iter().all(|name| key.contains_key(*name))
        && matches!(&key["id"], AttributeValue::S(_))
        // DynamoDB refuses a start key outside the key condition: a token from another window.
        && key["startExecutionAt"]
            .as_n()
            .is_ok_and(|at| at.parse().is_ok_and(|at| query.covers(at)))
        && key["taskStatus"] == AttributeValue::S(query.status.to_string());
    if complete {
        Ok(key)
    } else {
        Err(StoreError::InvalidPageToken)
    }
}

fn key_attribute(value: Value) -> Option<AttributeValue> {
    let Value::Object(typed) = value else {
        return None;
    };
    let mut entries = typed.into_iter();
    let entry = entries.next()?;
    if entries.next().is_some() {
        return None;
    }
    match entry {
        (kind, Value::String(text)) if kind == "S" => Some(AttributeValue::S(text)),
        (kind, Value::String(text)) if kind == "N" && text.parse::<i64>().is_ok() => {
            Some(AttributeValue::N(text))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use tasks_core::{Event, TaskStatus};

    fn key(status: &str) -> Item {
        Item::from([
            ("id".to_string(), AttributeValue::S("a-b".into())),
            ("taskStatus".to_string(), AttributeValue::S(status.into())),
            (
                "startExecutionAt".to_string(),
                AttributeValue::N("1900000000".into()),
            ),
        ])
    }

    #[test]
    fn page_tokens_round_trip_the_last_evaluated_key() {
        let query = StatusQuery::new(TaskStatus::Queued, 10);
        let token = encode_page_token(&key("QUEUED")).unwrap();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(decode_page_token(&token, &query).unwrap(), key("QUEUED"));
    }

    #[test]
    fn foreign_or_damaged_page_tokens_are_invalid() {
        let query = StatusQuery::new(TaskStatus::Queued, 10);
        let other_status = encode_page_token(&key("SCHEDULED")).unwrap();
        let mut missing = key("QUEUED");
        missing.remove("id");
        let mut bad_number = key("QUEUED");
        bad_number.insert("startExecutionAt".into(), AttributeValue::N("soon".into()));
        for token in [
            "not base64!".to_string(),
            URL_SAFE_NO_PAD.encode("[1, 2]"),
            URL_SAFE_NO_PAD.encode(r#"{"id": "a"}"#),
            other_status,
            encode_page_token(&missing).unwrap(),
            encode_page_token(&bad_number).unwrap(),
        ] {
            assert_eq!(
                decode_page_token(&token, &query),
                Err(StoreError::InvalidPageToken),
                "{token}"
            );
        }
    }

    #[test]
    fn a_cancel_is_conditional_on_no_attempt_and_the_expected_version() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let update =
            Update::from_transition(&Transition::new(Event::Cancel, at).if_last_updated_at(at))
                .unwrap();
        assert_eq!(
            update.condition,
            "attribute_exists(#id) AND #status IN (:from0, :from1, :from2) \
             AND (attribute_not_exists(#attempts) OR #attempts = :zero \
             OR #attemptSeries <> #series) AND #updated = :expected"
        );
        assert_eq!(update.update, "SET #status = :to, #updated = :at");
        assert_eq!(update.values[":to"], AttributeValue::S("CANCELLED".into()));
        assert_eq!(
            update.values[":expected"],
            AttributeValue::S("2030-06-01T12:00:00.000Z".into())
        );
    }

    #[test]
    fn a_begun_attempt_sets_the_given_fields_and_adds_one_attempt() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let change = Transition::new(Event::BeginAttempt, at)
            .in_series(3)
            .with_error("boom")
            .executed(at, 5);
        let update = Update::from_transition(&change).unwrap();
        assert_eq!(
            update.condition,
            "attribute_exists(#id) AND #status IN (:from0, :from1) AND #series = :series"
        );
        assert_eq!(
            update.update,
            "SET #status = :to, #updated = :at, #lastError = :lastError, \
             #executedAt = :executedAt, #latenessMs = :latenessMs, \
             #attemptSeries = if_not_exists(#series, :zero) ADD #attempts :one"
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
        };
        let change = Transition::new(Event::Reschedule, at)
            .if_last_updated_at(at)
            .with_changes(tasks_core::Changes {
                timestamp: Some((at, 1_906_545_480)),
                webhook: Some(Some(webhook)),
                payload: Some(None),
                ..Default::default()
            });
        let update = Update::from_transition(&change).unwrap();
        assert_eq!(
            update.update,
            "SET #status = :to, #updated = :at, #timestamp = :timestamp, \
             #startExecutionAt = :startExecutionAt, #webhook = :webhook, \
             #redispatches = :noRedispatches REMOVE #payload ADD #series :one"
        );
        assert_eq!(update.names["#payload"], "payload");
        assert_eq!(
            update.values[":startExecutionAt"],
            AttributeValue::N("1906545480".into())
        );
        assert!(matches!(update.values[":webhook"], AttributeValue::M(_)));
    }

    #[test]
    fn a_restart_starts_a_new_series_and_counts_a_redispatch() {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
        let change = Transition::new(Event::Restart, at)
            .in_series(0)
            .if_last_updated_at(at);
        let update = Update::from_transition(&change).unwrap();
        assert_eq!(
            update.condition,
            "attribute_exists(#id) AND #status IN (:from0, :from1) \
             AND (attribute_not_exists(#series) OR #series = :series) AND #updated = :expected"
        );
        assert_eq!(
            update.update,
            "SET #status = :to, #updated = :at ADD #series :one, #redispatches :one"
        );
    }
}
