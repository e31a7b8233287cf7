//! `make dev`: the whole service on this machine, on a local AWS emulator.

use tasks_local::{start, Settings};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .with_target(false)
        .compact()
        .init();
    if let Err(error) = run().await {
        eprintln!("tasks-local: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), tasks_local::Error> {
    let settings = Settings::from_env()?;
    let service = start(settings.clone()).await?;
    if settings.signing_secret_generated {
        // Printed once, on stdout: receivers need it to verify webhooks; it is never logged.
        println!(
            "Webhook signing secret for this run (set WEBHOOK_SIGNING_SECRETS to keep one): {}",
            settings.signing_keys.secrets()[0]
        );
    }
    if !settings.named_signing_keys.is_empty() {
        let names: Vec<&str> = settings
            .named_signing_keys
            .keys()
            .map(String::as_str)
            .collect();
        tracing::info!(names = %names.join(", "), "signing secrets tasks may choose by name");
    }
    if !settings.api_keys.is_empty() {
        tracing::info!(
            keys = settings.api_keys.len(),
            "API keys required (x-api-key) on /tasks"
        );
    }
    tracing::info!(
        "Tasks Service listening on http://{} (emulator {}, cron every {} s). Ctrl-C stops it.",
        service.addr,
        service.endpoint,
        settings.cron_interval.as_secs()
    );
    tracing::info!("Console: http://{}/console", service.addr);
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping");
    drop(service);
    Ok(())
}
