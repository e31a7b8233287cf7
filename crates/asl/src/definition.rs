//! The definition: parsed, checked, and refused when it uses anything this crate does not run.
//!
//! Unknown fields and state types are errors rather than ignored, so that a definition that
//! would behave differently on Step Functions cannot run here. Checked as Step Functions checks
//! at CreateStateMachine: `StartAt` and every `Next`/`Default` name a state, every state is
//! reachable, Pass/Wait/Task have exactly one of `Next` and `"End": true`, Wait has exactly one
//! of its four time fields, `States.ALL` stands alone and in the last retrier and catcher.

use crate::choice::ChoiceRule;
use crate::path::Path;
use crate::template::Template;
use crate::timestamp;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Why a definition was refused: where (`StartAt`, a state's name, ...) and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct DefinitionError {
    pub at: String,
    pub message: String,
}

fn refuse(at: &str, message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        at: at.to_string(),
        message: message.into(),
    }
}

/// The largest number the States Language accepts for seconds and attempts.
const MAX_SECONDS: u64 = 99_999_999;

fn root() -> Option<Path> {
    Some(Path::root())
}

/// A path field that defaults to `$` when absent and means "none" when `null`.
fn nullable<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Path>, D::Error> {
    Option::<Path>::deserialize(deserializer)
}

/// A field whose presence matters even when its value is `null` (Pass's `Result`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

fn timestamp_field<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let text = String::deserialize(deserializer)?;
    timestamp::parse(&text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 timestamp")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Definition {
    start_at: String,
    states: BTreeMap<String, Value>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
    timeout_seconds: Option<u64>,
}

/// `JitterStrategy`: `FULL` draws the delay uniformly between 0 and the computed backoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Jitter {
    Full,
    #[default]
    None,
}

fn one() -> u64 {
    1
}
fn three() -> u32 {
    3
}
fn two() -> f64 {
    2.0
}

/// A retrier, with the States Language defaults: 1 s, 3 attempts, a backoff rate of 2.0.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Retrier {
    pub(crate) error_equals: Vec<String>,
    #[serde(default = "one")]
    pub(crate) interval_seconds: u64,
    #[serde(default = "three")]
    pub(crate) max_attempts: u32,
    #[serde(default = "two")]
    pub(crate) backoff_rate: f64,
    pub(crate) max_delay_seconds: Option<u64>,
    #[serde(default)]
    pub(crate) jitter_strategy: Jitter,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Catcher {
    pub(crate) error_equals: Vec<String>,
    pub(crate) next: String,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) result_path: Option<Path>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Pass {
    pub(crate) next: Option<String>,
    pub(crate) end: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) result: Option<Value>,
    pub(crate) parameters: Option<Template>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) input_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) result_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) output_path: Option<Path>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Wait {
    pub(crate) next: Option<String>,
    pub(crate) end: Option<bool>,
    pub(crate) seconds: Option<u64>,
    pub(crate) seconds_path: Option<Path>,
    #[serde(default, deserialize_with = "timestamp_field")]
    pub(crate) timestamp: Option<DateTime<Utc>>,
    pub(crate) timestamp_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) input_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) output_path: Option<Path>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Task {
    pub(crate) next: Option<String>,
    pub(crate) end: Option<bool>,
    pub(crate) resource: String,
    pub(crate) parameters: Option<Template>,
    pub(crate) result_selector: Option<Template>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) input_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) result_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) output_path: Option<Path>,
    pub(crate) timeout_seconds: Option<u64>,
    #[serde(default)]
    pub(crate) retry: Vec<Retrier>,
    #[serde(default)]
    pub(crate) catch: Vec<Catcher>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Choice {
    pub(crate) choices: Vec<ChoiceRule>,
    pub(crate) default: Option<String>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) input_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) output_path: Option<Path>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Succeed {
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) input_path: Option<Path>,
    #[serde(default = "root", deserialize_with = "nullable")]
    pub(crate) output_path: Option<Path>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Fail {
    pub(crate) error: Option<String>,
    pub(crate) error_path: Option<Path>,
    pub(crate) cause: Option<String>,
    pub(crate) cause_path: Option<Path>,
    #[serde(rename = "Comment", default)]
    _comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "Type")]
pub(crate) enum State {
    Pass(Pass),
    Wait(Wait),
    Task(Task),
    Choice(Choice),
    Succeed(Succeed),
    Fail(Fail),
}

/// A parsed and checked state machine definition.
#[derive(Debug, Clone)]
pub struct StateMachine {
    start_at: String,
    states: BTreeMap<String, State>,
    timeout_seconds: Option<u64>,
}

impl StateMachine {
    /// Parses and checks a definition (the JSON Step Functions takes at CreateStateMachine).
    pub fn parse(json: &str) -> Result<StateMachine, DefinitionError> {
        let definition: Definition =
            serde_json::from_str(json).map_err(|error| refuse("definition", error.to_string()))?;
        let mut states = BTreeMap::new();
        for (name, state) in definition.states {
            let state: State =
                serde_json::from_value(state).map_err(|error| refuse(&name, error.to_string()))?;
            states.insert(name, state);
        }
        let machine = StateMachine {
            start_at: definition.start_at,
            states,
            timeout_seconds: definition.timeout_seconds,
        };
        machine.check()?;
        Ok(machine)
    }

    /// The state an execution enters first.
    pub fn start_at(&self) -> &str {
        &self.start_at
    }

