//! The lifecycle invariants every run is checked against (`shared` task lifecycle):
//! 1. no webhook request before its task's time, and each one for the time its client set last
//!    before the attempt began: never at a time the task was moved away from (changes, runs now
//!    and retries);
//! 2. every task reaches COMPLETED, FAILED or CANCELLED within the settle bound after its time;
//! 3. a task whose cancel answered 200 is never delivered again;
//! 4. at most one delivery per (task, attempt), across all its series, every one carrying its
//!    series' idempotency key (the same on every retry of a series, another for a new one);
//! 5. FAILED always has a lastError; COMPLETED with a webhook was delivered;
//! 6. the dead-letter queue holds only tasks the API can show;
//! 7. no task a client was told exists is lost;
//! 8. no request is answered 409 (nothing changed) after a write of its own was applied;
//! 9. a task with a webhook FAILED for its execution (not a webhook error) had its last attempt
//!    reach the receiver, or recorded that attempt's webhook error: an attempt is never begun
//!    and then left unsent and called failed;
//! 10. a task FAILED with no attempt begun in its series failed for its webhook (a refused
//!     target) or after the sweeps' bounded tries: an execution's error alone never fails it;
//! 11. per series, at most the retry policy's `maxAttempts` requests, and none after one whose
//!     2xx answer reached the sender (a series delivered is done);
//! 12. per series, no request before the `retryAt` that the previous attempt's report asked for;
//! 13. every failure callback matches a FAILED record of its task's series, at most one each.

use crate::receiver::{Callback, Delivery};
use crate::world::{ReportedRetry, World};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use tasks_core::{QueueMessage, Task, TaskStatus};

/// What the clients were told.
#[derive(Debug, Default, Clone)]
pub struct Clients {
    /// Tasks a create answered 2xx for, with their time.
    pub accepted: BTreeMap<String, DateTime<Utc>>,
    /// Tasks a cancel answered 200 for.
    pub cancelled: BTreeMap<String, Cancelled>,
    /// Every time each task's client set (created, changed, run now, retried), in order.
    pub times: BTreeMap<String, Vec<SetTime>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cancelled {
    pub at: DateTime<Utc>,
    /// The attempts the task had begun when the cancel answered: none may follow.
    pub attempts: u32,
}

/// A time a client asked for. Asked but never answered (a 5xx), it may still have been applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetTime {
    pub timestamp: DateTime<Utc>,
    /// When the client asked: a time not after it was a request to run now.
    pub asked_at: DateTime<Utc>,
    /// The attempts the task had begun when the request answered 200: every later attempt is
    /// for this time or one asked for after it.
    pub answered_with_attempts: Option<u32>,
}

impl Clients {
    /// Records a time asked for; returns its place, for [`Clients::answer`].
    pub fn ask(&mut self, id: &str, timestamp: DateTime<Utc>, asked_at: DateTime<Utc>) -> usize {
        let times = self.times.entry(id.to_string()).or_default();
        times.push(SetTime {
            timestamp: tasks_core::model::time::rfc3339_millis::truncate(timestamp),
            asked_at,
            answered_with_attempts: None,
        });
        times.len() - 1
    }

    pub fn answer(&mut self, id: &str, asked: usize, attempts: u32) {
        if let Some(time) = self
            .times
            .get_mut(id)
            .and_then(|times| times.get_mut(asked))
        {
            time.answered_with_attempts = Some(attempts);
        }
    }

    /// Whether the client asked for `due` only when it had come (run now, or a retry without a
    /// delay): the request itself, not the schedule, set how late the task could be.
    fn asked_to_run_now(&self, id: &str, due: DateTime<Utc>) -> bool {
        self.times.get(id).is_some_and(|times| {
            times
                .iter()
                .rev()
                .find(|time| time.timestamp == due)
                .is_some_and(|time| time.timestamp <= time.asked_at)
        })
    }

