//! What every simulated service shares: the simulated clock, the seeded random source, the
//! fault rates and quotas, the count of faults injected, what was asked of AWS, and the event
//! trace whose digest identifies a run.

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Pareto};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tasks_core::Clock;

use crate::quotas::Quotas;
use crate::usage::{self, Function, Invocation, Usage};

/// How often each kind of failure happens, per call (or per invocation, per delivery).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// DynamoDB: a call refused (throttled or 500) after the SDK's own retries.
    pub store_error: f64,
    /// DynamoDB: a write applied whose response was lost, and the SDK's retry answered: the
    /// retry's condition fails on the item the first try wrote (a create's: "already exists").
    pub store_ambiguous: f64,
    /// DynamoDB: a write applied whose response was lost, and every retry's too: the caller
    /// sees an error for a write that happened.
    pub store_unanswered: f64,
    /// DynamoDB: the longest a GSI read lags the table.
    pub index_lag_ms: u64,
    /// SQS: a SendMessageBatch that fails whole, one entry refused, an accepted batch whose
    /// response was lost (the SDK's retry sends it again and is answered), an accepted batch
    /// whose every answer was lost, a message delivered twice.
    pub queue_error: f64,
    pub queue_entry_error: f64,
    pub queue_ambiguous: f64,
    pub queue_unanswered: f64,
    pub queue_duplicate: f64,
    /// SQS: the poller's ReceiveMessage fails (it backs off), its DeleteMessageBatch fails (the
    /// handled records come back after the visibility timeout).
    pub queue_receive_error: f64,
    pub queue_delete_error: f64,
    /// Step Functions: a StartExecution or DescribeExecution refused (500), a start applied
    /// whose response was lost (the SDK's retry starts the same name with the same input, which
    /// Step Functions answers with the running execution), a start whose every answer was lost.
    pub workflow_error: f64,
    pub workflow_ambiguous: f64,
    pub workflow_unanswered: f64,
    /// Every call and answer: the share whose latency gets a long (Pareto) tail.
    pub latency_tail: f64,
    /// Step Functions: a Wait state that ends seconds late; a StopExecution refused (500).
    pub late_wait: f64,
    pub stop_error: f64,
    /// Lambda: a cold start, a service error before the handler runs, a crash after it ran,
    /// an invocation whose caller sees `Lambda.SdkClientException` while the handler runs on
    /// (Step Functions then retries it beside the first run), a cold start whose init fails
    /// (`Runtime.ExitError`: a secret that cannot be read, say; the handler never runs).
    pub cold_start: f64,
    pub lambda_init_error: f64,
    pub lambda_service_error: f64,
    pub lambda_crash_after: f64,
    pub lambda_answer_lost: f64,
    /// EventBridge: a cron invocation that comes late, or twice.
    pub cron_late: f64,
    pub cron_duplicate: f64,
    /// Webhook receivers: a 5xx, a 429 with Retry-After, an answer slower than the timeout, a
    /// refused connection; the share of receivers that are down for good (410).
    pub webhook_error: f64,
    pub webhook_throttled: f64,
    pub webhook_slow: f64,
    pub webhook_unreachable: f64,
    pub receiver_gone: f64,
}

impl Faults {
    /// Every class on, at rates well above what AWS shows, so that a few hundred tasks meet
    /// each one many times.
    pub fn realistic() -> Self {
        Faults {
            store_error: 0.01,
            store_ambiguous: 0.005,
            store_unanswered: 0.001,
            index_lag_ms: 1500,
            queue_error: 0.02,
            queue_entry_error: 0.01,
            queue_ambiguous: 0.01,
            queue_unanswered: 0.002,
            queue_duplicate: 0.02,
            queue_receive_error: 0.01,
            queue_delete_error: 0.01,
            workflow_error: 0.02,
            workflow_ambiguous: 0.01,
            workflow_unanswered: 0.002,
            late_wait: 0.002,
            latency_tail: 0.01,
            stop_error: 0.02,
            cold_start: 0.05,
            lambda_init_error: 0.02,
            lambda_service_error: 0.005,
            lambda_crash_after: 0.002,
            lambda_answer_lost: 0.002,
            cron_late: 0.05,
            cron_duplicate: 0.02,
            webhook_error: 0.03,
            webhook_throttled: 0.01,
            webhook_slow: 0.005,
            webhook_unreachable: 0.005,
            receiver_gone: 0.01,
        }
    }

