//! A deterministic simulation of the whole pipeline: the api's commands, the cron, process-sqs-
//! records, and the state machine with execute-task and update-status, all the very functions
//! the Lambdas run, against simulated DynamoDB, SQS, Step Functions, Lambda, EventBridge and
//! webhook receivers that fail the ways AWS documents. Time is tokio's paused clock (a simulated
//! hour takes a fraction of a second), every random choice comes from one seeded generator, and
//! nothing iterates an unordered map: a seed replays a run exactly, and its trace digest says so.
//! Every run checks the lifecycle invariants ([`invariants`]).

pub mod cost;
pub mod dynamodb;
pub mod invariants;
pub mod quotas;
pub mod receiver;
pub mod sqs;
pub mod stepfunctions;
pub mod usage;
pub mod world;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dynamodb::SimStore;
use process_sqs_records::ProcessRecords;
use quotas::{Bucket, Quotas};
use receiver::SimReceivers;
use sqs::SimQueue;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use stepfunctions::{Functions, SimStepFunctions};
use tasks_core::flow::api::{cancel_task, create_task, CancelError, CreateError};
use tasks_core::flow::api::{change_task, retry_task, run_task, ChangeError, Ports};
use tasks_core::flow::cron::CronSummary;
use tasks_core::flow::start::StartReport;
use tasks_core::request::signing::SigningSecretNames;
use tasks_core::rules::timing::{QUEUE_MAX_RECEIVE_COUNT, QUEUE_VISIBILITY_TIMEOUT};
use tasks_core::{Clock, Pacing, QueueMessage, TaskStatus};
use tasks_cron::Cron;
use usage::{Function, Usage};
pub use world::Faults;
use world::{as_function, DroppedMetrics, World, WorldClock};

/// When the tasks are due and when their clients create them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Due uniformly across the span (from its first minute), each created up to 70 minutes ahead
    /// (those due in the first 70 minutes all at the start).
    Spread,
    /// As `Spread`, but the span begins 70 minutes in, so that creations arrive at a steady rate
    /// from the start instead of together.
    Steady,
    /// All due in one second (at random milliseconds), created uniformly over the hour before.
    Hotspot,
    /// Created at `per_second` from the start, each due up to an hour after its creation.
    Burst { per_second: u64 },
}

/// What one run simulates.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub tasks: usize,
    /// Tasks are due across this span from the start.
    pub span: Duration,
    pub shape: Shape,
    pub faults: Faults,
    pub quotas: Quotas,
    pub pacing: Pacing,
    /// Share of tasks cancelled by their client at a random moment before (or just after) their time.
    pub cancel_share: f64,
    /// Share of tasks their client changes (moves earlier or later, runs now, or edits its
    /// webhook, payload or retry policy without moving it) at a random moment before (or just
    /// after) their time.
    pub change_share: f64,
    /// Share of tasks whose client, finding them FAILED, retries them.
    pub retry_share: f64,
    /// Share of tasks created with their own retry policy (a few attempts, up to a minute apart).
    pub policy_share: f64,
    /// Every n-th task (0: none) has a failure callback (`onFailure`) at its receiver.
    pub on_failure_every: usize,
    /// Keep each task's events for the report of a violation (memory grows with the tasks).
    pub keep_task_traces: bool,
}

impl Scenario {
    /// A few hundred tasks over a simulated hour, every fault class on.
    pub fn standard() -> Self {
        Scenario {
            tasks: 300,
            span: Duration::hours(1),
            shape: Shape::Spread,
            faults: Faults::realistic(),
            quotas: Quotas::DEFAULT,
            pacing: Pacing::default(),
            cancel_share: 0.05,
            change_share: 0.1,
            retry_share: 0.5,
            policy_share: 0.2,
            on_failure_every: 4,
            keep_task_traces: true,
        }
    }

    /// A million tasks over a simulated day: the steady load.
    pub fn steady() -> Self {
        Scenario {
            tasks: 1_000_000,
            span: Duration::hours(24),
            shape: Shape::Steady,
            keep_task_traces: false,
            ..Scenario::standard()
        }
    }

    /// 100,000 tasks due in the same second, an hour from the start, created over that hour.
    /// Their clients cancel and retry as usual but change none (a change would move it away).
    pub fn hotspot() -> Self {
        Scenario {
            tasks: 100_000,
            shape: Shape::Hotspot,
            change_share: 0.0,
            keep_task_traces: false,
            ..Scenario::standard()
        }
    }

    /// 5,000 POST /tasks per second for a minute, each due within the hour that follows.
    pub fn burst() -> Self {
        Scenario {
            tasks: 300_000,
            span: Duration::minutes(1),
            shape: Shape::Burst { per_second: 5_000 },
            keep_task_traces: false,
            ..Scenario::standard()
        }
    }
}