    /// Why a delivery of `attempt` for `due` was not for a time the client had set, if it was not.
    fn stale_time(&self, id: &str, attempt: u32, due: DateTime<Utc>) -> Option<String> {
        let times = self.times.get(id)?;
        // The last request answered before the attempt began; it or a later one holds the time.
        let from = times
            .iter()
            .rposition(|time| time.answered_with_attempts.is_some_and(|a| a < attempt))
            .unwrap_or(0);
        let current = &times[from..];
        if current.iter().any(|time| time.timestamp == due) {
            return None;
        }
        let asked: Vec<String> = times
            .iter()
            .map(|time| time.timestamp.to_string())
            .collect();
        Some(format!(
            "attempt {attempt} delivered for {due}, not the time set last before it (asked: {})",
            asked.join(", ")
        ))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub task_id: String,
    pub what: String,
    pub trace: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub tasks: usize,
    pub delivered: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub early: usize,
    pub lost: usize,
    pub stuck: usize,
    pub duplicates: usize,
    /// Requests answered 409 after a write of their own was applied (invariant 8).
    pub refused_after_own_write: usize,
    /// Tasks FAILED for their execution whose last attempt was never sent (invariant 9).
    pub failed_unsent: usize,
    /// Tasks FAILED with no attempt in their series for an execution's error (invariant 10).
    pub failed_without_attempt: usize,
    /// Invariant 12: requests sent before the `retryAt` a report of their series asked for.
    pub sent_before_retry: usize,
    /// Failure callbacks that reached their receivers, and (invariant 13) those without a
    /// FAILED record of their series or repeated.
    pub callbacks: usize,
    pub unmatched_callbacks: usize,
    /// Deliveries beyond a task's first (retries after a failure or an ambiguous timeout).
    pub redeliveries: usize,
    pub dead_letters: usize,
    /// First deliveries' lateness (milliseconds), sorted, of tasks whose time was set ahead of it.
    pub lateness_ms: Vec<i64>,
    /// The same for tasks asked to run now: how long the request took to reach the receiver.
    pub run_now_lateness_ms: Vec<i64>,
    /// The longest a task took from its time to its final status.
    pub max_settle_ms: i64,
    /// FAILED tasks by the first word of their `lastError`.
    pub failed_by: BTreeMap<String, usize>,
    pub violations: Vec<Violation>,
}

/// What the receivers got: the webhooks' requests and the failure callbacks.
pub struct Received<'a> {
    pub deliveries: &'a [Delivery],
    pub callbacks: &'a [Callback],
}