    pub fn none() -> Self {
        Faults {
            store_error: 0.0,
            store_ambiguous: 0.0,
            store_unanswered: 0.0,
            index_lag_ms: 0,
            queue_error: 0.0,
            queue_entry_error: 0.0,
            queue_ambiguous: 0.0,
            queue_unanswered: 0.0,
            queue_duplicate: 0.0,
            queue_receive_error: 0.0,
            queue_delete_error: 0.0,
            workflow_error: 0.0,
            workflow_ambiguous: 0.0,
            workflow_unanswered: 0.0,
            late_wait: 0.0,
            latency_tail: 0.0,
            stop_error: 0.0,
            cold_start: 0.0,
            lambda_init_error: 0.0,
            lambda_service_error: 0.0,
            lambda_crash_after: 0.0,
            lambda_answer_lost: 0.0,
            cron_late: 0.0,
            cron_duplicate: 0.0,
            webhook_error: 0.0,
            webhook_throttled: 0.0,
            webhook_slow: 0.0,
            webhook_unreachable: 0.0,
            receiver_gone: 0.0,
        }
    }
}

/// The simulated wall clock: a fixed start plus the paused tokio clock's progress.
#[derive(Debug)]
pub struct SimClock {
    start: DateTime<Utc>,
    started: tokio::time::Instant,
}

impl SimClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        SimClock {
            start,
            started: tokio::time::Instant::now(),
        }
    }

    /// The tokio instant at which the simulated clock reads `at`.
    pub fn instant(&self, at: DateTime<Utc>) -> tokio::time::Instant {
        let offset = (at - self.start).to_std().unwrap_or_default();
        self.started + offset
    }

    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        tokio::time::sleep_until(self.instant(at)).await;
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.started;
        self.start + Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// The simulated clock as a port, for the handlers the simulator builds as their Lambda crates
/// do: every time they read is the simulation's.
pub struct WorldClock(pub Arc<World>);

impl Clock for WorldClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }
}

/// The functions' metric records: the simulator's own usage counts what happened, so the
/// records are dropped rather than printed.
pub struct DroppedMetrics;

impl tasks_core::metrics::MetricsSink for DroppedMetrics {
    fn write(&self, _: serde_json::Value) {}
}

tokio::task_local! {
    /// The client request (through the api) the running code serves, if any.
    static REQUEST: u64;
    /// The Lambda function whose handler the running code is, if any.
    static FUNCTION: Function;
}

/// Runs `handler` as `function`'s: the AWS calls it makes are counted as that function's.
pub async fn as_function<F: std::future::Future>(function: Function, handler: F) -> F::Output {
    FUNCTION.scope(function, handler).await
}

/// Client requests, and which of them had a write of their own applied.
#[derive(Default)]
struct Requests {
    next: u64,
    wrote: std::collections::BTreeSet<u64>,
    /// Requests answered "nothing changed" (409) after a write of their own was applied: (task
    /// or idempotency key, what the request was).
    refused_after_own_write: Vec<(String, String)>,
}

pub struct World {
    pub clock: SimClock,
    pub faults: Faults,
    pub quotas: Quotas,
    pub usage: Arc<Mutex<Usage>>,
    rng: Mutex<ChaCha8Rng>,
    injected: Mutex<BTreeMap<&'static str, u64>>,
    trace: Mutex<Trace>,
    requests: Mutex<Requests>,
    retries: Mutex<Vec<ReportedRetry>>,
    /// (task, series) of every FAILED the store recorded.
    failed: Mutex<BTreeSet<(String, u32)>>,
    /// Each AWS API a function's handler called (`service.Action`).
    calls_by_function: Mutex<BTreeSet<(Function, &'static str)>>,
}

/// A retry an attempt's report asked for (an execution's result, or a slot's hand-over): the
/// series' next attempt must not be sent before `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedRetry {
    pub task_id: String,
    pub series: u32,
    pub after_attempt: u32,
    pub at: DateTime<Utc>,
}

