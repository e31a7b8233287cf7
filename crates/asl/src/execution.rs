//! Running an execution: the states' semantics, over a [`Host`] that owns time, randomness and
//! the outside world.

use crate::definition::{Catcher, Jitter, Retrier, State, StateMachine, Task};
use crate::path::Path;
use crate::timestamp;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::future::{select, Either};
use serde::Serialize;
use serde_json::{json, Value};
use std::pin::pin;

/// An error as Step Functions represents it: a name that Retry and Catch match, and a cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }

    /// A Lambda function's error as a Task state sees it: `Error` is the function's
    /// `errorType`, `Cause` the JSON `{"errorType", "errorMessage"}` Lambda answered with.
    pub fn of_lambda(error_type: &str, error_message: &str) -> Failure {
        let cause = serde_json::json!({"errorType": error_type, "errorMessage": error_message});
        Failure::new(error_type, cause.to_string())
    }
}

/// Everything an execution does to the world, and the world's clock. Step Functions' own
/// timing (a Wait ending at the start of its second, service latencies) is the host's to model:
/// the interpreter asks for exact instants.
#[async_trait]
pub trait Host: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Returns at `at` (at once if `at` has passed). Wait states and retry delays.
    async fn sleep_until(&self, at: DateTime<Utc>);

    /// Runs a Task state's `Resource` (as written in the definition) on `input`.
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, Failure>;

    /// A number in [0, 1) for `"JitterStrategy": "FULL"`.
    fn random_fraction(&self) -> f64 {
        0.5
    }

    /// One entry of the execution history. Events carry no time: a host that wants one stamps
    /// them with its own clock.
    fn record(&self, _event: HistoryEvent) {}
}

/// The execution history, as far as this interpreter keeps one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum HistoryEvent {
    ExecutionStarted {
        input: Value,
    },
    StateEntered {
        state: String,
        input: Value,
    },
    StateExited {
        state: String,
        output: Value,
    },
    /// A Wait state sleeps until `until`.
    WaitStarted {
        state: String,
        until: DateTime<Utc>,
    },
    /// One attempt of a Task state.
    TaskScheduled {
        state: String,
        resource: String,
        input: Value,
    },
    TaskFailed {
        state: String,
        failure: Failure,
    },
    /// A retrier matched: the state runs again at `at`; `retry` counts from 1.
    RetryScheduled {
        state: String,
        retry: u32,
        at: DateTime<Utc>,
    },
    ExecutionSucceeded {
        output: Value,
    },
    ExecutionFailed {
        failure: Failure,
    },
    ExecutionTimedOut,
}

/// What the context object (`$$`) tells about the execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// `$$.Execution.Name`.
    pub execution_name: String,
    /// `$$.Execution.StartTime`; the execution's `TimeoutSeconds` counts from here.
    pub start_time: DateTime<Utc>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionOutcome {
    Succeeded(Value),
    Failed(Failure),
    /// The definition's `TimeoutSeconds` passed (Step Functions' `States.Timeout`).
    TimedOut,
}

/// `States.Runtime`: errors in the definition's use of the data (a path that does not resolve,
/// a Wait on something that is not a time). Neither retried nor caught, even by `States.ALL`:
/// the execution fails.
fn runtime(cause: impl Into<String>) -> Failure {
    Failure::new("States.Runtime", cause)
}

fn no_node(path: &Path) -> String {
    format!("Invalid path '{path}': no node at that path in the input")
}

/// The state's effective input: `InputPath` applied (`null` gives `{}`).
fn select_input(path: &Option<Path>, input: &Value, context: &Value) -> Result<Value, Failure> {
    match path {
        None => Ok(json!({})),
        Some(path) => path
            .get(input, context)
            .cloned()
            .ok_or_else(|| runtime(no_node(path))),
    }
}

/// `ResultPath`: the result placed into the state's raw input (`null` keeps the input as is).
fn place_result(path: &Option<Path>, input: &Value, result: Value) -> Result<Value, Failure> {
    match path {
        None => Ok(input.clone()),
        Some(path) => path.put(input.clone(), result).ok_or_else(|| {
            Failure::new(
                "States.ResultPathMatchFailure",
                format!("Unable to apply ResultPath {path} to input {input}"),
            )
        }),
    }
}

/// Does an error named `error` match `names`? `States.ALL` matches every error this function
/// sees, `States.TaskFailed` every one except `States.Timeout`.
fn matches(names: &[String], error: &str) -> bool {
    names.iter().any(|name| {
        name == error
            || name == "States.ALL"
            || (name == "States.TaskFailed" && error != "States.Timeout")
    })
}