pub fn check(
    world: &World,
    tasks: &[Task],
    received: Received<'_>,
    dead_letters: &[QueueMessage],
    clients: &Clients,
    settle_bound: Duration,
    end: DateTime<Utc>,
) -> Report {
    let Received {
        deliveries,
        callbacks,
    } = received;
    let mut violations = Vec::new();
    let (mut completed, mut failed, mut cancelled, mut delivered_tasks) = (0, 0, 0, 0);
    let mut failed_by = BTreeMap::new();
    let mut violate = |task_id: &str, what: String| {
        violations.push(Violation {
            task_id: task_id.to_string(),
            what,
            trace: world.task_trace(task_id),
        });
    };
    let by_id: BTreeMap<&str, &Task> = tasks.iter().map(|task| (task.id.as_str(), task)).collect();
    let mut delivered: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        delivered
            .entry(delivery.task_id.as_str())
            .or_default()
            .push(delivery);
    }
    let mut early = 0;
    let mut duplicates = 0;
    let mut lost = 0;
    let mut stuck = 0;
    let mut lateness = Vec::new();
    let mut run_now_lateness = Vec::new();
    let mut redeliveries = 0;
    let mut max_settle = 0;
    let refusals = world.refusals_after_own_write();
    for (task, what) in &refusals {
        violate(
            task,
            format!("{what} answered 409 after its own write was applied"),
        );
    }
    let mut failed_unsent = 0;
    let mut failed_without_attempt = 0;
    let mut sent_before_retry = 0;
    let retries = world.reported_retries();
    let mut retries_of: BTreeMap<&str, Vec<&ReportedRetry>> = BTreeMap::new();
    for retry in &retries {
        retries_of
            .entry(retry.task_id.as_str())
            .or_default()
            .push(retry);
    }
    for id in clients.accepted.keys() {
        if !by_id.contains_key(id.as_str()) {
            lost += 1;
            violate(id, "accepted, but not in the table".into());
        }
    }
    for task in tasks {
        let id = task.id.as_str();
        let sent = delivered.get(id).cloned().unwrap_or_default();
        for delivery in &sent {
            if delivery.at < delivery.due {
                early += 1;
                violate(
                    id,
                    format!(
                        "delivered {} ms before its time",
                        (delivery.due - delivery.at).num_milliseconds()
                    ),
                );
            }
            if let Some(why) = clients.stale_time(id, delivery.attempt, delivery.due) {
                early += 1;
                violate(id, why);
            }
            let key = tasks_core::model::task::execution_name(id, delivery.series);
            if delivery.key != key {
                violate(
                    id,
                    format!(
                        "delivered with the key {}, not its series' {key}",
                        delivery.key
                    ),
                );
            }
        }
        if let Some(why) = series_overrun(task, &sent) {
            violate(id, why);
        }
        for why in sent_before_retry_at(&sent, retries_of.get(id).map_or(&[][..], Vec::as_slice)) {
            sent_before_retry += 1;
            violate(id, why);
        }
        let mut attempts: BTreeMap<u32, usize> = BTreeMap::new();
        for delivery in &sent {
            *attempts.entry(delivery.attempt).or_default() += 1;
        }
        for (attempt, count) in attempts {
            if count > 1 {
                duplicates += count - 1;
                violate(id, format!("attempt {attempt} delivered {count} times"));
            }
        }
        redeliveries += sent.len().saturating_sub(1);
        if let Some(first) = sent.iter().min_by_key(|delivery| delivery.at) {
            let late = (first.at - first.due).num_milliseconds();
            if clients.asked_to_run_now(id, first.due) {
                run_now_lateness.push(late);
            } else {
                lateness.push(late);
            }
        }
        if let Some(cancelled) = clients.cancelled.get(id) {
            if sent.iter().any(|d| d.attempt > cancelled.attempts) {
                violate(
                    id,
                    format!("cancelled at {} (200), then delivered", cancelled.at),
                );
            }
        }
        match task.task_status {
            TaskStatus::Completed => {
                completed += 1;
                if task.webhook.is_some() && sent.is_empty() {
                    violate(id, "COMPLETED with a webhook that was never called".into());
                }
            }
            TaskStatus::Failed => {
                failed += 1;
                let reason = task.last_error.as_deref().unwrap_or_default();
                let name = reason.split([':', ' ']).next().unwrap_or_default();
                *failed_by.entry(name.to_string()).or_default() += 1;
                if task.last_error.as_deref().is_none_or(str::is_empty) {
                    violate(id, "FAILED without a lastError".into());
                }
                if let Some(why) = failed_unsent_attempt(task, &sent) {
                    failed_unsent += 1;
                    violate(id, why);
                }
                if let Some(why) = failed_without_an_attempt(task) {
                    failed_without_attempt += 1;
                    violate(id, why);
                }
            }
            TaskStatus::Cancelled => cancelled += 1,
            status => {
                if task.timestamp + settle_bound <= end {
                    stuck += 1;
                    violate(
                        id,
                        format!(
                            "{status} {} s after its time",
                            (end - task.timestamp).num_seconds()
                        ),
                    );
                }
            }
        }
        if task.task_status.is_terminal() && task.task_status != TaskStatus::Cancelled {
            max_settle = max_settle.max((task.last_updated_at - task.timestamp).num_milliseconds());
        }
        if !sent.is_empty() {
            delivered_tasks += 1;
        }
    }
    let mut calls_per_series: BTreeMap<(&str, u32), usize> = BTreeMap::new();
    for callback in callbacks {
        *calls_per_series
            .entry((callback.task_id.as_str(), callback.series))
            .or_default() += 1;
    }
    let mut unmatched_callbacks = 0;
    for ((id, series), calls) in calls_per_series {
        if !world.recorded_failed(id, series) {
            unmatched_callbacks += calls;
            violate(
                id,
                format!("failure callback of series {series}, which was never recorded FAILED"),
            );
        } else if calls > 1 {
            unmatched_callbacks += calls - 1;
            violate(
                id,
                format!("failure callback of series {series} called {calls} times"),
            );
        }
    }
    for id in dead_letters.iter().flat_map(QueueMessage::task_ids) {
        if !by_id.contains_key(id) {
            violate(id, "in the DLQ but not visible through the API".into());
        }
    }
    lateness.sort_unstable();
    run_now_lateness.sort_unstable();
    Report {
        tasks: tasks.len(),
        delivered: delivered_tasks,
        completed,
        failed,
        cancelled,
        early,
        lost,
        stuck,
        duplicates,
        refused_after_own_write: refusals.len(),
        failed_unsent,
        failed_without_attempt,
        sent_before_retry,
        callbacks: callbacks.len(),
        unmatched_callbacks,
        redeliveries,
        dead_letters: dead_letters.iter().map(|m| m.task_ids().len()).sum(),
        lateness_ms: lateness,
        run_now_lateness_ms: run_now_lateness,
        max_settle_ms: max_settle,
        failed_by,
        violations,
    }
}