/// The deployment's timings, as the template sets them (`tasks_core::timing` checks them).
pub const VISIBILITY_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(QUEUE_VISIBILITY_TIMEOUT.num_seconds() as u64);
pub const MAX_RECEIVE_COUNT: u32 = QUEUE_MAX_RECEIVE_COUNT;
pub const CRON_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);
pub const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Lambda's SQS event source polls with (at least) five concurrent pollers.
const POLLERS: usize = 5;

/// How long after its time a task may take to reach a final status: the stuck sweep's margin,
/// a cron period for the sweep to come, the longest execution a requeue starts (a start may be
/// throttled and retried after the visibility timeout), and a cron period more.
pub fn settle_bound(pacing: &Pacing) -> Duration {
    pacing.stuck_after
        + pacing.lead_time
        + Duration::from_std(CRON_PERIOD * 3 + VISIBILITY_TIMEOUT * MAX_RECEIVE_COUNT)
            .unwrap_or_default()
        + Duration::minutes(10)
}

/// What the pipeline did in one run, besides the invariants.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Activity {
    pub cron_runs: u64,
    pub cron_failures: u64,
    /// Cron runs that claimed ahead of the lead time (a hotspot was coming).
    pub looked_ahead: u64,
    pub stale_requeued: u64,
    pub stuck_found: u64,
    pub recovered: u64,
    pub recovery_failed: u64,
    pub undecodable_skipped: u64,
    pub starts: BTreeMap<&'static str, u64>,
    pub creates_retried: u64,
    pub cancels: u64,
    /// Changes answered 200 (moves and runs now), and those refused because the attempt had begun.
    pub changes: u64,
    pub changes_refused: u64,
    /// Edits answered 200 (a PATCH of the webhook, payload or retry policy, the time unchanged),
    /// and those refused because the attempt had begun.
    pub edits: u64,
    pub edits_refused: u64,
    /// FAILED tasks retried (answered 200).
    pub retries: u64,
    /// Client requests answered 429 or 503 because a quota throttled them (the client retried).
    pub requests_throttled: u64,
    /// Creates that were still being retried when their time passed: the client gave up.
    pub creates_too_late: u64,
    /// Creates never accepted: the client gave up (past its time, or after eight tries).
    pub creates_abandoned: u64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub digest: String,
    pub events: u64,
    pub report: invariants::Report,
    pub injected: BTreeMap<&'static str, u64>,
    pub activity: Activity,
    pub usage: Usage,
    /// Each AWS API each function's handler called.
    pub calls_by_function: BTreeSet<(Function, &'static str)>,
}

/// Runs one seed of a scenario on a fresh single-threaded runtime with a paused clock.
pub fn simulate(seed: u64, scenario: Scenario) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(run(seed, scenario))
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

async fn run(seed: u64, scenario: Scenario) -> Outcome {
    let start = start_time();
    let world = Arc::new(World::new(
        seed,
        scenario.faults,
        scenario.quotas,
        start,
        scenario.keep_task_traces,
    ));
    let pacing = scenario.pacing;
    let store = Arc::new(SimStore::new(world.clone()));
    let queue = Arc::new(SimQueue::new(
        world.clone(),
        VISIBILITY_TIMEOUT,
        MAX_RECEIVE_COUNT,
    ));
    let receivers = Arc::new(SimReceivers::new(world.clone(), WEBHOOK_TIMEOUT));
    let workflow = Arc::new(SimStepFunctions::new(
        world.clone(),
        Functions::on(
            &world,
            store.clone(),
            receivers.clone(),
            queue.clone(),
            pacing,
        ),
    ));
    let pipeline = Arc::new(Pipeline {
        world: world.clone(),
        store: store.clone(),
        queue: queue.clone(),
        cron: Cron {
            store: store.clone(),
            queue: queue.clone(),
            workflow: workflow.clone(),
            clock: Arc::new(WorldClock(world.clone())),
            pacing,
            metrics: Arc::new(DroppedMetrics),
        },
        records: ProcessRecords {
            store: store.clone(),
            workflow: workflow.clone(),
            clock: Arc::new(WorldClock(world.clone())),
            pacing,
            metrics: Arc::new(DroppedMetrics),
        },
        workflow,
        pacing,
        activity: Mutex::new(Activity::default()),
        api_requests: Mutex::new(Bucket::new(scenario.quotas.api_requests)),
        stage_requests: Mutex::new(Bucket::new(scenario.quotas.stage_requests)),
    });

    // Items of another shape in the index: one due among the first tasks, one stuck long ago.
    store.put_undecodable(
        "legacy-scheduled",
        TaskStatus::Scheduled,
        start.timestamp() + 300,
    );
    store.put_undecodable(
        "legacy-in-progress",
        TaskStatus::InProgress,
        start.timestamp() - 86_400,
    );

    let mut background = vec![tokio::spawn(cron_loop(pipeline.clone()))];
    for _ in 0..POLLERS {
        background.push(tokio::spawn(poll(pipeline.clone())));
    }

    let plan = plan(&world, &scenario, start);
    let clients = Arc::new(Mutex::new(invariants::Clients::default()));
    // A finished client's task is reaped as the next ones start: a handle kept to the end would
    // keep each finished task's memory (a million of them on a simulated day).
    let mut requests = tokio::task::JoinSet::new();
    for planned in plan {
        world.clock.sleep_until(planned.created_at).await;
        if planned.receiver_gone {
            receivers.make_gone(&receiver_url(&planned.key));
        }
        requests.spawn(client(pipeline.clone(), planned, clients.clone()));
        while requests.try_join_next().is_some() {}
    }
    let end = start + scenario.span + settle_bound(&pacing) + latest_creation(&scenario);
    world.clock.sleep_until(end).await;
    while requests.join_next().await.is_some() {}
    for task in background {
        task.abort();
    }

    let clients = clients.lock().unwrap().clone();
    let report = invariants::check(
        &world,
        &store.tasks(),
        invariants::Received {
            deliveries: &receivers.deliveries(),
            callbacks: &receivers.callbacks(),
        },
        &queue.dead_letters(),
        &clients,
        settle_bound(&pacing),
        end,
    );
    let activity = pipeline.activity.lock().unwrap().clone();
    let usage = world.usage.lock().unwrap().clone();
    Outcome {
        seed,
        digest: world.digest(),
        events: world.events(),
        report,
        injected: world.injected(),
        activity,
        usage,
        calls_by_function: world.calls_by_function(),
    }
}

