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