/// Why a FAILED task breaks invariant 9, if it does: a task with a webhook failed for its
/// execution (its `lastError` names no webhook error) with an attempt begun in its series that
/// neither reached the receiver nor recorded a webhook error.
fn failed_unsent_attempt(task: &Task, sent: &[&Delivery]) -> Option<String> {
    let reason = task.last_error.as_deref().unwrap_or_default();
    if task.webhook.is_none() || reason.starts_with("Webhook") || !task.attempt_began_in_series() {
        return None;
    }
    let attempt = task.attempts;
    let reached = sent.iter().any(|delivery| delivery.attempt == attempt);
    let recorded = task
        .attempt_history
        .iter()
        .any(|record| record.attempt == attempt && record.error.is_some());
    (!reached && !recorded)
        .then(|| format!("FAILED ({reason}) but attempt {attempt} never reached the receiver"))
}

/// Why a FAILED task breaks invariant 10, if it does: no attempt began in its series, and its
/// `lastError` is neither a webhook's (a target refused before any request) nor the sweeps'
/// giving up after their bounded tries.
fn failed_without_an_attempt(task: &Task) -> Option<String> {
    let reason = task.last_error.as_deref().unwrap_or_default();
    let gave_up = reason.starts_with("no execution ran the task after")
        || reason.starts_with("the task's execution never started after");
    (!task.attempt_began_in_series() && !reason.starts_with("Webhook") && !gave_up).then(|| {
        format!(
            "FAILED ({reason}) with no attempt begun in series {}",
            task.series
        )
    })
}

/// Why a task's deliveries break invariant 11, if they do.
fn series_overrun(task: &Task, sent: &[&Delivery]) -> Option<String> {
    let max_attempts = task.retry_policy().max_attempts as usize;
    let mut by_series: BTreeMap<u32, Vec<&Delivery>> = BTreeMap::new();
    for delivery in sent {
        by_series.entry(delivery.series).or_default().push(delivery);
    }
    by_series.into_iter().find_map(|(series, mut deliveries)| {
        if deliveries.len() > max_attempts {
            return Some(format!(
                "series {series}: {} requests, more than maxAttempts {max_attempts}",
                deliveries.len()
            ));
        }
        deliveries.sort_by_key(|delivery| delivery.at);
        let delivered = deliveries.iter().position(|delivery| delivery.succeeded)?;
        deliveries.get(delivered + 1).map(|after| {
            format!(
                "series {series}: attempt {} sent after attempt {} was delivered",
                after.attempt, deliveries[delivered].attempt
            )
        })
    })
}

/// Invariant 12: in each series, the attempt after one whose report asked for a retry is sent
/// no earlier than that report's `retryAt` (whoever runs it: the slot, the task's execution, or
/// an execution that found the report handed over to the task).
fn sent_before_retry_at(sent: &[&Delivery], retries: &[&ReportedRetry]) -> Vec<String> {
    sent.iter()
        .flat_map(|delivery| {
            retries
                .iter()
                .filter(move |retry| {
                    retry.series == delivery.series
                        && retry.after_attempt + 1 == delivery.attempt
                        && delivery.at < retry.at
                })
                .map(move |retry| {
                    format!(
                        "series {}: attempt {} sent at {}, before the retryAt {} that attempt {} reported",
                        delivery.series, delivery.attempt, delivery.at, retry.at, retry.after_attempt
                    )
                })
        })
        .collect()
}