/// How long after the start the last task may be created beyond its span (a burst's tasks are
/// due up to an hour after their creation).
fn latest_creation(scenario: &Scenario) -> Duration {
    match scenario.shape {
        Shape::Burst { per_second } => {
            burst_offset(scenario.tasks as u64, per_second) + Duration::hours(1)
        }
        Shape::Steady => CREATED_AHEAD,
        Shape::Spread | Shape::Hotspot => Duration::zero(),
    }
}

/// The longest a client creates its task ahead of its time.
const CREATED_AHEAD: Duration = Duration::minutes(70);

/// How long ahead of its time a client creates its task: at least a second, at most `up_to`.
fn ahead(world: &World, up_to: Duration) -> Duration {
    Duration::milliseconds(world.uniform(1_000.0, up_to.num_milliseconds() as f64) as i64)
}

/// When a burst's `n`-th create is sent, after the start.
fn burst_offset(n: u64, per_second: u64) -> Duration {
    Duration::milliseconds((n * 1000 / per_second.max(1)) as i64)
}

/// The simulated deployment the clients, the cron and the pollers act on.
struct Pipeline {
    world: Arc<World>,
    store: Arc<SimStore>,
    queue: Arc<SimQueue>,
    workflow: Arc<SimStepFunctions>,
    pacing: Pacing,
    /// The cron and process-sqs-records as their Lambda crates build them, on the simulator's
    /// adapters and clock.
    cron: Cron,
    records: ProcessRecords,
    activity: Mutex<Activity>,
    api_requests: Mutex<Bucket>,
    stage_requests: Mutex<Bucket>,
}

impl Pipeline {
    /// A client's request through API Gateway to the api function: `None` when a quota answered
    /// it (429 from API Gateway or from Lambda's concurrency), counted for the report.
    async fn api<T, Fut: std::future::Future<Output = T>>(
        &self,
        request: impl FnOnce() -> Fut,
    ) -> Option<T> {
        // The account's quota first: a request it refuses never reaches the stage's throttle.
        let throttled_by = if !self.api_requests.lock().unwrap().try_take(1.0) {
            Some("apigateway.requests")
        } else if !self.stage_requests.lock().unwrap().try_take(1.0) {
            Some("apigateway.stage")
        } else {
            None
        };
        if let Some(quota) = throttled_by {
            self.world.throttle(quota);
            self.activity.lock().unwrap().requests_throttled += 1;
            return None;
        }
        self.world.call("apigateway.request");
        let Some(_invocation) = self.world.invoke(Function::Api) else {
            self.activity.lock().unwrap().requests_throttled += 1;
            return None;
        };
        // API Gateway answers 504 to a request its function did not answer within its timeout;
        // the client hears nothing it can use, as for a throttled request.
        let answer = tokio::time::timeout(
            Function::Api.timeout(),
            as_function(Function::Api, request()),
        );
        match answer.await {
            Ok(answer) => Some(answer),
            Err(_) => {
                self.world.fault("lambda.timeout", 1.0);
                None
            }
        }
    }

