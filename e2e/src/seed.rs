//! The seed scenario: one task a minute or so out, without a webhook, followed from SCHEDULED to
//! COMPLETED.

use crate::api::{format_time, Api, COMPLETED};
use crate::config::Config;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

const POLL: Duration = Duration::from_secs(1);
const PRINT_EVERY: Duration = Duration::from_secs(5);

/// Returns why the scenario failed, as `Err`.
pub async fn run(api: &Api, config: &Config, run_id: &str) -> Result<(), String> {
    let seconds = config.seed_seconds;
    let body = json!({
        "hours": seconds / 3600,
        "minutes": seconds % 3600 / 60,
        "seconds": seconds % 60,
    });
    let started = Instant::now();
    let task = api
        .create(&body, &format!("e2e-{run_id}-seed"))
        .await
        .map_err(|e| format!("POST /tasks {body}: {e}"))?;
    println!(
        "seed: POST /tasks {body} -> {} at {} ({})",
        task.id,
        format_time(&task.timestamp),
        task.status
    );

    let cancelled = crate::bulk::create_and_cancel(api, &body, run_id).await?;

    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_status = task.status;
    let mut last_print = started;
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed();
        match api.get(&task.id).await {
            Ok(task) => {
                if task.status != last_status || last_print.elapsed() >= PRINT_EVERY {
                    println!(
                        "seed: [{:>5.1}s] {:<11} timeLeftSeconds={}",
                        elapsed.as_secs_f64(),
                        task.status,
                        task.time_left_seconds
                    );
                    last_print = Instant::now();
                }
                if task.status == COMPLETED {
                    println!(
                        "seed: COMPLETED after {:.1} s (executedAt {}, latenessMs {}, attempts {})",
                        elapsed.as_secs_f64(),
                        task.executed_at
                            .map_or_else(|| "-".into(), |at| format_time(&at)),
                        task.lateness_ms
                            .map_or_else(|| "-".into(), |ms| ms.to_string()),
                        task.attempts
                    );
                    return crate::bulk::check_still_cancelled(api, &cancelled).await;
                }
                if task.is_terminal() {
                    return Err(format!(
                        "task {} ended {} ({})",
                        task.id,
                        task.status,
                        task.last_error.as_deref().unwrap_or("no lastError")
                    ));
                }
                last_status = task.status;
            }
            Err(error) => println!(
                "seed: [{:>5.1}s] GET /tasks/{} failed: {error}",
                elapsed.as_secs_f64(),
                task.id
            ),
        }
        if elapsed >= config.seed_timeout {
            return Err(format!(
                "task {} not COMPLETED within {} s (last status {last_status})",
                task.id,
                config.seed_timeout.as_secs()
            ));
        }
    }
}
