use aws_lambda_events::event::sqs::SqsEvent;
use process_sqs_records::ProcessRecords;
use std::sync::Arc;
use tasks_core::{Pacing, SystemClock};
use tasks_lambda::FunctionError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tasks_lambda::init_logging();
    let config = tasks_aws::load_config().await;
    let handler = ProcessRecords {
        store: Arc::new(tasks_aws::store_from_env(&config)?),
        workflow: Arc::new(tasks_aws::workflow_from_env(&config)?),
        clock: Arc::new(SystemClock),
        pacing: Pacing::from_env()?,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    // A failed record is reported in the batch response, never as a function error.
    tasks_lambda::run(|event: SqsEvent| async {
        Ok::<_, FunctionError>(handler.handle(event).await)
    })
    .await
}
