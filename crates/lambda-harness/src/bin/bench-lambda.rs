//! `make bench-lambda`: each function binary run as a Lambda process (Runtime API emulator,
//! moto on loopback), with the events AWS sends. Prints per binary: cold start (spawn to first
//! response, median of fresh processes), warm latency median/p99, the process's own CPU per
//! invocation (utime+stime from /proc) and peak RSS (VmHWM).
//!
//! Usage: bench-lambda <directory with the binaries> [warm invocations, default 300]

use chrono::Duration as Span;
use lambda_harness::bench::{drain, invoke_ok, seed};
use lambda_harness::{events, Function};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasks_aws::testing::{unique, Resources};
use tasks_core::{DispatchMessage, Task, TaskStatus};
use tokio::sync::Notify;

const COLD_STARTS: usize = 10;
const WARM_UP: usize = 5;
const CRON_DUE_TASKS: usize = 1_000;

struct Row {
    name: String,
    cold_ms: f64,
    warm_p50_ms: f64,
    warm_p99_ms: f64,
    cpu_ms: f64,
    peak_rss_mb: f64,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Cold starts, then `warm` invocations on one process; `next_event` gives each invocation's event.
async fn measure(
    name: &str,
    function: &Function,
    warm: usize,
    mut next_event: impl FnMut() -> Value,
) -> Row {
    let mut cold = Vec::new();
    for _ in 0..COLD_STARTS {
        let event = next_event();
        let spawned = Instant::now();
        let process = function.spawn();
        invoke_ok(function, &process, event).await;
        cold.push(spawned.elapsed());
        process.stop().await;
    }
    cold.sort();
    let process = function.spawn();
    for _ in 0..WARM_UP {
        invoke_ok(function, &process, next_event()).await;
    }
    let before = process.usage();
    let mut latencies = Vec::with_capacity(warm);
    for _ in 0..warm {
        latencies.push(invoke_ok(function, &process, next_event()).await);
    }
    let after = process.usage();
    process.stop().await;
    latencies.sort();
    Row {
        name: name.to_string(),
        cold_ms: millis(percentile(&cold, 0.5)),
        warm_p50_ms: millis(percentile(&latencies, 0.5)),
        warm_p99_ms: millis(percentile(&latencies, 0.99)),
        cpu_ms: millis(after.cpu - before.cpu) / warm as f64,
        peak_rss_mb: after.peak_rss_kb as f64 / 1024.0,
    }
}

/// Each event takes the next of `tasks`.
fn per_task(tasks: Vec<Task>, event: impl Fn(&Task) -> Value) -> impl FnMut() -> Value {
    let mut tasks = tasks.into_iter();
    move || event(&tasks.next().expect("enough seeded tasks"))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: bench-lambda <binaries dir> [warm]"),
    );
    let warm: usize = args.next().map_or(300, |n| n.parse().expect("a number"));
    let binary = |name: &str| -> PathBuf {
        let path = dir.join(name);
        assert!(path.is_file(), "no binary at {}", path.display());
        path
    };
    let resources = Arc::new(Resources::create().await);
    let workflow = resources.waiting_workflow().await;
    let signing_secret = lambda_harness::signing_secret_arn().await;
    let needed = COLD_STARTS + WARM_UP + warm;
    let function = |name: &'static str, path: PathBuf| {
        let resources = resources.clone();
        let arn = workflow.state_machine_arn().to_string();
        let signing_secret = signing_secret.clone();
        async move {
            Function::on_emulator(name, path)
                .await
                .env("WEBHOOK_SIGNING_SECRET_ARN", signing_secret)
                .env("TABLE_NAME", &resources.table_name)
                .env("QUEUE_URL", &resources.queue_url)
                .env("STATE_MACHINE_ARN", arn)
                .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
                .env("RUST_LOG", "info")
        }
    };
    let stop = Arc::new(Notify::new());
    let drainer = drain(resources.clone(), stop.clone());
    let mut rows = Vec::new();

    let api = function("api", binary("api")).await;
    rows.push(
        measure(
            "api: POST /tasks {\"hours\": 1} (PutItem)",
            &api,
            warm,
            || events::api_post_tasks(&json!({"hours": 1})),
        )
        .await,
    );
    rows.push(
        measure(
            "api: POST /tasks {\"seconds\": 30} (PutItem, claim, SendMessage)",
            &api,
            warm,
            || events::api_post_tasks(&json!({"seconds": 30})),
        )
        .await,
    );

    let cron = function("cron", binary("cron")).await;
    rows.push(
        measure(
            "cron: Scheduled Event, nothing due",
            &cron,
            warm,
            events::scheduled,
        )
        .await,
    );

    let queued = seed(&resources, needed, TaskStatus::Queued, Span::seconds(60)).await;
    let process_records = function("process-sqs-records", binary("process-sqs-records")).await;
    rows.push(
        measure(
            "process-sqs-records: SQS batch of 1 (GetItem, StartExecution, UpdateItem)",
            &process_records,
            warm,
            per_task(queued, |task| {
                let body = serde_json::to_string(&DispatchMessage::from(task)).unwrap();
                events::sqs_batch(&[(unique("message"), body)])
            }),
        )
        .await,
    );

    let started = seed(&resources, needed, TaskStatus::InProgress, Span::zero()).await;
    let execute = function("execute-task", binary("execute-task")).await;
    rows.push(
        measure(
            "execute-task: due task without webhook (GetItem, UpdateItem)",
            &execute,
            warm,
            per_task(started, |task| {
                events::execution_input(&task.id, task.timestamp, task.timestamp)
            }),
        )
        .await,
    );

    let executed = seed(&resources, needed, TaskStatus::InProgress, Span::zero()).await;
    let update = function("update-status", binary("update-status")).await;
    rows.push(
        measure(
            "update-status: MarkCompleted (UpdateItem)",
            &update,
            warm,
            per_task(executed, |task| {
                events::status_result(&task.id, task.timestamp, task.timestamp)
            }),
        )
        .await,
    );

    stop.notify_one();
    drainer.await.expect("the queue drainer");
    let cron_run = cron_hotspot(binary("cron")).await;

    println!("| binary, event | cold start (median of {COLD_STARTS}) | warm median | warm p99 | own CPU per invocation | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.1} ms | {:.2} ms | {:.2} ms | {:.3} ms | {:.1} MB |",
            row.name, row.cold_ms, row.warm_p50_ms, row.warm_p99_ms, row.cpu_ms, row.peak_rss_mb
        );
    }
    println!(
        "| cron: {CRON_DUE_TASKS} due tasks in one run | | {:.0} ms for the run | | {:.3} ms per task | {:.1} MB |",
        millis(cron_run.0),
        millis(cron_run.1) / CRON_DUE_TASKS as f64,
        cron_run.2
    );
    println!("\n({warm} warm invocations per row; moto on loopback closes the connection after every response, so each AWS call here also opens a TCP connection.)");
}