    /// A client's request that changes a task (`api`). One answered "nothing changed" (409,
    /// an error `refused` names) after a write of its own was applied breaks an invariant: it
    /// is recorded for the report.
    async fn api_change<T, E, Fut: std::future::Future<Output = Result<T, E>>>(
        &self,
        task: &str,
        what: &str,
        request: impl FnOnce() -> Fut,
        refused: impl Fn(&E) -> bool,
    ) -> Option<Result<T, E>> {
        let (wrote, answer) = self.api(|| self.world.client_request(request())).await?;
        if wrote && answer.as_ref().is_err_and(refused) {
            self.world.refused_after_own_write(task, what);
        }
        Some(answer)
    }

    /// Runs a Lambda function invoked by a service that retries a throttled invocation.
    async fn invoke<T, Fut: std::future::Future<Output = T>>(
        &self,
        function: Function,
        run: impl FnOnce() -> Fut,
    ) -> T {
        loop {
            if let Some(_invocation) = self.world.invoke(function) {
                return as_function(function, run()).await;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// The validation code of a time that has passed.
const TIME_IN_PAST: &str = "time_in_past";

/// Whether a store error is a quota's throttling (rather than an injected fault).
fn throttled(error: &tasks_core::StoreError) -> bool {
    error.to_string().contains(dynamodb::THROTTLED)
}

/// One task a client will ask for.
struct Planned {
    key: String,
    created_at: DateTime<Utc>,
    timestamp: DateTime<Utc>,
    webhook: bool,
    cancel_at: Option<DateTime<Utc>>,
    change: Option<PlannedChange>,
    retry: bool,
    /// How long after its time the client looks whether the task FAILED.
    look_after: Duration,
    policy: Option<serde_json::Value>,
    receiver_gone: bool,
    on_failure: bool,
}

/// A client's change of its task: when it asks, and what.
struct PlannedChange {
    at: DateTime<Utc>,
    kind: ChangeKind,
}

enum ChangeKind {
    /// PATCH /tasks/{id} with a new time.
    Move(DateTime<Utc>),
    /// POST /tasks/{id}/run.
    RunNow,
    /// PATCH /tasks/{id} of the webhook, the payload or the retry policy, the time unchanged:
    /// the task starts a new series at the same time (a new hand-off, when it is due soon).
    Edit(serde_json::Value),
}

/// How long before its time a client's last-minute edit comes: within the api's hand-off, so
/// that the task has a held message of its old series and one of its new, for the same time.
const LAST_MINUTE_EDIT: Duration = Duration::minutes(2);

/// The body of a client's edit: its webhook (only when it has one: a webhook is not added
/// here, so that which tasks must be delivered stays as created), its payload or its retry
/// policy, chosen at random.
fn edit_body(world: &World, webhook: bool) -> serde_json::Value {
    let version = (2 + world.index(8)).to_string();
    match world.index(if webhook { 3 } else { 2 }) {
        0 => serde_json::json!({"payload": {"version": version}}),
        1 => serde_json::json!({
            "retry": {
                "maxAttempts": 1 + world.index(6),
                "backoff": {
                    "initialSeconds": 1 + world.index(10),
                    "multiplier": 1 + world.index(3),
                    "maxSeconds": 60
                },
                "retryOn": ["5xx", 429, "timeout", "connection"]
            }
        }),
        _ => serde_json::json!({"webhook": {"headers": {"X-Client-Version": version}}}),
    }
}

fn plan(world: &World, scenario: &Scenario, start: DateTime<Utc>) -> Vec<Planned> {
    let span_ms = scenario.span.num_milliseconds() as f64;
    let mut plan: Vec<Planned> = (0..scenario.tasks)
        .map(|i| {
            let (timestamp, created_at) = match scenario.shape {
                Shape::Spread => {
                    let due_ms = world.uniform(60_000.0, span_ms.max(60_001.0));
                    let timestamp = start + Duration::milliseconds(due_ms as i64);
                    // Created up to 70 minutes ahead: some beyond the lead time (the cron
                    // claims them), some within it (handed off at once).
                    let created_at = timestamp - ahead(world, CREATED_AHEAD);
                    (timestamp, created_at.max(start))
                }
                Shape::Steady => {
                    let due_ms = world.uniform(0.0, span_ms);
                    let timestamp = start + CREATED_AHEAD + Duration::milliseconds(due_ms as i64);
                    (timestamp, timestamp - ahead(world, CREATED_AHEAD))
                }
                Shape::Hotspot => {
                    let timestamp = start
                        + scenario.span
                        + Duration::milliseconds(world.uniform(0.0, 1_000.0) as i64);
                    let created_at = timestamp - ahead(world, Duration::hours(1));
                    (timestamp, created_at.max(start))
                }
                Shape::Burst { per_second } => {
                    let created_at = start + burst_offset(i as u64, per_second);
                    (created_at + ahead(world, Duration::hours(1)), created_at)
                }
            };
            let cancel_at = world.chance(scenario.cancel_share).then(|| {
                let window = (timestamp - created_at).num_milliseconds() as f64 + 5_000.0;
                created_at + Duration::milliseconds(world.uniform(0.0, window) as i64)
            });
            let webhook = !world.chance(0.1);
            let receiver_gone = world.chance(scenario.faults.receiver_gone);
            // Drawn only when asked for, so a scenario without changes replays as it did.
            let change =
                (scenario.change_share > 0.0 && world.chance(scenario.change_share)).then(|| {
                    let window = (timestamp - created_at).num_milliseconds() as f64 + 5_000.0;
                    let at = created_at + Duration::milliseconds(world.uniform(0.0, window) as i64);
                    // One in five runs now; one in five edits the task without moving it, half
                    // of those in its last two minutes (its hand-off held in the queue); the
                    // rest move it earlier or later, inside or beyond the lead time.
                    match world.index(5) {
                        0 => PlannedChange {
                            at,
                            kind: ChangeKind::RunNow,
                        },
                        1 => {
                            let at = if world.chance(0.5) {
                                let before =
                                    world.uniform(0.0, LAST_MINUTE_EDIT.num_milliseconds() as f64);
                                (timestamp - Duration::milliseconds(before as i64)).max(created_at)
                            } else {
                                at
                            };
                            PlannedChange {
                                at,
                                kind: ChangeKind::Edit(edit_body(world, webhook)),
                            }
                        }
                        _ => PlannedChange {
                            at,
                            kind: ChangeKind::Move(
                                at + Duration::milliseconds(
                                    world.uniform(1_000.0, 4_200_000.0) as i64
                                ),
                            ),
                        },
                    }
                });
            let retry = scenario.retry_share > 0.0 && world.chance(scenario.retry_share);
            // Half an hour after; a hotspot's or a burst's clients do not all look at once.
            let look_after = match scenario.shape {
                Shape::Spread | Shape::Steady => Duration::minutes(30),
                Shape::Hotspot | Shape::Burst { .. } => {
                    Duration::minutes(30) + Duration::seconds(world.uniform(0.0, 1_800.0) as i64)
                }
            };
            let policy =
                (scenario.policy_share > 0.0 && world.chance(scenario.policy_share)).then(|| {
                    serde_json::json!({
                        "maxAttempts": 1 + world.index(6),
                        "backoff": {
                            "initialSeconds": 1 + world.index(10),
                            "multiplier": 1 + world.index(3),
                            "maxSeconds": 60
                        },
                        "retryOn": ["5xx", 429, "timeout", "connection"]
                    })
                });
            Planned {
                key: format!("task-{i:07}"),
                created_at,
                timestamp,
                webhook,
                cancel_at,
                change,
                retry,
                look_after,
                policy,
                receiver_gone,
                on_failure: scenario.on_failure_every > 0 && i % scenario.on_failure_every == 0,
            }
        })
        .collect();
    plan.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
    plan
}

fn receiver_url(key: &str) -> String {
    format!("https://receiver.example/{key}")
}

/// A client: POST /tasks with an idempotency key, retried on 5xx as a client should, then
/// maybe DELETE.
async fn client(
    pipeline: Arc<Pipeline>,
    planned: Planned,
    clients: Arc<Mutex<invariants::Clients>>,
) {
    let Pipeline {
        world,
        store,
        queue,
        workflow,
        pacing,
        activity,
        ..
    } = pipeline.as_ref();
    let mut body = serde_json::json!({
        "timestamp": tasks_core::model::time::rfc3339_millis::format(&planned.timestamp),
        "payload": {"key": planned.key},
    });
    if planned.webhook {
        body["webhook"] = serde_json::json!({"url": receiver_url(&planned.key)});
    }
    if let Some(policy) = &planned.policy {
        body["retry"] = policy.clone();
    }
    if planned.on_failure {
        body["onFailure"] =
            serde_json::json!({"url": format!("{}/failed", receiver_url(&planned.key))});
    }
    let body = body.to_string();
    let signing_secrets = SigningSecretNames::default();
    let mut id = None;
    for attempt in 0..8 {
        let created = pipeline
            .api_change(
                &planned.key,
                "a create",
                || {
                    create_task(
                        store.as_ref(),
                        queue.as_ref(),
                        &world.clock,
                        pacing,
                        &signing_secrets,
                        body.as_bytes(),
                        Some(&planned.key),
                    )
                },
                |error| matches!(error, CreateError::IdempotencyConflict(_)),
            )
            .await;
        match created {
            Some(Ok(created)) => {
                id = Some(created.task.id);
                break;
            }
            Some(Err(CreateError::Store(error))) => {
                let mut activity = activity.lock().unwrap();
                activity.creates_retried += 1;
                activity.requests_throttled += u64::from(throttled(&error));
            }
            None => {}
            // Retried past its time: the client gives up (counted; never accepted, so not lost).
            Some(Err(CreateError::Invalid(error))) if error.code == TIME_IN_PAST => {
                activity.lock().unwrap().creates_too_late += 1;
                break;
            }
            Some(Err(error)) => panic!("the simulated client's request was refused: {error}"),
        }
        // A client's backoff: half a second, doubling, at most half a minute.
        tokio::time::sleep(std::time::Duration::from_millis(
            (500 << attempt).min(30_000),
        ))
        .await;
    }
    let Some(id) = id else {
        activity.lock().unwrap().creates_abandoned += 1;
        return;
    };
    world.record(&id, format!("accepted, due {}", planned.timestamp));
    {
        let mut clients = clients.lock().unwrap();
        clients.accepted.insert(id.clone(), planned.timestamp);
        clients
            .times
            .entry(id.clone())
            .or_default()
            .push(invariants::SetTime {
                timestamp: planned.timestamp,
                asked_at: planned.created_at,
                answered_with_attempts: Some(0),
            });
    }
    let ports = Ports {
        store: store.as_ref(),
        queue: queue.as_ref(),
        workflow: workflow.as_ref(),
        clock: &world.clock,
        pacing,
        signing_secrets: &signing_secrets,
    };
    let change_first = match (&planned.change, planned.cancel_at) {
        (Some(change), Some(cancel_at)) => change.at <= cancel_at,
        _ => true,
    };
    if change_first {
        if let Some(change) = &planned.change {
            change_task_at(&pipeline, &ports, &clients, &id, change).await;
        }
    }
    if let Some(cancel_at) = planned.cancel_at {
        if cancel(&pipeline, &clients, &id, cancel_at).await {
            return;
        }
    }
    if !change_first {
        if let Some(change) = &planned.change {
            change_task_at(&pipeline, &ports, &clients, &id, change).await;
        }
    }
    if planned.retry {
        let look_at = planned.timestamp + planned.look_after;
        retry_if_failed(&pipeline, &ports, &clients, &id, look_at).await;
    }
}

/// DELETE /tasks/{id} at `at`, retried on 5xx; whether it answered 200.
async fn cancel(
    pipeline: &Pipeline,
    clients: &Mutex<invariants::Clients>,
    id: &str,
    at: DateTime<Utc>,
) -> bool {
    let Pipeline {
        world,
        store,
        workflow,
        activity,
        ..
    } = pipeline;
    world.clock.sleep_until(at).await;
    for _ in 0..3 {
        let cancelled = pipeline
            .api_change(
                id,
                "a cancel",
                || cancel_task(store.as_ref(), workflow.as_ref(), &world.clock, id),
                |error| matches!(error, CancelError::NotCancellable(_)),
            )
            .await;
        match cancelled {
            Some(Ok(cancelled)) => {
                world.record(id, "cancel answered 200");
                activity.lock().unwrap().cancels += 1;
                clients.lock().unwrap().cancelled.insert(
                    id.to_string(),
                    invariants::Cancelled {
                        at: world.clock.now(),
                        attempts: cancelled.attempts,
                    },
                );
                return true;
            }
            Some(Err(CancelError::NotCancellable(_) | CancelError::NotFound(_))) => return false,
            Some(Err(CancelError::Store(_))) | None => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await
            }
        }
    }
    false
}

/// A client's change of its task, at its moment.
async fn change_task_at(
    pipeline: &Pipeline,
    ports: &Ports<'_>,
    clients: &Mutex<invariants::Clients>,
    id: &str,
    change: &PlannedChange,
) {
    pipeline.world.clock.sleep_until(change.at).await;
    match &change.kind {
        ChangeKind::Move(timestamp) => {
            change_time(pipeline, ports, clients, id, Some(*timestamp)).await
        }
        ChangeKind::RunNow => change_time(pipeline, ports, clients, id, None).await,
        ChangeKind::Edit(body) => edit(pipeline, ports, id, body).await,
    }
}

/// PATCH /tasks/{id} with a new time, or POST /tasks/{id}/run (`None`), retried on 5xx. The
/// time is recorded as asked for before the request: a write that succeeded behind an error may
/// apply it.
async fn change_time(
    pipeline: &Pipeline,
    ports: &Ports<'_>,
    clients: &Mutex<invariants::Clients>,
    id: &str,
    new_time: Option<DateTime<Utc>>,
) {
    let Pipeline {
        world, activity, ..
    } = pipeline;
    for _ in 0..3 {
        let now = world.clock.now();
        let timestamp = new_time.unwrap_or(now);
        let asked = clients.lock().unwrap().ask(id, timestamp, now);
        let result = pipeline
            .api_change(
                id,
                "a change of time",
                || async {
                    match new_time {
                        Some(at) => {
                            let body = serde_json::json!({
                                "timestamp": tasks_core::model::time::rfc3339_millis::format(&at)
                            });
                            change_task(ports, id, body.to_string().as_bytes()).await
                        }
                        None => run_task(ports, id).await,
                    }
                },
                |error| matches!(error, ChangeError::NotChangeable(_)),
            )
            .await;
        match result {
            Some(Ok(changed)) => {
                world.record(
                    id,
                    format!("change answered 200, due {}", changed.task.timestamp),
                );
                activity.lock().unwrap().changes += 1;
                clients
                    .lock()
                    .unwrap()
                    .answer(id, asked, changed.task.attempts);
                return;
            }
            Some(Err(ChangeError::NotChangeable(_) | ChangeError::NotFound(_))) => {
                activity.lock().unwrap().changes_refused += 1;
                return;
            }
            Some(Err(ChangeError::Invalid(error))) if error.code == TIME_IN_PAST => {
                activity.lock().unwrap().changes_refused += 1;
                return;
            }
            Some(Err(ChangeError::Store(_))) | None => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await
            }
            Some(Err(error)) => panic!("the simulated client's change was refused: {error}"),
        }
    }
}

/// PATCH /tasks/{id} of its webhook, payload or retry policy, the time unchanged, retried on
/// 5xx. No time is asked for: every delivery is still for the time set last.
async fn edit(pipeline: &Pipeline, ports: &Ports<'_>, id: &str, body: &serde_json::Value) {
    let Pipeline {
        world, activity, ..
    } = pipeline;
    let body = body.to_string();
    for _ in 0..3 {
        match pipeline
            .api_change(
                id,
                "an edit",
                || change_task(ports, id, body.as_bytes()),
                |error| matches!(error, ChangeError::NotChangeable(_)),
            )
            .await
        {
            Some(Ok(edited)) => {
                world.record(
                    id,
                    format!(
                        "edit answered 200, due {}, series {}",
                        edited.task.timestamp, edited.task.series
                    ),
                );
                activity.lock().unwrap().edits += 1;
                return;
            }
            Some(Err(ChangeError::NotChangeable(_) | ChangeError::NotFound(_))) => {
                activity.lock().unwrap().edits_refused += 1;
                return;
            }
            Some(Err(ChangeError::Store(_))) | None => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await
            }
            Some(Err(error)) => panic!("the simulated client's edit was refused: {error}"),
        }
    }
}

/// At `look_at` (half an hour or so after the task's time), a client that finds it FAILED
/// retries it, now or a few minutes later.
async fn retry_if_failed(
    pipeline: &Pipeline,
    ports: &Ports<'_>,
    clients: &Mutex<invariants::Clients>,
    id: &str,
    look_at: DateTime<Utc>,
) {
    let Pipeline {
        world, activity, ..
    } = pipeline;
    world.clock.sleep_until(look_at).await;
    let delay = world.uniform(0.0, 300.0) as u64;
    for _ in 0..3 {
        match pipeline.api(|| ports.store.get(id)).await {
            Some(Ok(Some(task))) if task.task_status == TaskStatus::Failed => {}
            Some(Ok(_)) => return,
            Some(Err(_)) | None => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        }
        let now = world.clock.now();
        let at = now + Duration::seconds(delay as i64);
        let asked = clients.lock().unwrap().ask(id, at, now);
        let body = serde_json::json!({"seconds": delay}).to_string();
        match pipeline
            .api_change(
                id,
                "a retry",
                || retry_task(ports, id, body.as_bytes()),
                |error| matches!(error, ChangeError::NotRetryable(_)),
            )
            .await
        {
            Some(Ok(retried)) => {
                world.record(
                    id,
                    format!("retry answered 200, due {}", retried.task.timestamp),
                );
                activity.lock().unwrap().retries += 1;
                clients
                    .lock()
                    .unwrap()
                    .answer(id, asked, retried.task.attempts);
                return;
            }
            Some(Err(ChangeError::NotRetryable(_) | ChangeError::NotFound(_))) => return,
            Some(Err(ChangeError::Store(_))) | None => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await
            }
            Some(Err(error)) => panic!("the simulated client's retry was refused: {error}"),
        }
    }
}