/// The delay before retry `attempt` (1-based) of `retrier`:
/// `IntervalSeconds * BackoffRate^(attempt - 1)`, capped at `MaxDelaySeconds`, and with
/// `"JitterStrategy": "FULL"` scaled by a random fraction.
fn retry_delay(retrier: &Retrier, attempt: u32, random_fraction: impl FnOnce() -> f64) -> Duration {
    let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
    let mut seconds = retrier.interval_seconds as f64 * retrier.backoff_rate.powi(exponent);
    if let Some(cap) = retrier.max_delay_seconds {
        seconds = seconds.min(cap as f64);
    }
    if retrier.jitter_strategy == Jitter::Full {
        seconds *= random_fraction();
    }
    // Bounded by MaxDelaySeconds or, without it, by the 1-year limit on an execution.
    let milliseconds = (seconds.min(MAX_DELAY_SECONDS) * 1000.0).round() as i64;
    Duration::milliseconds(milliseconds)
}

const MAX_DELAY_SECONDS: f64 = 366.0 * 24.0 * 3600.0;

/// Where a state sends the execution.
enum Transition {
    Next(String, Value),
    End(Value),
    Fail(Failure),
}

fn transition(next: &Option<String>, output: Value) -> Transition {
    match next {
        Some(next) => Transition::Next(next.clone(), output),
        None => Transition::End(output),
    }
}

struct Run<'a> {
    machine: &'a StateMachine,
    host: &'a dyn Host,
    input: Value,
    context: Context,
}

/// Runs `machine` from its `StartAt` on `input` until it succeeds, fails or times out.
///
/// The state semantics, as Step Functions documents them:
/// - Input and output processing: `InputPath` (default `$`; `null` gives `{}`), then
///   `Parameters` (Pass, Task), the work, `ResultSelector` (Task), `ResultPath` (default `$`,
///   the result replaces the input; `null` discards the result; `$.a.b` places it, creating
///   missing objects, and fails with `States.ResultPathMatchFailure` when a node on the way is
///   not an object), then `OutputPath` (default `$`; `null` gives `{}`).
/// - Pass: its result is `Result` if given, else its (Parameters-processed) input.
/// - Wait: `Seconds`/`SecondsPath` count from when the state is entered; `Timestamp`/
///   `TimestampPath` (RFC 3339) in the past end it at once. `SecondsPath` must name a
///   non-negative integer and `TimestampPath` a timestamp, else `States.Runtime`.
/// - Task: each attempt is raced against `TimeoutSeconds` (error `States.Timeout`). On an error
///   the first retrier whose `ErrorEquals` matches applies: while it has attempts left (each
///   retrier counts its own, `MaxAttempts: 0` never retries) the state runs again after its
///   delay; otherwise, or when no retrier matches, the first matching catcher sends
///   `{"Error", "Cause"}` placed by its `ResultPath` (default `$`) to its `Next`; with none the
///   execution fails with the error.
/// - Choice: the first rule that holds gives `Next`, else `Default`, else `States.NoChoiceMatched`.
/// - Succeed ends the execution with its output; Fail with `Error`/`ErrorPath` and
///   `Cause`/`CausePath`.
/// - A path that does not resolve fails the execution with `States.Runtime`.
/// - The definition's `TimeoutSeconds` counts from `context.start_time`; the execution then
///   ends `TimedOut` wherever it is.
pub async fn execute(
    machine: &StateMachine,
    host: &dyn Host,
    input: Value,
    context: Context,
) -> ExecutionOutcome {
    host.record(HistoryEvent::ExecutionStarted {
        input: input.clone(),
    });
    let deadline = machine
        .timeout_seconds()
        .map(|seconds| context.start_time + Duration::seconds(seconds as i64));
    let run = Run {
        machine,
        host,
        input: input.clone(),
        context,
    };
    let outcome = match deadline {
        None => run.states(input).await,
        Some(deadline) => {
            match select(pin!(run.states(input)), pin!(host.sleep_until(deadline))).await {
                Either::Left((outcome, _)) => outcome,
                Either::Right(((), _)) => ExecutionOutcome::TimedOut,
            }
        }
    };
    host.record(match &outcome {
        ExecutionOutcome::Succeeded(output) => HistoryEvent::ExecutionSucceeded {
            output: output.clone(),
        },
        ExecutionOutcome::Failed(failure) => HistoryEvent::ExecutionFailed {
            failure: failure.clone(),
        },
        ExecutionOutcome::TimedOut => HistoryEvent::ExecutionTimedOut,
    });
    outcome
}

