//! In-memory adapters of the ports, for unit tests and examples. They keep the same conditional
//! semantics as the AWS adapters, and can be told to fail.

use crate::ports::{
    Clock, DispatchQueue, ExecutionState, Page, QueueError, StartOutcome, StatusQuery, StoreError,
    TaskStore, Transition, Workflow, WorkflowError,
};
use crate::task::{DispatchMessage, ExecutionInput, Task};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStore {
    tasks: Mutex<BTreeMap<String, Task>>,
    unavailable: Mutex<bool>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        *self.unavailable.lock().unwrap() = unavailable;
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
            return Err(StoreError::Unavailable {
                message: "injected failure".into(),
                request_id: Some("test-request-id".into()),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create(&self, task: &Task) -> Result<(), StoreError> {
        self.check()?;
        let mut tasks = self.tasks.lock().unwrap();
        if tasks.contains_key(&task.id) {
            return Err(StoreError::AlreadyExists(task.id.clone()));
        }
        tasks.insert(task.id.clone(), task.clone());
        Ok(())
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
        let current = tasks
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        if !change.applies_to(current) {
            return Err(StoreError::Conflict {
                current: Box::new(current.clone()),
            });
        }
        let next = change.apply(current);
        tasks.insert(id.to_string(), next.clone());
        Ok(next)
    }
}

#[derive(Debug, Default)]
pub struct MemoryQueue {
    messages: Mutex<Vec<DispatchMessage>>,
    rejected: Mutex<BTreeSet<String>>,
    unavailable: Mutex<bool>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn messages(&self) -> Vec<DispatchMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// Makes the queue refuse this task's message (a failed batch entry).
    pub fn reject(&self, task_id: &str) {
        self.rejected.lock().unwrap().insert(task_id.to_string());
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        *self.unavailable.lock().unwrap() = unavailable;
    }
}

#[async_trait]
impl DispatchQueue for MemoryQueue {
    async fn send_batch(&self, messages: &[DispatchMessage]) -> Result<Vec<String>, QueueError> {
        if *self.unavailable.lock().unwrap() {
            return Err(QueueError("injected failure".into()));
        }
        let rejected = self.rejected.lock().unwrap();
        let (failed, accepted): (Vec<_>, Vec<_>) = messages
            .iter()
            .cloned()
            .partition(|message| rejected.contains(&message.id));
        self.messages.lock().unwrap().extend(accepted);
        Ok(failed.into_iter().map(|message| message.id).collect())
    }
}

/// Executions by name, each with the status it ended in (none while it runs).
#[derive(Debug, Default)]
pub struct MemoryWorkflow {
    executions: Mutex<BTreeMap<String, (ExecutionInput, Option<String>)>>,
    stopped: Mutex<Vec<String>>,
    failing: Mutex<BTreeSet<String>>,
}

impl MemoryWorkflow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every execution started, in name order.
    pub fn executions(&self) -> Vec<ExecutionInput> {
        let executions = self.executions.lock().unwrap();
        executions
            .values()
            .map(|(input, _)| input.clone())
            .collect()
    }

    pub fn stopped(&self) -> Vec<String> {
        self.stopped.lock().unwrap().clone()
    }

    /// Makes starting this task's executions fail.
    pub fn fail_for(&self, task_id: &str) {
        self.failing.lock().unwrap().insert(task_id.to_string());
    }

    /// Ends a running execution with this status (`SUCCEEDED`, `FAILED`, ...).
    pub fn end(&self, execution_name: &str, status: &str) {
        if let Some((_, ended)) = self.executions.lock().unwrap().get_mut(execution_name) {
            ended.get_or_insert_with(|| status.to_string());
        }
    }
}

#[async_trait]
impl Workflow for MemoryWorkflow {
    async fn start(&self, input: &ExecutionInput) -> Result<StartOutcome, WorkflowError> {
        if self.failing.lock().unwrap().contains(&input.id) {
            return Err(WorkflowError("injected failure".into()));
        }
        let mut executions = self.executions.lock().unwrap();
        match executions.get(&input.execution_name()) {
            Some((_, None)) => Ok(StartOutcome::AlreadyRunning),
            Some((_, Some(_))) => Ok(StartOutcome::AlreadyEnded),
            None => {
                executions.insert(input.execution_name(), (input.clone(), None));
                Ok(StartOutcome::Started)
            }
        }
    }

    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError> {
        Ok(match self.executions.lock().unwrap().get(execution_name) {
            None => ExecutionState::Missing,
            Some((_, None)) => ExecutionState::Running,
            Some((_, Some(status))) => ExecutionState::Ended(status.clone()),
        })
    }

    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError> {
        self.stopped
            .lock()
            .unwrap()
            .push(execution_name.to_string());
        self.end(execution_name, "ABORTED");
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
