//! Step Functions Standard and the two Lambdas its state machine calls, with the semantics AWS
//! documents:
//! - an execution name is unique for 90 days after its execution ends: starting a taken name
//!   answers for the running or the ended execution (the adapter asks which);
//! - `StartExecution` is a token bucket ([`Quotas::start_execution`](crate::quotas::Quotas)):
//!   past it, `ThrottlingException`, which the SDK retries twice before the caller sees it; a
//!   start may also fail (500) or be applied with its response lost;
//! - every state entered is a state transition, billed and taken from the account's bucket
//!   (`state_transitions`): past it, the execution waits for its transitions before it goes on;
//! - the execution runs `state-machine/tasks.asl.json` through the `asl` interpreter, with its
//!   Retry and Catch as written; a Wait ends at the start of its second (up to a second early);
//! - a Lambda invocation takes one of the account's concurrent executions (`lambda_concurrency`;
//!   past it, `Lambda.TooManyRequestsException`), and may start cold (100-400 ms), fail with a
//!   `Lambda.*` service error before
//!   the handler runs, time out at the function's timeout (`Sandbox.Timedout`, after whatever the
//!   handler did), or crash after the handler ran (`Lambda.Unknown`);
//! - `StopExecution` aborts a running execution.

use crate::quotas::Bucket;
use crate::usage::Function;
use crate::world::{as_function, DroppedMetrics, ReportedRetry, World, WorldClock};
use asl::{
    Context, ExecutionState as RunState, Executions, Failure, FinalStatus, HistoryEvent, Host,
    Start, StateMachine,
};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use execute_task::ExecuteTask;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tasks_core::contracts::{AttemptOutcome, AttemptReport};
use tasks_core::flow::run_slot::SlotSummary;
use tasks_core::{
    Clock, DispatchQueue, ExecutionState, Pacing, StartOutcome, TaskStore, WebhookSender, Workflow,
    WorkflowError,
};
use update_status::UpdateStatus;

pub const DEFINITION: &str = include_str!("../../../state-machine/tasks.asl.json");
const EXECUTE_TASK: &str = "${ExecuteTaskFunctionArn}";
const UPDATE_STATUS: &str = "${UpdateStatusFunctionArn}";

/// The two functions the state machine invokes, as their Lambda crates build them (on the
/// simulator's adapters and clock), and their timeouts from the template.
pub struct Functions {
    pub execute: Arc<ExecuteTask>,
    pub update: Arc<UpdateStatus>,
    pub execute_timeout: std::time::Duration,
    pub update_timeout: std::time::Duration,
}

impl Functions {
    /// execute-task and update-status as their mains build them, on the simulator's adapters and
    /// clock, with the template's timeouts.
    pub fn on(
        world: &Arc<World>,
        store: Arc<dyn TaskStore>,
        sender: Arc<dyn WebhookSender>,
        queue: Arc<dyn DispatchQueue>,
        pacing: Pacing,
    ) -> Functions {
        Functions {
            execute: Arc::new(ExecuteTask {
                store: store.clone(),
                sender,
                queue,
                clock: Arc::new(WorldClock(world.clone())),
                pacing,
                metrics: Arc::new(DroppedMetrics),
            }),
            update: Arc::new(UpdateStatus {
                store,
                clock: Arc::new(WorldClock(world.clone())),
                metrics: Arc::new(DroppedMetrics),
            }),
            execute_timeout: Function::ExecuteTask.timeout(),
            update_timeout: Function::UpdateStatus.timeout(),
        }
    }
}

/// What the simulator keeps of a running execution: its task, to abort it, and its input.
type Run = (tokio::task::AbortHandle, Value);

pub struct SimStepFunctions {
    world: Arc<World>,
    machine: Arc<StateMachine>,
    functions: Arc<Functions>,
    /// Kept for the whole run: Step Functions keeps an ended execution's name 90 days.
    executions: Arc<Executions<Run>>,
    starts: Mutex<Bucket>,
    transitions: Arc<Mutex<Bucket>>,
}

