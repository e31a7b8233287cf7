//! In-memory adapters of the ports, for unit tests and examples. They keep the same conditional
//! semantics as the AWS adapters, and can be told to fail.

use crate::contracts::{AttemptInput, DispatchMessage, ExecutionInput, QueueMessage, Slot};
use crate::model::task::Task;
use crate::ports::{
    settle_create, Clock, DispatchQueue, Execution, ExecutionState, Page, QueueError, StartOutcome,
    StatusQuery, StoreError, TaskStore, Transition, Workflow, WorkflowError,
};
use asl::{Executions, FinalStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStore {
    tasks: Mutex<BTreeMap<String, Task>>,
    unavailable: Mutex<bool>,
    failing_transitions: Mutex<FailingCalls>,
    failing_creates: Mutex<FailingCalls>,
}

/// Writes that fail before they succeed again, and how.
#[derive(Debug, Default)]
struct FailingCalls {
    count: usize,
    how: LostAnswer,
}

/// How a write whose answer is lost ends, as the AWS SDK's standard retry mode ends it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum LostAnswer {
    /// Refused before it was applied, on every try: the caller sees the error.
    #[default]
    NotApplied,
    /// Applied, and every answer lost: the caller sees an error for a write that happened.
    AppliedUnanswered,
    /// Applied, its answer lost, and the SDK's retry answered: the retry's condition fails on
    /// the item the first try wrote, and the store settles it as the writer's own write.
    AppliedRetried,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        *self.unavailable.lock().unwrap() = unavailable;
    }

    /// The next `count` transitions fail as unavailable; each is applied first (its answer lost)
    /// if `applied`, and leaves the task as it was if not.
    pub fn fail_transitions(&self, count: usize, applied: bool) {
        let how = if applied {
            LostAnswer::AppliedUnanswered
        } else {
            LostAnswer::NotApplied
        };
        self.lose_transition_answers(count, how);
    }

    /// The answers of the next `count` transitions are lost, each ending as `how` says.
    pub fn lose_transition_answers(&self, count: usize, how: LostAnswer) {
        *self.failing_transitions.lock().unwrap() = FailingCalls { count, how };
    }

    /// The answers of the next `count` creates are lost, each ending as `how` says.
    pub fn lose_create_answers(&self, count: usize, how: LostAnswer) {
        *self.failing_creates.lock().unwrap() = FailingCalls { count, how };
    }

    pub fn tasks(&self) -> Vec<Task> {
        self.tasks.lock().unwrap().values().cloned().collect()
    }

    /// Stores a task as it is, bypassing every rule (test set-up).
    pub fn put(&self, task: Task) {
        self.tasks.lock().unwrap().insert(task.id.clone(), task);
    }

    fn check(&self) -> Result<(), StoreError> {
        if *self.unavailable.lock().unwrap() {
            return Err(injected());
        }
        Ok(())
    }
}

impl FailingCalls {
    /// How the next call's answer is lost, if it is.
    fn next(&mut self) -> Option<LostAnswer> {
        (self.count > 0).then(|| {
            self.count -= 1;
            self.how
        })
    }
}

/// One conditional write as the table applies it: the condition, then the change.
fn write(
    tasks: &mut BTreeMap<String, Task>,
    id: &str,
    change: &Transition,
) -> Result<Task, StoreError> {
    let current = tasks
        .get(id)
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    if !change.applies_to(current) {
        return change.settle(current.clone());
    }
    let next = change.apply(current);
    tasks.insert(id.to_string(), next.clone());
    Ok(next)
}

/// One conditional put as the table applies it.
fn put_new(tasks: &mut BTreeMap<String, Task>, task: &Task) -> Result<(), StoreError> {
    if let Some(found) = tasks.get(&task.id) {
        return settle_create(task, found);
    }
    tasks.insert(task.id.clone(), task.clone());
    Ok(())
}

