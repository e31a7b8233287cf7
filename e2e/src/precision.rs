//! The precision run: many tasks whose webhooks point at our own receiver, then a check of when,
//! and how often, each webhook arrived.

use crate::api::{format_time, Api, Task};
use crate::bounded::try_for_each;
use crate::config::Config;
use crate::histogram;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::receiver::Receiver;
use crate::report::{Report, TaskOutcome};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

/// Where the lateness histogram is written, relative to the working directory.
const HISTOGRAM_DIR: &str = "target/e2e";

/// The first task comes due at least this long after the last create has finished.
const LEAD_MS: i64 = 2000;
const POLL: Duration = Duration::from_secs(1);
/// Past the grace period: room for the last poll round and the status update that follows the
/// webhook, whatever lead time the service schedules with.
const DEADLINE_MARGIN: TimeDelta = TimeDelta::seconds(5);
/// A duplicate sent right after the first delivery can still be counted.
const SETTLE: Duration = Duration::from_secs(2);

struct Created {
    id: String,
    timestamp: DateTime<Utc>,
}

struct Tracked {
    created: Created,
    task: Option<Task>,
    poll_error: Option<String>,
}

impl Tracked {
    fn is_terminal(&self) -> bool {
        self.task.as_ref().is_some_and(Task::is_terminal)
    }

    fn outcome(self) -> TaskOutcome {
        let note = match (&self.poll_error, &self.task) {
            (Some(error), _) => Some(format!("last poll failed: {error}")),
            (None, Some(task)) => task.last_error.clone(),
            (None, None) => None,
        };
        TaskOutcome {
            id: self.created.id,
            timestamp: self.created.timestamp,
            status: self.task.as_ref().map(|task| task.status.clone()),
            lateness_ms: self.task.and_then(|task| task.lateness_ms),
            note,
        }
    }
}

/// Returns why the run failed; empty when it passed.
pub async fn run(api: &Api, config: &Config, run_id: &str) -> Result<Vec<String>, String> {
    let receiver = Receiver::start(
        config.receiver_bind,
        config.receiver_url.clone(),
        config.signing_secret.as_deref(),
    )
    .await?;
    println!(
        "precision: {} tasks over {} s from now+{} s, webhooks to {}",
        config.tasks,
        config.spread.as_secs(),
        config.start.as_secs(),
        receiver.url()
    );
    let (created, creation) = create_all(api, config, run_id, receiver.url()).await?;
    let outcomes = wait(api, config, created, &receiver).await?;
    tokio::time::sleep(SETTLE).await;
    let deliveries = receiver.deliveries();
    let report = Report::analyze(&outcomes, &deliveries, config.max_p99_ms);

    println!();
    println!("## Precision run");
    println!();
    println!(
        "{} tasks spread over {} s against {}; {creation}. Lateness is the receiver's arrival \
         time minus the task's `timestamp` (nearest-rank percentiles).",
        config.tasks,
        config.spread.as_secs(),
        api.base()
    );
    println!();
    print!("{}", report.markdown());
    if let Some(stats) = &report.lateness_us {
        let dir = std::path::Path::new(HISTOGRAM_DIR);
        match histogram::write(dir, run_id, &report.lateness_samples_us, stats) {
            Ok(path) => println!("\nLateness histogram: {}", path.display()),
            Err(error) => println!("\nThe lateness histogram was not written: {error}"),
        }
    }
    if !report.details.is_empty() {
        println!();
        for line in &report.details {
            println!("- {line}");
        }
    }
    println!();
    println!("precision: {}", report.verdict());
    let mut failures = report.failures();
    if config.signing_secret.is_some() {
        match crate::receiver::verified(&deliveries) {
            Ok(verified) => println!("precision: {verified} signatures verified"),
            Err(reason) => failures.push(format!("signatures: {reason}")),
        }
    }
    Ok(failures)
}

