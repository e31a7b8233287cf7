//! process-sqs-records: starts one workflow execution per queued slot, or per task handed off
//! to its own execution.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use std::sync::Arc;
use tasks_core::contracts::HandOff;
use tasks_core::flow::start::start_messages;
use tasks_core::flow::start::{StartError, StartReport};
use tasks_core::metrics::{self, StartCounts};
use tasks_core::rules::timing::START_BUDGET;
use tasks_core::{Clock, DispatchMessage, Pacing, QueueMessage, TaskStore, Workflow};

pub struct ProcessRecords {
    pub store: Arc<dyn TaskStore>,
    pub workflow: Arc<dyn Workflow>,
    pub clock: Arc<dyn Clock>,
    pub pacing: Pacing,
}

impl ProcessRecords {
    /// Handles the records concurrently (the slots together, `start_messages`); only the records
    /// that failed are reported, so SQS redelivers just those (and moves them to the DLQ after
    /// maxReceiveCount).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let parsed: Vec<Result<QueueMessage, RecordFailure>> =
            event.records.iter().map(parse).collect();
        let messages: Vec<&QueueMessage> = parsed.iter().filter_map(|m| m.as_ref().ok()).collect();
        let mut started = start_messages(
            self.store.as_ref(),
            self.workflow.as_ref(),
            self.clock.as_ref(),
            &self.pacing,
            &messages,
            START_BUDGET.to_std().unwrap_or_default(),
        )
        .await
        .into_iter();
        let mut response = SqsBatchResponse::default();
        let mut counts = StartCounts::default();
        for (record, message) in event.records.iter().zip(&parsed) {
            let result = message
                .as_ref()
                .map_err(|failure| *failure)
                .and_then(|message| {
                    let report = started.next().expect("a result for each message");
                    if let QueueMessage::HandOff(HandOff { task, .. }) | QueueMessage::Task(task) =
                        message
                    {
                        log_start(task, &report);
                    }
                    report.map_err(|_| RecordFailure::StartFailed)
                });
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
}

fn parse(record: &SqsMessage) -> Result<QueueMessage, RecordFailure> {
    serde_json::from_str(record.body.as_deref().unwrap_or_default()).map_err(|error| {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        tracing::error!(message_id, %error, "malformed record; it goes to the DLQ after its last delivery");
        RecordFailure::Malformed
    })
}

#[tracing::instrument(skip_all, fields(task_id = %message.id))]
fn log_start(message: &DispatchMessage, report: &Result<StartReport, StartError>) {
    match report {
        Ok(StartReport::Started) => tracing::info!("execution started"),
        Ok(StartReport::AlreadyStarted) => {
            tracing::info!("execution already started (repeated delivery)")
        }
        Ok(StartReport::HandedOver) => tracing::info!(
            "the series' execution exists already: the slot's report was applied to the task"
        ),
        Ok(StartReport::Restarted(series)) => {
            tracing::info!(
                series,
                "the series' execution had ended before any attempt: started a new series"
            )
        }
        Ok(StartReport::Failed) => {
            tracing::warn!("the series' execution had ended without an outcome: recorded FAILED")
        }
        Ok(StartReport::Superseded) => {
            tracing::info!(
                series = message.series,
                "not started: the message is for an older series"
            )
        }
        Ok(StartReport::Skipped(status)) => {
            tracing::info!(%status, "not started: the task is no longer queued")
        }
        Ok(StartReport::Missing) => tracing::warn!("not started: no such task"),
        Err(error) => {
            tracing::warn!(%error, "start failed; the record will be redelivered")
        }
    }
}

/// Why a record is reported back to SQS for another delivery.
#[derive(Debug, Clone, Copy)]
enum RecordFailure {
    Malformed,
    StartFailed,
}
