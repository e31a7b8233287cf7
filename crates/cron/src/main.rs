use cron::Cron;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use tasks_core::{Schedule, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = tasks_aws::load_config().await;
    let cron = Arc::new(Cron {
        store: Arc::new(tasks_aws::store_from_env(&config)?),
        queue: Arc::new(tasks_aws::queue_from_env(&config)?),
        workflow: Arc::new(tasks_aws::workflow_from_env(&config)?),
        clock: Arc::new(SystemClock),
        schedule: Schedule::from_env()?,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let cron = cron.clone();
        async move { cron.handle(event.payload).await.map_err(Error::from) }
    }))
    .await
}