impl SimStepFunctions {
    pub fn new(world: Arc<World>, functions: Functions) -> Self {
        SimStepFunctions {
            machine: Arc::new(StateMachine::parse(DEFINITION).expect("the state machine parses")),
            functions: Arc::new(functions),
            executions: Arc::new(Executions::new(None)),
            starts: Mutex::new(Bucket::new(world.quotas.start_execution)),
            transitions: Arc::new(Mutex::new(Bucket::new(world.quotas.state_transitions))),
            world,
        }
    }

    fn spawn(&self, name: String, execution_input: &Value) {
        let host = ExecutionHost {
            world: self.world.clone(),
            functions: self.functions.clone(),
            task_id: execution_input["id"].as_str().unwrap_or(&name).to_string(),
            wait_until: Mutex::new(None),
            transitions: self.transitions.clone(),
            owed: Mutex::new(0),
        };
        let machine = self.machine.clone();
        let executions = self.executions.clone();
        let input = execution_input.clone();
        let world = self.world.clone();
        let execution_name = name.clone();
        let run = async move {
            let context = Context {
                execution_name: execution_name.clone(),
                start_time: host.now(),
            };
            let outcome = asl::execute(&machine, &host, input, context).await;
            let status = FinalStatus::from(&outcome);
            world.record(
                &host.task_id,
                format!("execution {execution_name} {}", status.as_str()),
            );
            executions.end(&execution_name, status, host.now());
        };
        let now = self.world.clock.now();
        // Called for a name `taken` found free: the start starts.
        let started = self.executions.start(&name, now, || {
            let handle = tokio::spawn(run).abort_handle();
            self.world
                .record(&input_id(&name), format!("execution {name} started"));
            for task in slot_tasks(execution_input) {
                self.world
                    .record(task, format!("slot execution {name} started"));
            }
            (handle, execution_input.clone())
        });
        debug_assert_eq!(started, Start::Started);
    }

    /// What a start finds when the name is taken, as Step Functions answers it: a start with
    /// the same input while the execution runs is answered with that execution, as a success;
    /// another input, or an ended execution, is `ExecutionAlreadyExists` (which the adapter
    /// tells apart by describing the execution).
    fn taken(&self, execution: &tasks_core::Execution) -> Option<StartOutcome> {
        self.executions
            .inspect(&execution.name, |(_, input), state| match state {
                RunState::Running if *input == execution.input => StartOutcome::Started,
                RunState::Running => StartOutcome::AlreadyRunning,
                RunState::Ended(_) => StartOutcome::AlreadyEnded,
            })
    }
}