/// EventBridge `rate(1 minute)`: now and then late, now and then twice.
async fn cron_loop(pipeline: Arc<Pipeline>) {
    let world = &pipeline.world;
    let mut next = tokio::time::Instant::now() + world.millis(0, 60_000);
    loop {
        tokio::time::sleep_until(next).await;
        next += CRON_PERIOD;
        let faults = world.faults;
        let invocations = if world.fault("eventbridge.duplicate", faults.cron_duplicate) {
            2
        } else {
            1
        };
        // A duplicate is a second delivery of the event: it comes at a moment of its own.
        for _ in 0..invocations {
            let late = if world.fault("eventbridge.late", faults.cron_late) {
                world.millis(5_000, 40_000)
            } else {
                world.millis(0, 1_000)
            };
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                tokio::time::sleep(late).await;
                // The function's timeout ends a run that has more to do; the next run goes on.
                let summary = pipeline
                    .invoke(Function::Cron, || {
                        tokio::time::timeout(Function::Cron.timeout(), pipeline.cron.run())
                    })
                    .await;
                count_cron(
                    &mut pipeline.activity.lock().unwrap(),
                    summary.ok().and_then(Result::ok).as_ref(),
                );
            });
        }
    }
}

fn count_cron(activity: &mut Activity, summary: Option<&CronSummary>) {
    activity.cron_runs += 1;
    let Some(summary) = summary else {
        activity.cron_failures += 1;
        return;
    };
    activity.looked_ahead += u64::from(summary.look_ahead_seconds > 0);
    activity.stale_requeued += summary.stale.requeued as u64;
    activity.stuck_found += summary.stuck.found as u64;
    activity.recovered += (summary.stale.requeued
        + summary.stale.resumed
        + summary.stuck.requeued
        + summary.stuck.resumed) as u64;
    activity.recovery_failed += (summary.stale.failed + summary.stuck.failed) as u64;
    activity.undecodable_skipped += summary.undecodable as u64;
}

