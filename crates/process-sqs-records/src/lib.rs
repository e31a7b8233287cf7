//! process-sqs-records: starts one workflow execution per queued task.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use std::sync::Arc;
use tasks_core::metrics::{self, StartCounts};
use tasks_core::pipeline::{start_task, StartReport};
use tasks_core::{Clock, DispatchMessage, Schedule, TaskStore, Workflow};

/// What `main` reads from the environment besides `RUST_LOG` and the schedule's variables
/// (`tasks_core::schedule::SCHEDULE_ENVIRONMENT`). The template sets each
/// one (a test checks).
pub const ENVIRONMENT: [&str; 2] = ["TABLE_NAME", "STATE_MACHINE_ARN"];

pub struct ProcessRecords {
    pub store: Arc<dyn TaskStore>,
    pub workflow: Arc<dyn Workflow>,
    pub clock: Arc<dyn Clock>,
    pub schedule: Schedule,
}

impl ProcessRecords {
    /// Handles the records concurrently; only the records that failed are reported, so SQS
    /// redelivers just those (and moves them to the DLQ after maxReceiveCount).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let results = join_all(event.records.iter().map(|record| self.process(record))).await;
        let mut response = SqsBatchResponse::default();
        let mut counts = StartCounts::default();
        for (record, result) in event.records.iter().zip(results) {
            match result {
                Ok(report) => counts.add(report),
                Err(failure) => {
                    match failure {
                        RecordFailure::Malformed => counts.malformed += 1,
                        RecordFailure::StartFailed => counts.failed += 1,
                    }
                    response.add_failure(record.message_id.clone().unwrap_or_default());
                }
            }
        }
        metrics::starts(&counts).emit(self.clock.now().timestamp_millis());
        response
    }

    async fn process(&self, record: &SqsMessage) -> Result<StartReport, RecordFailure> {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let message: DispatchMessage = match serde_json::from_str(
            record.body.as_deref().unwrap_or_default(),
        ) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(message_id, %error, "malformed record; it goes to the DLQ after its last delivery");
                return Err(RecordFailure::Malformed);
            }
        };
        let report = start_task(
            self.store.as_ref(),
            self.workflow.as_ref(),
            self.clock.as_ref(),
            &self.schedule,
            &message,
        )
        .await;
        match &report {
            Ok(StartReport::Started) => tracing::info!(task_id = %message.id, "execution started"),
            Ok(StartReport::AlreadyStarted) => {
                tracing::info!(task_id = %message.id, "execution already started (repeated delivery)")
            }
            Ok(StartReport::Restarted(series)) => {
                tracing::info!(task_id = %message.id, series, "the series' execution had ended before any attempt: started a new series")
            }
            Ok(StartReport::Failed) => {
                tracing::warn!(task_id = %message.id, "the series' execution had ended without an outcome: recorded FAILED")
            }
            Ok(StartReport::Superseded) => {
                tracing::info!(task_id = %message.id, series = message.series, "not started: the message is for an older series")
            }
            Ok(StartReport::Skipped(status)) => {
                tracing::info!(task_id = %message.id, %status, "not started: the task is no longer queued")
            }
            Ok(StartReport::Missing) => {
                tracing::warn!(task_id = %message.id, "not started: no such task")
            }
            Err(error) => {
                tracing::warn!(task_id = %message.id, %error, "start failed; the record will be redelivered");
            }
        }
        report.map_err(|_| RecordFailure::StartFailed)
    }
}

/// Why a record is reported back to SQS for another delivery.
enum RecordFailure {
    Malformed,
    StartFailed,
}