async fn create_all(
    api: &Api,
    config: &Config,
    run_id: &str,
    webhook_url: &str,
) -> Result<(Vec<Created>, String), String> {
    let started = Instant::now();
    let began = Utc::now();
    let now_ms = began.timestamp_millis();
    let mut plan = Plan::new(
        now_ms,
        now_ms + duration_ms(config.start),
        duration_ms(config.spread),
        config.tasks,
        config.concurrency,
        LEAD_MS,
    );
    let indices = (0..config.tasks).rev();
    let mut created = try_for_each(indices, config.concurrency, |index| {
        let at =
            DateTime::from_timestamp_millis(plan.time_of(index, Utc::now().timestamp_millis()));
        let body = at.map(|at| {
            json!({
                "timestamp": format_time(&at),
                "webhook": {"url": webhook_url, "method": "POST"},
                "payload": {"run": run_id, "index": index},
            })
        });
        let key = format!("e2e-{run_id}-{index}");
        let api = api.clone();
        async move {
            let body = body.ok_or_else(|| format!("task {index}: time out of range"))?;
            let task = api
                .create(&body, &key)
                .await
                .map_err(|e| format!("POST /tasks (task {index}): {e}"))?;
            Ok((
                index,
                Created {
                    id: task.id,
                    timestamp: task.timestamp,
                },
            ))
        }
    })
    .await?;
    let took = started.elapsed();
    created.sort_unstable_by_key(|(index, _)| *index);
    let created: Vec<Created> = created.into_iter().map(|(_, task)| task).collect();

    let rate = config.tasks as f64 / took.as_secs_f64().max(1e-3);
    let offset = |at: Option<DateTime<Utc>>| at.map_or(0.0, |at| (at - began).as_seconds_f64());
    let first_due = created.iter().map(|task| task.timestamp).min();
    let last_due = created.iter().map(|task| task.timestamp).max();
    let mut summary = format!(
        "created in {:.2} s ({rate:.0}/s, {} in flight), due from +{:.1} s to +{:.1} s",
        took.as_secs_f64(),
        config.concurrency,
        offset(first_due),
        offset(last_due),
    );
    if plan.start_moved_ms() > 0 {
        summary.push_str(&format!(
            " (the start moved {:.1} s later so that creating ended first)",
            plan.start_moved_ms() as f64 / 1000.0
        ));
    }
    let spare = first_due.map_or(TimeDelta::zero(), |first| first - Utc::now());
    println!(
        "precision: {summary}; the first task is due {:.1} s after the last create",
        spare.as_seconds_f64()
    );
    if spare < TimeDelta::zero() {
        println!(
            "precision: note: some tasks came due while others were still being created; \
             raise --start-seconds or --spread-seconds to keep them apart"
        );
    }
    Ok((created, summary))
}

async fn wait(
    api: &Api,
    config: &Config,
    created: Vec<Created>,
    receiver: &Receiver,
) -> Result<Vec<TaskOutcome>, String> {
    let last_due = created
        .iter()
        .map(|task| task.timestamp)
        .max()
        .unwrap_or_else(Utc::now);
    let grace = TimeDelta::from_std(config.grace).unwrap_or(TimeDelta::MAX);
    let deadline = last_due + grace + DEADLINE_MARGIN;
    let total = created.len();
    let mut tracked: Vec<Tracked> = created
        .into_iter()
        .map(|created| Tracked {
            created,
            task: None,
            poll_error: None,
        })
        .collect();

    let mut progress = Progress::on_stderr();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Utc::now();
        // Only tasks whose time has come: polling the rest would only add load on the service
        // while it is being measured, and anything that goes wrong early still shows later.
        let due: Vec<(usize, String)> = tracked
            .iter()
            .enumerate()
            .filter(|(_, task)| !task.is_terminal() && task.created.timestamp <= now)
            .map(|(index, task)| (index, task.created.id.clone()))
            .collect();
        let polled = try_for_each(due, config.concurrency, |(index, id)| {
            let api = api.clone();
            async move { Ok((index, api.get(&id).await)) }
        })
        .await?;
        for (index, result) in polled {
            match result {
                Ok(task) => {
                    tracked[index].task = Some(task);
                    tracked[index].poll_error = None;
                }
                Err(error) => tracked[index].poll_error = Some(error.to_string()),
            }
        }

        let done = tracked.iter().filter(|task| task.is_terminal()).count();
        let errors = tracked
            .iter()
            .filter(|task| task.poll_error.is_some())
            .count();
        let errors = if errors > 0 {
            format!(", {errors} polls failing")
        } else {
            String::new()
        };
        let left = (deadline - Utc::now()).num_seconds().max(0);
        progress.show(format!(
            "waiting: {done}/{total} done, {} pending, received {}{errors}, deadline in {left} s",
            total - done,
            receiver.count()
        ));
        if done == total || Utc::now() >= deadline {
            break;
        }
    }
    progress.finish();
    Ok(tracked.into_iter().map(Tracked::outcome).collect())
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