/// The tasks of a slot execution's input (none for a task's own).
fn slot_tasks(input: &Value) -> Vec<&str> {
    input["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter_map(|task| task["id"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn input_id(execution_name: &str) -> String {
    execution_name
        .rsplit_once('-')
        .map(|(id, _)| id.to_string())
        .unwrap_or_else(|| execution_name.to_string())
}

#[async_trait]
impl Workflow for SimStepFunctions {
    async fn start(
        &self,
        execution: &tasks_core::Execution,
    ) -> Result<StartOutcome, WorkflowError> {
        self.world.call("stepfunctions.StartExecution");
        self.world.latency(10, 40).await;
        let faults = self.world.faults;
        if self
            .world
            .fault("stepfunctions.error", faults.workflow_error)
        {
            return Err(WorkflowError("InternalServerError".into()));
        }
        let admitted = self
            .world
            .with_sdk_retries("stepfunctions.start_execution", || {
                self.starts.lock().unwrap().try_take(1.0)
            })
            .await;
        if !admitted {
            return Err(WorkflowError("ThrottlingException: rate exceeded".into()));
        }
        if let Some(outcome) = self.taken(execution) {
            return Ok(outcome);
        }
        self.spawn(execution.name.clone(), &execution.input);
        if self
            .world
            .fault("stepfunctions.ambiguous", faults.workflow_ambiguous)
        {
            // The SDK starts the same name with the same input again: Step Functions answers
            // with the execution the first try started, as a success.
            self.world
                .sdk_retry("stepfunctions.StartExecution", 10, 40)
                .await;
            return Ok(self.taken(execution).unwrap_or(StartOutcome::Started));
        }
        if self
            .world
            .fault("stepfunctions.unanswered", faults.workflow_unanswered)
        {
            return Err(WorkflowError("the response was lost".into()));
        }
        Ok(StartOutcome::Started)
    }

    async fn state(&self, execution_name: &str) -> Result<ExecutionState, WorkflowError> {
        self.world.call("stepfunctions.DescribeExecution");
        self.world.latency(10, 40).await;
        if self
            .world
            .fault("stepfunctions.error", self.world.faults.workflow_error)
        {
            return Err(WorkflowError("InternalServerError".into()));
        }
        Ok(self.executions.state(execution_name).into())
    }

    async fn stop(&self, execution_name: &str) -> Result<(), WorkflowError> {
        self.world.call("stepfunctions.StopExecution");
        self.world.latency(10, 40).await;
        if self
            .world
            .fault("stepfunctions.stop_error", self.world.faults.stop_error)
        {
            return Err(WorkflowError("InternalError".into()));
        }
        let now = self.world.clock.now();
        if self
            .executions
            .stop(execution_name, now, |(handle, _)| handle.abort())
        {
            self.world.record(
                &input_id(execution_name),
                format!("execution {execution_name} ABORTED"),
            );
        }
        Ok(())
    }
}

/// One execution's host: the simulated clock, Step Functions' Wait, the two functions as Lambda
/// runs them.
struct ExecutionHost {
    world: Arc<World>,
    functions: Arc<Functions>,
    task_id: String,
    /// The time the Wait state entered last waits for (a retry delay is not truncated).
    wait_until: Mutex<Option<DateTime<Utc>>>,
    transitions: Arc<Mutex<Bucket>>,
    /// States entered whose transitions are not yet taken from the account's bucket.
    owed: Mutex<u64>,
}

impl ExecutionHost {
    fn transition(&self) {
        *self.owed.lock().unwrap() += 1;
        self.world.usage.lock().unwrap().state_transitions += 1;
    }

    /// Takes the transitions made so far from the account's bucket, waiting when it is empty.
    async fn pay_transitions(&self) {
        let owed = std::mem::take(&mut *self.owed.lock().unwrap());
        if owed == 0 {
            return;
        }
        let wait = self.transitions.lock().unwrap().reserve(owed as f64);
        if !wait.is_zero() {
            self.world.throttle("stepfunctions.state_transitions");
            tokio::time::sleep(wait).await;
        }
    }

    async fn lambda<Fut>(
        &self,
        function: Function,
        timeout: std::time::Duration,
        handler: Fut,
    ) -> Result<Value, Failure>
    where
        Fut: std::future::Future<Output = Result<Value, Failure>> + Send + 'static,
    {
        let name = function.name();
        let Some(_invocation) = self.world.invoke(function) else {
            return Err(Failure::new(
                "Lambda.TooManyRequestsException",
                format!("{name}: Rate Exceeded."),
            ));
        };
        let faults = self.world.faults;
        if self.world.fault("lambda.cold_start", faults.cold_start) {
            self.world.latency(100, 400).await;
            if self
                .world
                .fault("lambda.init_error", faults.lambda_init_error)
            {
                return Err(Failure::new(
                    "Runtime.ExitError",
                    format!("{name}: the function's init failed; the handler did not run"),
                ));
            }
        } else {
            self.world.latency(1, 4).await;
        }
        if self
            .world
            .fault("lambda.service_error", faults.lambda_service_error)
        {
            return Err(Failure::new(
                "Lambda.ServiceException",
                format!("{name}: the Lambda service failed"),
            ));
        }
        if self
            .world
            .fault("lambda.answer_lost", faults.lambda_answer_lost)
        {
            // The handler runs on to its end (or its timeout); the caller is told it failed.
            tokio::spawn(tokio::time::timeout(
                timeout,
                as_function(function, handler),
            ));
            self.world.latency(10, 1_000).await;
            return Err(Failure::new(
                "Lambda.SdkClientException",
                format!("{name}: the invocation's answer was lost"),
            ));
        }
        let result = match tokio::time::timeout(timeout, as_function(function, handler)).await {
            Ok(result) => result,
            Err(_) => {
                self.world.fault("lambda.timeout", 1.0);
                return Err(Failure::new(
                    "Sandbox.Timedout",
                    format!("{name}: Task timed out after {} seconds", timeout.as_secs()),
                ));
            }
        };
        if self
            .world
            .fault("lambda.crash_after", faults.lambda_crash_after)
        {
            return Err(Failure::new(
                "Lambda.Unknown",
                format!("{name}: the function crashed after it ran"),
            ));
        }
        result
    }
}

/// Invokes `handler` on `input` as Lambda does (`tasks_lambda::invoke_json`: the event decoded,
/// the handler run, its error named by its errorType), as Step Functions sees the answer.
async fn invoke_as_lambda<T, R, E, F, Fut>(input: Value, handler: F) -> Result<Value, Failure>
where
    T: serde::de::DeserializeOwned,
    R: serde::Serialize,
    E: Into<lambda_runtime::Diagnostic>,
    F: FnOnce(T) -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
{
    tasks_lambda::invoke_json(&input, handler)
        .await
        .map_err(|error| Failure::of_lambda(&error.error_type, &error.error_message))
}

#[async_trait]
impl Host for ExecutionHost {
    fn now(&self) -> DateTime<Utc> {
        self.world.clock.now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        self.pay_transitions().await;
        let wait = self.wait_until.lock().unwrap().take();
        let at = if wait == Some(at) {
            // A Wait ends at the start of its second, a little after it as scheduled.
            let late = if self
                .world
                .fault("stepfunctions.late_wait", self.world.faults.late_wait)
            {
                self.world.millis(1_000, 5_000)
            } else {
                self.world.millis(0, 80)
            };
            at.trunc_subsecs(0) + chrono::Duration::from_std(late).unwrap_or_default()
        } else {
            at
        };
        self.world.clock.sleep_until(at).await;
    }

    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, Failure> {
        self.pay_transitions().await;
        // Each handler owns what it uses: a run whose answer is lost goes on beside its retry.
        let functions = Arc::clone(&self.functions);
        let world = Arc::clone(&self.world);
        match resource {
            EXECUTE_TASK if input.get("tasks").is_some() => {
                let timeout = functions.execute_timeout;
                let run = async move {
                    let answer = invoke_as_lambda(input, |slot| async move {
                        functions.execute.handle(slot).await
                    })
                    .await?;
                    let summary: SlotSummary =
                        serde_json::from_value(answer.clone()).expect("a slot run's summary");
                    world.usage.lock().unwrap().slot_run(&summary);
                    Ok(answer)
                };
                self.lambda(Function::ExecuteTask, timeout, run).await
            }
            EXECUTE_TASK => {
                let timeout = functions.execute_timeout;
                let series = input["series"].as_u64().unwrap_or_default() as u32;
                let run = invoke_as_lambda(input, move |attempt| async move {
                    functions.execute.handle(attempt).await
                });
                let task_id = self.task_id.clone();
                let answer = self.lambda(Function::ExecuteTask, timeout, run).await;
                // A retry is reported when Step Functions gets the answer (a lost answer's
                // report reaches nobody).
                let report = answer
                    .as_ref()
                    .ok()
                    .and_then(|value| serde_json::from_value::<AttemptReport>(value.clone()).ok());
                if let Some(report) =
                    report.filter(|report| report.outcome == AttemptOutcome::Retry)
                {
                    self.world.retry_reported(ReportedRetry {
                        task_id,
                        series,
                        after_attempt: report.attempt,
                        at: report.retry_at.expect("a retry has its time"),
                    });
                }
                answer
            }
            UPDATE_STATUS => {
                let timeout = functions.update_timeout;
                let run = invoke_as_lambda(input, move |update| async move {
                    functions.update.handle(update).await
                });
                self.lambda(Function::UpdateStatus, timeout, run).await
            }
            other => Err(Failure::new(
                "Lambda.ResourceNotFoundException",
                format!("no function answers {other}"),
            )),
        }
    }

    fn random_fraction(&self) -> f64 {
        self.world.uniform(0.0, 1.0)
    }

    fn record(&self, event: HistoryEvent) {
        match event {
            HistoryEvent::WaitStarted { until, .. } => {
                *self.wait_until.lock().unwrap() = Some(until);
            }
            HistoryEvent::StateEntered { state, .. } => {
                self.transition();
                self.world.record(&self.task_id, format!("state {state}"));
            }
            // A retry is a transition too (billed, and taken from the bucket).
            HistoryEvent::RetryScheduled { .. } => self.transition(),
            _ => {}
        }
    }
}
