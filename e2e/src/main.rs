//! End-to-end checks of a running Tasks Service: the error shape of what it (or API Gateway in
//! front of it) answers itself, the seed scenario (one task followed to COMPLETED, and beside it
//! two tasks moved earlier and later) and the precision run (many webhooks, timed by our own
//! receiver). `e2e --help` lists the flags and environment variables.

mod api;
mod bounded;
mod bulk;
mod config;
mod gateway;
mod histogram;
mod plan;
mod precision;
mod progress;
mod receiver;
mod report;
mod reschedule;
mod seed;

use api::Api;
use config::{Command, Config, USAGE};
use std::process::ExitCode;
use std::time::Duration;

const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    let config = match config::parse(std::env::args().skip(1), |var| std::env::var(var).ok()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("e2e: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config).await {
        Ok(failures) if failures.is_empty() => {
            println!("PASS");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            println!("FAIL: {}", failures.join("; "));
            ExitCode::FAILURE
        }
        Err(error) => {
            println!("FAIL: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Returns each failed phase's reasons; `Err` when the service cannot be tested at all.
async fn run(config: &Config) -> Result<Vec<String>, String> {
    let api = Api::new(
        &config.api_url,
        config.concurrency,
        config.api_key.as_deref(),
    )?;
    let version = api.wait_healthy(HEALTH_TIMEOUT).await?;
    println!("e2e: {} is healthy (version {version})", api.base());
    let run_id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        std::process::id()
    );

    let mut failures = Vec::new();
    match gateway::run(config).await {
        Ok(()) => println!("error shape: PASS"),
        Err(reason) => {
            println!("error shape: FAIL: {reason}");
            failures.push(format!("error shape: {reason}"));
        }
    }
    if config.seed {
        let moved = async {
            if config.seed_seconds < reschedule::MIN_SEED_SECONDS {
                println!(
                    "seed: reschedule scenario not run: it needs --seed-seconds {} or more",
                    reschedule::MIN_SEED_SECONDS
                );
                return Ok(());
            }
            reschedule::run(&api, config, &run_id).await
        };
        let (seed, moved) = tokio::join!(seed::run(&api, config, &run_id), moved);
        for (name, result) in [("seed", seed), ("seed reschedule", moved)] {
            match result {
                Ok(()) => println!("{name}: PASS"),
                Err(reason) => {
                    println!("{name}: FAIL: {reason}");
                    failures.push(format!("{name}: {reason}"));
                }
            }
        }
    }
    if config.precision {
        match precision::run(&api, config, &run_id).await {
            Ok(reasons) if reasons.is_empty() => {}
            Ok(reasons) => failures.push(format!("precision: {}", reasons.join(", "))),
            Err(error) => {
                println!("precision: FAIL: {error}");
                failures.push(format!("precision: {error}"));
            }
        }
    }
    Ok(failures)
}
