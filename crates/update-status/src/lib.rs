//! update-status: records a task's outcome (COMPLETED or FAILED with its reason).

use lambda_runtime::Diagnostic;
use std::sync::Arc;
use tasks_core::contracts::StatusUpdate;
use tasks_core::flow::record::update_status;
use tasks_core::metrics::{self, MetricsSink};
use tasks_core::rules::error_types::store_error_type;
use tasks_core::{Clock, StoreError, TaskStatus, TaskStore};

pub struct UpdateStatus {
    pub store: Arc<dyn TaskStore>,
    pub clock: Arc<dyn Clock>,
    /// Where its metric records go (stdout on Lambda).
    pub metrics: Arc<dyn MetricsSink>,
}

/// The Lambda error, typed so that the state machine retries it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UpdateError(#[from] pub StoreError);

impl From<UpdateError> for Diagnostic {
    fn from(error: UpdateError) -> Self {
        Diagnostic {
            error_type: store_error_type(&error.0).to_string(),
            error_message: error.0.to_string(),
        }
    }
}

impl UpdateStatus {
    pub async fn handle(&self, update: StatusUpdate) -> Result<TaskStatus, UpdateError> {
        let status = update_status(self.store.as_ref(), self.clock.as_ref(), &update).await?;
        let failure = update.result.as_ref().and_then(metrics::failure_of);
        metrics::outcome("update-status", &update.input.id, status, failure)
            .emit(self.metrics.as_ref(), self.clock.now().timestamp_millis());
        tracing::info!(
            task_id = %update.input.id,
            %status,
            lateness_ms = update.result.as_ref().and_then(|r| r.lateness_ms),
            error = update.error.as_ref().map(|e| e.describe()),
            "outcome recorded"
        );
        Ok(status)
    }
}
