//! process-sqs-records: starts one workflow execution per queued slot, or per task handed over
//! to its own execution.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use std::sync::Arc;
use tasks_core::contracts::HandOver;
use tasks_core::flow::start::start_messages;
use tasks_core::flow::start::{StartError, StartReport};
use tasks_core::metrics::{self, MetricsSink, StartCounts};
use tasks_core::rules::timing::START_BUDGET;
use tasks_core::{Clock, DispatchMessage, Pacing, QueueMessage, TaskStore, Workflow};

pub struct ProcessRecords {
    pub store: Arc<dyn TaskStore>,
    pub workflow: Arc<dyn Workflow>,
    pub clock: Arc<dyn Clock>,
    pub pacing: Pacing,
    /// Where its metric records go (stdout on Lambda).
    pub metrics: Arc<dyn MetricsSink>,
}

impl ProcessRecords {
    /// Handles the records concurrently (the slots together, `start_messages`); only the records
    /// that failed are reported, so SQS redelivers just those (and moves them to the DLQ after
    /// maxReceiveCount).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let parsed: Vec<Result<QueueMessage, Malformed>> =
            event.records.iter().map(parse).collect();
        let messages: Vec<&QueueMessage> = parsed.iter().filter_map(|m| m.as_ref().ok()).collect();
        let malformed = parsed.len() - messages.len();
        let mut started = self.start(&messages, malformed).await.into_iter();
        let mut response = SqsBatchResponse::default();
        for (record, message) in event.records.iter().zip(&parsed) {
            let failed = match message {
                Err(Malformed) => true,
                Ok(_) => started.next().expect("a result for each message").is_err(),
            };
            if failed {
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        }
        response
    }

    /// Starts what each message asks for (`start_messages`), logs each task's start and emits
    /// the batch's counts (`malformed` records among them); each message's result, in order.
    pub async fn start(
        &self,
        messages: &[&QueueMessage],
        malformed: usize,
    ) -> Vec<Result<StartReport, StartError>> {
        let started = start_messages(
            self.store.as_ref(),
            self.workflow.as_ref(),
            self.clock.as_ref(),
            &self.pacing,
            messages,
            START_BUDGET.to_std().unwrap_or_default(),
        )
        .await;
        let mut counts = StartCounts {
            malformed,
            ..StartCounts::default()
        };
        for (message, report) in messages.iter().zip(&started) {
            if let QueueMessage::HandOver(HandOver { task, .. }) | QueueMessage::Task(task) =
                message
            {
                log_start(task, report);
            }
            match report {
                Ok(report) => counts.add(report.clone()),
                Err(_) => counts.failed += 1,
            }
        }
        metrics::starts(&counts).emit(self.metrics.as_ref(), self.clock.now().timestamp_millis());
        started
    }
}

/// A record that is no queue message: reported failed, it goes to the DLQ after its last
/// delivery.
struct Malformed;

fn parse(record: &SqsMessage) -> Result<QueueMessage, Malformed> {
    serde_json::from_str(record.body.as_deref().unwrap_or_default()).map_err(|error| {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        tracing::error!(message_id, %error, "malformed record; it goes to the DLQ after its last delivery");
        Malformed
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
