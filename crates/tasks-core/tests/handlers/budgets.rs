//! Every step's time is bounded: a function answers within its timeout however slow its calls.

use crate::support::task;
use chrono::{Duration, Utc};
use tasks_core::testing::memory::MemoryStore;
use tasks_core::{DispatchMessage, Pacing, SystemClock, TaskStatus};

/// Step Functions answering slower than process-sqs-records' timeout allows: the starts not
/// finished within the budget are reported failed (their records come back), and the function
/// answers in time instead of being ended by its timeout with the whole batch.
#[tokio::test(start_paused = true)]
async fn process_sqs_records_answers_within_its_budget_however_slow_its_calls() {
    struct Stalled;
    #[async_trait::async_trait]
    impl tasks_core::Workflow for Stalled {
        async fn start(
            &self,
            _: &tasks_core::Execution,
        ) -> Result<tasks_core::StartOutcome, tasks_core::WorkflowError> {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok(tasks_core::StartOutcome::Started)
        }
        async fn state(
            &self,
            _: &str,
        ) -> Result<tasks_core::ExecutionState, tasks_core::WorkflowError> {
            Ok(tasks_core::ExecutionState::Missing)
        }
        async fn stop(&self, _: &str) -> Result<(), tasks_core::WorkflowError> {
            Ok(())
        }
    }
    let store = MemoryStore::new();
    let queued = task("a", Utc::now() + Duration::minutes(2), TaskStatus::Queued);
    store.put(queued.clone());
    let message = tasks_core::QueueMessage::Task(DispatchMessage::from(&queued));
    let budget = tasks_core::rules::timing::START_BUDGET.to_std().unwrap();
    let began = tokio::time::Instant::now();
    let results = tasks_core::flow::start::start_messages(
        &store,
        &Stalled,
        &SystemClock,
        &Pacing::default(),
        &[&message],
        budget,
    )
    .await;
    assert_eq!(began.elapsed(), budget);
    assert!(
        matches!(
            results.as_slice(),
            [Err(tasks_core::flow::start::StartError::OutOfTime(_))]
        ),
        "{results:?}"
    );
}
