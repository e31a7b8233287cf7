//! cron: every minute, hands the tasks whose start time has come to the queue.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use std::sync::Arc;
use tasks_core::flow::cron::{run_cron, CronSummary};
use tasks_core::metrics::{self, MetricsSink};
use tasks_core::{Clock, DispatchQueue, Pacing, StoreError, TaskStore, Workflow};

pub struct Cron {
    pub store: Arc<dyn TaskStore>,
    pub queue: Arc<dyn DispatchQueue>,
    /// Asked about the executions of tasks that wait too long.
    pub workflow: Arc<dyn Workflow>,
    pub clock: Arc<dyn Clock>,
    pub pacing: Pacing,
    /// Where its metric records go (stdout on Lambda).
    pub metrics: Arc<dyn MetricsSink>,
}

impl Cron {
    /// One run; the scheduled event itself carries nothing the run needs.
    pub async fn handle(&self, _: EventBridgeEvent) -> Result<CronSummary, StoreError> {
        self.run().await
    }

    pub async fn run(&self) -> Result<CronSummary, StoreError> {
        let started = self.clock.now();
        let result = run_cron(
            self.store.as_ref(),
            self.queue.as_ref(),
            self.workflow.as_ref(),
            self.clock.as_ref(),
            &self.pacing,
        )
        .await;
        let record = match &result {
            Ok(summary) => metrics::cron_run(summary),
            Err(_) => metrics::cron_failure(),
        };
        record.emit(self.metrics.as_ref(), self.clock.now().timestamp_millis());
        match &result {
            Ok(summary) => tracing::info!(
                found = summary.due.found,
                dispatched = summary.due.dispatched,
                lost_races = summary.due.lost_races,
                errors = summary.due.errors,
                stale = ?summary.stale,
                stuck = ?summary.stuck,
                undecodable = summary.undecodable,
                elapsed_ms = (self.clock.now() - started).num_milliseconds(),
                "cron run finished"
            ),
            Err(error) => tracing::error!(%error, "cron run failed"),
        }
        result
    }
}
