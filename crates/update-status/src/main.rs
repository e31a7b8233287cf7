use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use tasks_core::SystemClock;
use update_status::UpdateStatus;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = tasks_aws::load_config().await;
    let handler = Arc::new(UpdateStatus {
        store: Arc::new(tasks_aws::store_from_env(&config)?),
        clock: Arc::new(SystemClock),
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let handler = handler.clone();
        async move { handler.handle(event.payload).await }
    }))
    .await
}
