//! DynamoDB as the pipeline sees it, with the semantics AWS documents:
//! - each item write is atomic and conditional: the condition is checked and the write applied
//!   as one step (the in-memory store's `Transition::applies_to` / `apply`, which the real
//!   adapter states as a ConditionExpression);
//! - `GetItem` with `ConsistentRead` sees every acknowledged write;
//! - a global secondary index is eventually consistent: a query sees each item as it was up to
//!   `index_lag_ms` ago (an old status, or not yet there), and a filter is applied after the limit;
//! - a call may fail (throttled, 500) after the SDK's retries, and a write may be applied while its
//!   response is lost. The SDK then retries it: the retry's condition fails on the item the first
//!   try wrote (a create's retry finds the id taken), and what the adapter makes of that failure
//!   ([`tasks_core::Transition::settle`], [`tasks_core::settle_create`]) is what the caller gets;
//!   when every retry's answer is lost too, the caller sees an error for a write that happened.
//!
//! Items that are not valid tasks can sit in the index (an item of another shape); a query
//! reports their ids instead of failing.

use crate::quotas::{Bucket, Quotas};
use crate::world::World;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use tasks_core::{
    settle_create, Page, StatusQuery, StoreError, Task, TaskStatus, TaskStore, Transition,
    STATUS_SHARDS,
};

/// One index entry as a query sees it: a task, or an item that is not a valid task.
#[derive(Debug, Clone)]
enum Entry {
    Task(Box<Task>),
    Undecodable {
        status: TaskStatus,
        start_execution_at: i64,
    },
}