/// One warm cron run facing `CRON_DUE_TASKS` due tasks, on a table of their own: wall time, own
/// CPU, peak RSS (MB).
async fn cron_hotspot(binary: PathBuf) -> (Duration, Duration, f64) {
    let resources = Arc::new(Resources::create().await);
    let stop = Arc::new(Notify::new());
    let drainer = drain(resources.clone(), stop.clone());
    // The tasks are all due, none stale or stuck: the sweeps ask Step Functions about nothing.
    let cron = Function::on_emulator("cron", binary)
        .await
        .env("TABLE_NAME", &resources.table_name)
        .env("QUEUE_URL", &resources.queue_url)
        .env(
            "STATE_MACHINE_ARN",
            resources.workflow().state_machine_arn().to_string(),
        );
    let process = cron.spawn();
    invoke_ok(&cron, &process, events::scheduled()).await;
    seed(
        &resources,
        CRON_DUE_TASKS,
        TaskStatus::Scheduled,
        Span::seconds(30),
    )
    .await;
    let before = process.usage();
    let elapsed = invoke_ok(&cron, &process, events::scheduled()).await;
    let after = process.usage();
    process.stop().await;
    stop.notify_one();
    drainer.await.expect("the queue drainer");
    (
        elapsed,
        after.cpu - before.cpu,
        after.peak_rss_kb as f64 / 1024.0,
    )
}