/// Lambda's SQS event source feeding process-sqs-records: a batch of up to ten; the records the
/// function did not report as failed are deleted, the others come back after the visibility
/// timeout (and reach the DLQ after the last receive).
async fn poll(pipeline: Arc<Pipeline>) {
    let Pipeline {
        world,
        queue,
        records,
        activity,
        ..
    } = pipeline.as_ref();
    loop {
        if world.fault("sqs.receive_error", world.faults.queue_receive_error) {
            // The poller backs off and polls again; the messages wait in the queue.
            world.latency(1_000, 2_000).await;
            continue;
        }
        let batch = queue.receive(10, std::time::Duration::from_secs(20)).await;
        if batch.is_empty() {
            continue;
        }
        // A throttled invocation leaves the batch to come back after the visibility timeout.
        let Some(_invocation) = world.invoke(Function::ProcessSqsRecords) else {
            continue;
        };
        let faults = world.faults;
        if world.fault("lambda.cold_start", faults.cold_start) {
            world.latency(100, 400).await;
        }
        if world.fault("lambda.service_error", faults.lambda_service_error) {
            continue;
        }
        let messages: Vec<&QueueMessage> = batch.iter().map(|message| &message.body).collect();
        // The function's timeout ends an invocation that has more to do: its batch comes back
        // after the visibility timeout (the handler's budget keeps it from getting there).
        let run = as_function(Function::ProcessSqsRecords, records.start(&messages, 0));
        let Ok(results) = tokio::time::timeout(Function::ProcessSqsRecords.timeout(), run).await
        else {
            world.fault("lambda.timeout", 1.0);
            continue;
        };
        if world.fault("lambda.crash_after", faults.lambda_crash_after) {
            continue;
        }
        let mut handled = Vec::new();
        for (message, result) in batch.iter().zip(results) {
            let name = match &result {
                Ok(StartReport::Started) => "started",
                Ok(StartReport::AlreadyStarted) => "already started",
                Ok(StartReport::HandedOver) => "report handed over",
                Ok(StartReport::Restarted(_)) => "restarted in a new series",
                Ok(StartReport::Failed) => "ended without an outcome: FAILED",
                Ok(StartReport::Skipped(_)) => "skipped",
                Ok(StartReport::Superseded) => "superseded",
                Ok(StartReport::Missing) => "missing",
                Err(_) => "failed",
            };
            *activity.lock().unwrap().starts.entry(name).or_default() += 1;
            for task in message.body.task_ids() {
                world.record(task, format!("start: {name}"));
            }
            if result.is_ok() {
                handled.push(message.receipt);
            }
        }
        // A DeleteMessageBatch that fails leaves the handled records to come back after the
        // visibility timeout: they are started again (a repeated delivery).
        if !world.fault("sqs.delete_error", faults.queue_delete_error) {
            queue.delete(&handled);
        }
    }
}