/// The index's key: (taskStatus, startExecutionAt, id), ordered as DynamoDB orders the index.
type IndexKey = (&'static str, i64, String);

impl Entry {
    fn key(&self, id: &str) -> IndexKey {
        match self {
            Entry::Task(task) => (
                task.task_status.as_str(),
                task.start_execution_at,
                id.to_string(),
            ),
            Entry::Undecodable {
                status,
                start_execution_at,
            } => (status.as_str(), *start_execution_at, id.to_string()),
        }
    }
}

#[derive(Default)]
struct Tables {
    items: BTreeMap<String, Task>,
    /// The index as queries see it: each item's entry, and the entries in index order.
    index: BTreeMap<String, Entry>,
    ordered: BTreeSet<IndexKey>,
    /// Writes on their way to the index: (visible from, id, entry); per item in write order.
    pending: Vec<(tokio::time::Instant, String, Entry)>,
    /// The latest instant a pending write of each item becomes visible, so the index of one
    /// item never goes back to an older state.
    visible_from: BTreeMap<String, tokio::time::Instant>,
}

/// The error a write gets when the table's or an index partition's capacity refused it.
pub const THROTTLED: &str = "ThrottlingException: write capacity exceeded";

/// The capacity each write takes: table units, and index units per index key value (a status's
/// shard, `<status>#<n>`).
struct Capacity {
    table: u64,
    index: Vec<(String, u64)>,
}

struct Throughput {
    table: Bucket,
    partitions: BTreeMap<String, Bucket>,
}

pub struct SimStore {
    world: Arc<World>,
    tables: Mutex<Tables>,
    throughput: Mutex<Throughput>,
}

/// An item's size, as the size of its JSON.
fn item_bytes(task: &Task) -> u64 {
    serde_json::to_vec(task).map_or(1, |json| json.len()) as u64
}

/// 1 KB write units of an item.
fn write_units(task: &Task) -> u64 {
    item_bytes(task).div_ceil(1024).max(1)
}

impl SimStore {
    pub fn new(world: Arc<World>) -> Self {
        let table = Bucket::new(world.quotas.table_writes);
        SimStore {
            world,
            tables: Mutex::new(Tables::default()),
            throughput: Mutex::new(Throughput {
                table,
                partitions: BTreeMap::new(),
            }),
        }
    }

    /// Takes a write's capacity from the table's and the index partitions' buckets, as the SDK
    /// does: a throttled attempt is retried after a jittered backoff, and the last one fails.
    async fn admit(&self, capacity: &Capacity) -> Result<(), StoreError> {
        let index_units: u64 = capacity.index.iter().map(|(_, units)| units).sum();
        self.world.usage.lock().unwrap().write_units += capacity.table + index_units;
        if self
            .world
            .with_sdk_retries("dynamodb.write_capacity", || self.try_take(capacity))
            .await
        {
            Ok(())
        } else {
            Err(unavailable(THROTTLED))
        }
    }

    fn try_take(&self, capacity: &Capacity) -> bool {
        let quotas = self.world.quotas;
        let mut throughput = self.throughput.lock().unwrap();
        let Throughput { table, partitions } = &mut *throughput;
        let fits = table.has(capacity.table as f64)
            && capacity
                .index
                .iter()
                .all(|(key, units)| partition(partitions, key, quotas).has(*units as f64));
        if fits {
            table.take(capacity.table as f64);
            for (key, units) in &capacity.index {
                partition(partitions, key, quotas).take(*units as f64);
            }
        }
        fits
    }

    fn shard_queries(&self) {
        for _ in 0..STATUS_SHARDS {
            self.world.call("dynamodb.Query");
        }
    }

    /// An item of another shape (say, the original service's, without `createdAt`) in the index.
    pub fn put_undecodable(&self, id: &str, status: TaskStatus, start_execution_at: i64) {
        let mut tables = self.tables.lock().unwrap();
        tables.show(
            id.to_string(),
            Entry::Undecodable {
                status,
                start_execution_at,
            },
        );
    }

    /// Stores a task as it is, bypassing every rule and fault (test set-up).
    pub fn put(&self, task: Task) {
        let mut tables = self.tables.lock().unwrap();
        self.write(&mut tables, task);
    }

    /// Every task as the table holds it (for the invariants, not through a fault).
    pub fn tasks(&self) -> Vec<Task> {
        self.tables
            .lock()
            .unwrap()
            .items
            .values()
            .cloned()
            .collect()
    }

    fn fail(&self) -> Result<(), StoreError> {
        if self
            .world
            .fault("dynamodb.error", self.world.faults.store_error)
        {
            return Err(unavailable("ProvisionedThroughputExceededException"));
        }
        Ok(())
    }

    /// Stores a write and schedules its arrival in the index.
    fn write(&self, tables: &mut Tables, task: Task) {
        let lag = self.world.millis(0, self.world.faults.index_lag_ms + 1);
        let now = tokio::time::Instant::now();
        let earliest = tables.visible_from.get(&task.id).copied().unwrap_or(now);
        let visible = (now + lag).max(earliest);
        tables.visible_from.insert(task.id.clone(), visible);
        tables.pending.push((
            visible,
            task.id.clone(),
            Entry::Task(Box::new(task.clone())),
        ));
        tables.items.insert(task.id.clone(), task);
    }

    /// Whether a write's answer is lost, and how the SDK's retries end.
    fn lost_answer(&self) -> Option<LostAnswer> {
        let faults = self.world.faults;
        if self
            .world
            .fault("dynamodb.ambiguous", faults.store_ambiguous)
        {
            Some(LostAnswer::Retried)
        } else if self
            .world
            .fault("dynamodb.unanswered", faults.store_unanswered)
        {
            Some(LostAnswer::Unanswered)
        } else {
            None
        }
    }

    /// A conditional put: a taken id is settled as the adapter settles it (the task's own
    /// create, or another task's).
    fn put_new(&self, task: &Task) -> Result<(), StoreError> {
        {
            let mut tables = self.tables.lock().unwrap();
            if let Some(found) = tables.items.get(&task.id) {
                return settle_create(task, found);
            }
            self.write(&mut tables, task.clone());
        }
        self.world.write_applied();
        self.world.record(&task.id, "created");
        Ok(())
    }

    /// A conditional update: a failed condition is settled as the adapter settles it (the
    /// writer's own earlier write, or another writer's).
    fn update(&self, id: &str, change: &Transition) -> Result<Task, StoreError> {
        let next = {
            let mut tables = self.tables.lock().unwrap();
            let current = tables
                .items
                .get(id)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            if !change.applies_to(&current) {
                return change.settle(current);
            }
            let next = change.apply(&current);
            self.write(&mut tables, next.clone());
            next
        };
        self.world.write_applied();
        if next.task_status == TaskStatus::Failed {
            self.world.failed_recorded(id, next.series);
        }
        self.world.record(
            id,
            format!(
                "{:?} -> {} series {} attempts {}",
                change.event, next.task_status, next.series, next.attempts
            ),
        );
        Ok(next)
    }
}

/// How a write whose answer was lost ends (the write was applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LostAnswer {
    /// The SDK's retry was answered: its condition failed on the item the first try wrote.
    Retried,
    /// Every retry's answer was lost too: the caller sees an error.
    Unanswered,
}