fn injected() -> StoreError {
    StoreError::Unavailable {
        message: "injected failure".into(),
        request_id: Some("test-request-id".into()),
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create(&self, task: &Task) -> Result<(), StoreError> {
        self.check()?;
        let mut tasks = self.tasks.lock().unwrap();
        match self.failing_creates.lock().unwrap().next() {
            None => put_new(&mut tasks, task),
            Some(LostAnswer::NotApplied) => Err(injected()),
            Some(LostAnswer::AppliedUnanswered) => {
                put_new(&mut tasks, task)?;
                Err(injected())
            }
            Some(LostAnswer::AppliedRetried) => {
                put_new(&mut tasks, task)?;
                put_new(&mut tasks, task)
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.check()?;
        Ok(self.tasks.lock().unwrap().get(id).cloned())
    }

    async fn query(&self, query: &StatusQuery) -> Result<Page, StoreError> {
        self.check()?;
        // Like DynamoDB, a page token is the last key read, so items that leave the index
        // between pages do not shift the next page.
        let after = query
            .page_token
            .as_deref()
            .map(|token| {
                let (at, id) = token.split_once('|').ok_or(StoreError::InvalidPageToken)?;
                let at: i64 = at.parse().map_err(|_| StoreError::InvalidPageToken)?;
                if !query.covers(at) {
                    return Err(StoreError::InvalidPageToken);
                }
                Ok((at, id.to_string()))
            })
            .transpose()?;
        let mut matching: Vec<Task> = self
            .tasks
            .lock()
            .unwrap()
            .values()
            .filter(|task| task.task_status == query.status)
            .filter(|task| query.covers(task.start_execution_at))
            .cloned()
            .collect();
        matching.sort_by_key(|task| (task.start_execution_at, task.id.clone()));
        if query.newest_first {
            matching.reverse();
        }
        let remaining: Vec<Task> = matching
            .into_iter()
            .filter(|task| {
                after.as_ref().is_none_or(|after| {
                    let key = (task.start_execution_at, task.id.clone());
                    if query.newest_first {
                        key < *after
                    } else {
                        key > *after
                    }
                })
            })
            .collect();
        let read = &remaining[..remaining.len().min(query.limit as usize)];
        let next_token = (read.len() < remaining.len())
            .then(|| read.last())
            .flatten()
            .map(|last| format!("{}|{}", last.start_execution_at, last.id));
        let tasks = read
            .iter()
            .filter(|task| {
                query
                    .updated_before
                    .is_none_or(|at| task.last_updated_at < at)
            })
            .cloned()
            .collect();
        Ok(Page {
            tasks,
            next_token,
            undecodable: Vec::new(),
        })
    }

    async fn transition(&self, id: &str, change: &Transition) -> Result<Task, StoreError> {
        self.check()?;
        let mut tasks = self.tasks.lock().unwrap();
        match self.failing_transitions.lock().unwrap().next() {
            None => write(&mut tasks, id, change),
            Some(LostAnswer::NotApplied) => Err(injected()),
            Some(LostAnswer::AppliedUnanswered) => {
                write(&mut tasks, id, change)?;
                Err(injected())
            }
            Some(LostAnswer::AppliedRetried) => {
                write(&mut tasks, id, change)?;
                write(&mut tasks, id, change)
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryQueue {
    messages: Mutex<Vec<QueueMessage>>,
    rejected: Mutex<BTreeSet<String>>,
    unavailable: Mutex<bool>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn messages(&self) -> Vec<QueueMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// Every task the accepted messages carry, in order.
    pub fn queued(&self) -> Vec<DispatchMessage> {
        self.messages()
            .into_iter()
            .flat_map(|message| match message {
                QueueMessage::Slot(slot) => slot.tasks,
                QueueMessage::HandOver(hand_over) => vec![hand_over.task],
                QueueMessage::Task(task) => vec![task],
            })
            .collect()
    }

    /// Makes the queue refuse the message that carries this task (a failed batch entry).
    pub fn reject(&self, task_id: &str) {
        self.rejected.lock().unwrap().insert(task_id.to_string());
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        *self.unavailable.lock().unwrap() = unavailable;
    }
}

#[async_trait]
impl DispatchQueue for MemoryQueue {
    async fn send_batch(&self, messages: &[QueueMessage]) -> Result<Vec<String>, QueueError> {
        if *self.unavailable.lock().unwrap() {
            return Err(QueueError("injected failure".into()));
        }
        let rejected = self.rejected.lock().unwrap();
        let (failed, accepted): (Vec<_>, Vec<_>) = messages
            .iter()
            .cloned()
            .partition(|message| message.task_ids().iter().any(|id| rejected.contains(*id)));
        self.messages.lock().unwrap().extend(accepted);
        Ok(failed
            .iter()
            .flat_map(|message| message.task_ids())
            .map(str::to_string)
            .collect())
    }
}

/// Executions by name (their inputs), in the registry local mode and the simulator keep theirs
/// in; nothing runs them: a test ends them.
pub struct MemoryWorkflow {
    executions: Executions<Value>,
    stopped: Mutex<Vec<String>>,
    failing: Mutex<BTreeSet<String>>,
}

/// Ended executions are kept for the test's life, so the time they ended at does not matter.
const NO_TIME: DateTime<Utc> = DateTime::UNIX_EPOCH;

impl Default for MemoryWorkflow {
    fn default() -> Self {
        MemoryWorkflow {
            executions: Executions::new(None),
            stopped: Mutex::default(),
            failing: Mutex::default(),
        }
    }
}

impl MemoryWorkflow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every task's own execution started, in name order.
    pub fn executions(&self) -> Vec<ExecutionInput> {
        self.inputs(false)
    }

    /// The same, with the report each went on from (`None` for a fresh start).
    pub fn attempts(&self) -> Vec<AttemptInput> {
        self.inputs(false)
    }

    /// Every slot execution started, in name order.
    pub fn slots(&self) -> Vec<Slot> {
        self.inputs(true)
    }

    fn inputs<T: serde::de::DeserializeOwned>(&self, slots: bool) -> Vec<T> {
        self.executions
            .runs(|input| (input.get("tasks").is_some() == slots).then(|| input.clone()))
            .into_iter()
            .flatten()
            .map(|input| serde_json::from_value(input).expect("an input we wrote"))
            .collect()
    }

    pub fn stopped(&self) -> Vec<String> {
        self.stopped.lock().unwrap().clone()
    }

    /// Makes starting executions for this task (its own, or a slot holding it) fail.
    pub fn fail_for(&self, task_id: &str) {
        self.failing.lock().unwrap().insert(task_id.to_string());
    }

    /// Ends a running execution with this status (`SUCCEEDED`, `FAILED`, ...).
    pub fn end(&self, execution_name: &str, status: &str) {
        let status = FinalStatus::named(status).expect("a Step Functions status");
        self.executions.end(execution_name, status, NO_TIME);
    }
}

#[async_trait]
impl Workflow for MemoryWorkflow {
    async fn start(&self, execution: &Execution) -> Result<StartOutcome, WorkflowError> {
        let input = &execution.input;
        let mut ids: Vec<&Value> = input["tasks"]
            .as_array()
            .map(|tasks| tasks.iter().map(|task| &task["id"]).collect())
            .unwrap_or_default();
        ids.push(&input["id"]);
        let failing = self.failing.lock().unwrap();
        if ids
            .iter()
            .any(|id| id.as_str().is_some_and(|id| failing.contains(id)))
        {
            return Err(WorkflowError("injected failure".into()));
        }
        Ok(self
            .executions
            .start(&execution.name, NO_TIME, || input.clone())
            .into())
    }

    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError> {
        Ok(self.executions.state(execution_name).into())
    }

    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError> {
        self.stopped
            .lock()
            .unwrap()
            .push(execution_name.to_string());
        self.executions.stop(execution_name, NO_TIME, |_| {});
        Ok(())
    }
}

/// A clock that reads a time set by the test.
#[derive(Debug)]
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        FixedClock(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}
