use api::diagnostics::Diagnostics;
use api::{router, AppState};
use std::sync::Arc;
use tasks_core::request::signing::SigningSecretNames;
use tasks_core::{Pacing, SystemClock};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    tasks_lambda::init_logging();
    let config = tasks_aws::load_config().await;
    let state = AppState {
        store: Arc::new(tasks_aws::store_from_env(&config)?),
        queue: Arc::new(tasks_aws::queue_from_env(&config)?),
        workflow: Arc::new(tasks_aws::workflow_from_env(&config)?),
        clock: Arc::new(SystemClock),
        pacing: Pacing::from_env()?,
        signing_secrets: SigningSecretNames::from_env()?,
        diagnostics: Diagnostics::from_env(),
    };
    api::lambda::run(router(state)).await
}