impl Tables {
    /// The index receives the writes whose lag has passed.
    fn catch_up(&mut self) {
        let now = tokio::time::Instant::now();
        let (arrived, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(visible, _, _)| *visible <= now);
        self.pending = waiting;
        for (_, id, entry) in arrived {
            self.show(id, entry);
        }
    }

    /// An entry arrives in the index, replacing the item's older one.
    fn show(&mut self, id: String, entry: Entry) {
        if let Some(old) = self.index.get(&id) {
            let key = old.key(&id);
            self.ordered.remove(&key);
        }
        self.ordered.insert(entry.key(&id));
        self.index.insert(id, entry);
    }
}

/// The bucket of the index partition holding `key`, full when first written.
fn partition<'a>(
    partitions: &'a mut BTreeMap<String, Bucket>,
    key: &str,
    quotas: Quotas,
) -> &'a mut Bucket {
    partitions
        .entry(key.to_string())
        .or_insert_with(|| Bucket::new(quotas.partition_writes))
}

/// An update takes the larger of the item's sizes before and after; its index entry is rewritten
/// (deleted and put again when its key changes). A failed condition takes the units too.
fn update_capacity(current: &Task, change: &Transition) -> Capacity {
    let before = write_units(current);
    if !change.applies_to(current) {
        return Capacity {
            table: before,
            index: Vec::new(),
        };
    }
    let next = change.apply(current);
    let after = write_units(&next);
    let (old_key, new_key) = (
        current.task_status.shard_key(&current.id),
        next.task_status.shard_key(&next.id),
    );
    let index = if old_key == new_key && current.start_execution_at == next.start_execution_at {
        vec![(new_key, after)]
    } else {
        vec![(old_key, before), (new_key, after)]
    };
    Capacity {
        table: before.max(after),
        index,
    }
}

fn unavailable(message: &str) -> StoreError {
    StoreError::Unavailable {
        message: message.to_string(),
        request_id: None,
    }
}