impl Run<'_> {
    async fn states(&self, input: Value) -> ExecutionOutcome {
        let mut name = self.machine.start_at().to_string();
        let mut input = input;
        loop {
            self.host.record(HistoryEvent::StateEntered {
                state: name.clone(),
                input: input.clone(),
            });
            let entered = self.host.now();
            let state = self.machine.state(&name);
            let (next, output) = match self.state(&name, state, &input, entered).await {
                Err(failure) | Ok(Transition::Fail(failure)) => {
                    return ExecutionOutcome::Failed(failure)
                }
                Ok(Transition::Next(next, output)) => (Some(next), output),
                Ok(Transition::End(output)) => (None, output),
            };
            self.host.record(HistoryEvent::StateExited {
                state: name.clone(),
                output: output.clone(),
            });
            match next {
                Some(next) => (name, input) = (next, output),
                None => return ExecutionOutcome::Succeeded(output),
            }
        }
    }

    /// The context object as the state sees it.
    fn context(&self, state: &str, entered: DateTime<Utc>, retry_count: u32) -> Value {
        json!({
            "Execution": {
                "Name": self.context.execution_name,
                "StartTime": timestamp::format(self.context.start_time),
                "Input": self.input,
            },
            "State": {
                "Name": state,
                "EnteredTime": timestamp::format(entered),
                "RetryCount": retry_count,
            },
        })
    }

    /// Runs one state. `Err` is a failure no Catch can handle.
    async fn state(
        &self,
        name: &str,
        state: &State,
        input: &Value,
        entered: DateTime<Utc>,
    ) -> Result<Transition, Failure> {
        let context = self.context(name, entered, 0);
        match state {
            State::Pass(pass) => {
                let effective = select_input(&pass.input_path, input, &context)?;
                let effective = match &pass.parameters {
                    Some(template) => template.render(&effective, &context).map_err(runtime)?,
                    None => effective,
                };
                let result = pass.result.clone().unwrap_or(effective);
                let output = place_result(&pass.result_path, input, result)?;
                let output = select_input(&pass.output_path, &output, &context)?;
                Ok(transition(&pass.next, output))
            }
            State::Wait(wait) => {
                let effective = select_input(&wait.input_path, input, &context)?;
                let until = if let Some(seconds) = wait.seconds {
                    entered + Duration::seconds(seconds as i64)
                } else if let Some(at) = wait.timestamp {
                    at
                } else if let Some(path) = &wait.seconds_path {
                    let value = path
                        .get(&effective, &context)
                        .ok_or_else(|| runtime(no_node(path)))?;
                    let seconds = value.as_u64().filter(|s| *s <= 99_999_999).ok_or_else(|| {
                        runtime(format!(
                            "SecondsPath {path} is not a non-negative integer: {value}"
                        ))
                    })?;
                    entered + Duration::seconds(seconds as i64)
                } else {
                    let path = wait.timestamp_path.as_ref().expect("checked at parse");
                    let value = path
                        .get(&effective, &context)
                        .ok_or_else(|| runtime(no_node(path)))?;
                    value.as_str().and_then(timestamp::parse).ok_or_else(|| {
                        runtime(format!(
                            "TimestampPath {path} is not an RFC 3339 timestamp: {value}"
                        ))
                    })?
                };
                self.host.record(HistoryEvent::WaitStarted {
                    state: name.to_string(),
                    until,
                });
                self.host.sleep_until(until).await;
                let output = select_input(&wait.output_path, &effective, &context)?;
                Ok(transition(&wait.next, output))
            }
            State::Task(task) => self.task(name, task, input, entered).await,
            State::Choice(choice) => {
                let effective = select_input(&choice.input_path, input, &context)?;
                let mut next = None;
                for rule in &choice.choices {
                    if rule
                        .condition
                        .holds(&effective, &context)
                        .map_err(runtime)?
                    {
                        next = Some(&rule.next);
                        break;
                    }
                }
                let Some(next) = next.or(choice.default.as_ref()) else {
                    return Ok(Transition::Fail(Failure::new(
                        "States.NoChoiceMatched",
                        format!("No Choice rule matched and there is no Default in state {name}"),
                    )));
                };
                let output = select_input(&choice.output_path, &effective, &context)?;
                Ok(Transition::Next(next.clone(), output))
            }
            State::Succeed(succeed) => {
                let effective = select_input(&succeed.input_path, input, &context)?;
                Ok(Transition::End(select_input(
                    &succeed.output_path,
                    &effective,
                    &context,
                )?))
            }
            State::Fail(fail) => {
                let text = |path: &Path| -> Result<String, Failure> {
                    let value = path
                        .get(input, &context)
                        .ok_or_else(|| runtime(no_node(path)))?;
                    value
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| runtime(format!("{path} is not a string: {value}")))
                };
                let error = match &fail.error_path {
                    Some(path) => Some(text(path)?),
                    None => fail.error.clone(),
                };
                let cause = match &fail.cause_path {
                    Some(path) => Some(text(path)?),
                    None => fail.cause.clone(),
                };
                Ok(Transition::Fail(Failure {
                    error: error.unwrap_or_default(),
                    cause,
                }))
            }
        }
    }

    /// A Task state with its retries and catchers.
    async fn task(
        &self,
        name: &str,
        task: &Task,
        input: &Value,
        entered: DateTime<Utc>,
    ) -> Result<Transition, Failure> {
        let mut attempts = vec![0u32; task.retry.len()];
        let mut retry_count = 0;
        loop {
            let context = self.context(name, entered, retry_count);
            let failure = match self.attempt(name, task, input, &context).await? {
                Ok(output) => return Ok(transition(&task.next, output)),
                Err(failure) => failure,
            };
            self.host.record(HistoryEvent::TaskFailed {
                state: name.to_string(),
                failure: failure.clone(),
            });
            let retrier = task
                .retry
                .iter()
                .position(|retrier| matches(&retrier.error_equals, &failure.error))
                .filter(|index| attempts[*index] < task.retry[*index].max_attempts);
            if let Some(index) = retrier {
                attempts[index] += 1;
                retry_count += 1;
                let delay = retry_delay(&task.retry[index], attempts[index], || {
                    self.host.random_fraction()
                });
                let at = self.host.now() + delay;
                self.host.record(HistoryEvent::RetryScheduled {
                    state: name.to_string(),
                    retry: retry_count,
                    at,
                });
                self.host.sleep_until(at).await;
                continue;
            }
            return match task
                .catch
                .iter()
                .find(|catcher| matches(&catcher.error_equals, &failure.error))
            {
                Some(Catcher {
                    next, result_path, ..
                }) => {
                    let error = serde_json::to_value(&failure).expect("serializable");
                    let output = place_result(result_path, input, error)
                        .map_err(|f| runtime(f.cause.unwrap_or_default()))?;
                    Ok(Transition::Next(next.clone(), output))
                }
                None => Ok(Transition::Fail(failure)),
            };
        }
    }

    /// One attempt of a Task: the outer `Err` fails the execution, the inner one goes to Retry
    /// and Catch.
    async fn attempt(
        &self,
        name: &str,
        task: &Task,
        input: &Value,
        context: &Value,
    ) -> Result<Result<Value, Failure>, Failure> {
        let effective = select_input(&task.input_path, input, context)?;
        let effective = match &task.parameters {
            Some(template) => template.render(&effective, context).map_err(runtime)?,
            None => effective,
        };
        self.host.record(HistoryEvent::TaskScheduled {
            state: name.to_string(),
            resource: task.resource.clone(),
            input: effective.clone(),
        });
        let invocation = self.host.invoke(&task.resource, effective);
        let result = match task.timeout_seconds {
            None => invocation.await,
            Some(seconds) => {
                let deadline = self.host.now() + Duration::seconds(seconds as i64);
                match select(pin!(invocation), pin!(self.host.sleep_until(deadline))).await {
                    Either::Left((result, _)) => result,
                    Either::Right(((), _)) => Err(Failure {
                        error: "States.Timeout".into(),
                        cause: None,
                    }),
                }
            }
        };
        let result = match result {
            Ok(result) => result,
            Err(failure) => return Ok(Err(failure)),
        };
        let result = match &task.result_selector {
            Some(template) => template.render(&result, context).map_err(runtime)?,
            None => result,
        };
        let output = match place_result(&task.result_path, input, result) {
            Ok(output) => output,
            Err(failure) => return Ok(Err(failure)),
        };
        Ok(Ok(select_input(&task.output_path, &output, context)?))
    }
}