struct Trace {
    digest: Sha256,
    events: u64,
    /// Each task's events, for the report of a violation (kept for small runs only).
    by_task: Option<BTreeMap<String, Vec<String>>>,
}

/// The tail's shape (a smaller shape, a heavier tail: 1.5 has a mean but no variance) and its
/// cap, below the SDK's 5 s call timeout.
const LATENCY_TAIL_SHAPE: f64 = 1.5;
const LATENCY_TAIL_CAP: std::time::Duration = std::time::Duration::from_secs(4);

/// The SDK's attempts at a throttled request before it gives up (standard retry mode).
pub const SDK_ATTEMPTS: u32 = 3;

impl World {
    pub fn new(
        seed: u64,
        faults: Faults,
        quotas: Quotas,
        start: DateTime<Utc>,
        keep_task_traces: bool,
    ) -> Self {
        World {
            clock: SimClock::new(start),
            faults,
            quotas,
            usage: Arc::new(Mutex::new(Usage::default())),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            injected: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Requests::default()),
            retries: Mutex::new(Vec::new()),
            failed: Mutex::new(BTreeSet::new()),
            calls_by_function: Mutex::new(BTreeSet::new()),
            trace: Mutex::new(Trace {
                digest: Sha256::new(),
                events: 0,
                by_task: keep_task_traces.then(BTreeMap::new),
            }),
        }
    }

    /// Runs `request` as one client request; returns whether a write of its own was applied,
    /// with its answer.
    pub async fn client_request<T>(
        &self,
        request: impl std::future::Future<Output = T>,
    ) -> (bool, T) {
        let id = {
            let mut requests = self.requests.lock().unwrap();
            requests.next += 1;
            requests.next
        };
        let answer = REQUEST.scope(id, request).await;
        (self.requests.lock().unwrap().wrote.contains(&id), answer)
    }

    /// The store applied a write: it belongs to the client request being served, if any.
    pub fn write_applied(&self) {
        if let Ok(id) = REQUEST.try_with(|id| *id) {
            self.requests.lock().unwrap().wrote.insert(id);
        }
    }

    /// A request answered that nothing changed although a write of its own was applied.
    pub fn refused_after_own_write(&self, task: &str, what: &str) {
        self.requests
            .lock()
            .unwrap()
            .refused_after_own_write
            .push((task.to_string(), what.to_string()));
    }

    /// A report asked for a retry (see [`ReportedRetry`]).
    pub fn retry_reported(&self, retry: ReportedRetry) {
        self.retries.lock().unwrap().push(retry);
    }

    /// The store recorded the task FAILED in this series.
    pub fn failed_recorded(&self, task_id: &str, series: u32) {
        self.failed
            .lock()
            .unwrap()
            .insert((task_id.to_string(), series));
    }

    pub fn recorded_failed(&self, task_id: &str, series: u32) -> bool {
        self.failed
            .lock()
            .unwrap()
            .contains(&(task_id.to_string(), series))
    }

    pub fn reported_retries(&self) -> Vec<ReportedRetry> {
        self.retries.lock().unwrap().clone()
    }

    pub fn refusals_after_own_write(&self) -> Vec<(String, String)> {
        self.requests
            .lock()
            .unwrap()
            .refused_after_own_write
            .clone()
    }

    /// Counts one request to `api` (`service.Action`).
    pub fn call(&self, api: &'static str) {
        self.usage.lock().unwrap().call(api);
        if let Ok(function) = FUNCTION.try_with(|function| *function) {
            self.calls_by_function
                .lock()
                .unwrap()
                .insert((function, api));
        }
    }

    pub fn calls_by_function(&self) -> BTreeSet<(Function, &'static str)> {
        self.calls_by_function.lock().unwrap().clone()
    }

    /// Starts an invocation of `function` within its share of the account's Lambda concurrency,
    /// or refuses it (`None`, counted as throttled).
    pub fn invoke(&self, function: Function) -> Option<Invocation> {
        usage::invoke(&self.usage, function, &self.quotas)
    }

    /// Counts one request (or attempt) that `quota` refused or delayed.
    pub fn throttle(&self, quota: &'static str) {
        self.usage.lock().unwrap().throttle(quota);
    }

    /// A throttled request as the SDK's standard retry mode sends it: up to [`SDK_ATTEMPTS`]
    /// attempts, each refused one counted against `quota` and followed by a jittered backoff
    /// (up to 1 s, then 2 s). False when the last attempt was refused too.
    pub async fn with_sdk_retries(
        &self,
        quota: &'static str,
        mut attempt: impl FnMut() -> bool,
    ) -> bool {
        for tried in 0..SDK_ATTEMPTS {
            if attempt() {
                return true;
            }
            self.throttle(quota);
            if tried + 1 < SDK_ATTEMPTS {
                let ceiling = 1000.0 * f64::from(1 << tried);
                tokio::time::sleep(std::time::Duration::from_millis(
                    self.uniform(0.0, ceiling) as u64
                ))
                .await;
            }
        }
        false
    }

    pub fn chance(&self, probability: f64) -> bool {
        probability > 0.0 && self.rng.lock().unwrap().random::<f64>() < probability
    }

    /// A fault of `class` happens with `probability`; counted when it does.
    pub fn fault(&self, class: &'static str, probability: f64) -> bool {
        let happens = self.chance(probability);
        if happens {
            *self.injected.lock().unwrap().entry(class).or_default() += 1;
        }
        happens
    }

    pub fn uniform(&self, low: f64, high: f64) -> f64 {
        if high <= low {
            return low;
        }
        self.rng.lock().unwrap().random_range(low..high)
    }

    pub fn millis(&self, low: u64, high: u64) -> std::time::Duration {
        std::time::Duration::from_millis(self.uniform(low as f64, high as f64) as u64)
    }

    pub fn index(&self, len: usize) -> usize {
        self.rng.lock().unwrap().random_range(0..len)
    }

    /// The SDK's retry of a request whose answer was lost: the pause before its first retry
    /// (standard mode: a jittered backoff of up to 1 s), then the same request to `api` again,
    /// answered after the service's latency.
    pub async fn sdk_retry(&self, api: &'static str, low_ms: u64, high_ms: u64) {
        tokio::time::sleep(self.millis(0, 1000)).await;
        self.call(api);
        self.latency(low_ms, high_ms).await;
    }

    /// Sleeps a random service latency.
    /// A call's latency: uniform between `low_ms` and `high_ms`, and now and then (the
    /// `latency.tail` fault) a Pareto-distributed tail on top, the long tail real services show,
    /// capped below the SDK's call timeout (a call that times out is another fault's business).
    pub async fn latency(&self, low_ms: u64, high_ms: u64) {
        let mut latency = self.millis(low_ms, high_ms);
        if self.fault("latency.tail", self.faults.latency_tail) {
            let tail = Pareto::new(high_ms.max(1) as f64, LATENCY_TAIL_SHAPE)
                .expect("a valid Pareto distribution");
            let extra = tail.sample(&mut *self.rng.lock().unwrap());
            latency += std::time::Duration::from_millis(extra as u64).min(LATENCY_TAIL_CAP);
        }
        tokio::time::sleep(latency).await;
    }

    pub fn record(&self, task_id: &str, event: impl Into<String>) {
        let event = event.into();
        let line = format!("{} {task_id} {event}", self.clock.now().timestamp_millis());
        let mut trace = self.trace.lock().unwrap();
        trace.digest.update(line.as_bytes());
        trace.digest.update(b"\n");
        trace.events += 1;
        if let Some(by_task) = &mut trace.by_task {
            by_task.entry(task_id.to_string()).or_default().push(line);
        }
    }

    pub fn task_trace(&self, task_id: &str) -> Vec<String> {
        let trace = self.trace.lock().unwrap();
        trace
            .by_task
            .as_ref()
            .and_then(|by_task| by_task.get(task_id).cloned())
            .unwrap_or_default()
    }

    pub fn digest(&self) -> String {
        let trace = self.trace.lock().unwrap();
        let hash = trace.digest.clone().finalize();
        hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    pub fn events(&self) -> u64 {
        self.trace.lock().unwrap().events
    }

    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.injected.lock().unwrap().clone()
    }
}