    /// Every state's name, in sorted order.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.states.keys().map(String::as_str)
    }

    /// The distinct `Resource` strings of the Task states, as written (e.g. a template's
    /// `${FunctionArn}` placeholder), in sorted order: what a host's `invoke` must answer.
    pub fn task_resources(&self) -> Vec<&str> {
        let resources: BTreeSet<&str> = self
            .states
            .values()
            .filter_map(|state| match state {
                State::Task(task) => Some(task.resource.as_str()),
                _ => None,
            })
            .collect();
        resources.into_iter().collect()
    }

    /// The execution's `TimeoutSeconds`, if it has one.
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    pub(crate) fn state(&self, name: &str) -> &State {
        &self.states[name]
    }

    fn check(&self) -> Result<(), DefinitionError> {
        if !self.states.contains_key(&self.start_at) {
            return Err(refuse(
                "StartAt",
                format!("no state is named {:?}", self.start_at),
            ));
        }
        if self
            .timeout_seconds
            .is_some_and(|t| t == 0 || t > MAX_SECONDS)
        {
            return Err(refuse("TimeoutSeconds", "must be between 1 and 99999999"));
        }
        let mut reachable = BTreeSet::from([self.start_at.as_str()]);
        for (name, state) in &self.states {
            let targets = check_state(name, state)?;
            for target in targets {
                if !self.states.contains_key(target) {
                    return Err(refuse(name, format!("no state is named {target:?}")));
                }
                if target != name {
                    reachable.insert(target);
                }
            }
        }
        match self.state_names().find(|name| !reachable.contains(name)) {
            Some(unreachable) => Err(refuse(unreachable, "no state leads to it")),
            None => Ok(()),
        }
    }
}

/// Checks one state; returns the names of the states it can go to.
fn check_state<'a>(name: &str, state: &'a State) -> Result<Vec<&'a str>, DefinitionError> {
    let flow = |next: &'a Option<String>, end: Option<bool>| match (next, end) {
        (Some(next), None) => Ok(vec![next.as_str()]),
        (None, Some(true)) => Ok(Vec::new()),
        _ => Err(refuse(name, "needs exactly one of Next and \"End\": true")),
    };
    let result_path = |path: &Option<Path>| match path {
        Some(path) if !path.is_field_reference() => Err(refuse(
            name,
            format!("ResultPath {path} must name fields of the input ($.a.b)"),
        )),
        _ => Ok(()),
    };
    match state {
        State::Pass(pass) => {
            result_path(&pass.result_path)?;
            flow(&pass.next, pass.end)
        }
        State::Wait(wait) => {
            let given = [
                wait.seconds.is_some(),
                wait.seconds_path.is_some(),
                wait.timestamp.is_some(),
                wait.timestamp_path.is_some(),
            ];
            if given.iter().filter(|given| **given).count() != 1 {
                return Err(refuse(
                    name,
                    "needs exactly one of Seconds, SecondsPath, Timestamp and TimestampPath",
                ));
            }
            if wait.seconds.is_some_and(|s| s > MAX_SECONDS) {
                return Err(refuse(name, "Seconds must be at most 99999999"));
            }
            flow(&wait.next, wait.end)
        }
        State::Task(task) => {
            result_path(&task.result_path)?;
            if task
                .timeout_seconds
                .is_some_and(|t| t == 0 || t > MAX_SECONDS)
            {
                return Err(refuse(
                    name,
                    "TimeoutSeconds must be between 1 and 99999999",
                ));
            }
            check_error_lists(name, "Retry", task.retry.iter().map(|r| &r.error_equals))?;
            check_error_lists(name, "Catch", task.catch.iter().map(|c| &c.error_equals))?;
            for retrier in &task.retry {
                if retrier.interval_seconds == 0 || retrier.interval_seconds > MAX_SECONDS {
                    return Err(refuse(
                        name,
                        "IntervalSeconds must be between 1 and 99999999",
                    ));
                }
                if u64::from(retrier.max_attempts) > MAX_SECONDS {
                    return Err(refuse(name, "MaxAttempts must be at most 99999999"));
                }
                if retrier.backoff_rate < 1.0 {
                    return Err(refuse(name, "BackoffRate must be at least 1.0"));
                }
                if retrier.max_delay_seconds == Some(0) {
                    return Err(refuse(name, "MaxDelaySeconds must be positive"));
                }
            }
            for catcher in &task.catch {
                result_path(&catcher.result_path)?;
            }
            let mut targets = flow(&task.next, task.end)?;
            targets.extend(task.catch.iter().map(|c| c.next.as_str()));
            Ok(targets)
        }
        State::Choice(choice) => {
            if choice.choices.is_empty() {
                return Err(refuse(name, "Choices must not be empty"));
            }
            let rules = choice.choices.iter().map(|rule| rule.next.as_str());
            Ok(rules.chain(choice.default.as_deref()).collect())
        }
        State::Succeed(_) => Ok(Vec::new()),
        State::Fail(fail) => {
            if fail.error.is_some() && fail.error_path.is_some() {
                return Err(refuse(name, "has both Error and ErrorPath"));
            }
            if fail.cause.is_some() && fail.cause_path.is_some() {
                return Err(refuse(name, "has both Cause and CausePath"));
            }
            Ok(Vec::new())
        }
    }
}

/// `ErrorEquals` lists are non-empty, and `States.ALL` is alone in the last one.
fn check_error_lists<'a>(
    name: &str,
    field: &str,
    lists: impl ExactSizeIterator<Item = &'a Vec<String>>,
) -> Result<(), DefinitionError> {
    let count = lists.len();
    for (index, errors) in lists.enumerate() {
        if errors.is_empty() {
            return Err(refuse(
                name,
                format!("{field}[{index}].ErrorEquals is empty"),
            ));
        }
        if errors.iter().any(|e| e == "States.ALL") && (errors.len() > 1 || index + 1 < count) {
            return Err(refuse(
                name,
                format!("{field}[{index}]: States.ALL must be alone, in the last {field} entry"),
            ));
        }
    }
    Ok(())
}
