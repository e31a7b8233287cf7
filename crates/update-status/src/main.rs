use std::sync::Arc;
use tasks_core::contracts::StatusUpdate;
use tasks_core::SystemClock;
use update_status::UpdateStatus;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tasks_lambda::init_logging();
    let config = tasks_aws::load_config().await;
    let handler = UpdateStatus {
        store: Arc::new(tasks_aws::store_from_env(&config)?),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    tasks_lambda::run(|update: StatusUpdate| handler.handle(update)).await
}
