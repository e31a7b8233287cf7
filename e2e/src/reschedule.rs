//! The reschedule scenario, run beside the seed task: a task moved earlier fires at its new time
//! and never at its old one, and a task moved later fires at its new time only; a task an hour
//! away runs now; a task whose receiver answered 410 fails, is retried with another URL and
//! completes, its two attempts listed; a task whose receiver answers 503 once is tried again by
//! its own execution and completes; a task that fails calls its `onFailure` callback once. The
//! webhooks point at our own receiver, which tells when each request arrived and, given the
//! signing secret, checks every request's signature.

use crate::api::{format_time, Api, Attempt, Task, COMPLETED, FAILED};
use crate::config::Config;
use crate::receiver::{self, Delivery, Receiver};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde_json::json;
use std::time::Duration;

/// After the later of the two old times, wait this long for a delivery that must not come.
const QUIET_AFTER_OLD_TIME: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(500);
/// The shortest seed time for which an earlier time, a later one and the margins fit.
pub const MIN_SEED_SECONDS: u64 = 8;

/// The times the two tasks are created for and moved to, in seconds from now: the seed's time
/// and about a third of it (+65 s and +20 s by default).
pub fn times(seed_seconds: u64) -> (u64, u64) {
    (seed_seconds, (seed_seconds * 20 / 65).max(3))
}

/// Returns why the scenario failed, as `Err`.
pub async fn run(api: &Api, config: &Config, run_id: &str) -> Result<(), String> {
    let (late, early) = times(config.seed_seconds);
    let receiver = Receiver::start(
        config.receiver_bind,
        config.receiver_url.clone(),
        config.signing_secret.as_deref(),
    )
    .await?;
    let webhook = json!({"url": receiver.url()});
    let create = |seconds: u64, name: &str| {
        let body = json!({"seconds": seconds, "webhook": webhook});
        let key = format!("e2e-{run_id}-{name}");
        async move {
            api.create(&body, &key)
                .await
                .map_err(|e| format!("POST /tasks {body}: {e}"))
        }
    };
    let earlier = create(late, "moved-earlier").await?;
    let later = create(early, "moved-later").await?;
    let earlier = moved(api, &earlier, early).await?;
    let later = moved(api, &later, late).await?;
    let deadline = Utc::now() + to_delta(config.seed_timeout);
    let (ran, redriven, retried, called_back) = tokio::join!(
        run_now(api, receiver.url(), run_id, deadline),
        redrive(api, receiver.url(), run_id, deadline),
        own_retry(api, receiver.url(), run_id, deadline),
        failure_callback(api, &receiver, run_id, deadline)
    );
    ran?;
    redriven?;
    retried?;
    called_back?;

    let old_times_passed = earlier.1.max(later.1) + to_delta(QUIET_AFTER_OLD_TIME);
    let deadline = old_times_passed + to_delta(config.seed_timeout);
    let finished = wait_completed(api, &[&earlier.0, &later.0], deadline).await?;
    sleep_until(old_times_passed).await;

    let deliveries = receiver.deliveries();
    for ((task, old_time), done) in [earlier, later].iter().zip(&finished) {
        let arrivals = arrivals(&deliveries, &task.id);
        let [arrived] = arrivals.as_slice() else {
            return Err(format!(
                "task {} (moved from {} to {}) was delivered {} times: {arrivals:?}",
                task.id,
                format_time(old_time),
                format_time(&task.timestamp),
                arrivals.len()
            ));
        };
        if *arrived < task.timestamp {
            return Err(format!(
                "task {} arrived at {}, before its new time {}",
                task.id,
                format_time(arrived),
                format_time(&task.timestamp)
            ));
        }
        if *old_time > task.timestamp && *arrived >= *old_time {
            return Err(format!(
                "task {} arrived at {}, at its old time {} rather than its new one",
                task.id,
                format_time(arrived),
                format_time(old_time)
            ));
        }
        println!(
            "seed: task moved from {} to {} arrived once, {} ms after its new time \
             (executedAt {}, attempts {})",
            format_time(old_time),
            format_time(&task.timestamp),
            (*arrived - task.timestamp).num_milliseconds(),
            done.executed_at
                .map_or_else(|| "-".into(), |at| format_time(&at)),
            done.attempts
        );
    }
    if config.signing_secret.is_some() {
        let verified = receiver::verified(&deliveries)?;
        println!(
            "seed: every request's signature verified ({verified} requests, callbacks included)"
        );
    }
    Ok(())
}

