//! execute-task: woken by the workflow at `wakeAt`, runs a slot's tasks (or one task, in its
//! own execution) at their second.

pub mod signing;
pub mod webhook;

use lambda_runtime::Diagnostic;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tasks_core::contracts::{AttemptInput, AttemptReport};
use tasks_core::flow::execute::{execute_task, ExecuteError};
use tasks_core::flow::run_slot::{run_slot, SlotSummary};
use tasks_core::metrics::{self, MetricsSink};
use tasks_core::{Clock, DispatchQueue, Pacing, Slot, TaskStore, WebhookSender};

pub struct ExecuteTask {
    pub store: Arc<dyn TaskStore>,
    pub sender: Arc<dyn WebhookSender>,
    /// Where a slot hands off the tasks that go on in their own execution.
    pub queue: Arc<dyn DispatchQueue>,
    pub clock: Arc<dyn Clock>,
    pub pacing: Pacing,
    /// Where its metric records go (stdout on Lambda).
    pub metrics: Arc<dyn MetricsSink>,
}

/// The Lambda error: its `errorType` is the name the state machine's Retry and Catch match.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TaskError(#[from] pub ExecuteError);

impl From<TaskError> for Diagnostic {
    fn from(error: TaskError) -> Self {
        Diagnostic {
            error_type: error.0.error_type.to_string(),
            error_message: error.0.message,
        }
    }
}

/// What the state machine passes: a slot, or one task's attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    Slot(Slot),
    Attempt(AttemptInput),
}

/// What goes back to the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Slot(SlotSummary),
    Attempt(AttemptReport),
}

impl ExecuteTask {
    pub async fn handle(&self, invocation: Invocation) -> Result<Response, TaskError> {
        match invocation {
            Invocation::Slot(slot) => Ok(Response::Slot(self.run_slot(&slot).await)),
            Invocation::Attempt(attempt) => Ok(Response::Attempt(self.attempt(attempt).await?)),
        }
    }

    #[tracing::instrument(skip_all, fields(slot = %slot.name, tasks = slot.tasks.len()))]
    async fn run_slot(&self, slot: &Slot) -> SlotSummary {
        let (summary, runs) = run_slot(
            self.store.as_ref(),
            self.sender.as_ref(),
            self.queue.as_ref(),
            self.clock.as_ref(),
            &self.pacing,
            slot,
        )
        .await;
        // The metrics a task's own execution gives: its attempt's (as execute-task) and its
        // outcome's (as update-status does), so that the alarms see every task.
        let now_ms = self.clock.now().timestamp_millis();
        for run in runs {
            if let Some(status) = run.recorded {
                let failure = run.report.as_ref().and_then(metrics::failure_of);
                metrics::outcome("execute-task", &run.id, status, failure)
                    .emit(self.metrics.as_ref(), now_ms);
            }
            if let Some(report) = run.report {
                let attempt_ms = report.record.as_ref().map_or(0, |r| r.duration_ms as i64);
                metrics::execution(&run.id, &Ok(report), attempt_ms)
                    .emit(self.metrics.as_ref(), now_ms);
            }
        }
        tracing::info!(?summary, "slot run");
        summary
    }

    /// One attempt in a task's own execution.
    pub async fn attempt(&self, attempt: AttemptInput) -> Result<AttemptReport, TaskError> {
        let started = self.clock.now();
        let result = execute_task(
            self.store.as_ref(),
            self.sender.as_ref(),
            self.clock.as_ref(),
            &self.pacing,
            &attempt,
        )
        .await;
        let input = &attempt.input;
        let ended = self.clock.now();
        let attempt_ms = (ended - started.max(input.timestamp)).num_milliseconds();
        metrics::execution(&input.id, &result, attempt_ms.max(0))
            .emit(self.metrics.as_ref(), ended.timestamp_millis());
        match &result {
            Ok(report) => {
                tracing::info!(
                    task_id = %input.id,
                    outcome = ?report.outcome,
                    status_code = report.status_code,
                    attempt = report.attempt,
                    retry_at = ?report.retry_at,
                    error = report.error,
                    lateness_ms = report.lateness_ms,
                    "task executed"
                );
            }
            Err(error) => tracing::warn!(
                task_id = %input.id,
                error_type = error.error_type,
                %error,
                "task execution failed"
            ),
        }
        Ok(result?)
    }
}
