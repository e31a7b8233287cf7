//! The simulator's faults held to the real thing: each case runs the real adapter (the real AWS
//! SDK, with its own retries) on the local emulator behind a proxy that fails the request the
//! way the case says, and the simulator's model of that fault on the same change; both must
//! return the same outcome and leave the same state.
//!
//! Fault classes the simulator injects that have no case here, and why:
//! - `sqs.entry_error` (one entry of a batch refused) and `sqs.duplicate` (SQS delivering a
//!   message twice): the emulator never does either, and the proxy cannot make it without
//!   writing the service's answer itself; the adapter's handling of both is tested on its own.
//! - the index lag (`index_lag_ms`): the emulator's index is consistent at once.
//! - `sqs.receive_error` and `sqs.delete_error`: the poller is Lambda's event source mapping,
//!   not a call of ours.
//! - Lambda, EventBridge and webhook faults (a lost answer while the handler runs on, a failed
//!   init, a late Wait, a long-tail latency among them) are not SDK calls: nothing here holds
//!   them to a real counterpart yet; the deployed stack on an emulator and the network tests are
//!   to.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use tasks_aws::fault_proxy::Fault;
use tasks_aws::testing::Resources;
use tasks_core::flow::start::execution_input;
use tasks_core::{
    DispatchMessage, DispatchQueue, Event, Execution, ExecutionState, Pacing, QueueMessage,
    StartOutcome, StoreError, Task, TaskStatus, TaskStore, Transition, Workflow,
};
use tasks_sim::dynamodb::SimStore;
use tasks_sim::quotas::{Quotas, Rate};
use tasks_sim::receiver::SimReceivers;
use tasks_sim::sqs::SimQueue;
use tasks_sim::stepfunctions::{Functions, SimStepFunctions};
use tasks_sim::world::World;
use tasks_sim::Faults;

fn now() -> DateTime<Utc> {
    tasks_core::model::time::rfc3339_millis::truncate(Utc::now())
}

fn world(faults: Faults, quotas: Quotas) -> Arc<World> {
    Arc::new(World::new(1, faults, quotas, now(), false))
}

fn faults(set: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::none();
    set(&mut faults);
    faults
}

/// A task due in an hour, in `status`.
fn task(status: TaskStatus) -> Task {
    let at = now();
    let mut task = Task::new(
        tasks_aws::testing::unique("calibration"),
        at + Duration::hours(1),
        Pacing::default().lead_time,
        at,
    );
    task.task_status = status;
    if status != TaskStatus::Scheduled {
        task.series = 1;
    }
    task
}

/// What a call returned, as far as the caller can tell.
fn outcome(result: Result<Option<Task>, StoreError>) -> String {
    match result {
        Ok(Some(task)) => format!("ok: {}", state(&task)),
        Ok(None) => "ok".into(),
        Err(StoreError::Conflict { current }) => format!("conflict: {}", state(&current)),
        Err(StoreError::AlreadyExists(_)) => "already exists".into(),
        Err(StoreError::NotFound(_)) => "not found".into(),
        Err(StoreError::Unavailable { .. }) => "unavailable".into(),
        Err(StoreError::InvalidPageToken) => "invalid page token".into(),
    }
}

fn state(task: &Task) -> String {
    format!(
        "{} series {} attempts {} history {}",
        task.task_status,
        task.series,
        task.attempts,
        task.attempt_history.len()
    )
}

/// One change, its fault at the proxy and its fault in the simulator.
struct StoreCase {
    name: &'static str,
    /// `PutItem` for a create, `UpdateItem` for a transition.
    action: &'static str,
    proxy: &'static [Fault],
    simulated: Faults,
    quotas: Quotas,
    /// The status the task is in before a transition.
    before: TaskStatus,
    change: fn() -> Transition,
}

fn cancel() -> Transition {
    Transition::new(Event::Cancel, now())
}

fn begin_attempt() -> Transition {
    Transition::new(Event::BeginAttempt, now())
        .in_series(1)
        .if_attempts(0)
}

/// No write fits the table's capacity: every try is throttled.
fn no_write_capacity() -> Quotas {
    let none = Rate {
        burst: 0.0,
        per_second: 0.0,
    };
    Quotas {
        table_writes: none,
        partition_writes: none,
        ..Quotas::DEFAULT
    }
}