/// A task an hour away, listed in a window around its time, run now: delivered once, its one
/// attempt listed.
async fn run_now(
    api: &Api,
    url: &str,
    run_id: &str,
    deadline: DateTime<Utc>,
) -> Result<(), String> {
    let body = json!({"hours": 1, "webhook": {"url": url}});
    let key = format!("e2e-{run_id}-run-now");
    let task = api
        .create(&body, &key)
        .await
        .map_err(|e| format!("POST /tasks {body}: {e}"))?;
    let window = (
        task.timestamp - TimeDelta::seconds(1),
        task.timestamp + TimeDelta::seconds(1),
    );
    let listed = api
        .list_window("SCHEDULED", &window.0, &window.1)
        .await
        .map_err(|e| format!("GET /tasks?status=SCHEDULED&from&to: {e}"))?;
    if !listed.iter().any(|listed| listed.id == task.id) {
        return Err(format!(
            "task {} is not listed in the window {} .. {}",
            task.id,
            format_time(&window.0),
            format_time(&window.1)
        ));
    }
    let ran = api
        .run_now(&task.id)
        .await
        .map_err(|e| format!("POST /tasks/{}/run: {e}", task.id))?;
    println!(
        "seed: POST /tasks/{}/run: {} -> {} ({})",
        task.id,
        format_time(&task.timestamp),
        format_time(&ran.timestamp),
        ran.status
    );
    let done = wait_final(api, &task.id, deadline).await?;
    if done.status != COMPLETED {
        return Err(format!("task {} run now ended {}", task.id, done.status));
    }
    let attempts = api
        .attempts(&task.id)
        .await
        .map_err(|e| format!("GET /tasks/{}/attempts: {e}", task.id))?;
    match attempts.as_slice() {
        [only] if only.status_code == Some(200) => Ok(()),
        other => Err(format!("task {} run now: attempts {other:?}", task.id)),
    }
}

/// A task whose receiver answers 410 fails at its first attempt; retried with another URL it
/// completes, and its attempts are listed newest first.
async fn redrive(
    api: &Api,
    url: &str,
    run_id: &str,
    deadline: DateTime<Utc>,
) -> Result<(), String> {
    let body = json!({
        "seconds": 1,
        "webhook": {"url": receiver::gone(url)},
        "retry": {"maxAttempts": 1}
    });
    let key = format!("e2e-{run_id}-redrive");
    let (task, failed) = create_and_finish(api, &body, &key, deadline).await?;
    if failed.status != FAILED {
        return Err(format!(
            "task {} answered 410 but ended {}",
            task.id, failed.status
        ));
    }
    let fix = json!({"webhook": {"url": url}});
    api.retry(&task.id, Some(&fix))
        .await
        .map_err(|e| format!("POST /tasks/{}/retry {fix}: {e}", task.id))?;
    let done = wait_final(api, &task.id, deadline).await?;
    let attempts = api
        .attempts(&task.id)
        .await
        .map_err(|e| format!("GET /tasks/{}/attempts: {e}", task.id))?;
    let seen = history(&attempts);
    let rejected = attempts
        .get(1)
        .and_then(|a| a.error.as_deref())
        .is_some_and(|error| error.starts_with("WebhookRejected"));
    if done.status != COMPLETED
        || done.attempts != 2
        || seen != [(2, Some(200)), (1, Some(410))]
        || !rejected
    {
        return Err(format!(
            "task {} retried: {} after {} attempts, history {seen:?}",
            task.id, done.status, done.attempts
        ));
    }
    println!(
        "seed: task {} FAILED on 410 ({}), retried with another URL: COMPLETED, attempts {seen:?}",
        task.id,
        failed.last_error.as_deref().unwrap_or("no lastError")
    );
    Ok(())
}

/// A task whose receiver answers its first request 503 is tried again by its own execution (its
/// retry policy: no client asks) and completes at its second attempt.
async fn own_retry(
    api: &Api,
    url: &str,
    run_id: &str,
    deadline: DateTime<Utc>,
) -> Result<(), String> {
    let body = json!({
        "seconds": 1,
        "webhook": {"url": receiver::flaky(url)},
        "retry": {"maxAttempts": 3, "backoff": {"initialSeconds": 1, "multiplier": 1, "maxSeconds": 1}}
    });
    let key = format!("e2e-{run_id}-own-retry");
    let (task, done) = create_and_finish(api, &body, &key, deadline).await?;
    let attempts = api
        .attempts(&task.id)
        .await
        .map_err(|e| format!("GET /tasks/{}/attempts: {e}", task.id))?;
    let seen = history(&attempts);
    if done.status != COMPLETED || done.attempts != 2 || seen != [(2, Some(200)), (1, Some(503))] {
        return Err(format!(
            "task {} answered 503 once: {} after {} attempts, history {seen:?}",
            task.id, done.status, done.attempts
        ));
    }
    println!(
        "seed: task {} answered 503, tried again by its own execution: COMPLETED, attempts {seen:?}",
        task.id
    );
    Ok(())
}

