use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use std::sync::Arc;
use tasks_core::{Pacing, SystemClock};
use tasks_cron::Cron;
use tasks_lambda::FunctionError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tasks_lambda::init_logging();
    let config = tasks_aws::load_config().await;
    let cron = Cron {
        store: Arc::new(tasks_aws::store_from_env(&config)?),
        queue: Arc::new(tasks_aws::queue_from_env(&config)?),
        workflow: Arc::new(tasks_aws::workflow_from_env(&config)?),
        clock: Arc::new(SystemClock),
        pacing: Pacing::from_env()?,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    tasks_lambda::run(|event: EventBridgeEvent| async {
        cron.handle(event).await.map_err(FunctionError::from)
    })
    .await
}