fn store_cases() -> Vec<StoreCase> {
    let case = |name, action, proxy, simulated, change| StoreCase {
        name,
        action,
        proxy,
        simulated,
        quotas: Quotas::DEFAULT,
        before: TaskStatus::Scheduled,
        change,
    };
    let ambiguous = faults(|f| f.store_ambiguous = 1.0);
    let unanswered = faults(|f| f.store_unanswered = 1.0);
    let refused = faults(|f| f.store_error = 1.0);
    vec![
        case(
            "a create applied, its answer lost and retried",
            "PutItem",
            &[Fault::LoseAnswer],
            ambiguous,
            cancel,
        ),
        case(
            "a create applied, its connection dropped and retried",
            "PutItem",
            &[Fault::DropConnection],
            ambiguous,
            cancel,
        ),
        case(
            "a create applied, every answer lost",
            "PutItem",
            &[Fault::LoseAnswer, Fault::LoseAnswer, Fault::LoseAnswer],
            unanswered,
            cancel,
        ),
        case(
            "a create refused on every try",
            "PutItem",
            &[Fault::Refuse, Fault::Refuse, Fault::Refuse],
            refused,
            cancel,
        ),
        case(
            "a cancel applied, its answer lost and retried",
            "UpdateItem",
            &[Fault::LoseAnswer],
            ambiguous,
            cancel,
        ),
        case(
            "a cancel applied, its connection dropped and retried",
            "UpdateItem",
            &[Fault::DropConnection],
            ambiguous,
            cancel,
        ),
        case(
            "a cancel applied, every answer lost",
            "UpdateItem",
            &[Fault::LoseAnswer, Fault::LoseAnswer, Fault::LoseAnswer],
            unanswered,
            cancel,
        ),
        case(
            "a cancel refused on every try",
            "UpdateItem",
            &[Fault::Refuse, Fault::Refuse, Fault::Refuse],
            refused,
            cancel,
        ),
        StoreCase {
            quotas: no_write_capacity(),
            ..case(
                "a cancel throttled on every try",
                "UpdateItem",
                &[Fault::Throttle, Fault::Throttle, Fault::Throttle],
                Faults::none(),
                cancel,
            )
        },
        StoreCase {
            before: TaskStatus::Queued,
            ..case(
                "an attempt begun, its answer lost and retried",
                "UpdateItem",
                &[Fault::LoseAnswer],
                ambiguous,
                begin_attempt,
            )
        },
        StoreCase {
            before: TaskStatus::Queued,
            ..case(
                "an attempt begun, its connection dropped and retried",
                "UpdateItem",
                &[Fault::DropConnection],
                ambiguous,
                begin_attempt,
            )
        },
    ]
}