#[async_trait]
impl TaskStore for SimStore {
    async fn create(&self, task: &Task) -> Result<(), StoreError> {
        self.world.call("dynamodb.PutItem");
        self.world.latency(2, 8).await;
        self.fail()?;
        let units = write_units(task);
        self.admit(&Capacity {
            table: units,
            index: vec![(task.task_status.shard_key(&task.id), units)],
        })
        .await?;
        self.put_new(task)?;
        match self.lost_answer() {
            None => Ok(()),
            Some(LostAnswer::Unanswered) => Err(unavailable("the response was lost")),
            Some(LostAnswer::Retried) => {
                self.world.sdk_retry("dynamodb.PutItem", 2, 8).await;
                self.put_new(task)
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.world.call("dynamodb.GetItem");
        self.world.latency(1, 5).await;
        self.fail()?;
        let task = self.tables.lock().unwrap().items.get(id).cloned();
        // A strongly consistent read: one unit (two halves) per 4 KB.
        let bytes = task.as_ref().map_or(1, item_bytes);
        self.world.usage.lock().unwrap().read_half_units += 2 * bytes.div_ceil(4096);
        Ok(task)
    }

    /// The index is read as the adapter reads it, one Query per status shard, run concurrently;
    /// the shards' pages merge into the same page as one ordered read.
    async fn query(&self, query: &StatusQuery) -> Result<Page, StoreError> {
        self.shard_queries();
        self.world.latency(5, 20).await;
        self.fail()?;
        let mut tables = self.tables.lock().unwrap();
        tables.catch_up();
        let after = match &query.page_token {
            None => None,
            Some(token) => {
                let (at, id) = token.split_once('|').ok_or(StoreError::InvalidPageToken)?;
                let at: i64 = at.parse().map_err(|_| StoreError::InvalidPageToken)?;
                Some((at, id.to_string()))
            }
        };
        let status = query.status.as_str();
        let lowest: IndexKey = (status, query.due_from.unwrap_or(i64::MIN), String::new());
        let highest: IndexKey = (
            status,
            query.due_by.unwrap_or(i64::MAX),
            "\u{10FFFF}".into(),
        );
        let after = after.map(|(at, id)| (status, at, id));
        // One more than the limit tells whether a next page exists.
        let wanted = query.limit as usize + 1;
        let remaining: Vec<(i64, String)> = if query.newest_first {
            let upper = after.map_or(Bound::Included(highest), Bound::Excluded);
            tables
                .ordered
                .range((Bound::Included(lowest), upper))
                .rev()
                .take(wanted)
                .map(|(_, at, id)| (*at, id.clone()))
                .collect()
        } else {
            let lower = after.map_or(Bound::Included(lowest), Bound::Excluded);
            tables
                .ordered
                .range((lower, Bound::Included(highest)))
                .take(wanted)
                .map(|(_, at, id)| (*at, id.clone()))
                .collect()
        };
        let read = &remaining[..remaining.len().min(query.limit as usize)];
        let next_token = (read.len() < remaining.len())
            .then(|| read.last())
            .flatten()
            .map(|(at, id)| format!("{at}|{id}"));
        let mut page = Page {
            next_token,
            ..Page::default()
        };
        let mut bytes = 0;
        for (_, id) in read {
            match &tables.index[id] {
                Entry::Task(task) => {
                    bytes += item_bytes(task);
                    if query
                        .updated_before
                        .is_none_or(|before| task.last_updated_at < before)
                    {
                        page.tasks.push(task.as_ref().clone());
                    }
                }
                Entry::Undecodable { .. } => page.undecodable.push(id.clone()),
            }
        }
        // An eventually consistent read of the index: half a unit per 4 KB read, and at least
        // that from each shard.
        self.world.usage.lock().unwrap().read_half_units +=
            bytes.div_ceil(4096) + u64::from(STATUS_SHARDS);
        Ok(page)
    }

    /// A `Select: COUNT` query: metered as if each item counted were 1 KB.
    async fn count(&self, status: TaskStatus, from: i64, to: i64) -> Result<u64, StoreError> {
        self.shard_queries();
        self.world.latency(5, 20).await;
        self.fail()?;
        let mut tables = self.tables.lock().unwrap();
        tables.catch_up();
        let status = status.as_str();
        let count = tables
            .ordered
            .range((status, from, String::new())..=(status, to, "\u{10FFFF}".to_string()))
            .count() as u64;
        self.world.usage.lock().unwrap().read_half_units +=
            (count * 1024).div_ceil(4096) + u64::from(STATUS_SHARDS);
        Ok(count)
    }

    async fn transition(&self, id: &str, change: &Transition) -> Result<Task, StoreError> {
        self.world.call("dynamodb.UpdateItem");
        self.world.latency(2, 8).await;
        self.fail()?;
        let current = self.tables.lock().unwrap().items.get(id).cloned();
        if let Some(current) = current {
            self.admit(&update_capacity(&current, change)).await?;
        }
        let next = self.update(id, change)?;
        match self.lost_answer() {
            None => Ok(next),
            Some(LostAnswer::Unanswered) => Err(unavailable("the response was lost")),
            Some(LostAnswer::Retried) => {
                self.world.sdk_retry("dynamodb.UpdateItem", 2, 8).await;
                self.update(id, change)
            }
        }
    }
}