/// A task whose receiver answers 410 ends FAILED and calls its `onFailure` callback once, with
/// the task as a `task.failed` body.
async fn failure_callback(
    api: &Api,
    receiver: &Receiver,
    run_id: &str,
    deadline: DateTime<Utc>,
) -> Result<(), String> {
    let callback = receiver::with_query(receiver.url(), CALLBACK_QUERY);
    let body = json!({
        "seconds": 1,
        "webhook": {"url": receiver::gone(receiver.url())},
        "retry": {"maxAttempts": 1},
        "onFailure": {"url": callback}
    });
    let key = format!("e2e-{run_id}-callback");
    let (task, failed) = create_and_finish(api, &body, &key, deadline).await?;
    if failed.status != FAILED {
        return Err(format!(
            "task {} answered 410 but ended {}",
            task.id, failed.status
        ));
    }
    let callbacks = loop {
        let callbacks: Vec<serde_json::Value> = receiver
            .deliveries()
            .iter()
            .filter(|d| d.path_and_query.ends_with(CALLBACK_QUERY))
            .filter_map(|d| serde_json::from_slice::<serde_json::Value>(&d.body).ok())
            .filter(|body| body["id"] == task.id.as_str())
            .collect();
        if !callbacks.is_empty() || Utc::now() >= deadline {
            break callbacks;
        }
        tokio::time::sleep(POLL).await;
    };
    // A second call would come at once: the state machine makes one call after recording FAILED.
    tokio::time::sleep(QUIET_AFTER_OLD_TIME).await;
    let [called] = callbacks.as_slice() else {
        return Err(format!(
            "task {} FAILED: {} callbacks arrived, not one",
            task.id,
            callbacks.len()
        ));
    };
    if called["type"] != "task.failed" || called["status"] != FAILED {
        return Err(format!(
            "task {} FAILED: its callback said {called}",
            task.id
        ));
    }
    println!(
        "seed: task {} FAILED on 410, its onFailure callback arrived once (task.failed, attempts {})",
        task.id, called["attempts"]
    );
    Ok(())
}

/// The callback URL's query, which tells its requests apart at the receiver.
const CALLBACK_QUERY: &str = "callback=failed";

/// Creates the task `body` describes, and waits for its final status: (as created, as ended).
async fn create_and_finish(
    api: &Api,
    body: &serde_json::Value,
    key: &str,
    deadline: DateTime<Utc>,
) -> Result<(Task, Task), String> {
    let task = api
        .create(body, key)
        .await
        .map_err(|e| format!("POST /tasks {body}: {e}"))?;
    let ended = wait_final(api, &task.id, deadline).await?;
    Ok((task, ended))
}

/// (attempt, status code) of each attempt, as listed (newest first).
fn history(attempts: &[Attempt]) -> Vec<(u32, Option<u16>)> {
    attempts
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect()
}

/// Polls until the task has a final status.
async fn wait_final(api: &Api, id: &str, deadline: DateTime<Utc>) -> Result<Task, String> {
    loop {
        match api.get(id).await {
            Ok(task) if task.is_terminal() => return Ok(task),
            Ok(_) => {}
            Err(error) => println!("seed: GET /tasks/{id} failed: {error}"),
        }
        if Utc::now() >= deadline {
            return Err(format!("task {id} not final in time"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Moves `task` to `seconds` from now; returns the moved task and its old time.
async fn moved(api: &Api, task: &Task, seconds: u64) -> Result<(Task, DateTime<Utc>), String> {
    let patch = json!({"seconds": seconds});
    let changed = api
        .change(&task.id, &patch)
        .await
        .map_err(|e| format!("PATCH /tasks/{} {patch}: {e}", task.id))?;
    println!(
        "seed: PATCH /tasks/{} {patch}: {} -> {} ({})",
        task.id,
        format_time(&task.timestamp),
        format_time(&changed.timestamp),
        changed.status
    );
    Ok((changed, task.timestamp))
}

/// Polls until every task is COMPLETED; any other final status, or the deadline, is a failure.
async fn wait_completed(
    api: &Api,
    tasks: &[&Task],
    deadline: DateTime<Utc>,
) -> Result<Vec<Task>, String> {
    let mut finished = Vec::with_capacity(tasks.len());
    for task in tasks {
        let done = wait_final(api, &task.id, deadline).await?;
        if done.status != COMPLETED {
            return Err(format!(
                "task {} ended {} ({})",
                done.id,
                done.status,
                done.last_error.as_deref().unwrap_or("no lastError")
            ));
        }
        finished.push(done);
    }
    Ok(finished)
}

fn arrivals(deliveries: &[Delivery], id: &str) -> Vec<DateTime<Utc>> {
    deliveries
        .iter()
        .filter(|delivery| delivery.task_id.as_deref() == Some(id))
        .map(|delivery| delivery.arrived_at)
        .collect()
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(left) = (at - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