/// Runs a case's change on `store` (with the fault armed by `arm`), and reads the task after it
/// through `read` (no fault).
async fn run_case(
    case: &StoreCase,
    store: &dyn TaskStore,
    set_up: impl AsyncFnOnce(Task),
    arm: impl FnOnce(),
    read: impl AsyncFnOnce(&str) -> Option<Task>,
) -> (String, String) {
    let task = task(case.before);
    let id = task.id.clone();
    let returned = if case.action == "PutItem" {
        arm();
        outcome(store.create(&task).await.map(|()| None))
    } else {
        set_up(task).await;
        let change = (case.change)();
        arm();
        outcome(store.transition(&id, &change).await.map(Some))
    };
    let after = read(&id)
        .await
        .map_or_else(|| "absent".to_string(), |task| state(&task));
    (returned, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_answers_to_each_fault_are_the_real_sdks() {
    let resources = Resources::create().await;
    let direct = resources.store();
    let mut mismatches = Vec::new();
    for case in store_cases() {
        let (proxied, proxy) = resources.behind_fault_proxy().await;
        let real = run_case(
            &case,
            &proxied.store(),
            async |task| direct.create(&task).await.expect("set up the task"),
            || proxy.inject(case.action, case.proxy),
            async |id| direct.get(id).await.expect("read the task"),
        )
        .await;
        assert!(
            proxy.requests(case.action) >= case.proxy.len(),
            "{}: the SDK sent {} requests, fewer than the faults armed",
            case.name,
            proxy.requests(case.action)
        );

        let sim = SimStore::new(world(case.simulated, case.quotas));
        let modelled = run_case(
            &case,
            &sim,
            async |task| sim.put(task),
            || {},
            async |id| sim.tasks().into_iter().find(|task| task.id == id),
        )
        .await;
        println!("{}: real {real:?}, simulated {modelled:?}", case.name);
        if real != modelled {
            mismatches.push(format!(
                "{}: the real adapter gave {real:?}, the simulator {modelled:?}",
                case.name
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

fn message() -> QueueMessage {
    let task = task(TaskStatus::Queued);
    QueueMessage::Task(DispatchMessage::from(&task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_answers_to_each_fault_are_the_real_sdks() {
    let cases: [(&str, &[Fault], Faults); 3] = [
        (
            "a batch accepted, its answer lost and retried",
            &[Fault::LoseAnswer],
            faults(|f| f.queue_ambiguous = 1.0),
        ),
        (
            "a batch accepted, every answer lost",
            &[Fault::LoseAnswer, Fault::LoseAnswer, Fault::LoseAnswer],
            faults(|f| f.queue_unanswered = 1.0),
        ),
        (
            "a batch refused on every try",
            &[Fault::Refuse, Fault::Refuse, Fault::Refuse],
            faults(|f| f.queue_error = 1.0),
        ),
    ];
    let mut mismatches = Vec::new();
    for (name, proxy_faults, simulated) in cases {
        let resources = Resources::create().await;
        let (proxied, proxy) = resources.behind_fault_proxy().await;
        proxy.inject("SendMessageBatch", proxy_faults);
        let sent = proxied.queue().send_batch(&[message()]).await;
        let real = (
            sent.map(|rejected| rejected.len()).is_ok(),
            resources.receive_all().await.len(),
        );

        let world = world(simulated, Quotas::DEFAULT);
        let queue = SimQueue::new(world, std::time::Duration::from_secs(60), 5);
        let sent = queue.send_batch(&[message()]).await;
        let modelled = (
            sent.map(|rejected| rejected.len()).is_ok(),
            queue
                .receive(10, std::time::Duration::from_millis(10))
                .await
                .len(),
        );
        println!("{name}: real (answered, on the queue) {real:?}, simulated {modelled:?}");
        if real != modelled {
            mismatches.push(format!(
                "{name}: the real adapter gave {real:?}, the simulator {modelled:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// A task's own execution, waiting an hour for its time.
fn execution() -> Execution {
    let task = task(TaskStatus::Queued);
    Execution::of_task(&execution_input(&Pacing::default(), &task), None)
}

fn sim_workflow(simulated: Faults) -> SimStepFunctions {
    let world = world(simulated, Quotas::DEFAULT);
    let store = Arc::new(SimStore::new(world.clone()));
    let queue = Arc::new(SimQueue::new(
        world.clone(),
        std::time::Duration::from_secs(60),
        5,
    ));
    let sender = Arc::new(SimReceivers::new(
        world.clone(),
        std::time::Duration::from_secs(10),
    ));
    let functions = Functions::on(&world, store, sender, queue, Pacing::default());
    SimStepFunctions::new(world, functions)
}

async fn start_twice(
    workflow: &dyn Workflow,
    first: &Execution,
    second: &Execution,
) -> (Result<StartOutcome, String>, Result<StartOutcome, String>) {
    let once = workflow.start(first).await.map_err(|e| e.to_string());
    let twice = workflow.start(second).await.map_err(|e| e.to_string());
    (once, twice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflows_answers_to_each_fault_are_the_real_sdks() {
    let resources = Resources::create().await;
    let mut mismatches = Vec::new();

    // A start applied whose answer was lost: the SDK's retry starts the same name with the same
    // input, which Step Functions answers with the running execution.
    let (proxied, proxy) = resources.behind_fault_proxy().await;
    let real_workflow = proxied.waiting_workflow().await;
    proxy.inject("StartExecution", &[Fault::LoseAnswer]);
    let started = execution();
    let real = (
        real_workflow
            .start(&started)
            .await
            .map_err(|e| e.to_string()),
        real_workflow.state(&started.name).await.ok(),
        proxied.execution_names(&real_workflow).await.len(),
    );
    let sim = sim_workflow(faults(|f| f.workflow_ambiguous = 1.0));
    let modelled = (
        sim.start(&started).await.map_err(|e| e.to_string()),
        sim.state(&started.name).await.ok(),
        1,
    );
    if real != modelled {
        mismatches.push(format!(
            "a start applied, its answer lost and retried: real {real:?}, simulated {modelled:?}"
        ));
    }
    assert_eq!(real.1, Some(ExecutionState::Running));

    // A name taken by a running execution: the same input is a success, another input is not.
    for (name, other_input) in [("the same input", false), ("another input", true)] {
        let first = execution();
        let mut second = first.clone();
        if other_input {
            second.input["timestamp"] = serde_json::Value::from("2099-01-01T00:00:00.000Z");
        }
        let real = start_twice(&real_workflow, &first, &second).await;
        let modelled = start_twice(&sim_workflow(Faults::none()), &first, &second).await;
        if real != modelled {
            mismatches.push(format!(
                "a second start with {name} while the first runs: real {real:?}, simulated {modelled:?}"
            ));
        }
    }
    // A StopExecution refused (500) on every try: the SDK gives up with an error, and the
    // execution runs on.
    let stopped = execution();
    real_workflow.start(&stopped).await.unwrap();
    proxy.inject(
        "StopExecution",
        &[Fault::Refuse, Fault::Refuse, Fault::Refuse],
    );
    let real = (
        real_workflow.stop(&stopped.name).await.is_err(),
        real_workflow.state(&stopped.name).await.ok(),
    );
    let sim = sim_workflow(faults(|f| f.stop_error = 1.0));
    sim.start(&stopped).await.unwrap();
    let modelled = (
        sim.stop(&stopped.name).await.is_err(),
        sim.state(&stopped.name).await.ok(),
    );
    if real != modelled {
        mismatches.push(format!(
            "a stop refused on every try: real {real:?}, simulated {modelled:?}"
        ));
    }
    assert_eq!(real, (true, Some(ExecutionState::Running)));
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
