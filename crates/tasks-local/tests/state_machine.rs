//! `state-machine/tasks.asl.json` against the code it must agree with: the error types
//! execute-task raises, the retry policies in tasks-core, the local runner (which runs this very
//! definition); and the machine itself run on the emulator's Step Functions engine.

use aws_sdk_sfn::primitives::DateTime as SdkDateTime;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Instant;
use tasks_aws::bootstrap::ensure_state_machine;
use tasks_aws::testing::unique;
use tasks_aws::StepFunctionsWorkflow;
use tasks_core::contracts::{AttemptOutcome, AttemptReport};
use tasks_core::ports::StoreError;
use tasks_core::rules::error_types::{
    is_retryable, store_error_type, StateRetry, EXECUTE_RETRY, LAMBDA_SERVICE_ERRORS,
    LAMBDA_THROTTLED, RETRYABLE_ERRORS, STATUS_RETRY, THROTTLE_RETRY, WEBHOOK_FAILURES,
};
use tasks_core::{
    DispatchMessage, Execution, ExecutionInput, Pacing, Slot, StartOutcome, TaskStatus, Workflow,
};
use tasks_local::workflow::{DEFINITION, EXECUTE_TASK_RESOURCE, UPDATE_STATUS_RESOURCE};

const ASL: &str = include_str!("../../../state-machine/tasks.asl.json");
const EXECUTE_TASK_ARN: &str = "ExecuteTaskFunctionArn";
const UPDATE_STATUS_ARN: &str = "UpdateStatusFunctionArn";
/// Not checked by the emulator; the form a deployment's role has.
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/tasks-workflow";
/// How long the execution may take beyond its wakeAt.
const EXECUTION_DEADLINE: Duration = Duration::seconds(30);
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The states a successful execution enters.
const SUCCESS_PATH: [&str; 5] = [
    "Route",
    "WaitUntilWakeAt",
    "ExecuteTask",
    "Decide",
    "MarkCompleted",
];
/// The states a slot's execution enters.
const SLOT_PATH: [&str; 3] = ["Route", "WaitForSlot", "RunSlot"];
/// Where ExecuteTask's Catch sends an error.
const CATCH_STATE: &str = "MarkFailed";

/// An ARN of the form the deployment substitutes. The emulator's Lambda stub (`use_docker`
/// off) answers an invocation of any function name without looking the function up, so the
/// functions are not created: that would take the Lambda and IAM SDKs for no extra check.
fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

fn asl() -> Value {
    serde_json::from_str(ASL).expect("the state machine is JSON")
}

fn state<'a>(asl: &'a Value, name: &str) -> &'a Value {
    asl["States"]
        .get(name)
        .unwrap_or_else(|| panic!("the state machine has no state {name}"))
}

fn names(error_equals: &Value) -> Vec<&str> {
    error_equals
        .as_array()
        .expect("ErrorEquals is a list")
        .iter()
        .map(|name| name.as_str().expect("an error name is a string"))
        .collect()
}

fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    names.into_iter().collect()
}

/// A state's `Retry` or `Catch` list (empty when absent).
fn rules<'a>(state: &'a Value, field: &str) -> &'a [Value] {
    state
        .get(field)
        .map(|rules| rules.as_array().expect("a list of rules").as_slice())
        .unwrap_or_default()
}

/// The rule of `rules` Step Functions applies to `error`: the first naming it or `States.ALL`.
fn rule_for<'a>(rules: &'a [Value], error: &str) -> Option<(usize, &'a Value)> {
    rules.iter().enumerate().find(|(_, rule)| {
        let names = names(&rule["ErrorEquals"]);
        names.contains(&error) || names.contains(&"States.ALL")
    })
}

/// A retrier's numbers, with the ASL defaults for fields it leaves out.
fn policy(retrier: &Value) -> StateRetry {
    StateRetry {
        interval_seconds: retrier
            .get("IntervalSeconds")
            .map_or(1, |v| v.as_u64().expect("IntervalSeconds is a count")),
        max_attempts: retrier.get("MaxAttempts").map_or(3, |v| {
            u32::try_from(v.as_u64().expect("MaxAttempts is a count")).expect("a u32")
        }),
        backoff_rate: retrier
            .get("BackoffRate")
            .map_or(2.0, |v| v.as_f64().expect("BackoffRate is a number")),
        max_delay_seconds: retrier
            .get("MaxDelaySeconds")
            .map(|v| v.as_u64().expect("MaxDelaySeconds is a count")),
        full_jitter: retrier.get("JitterStrategy").and_then(Value::as_str) == Some("FULL"),
    }
}

/// The policy of the retrier that handles `error` in `state_name`.
fn retry_policy_for(asl: &Value, state_name: &str, error: &str) -> StateRetry {
    let (_, retrier) = rule_for(rules(state(asl, state_name), "Retry"), error)
        .unwrap_or_else(|| panic!("{state_name} does not retry {error}"));
    policy(retrier)
}

/// The states a successful execution enters: from StartAt along `Next` (a Choice's `Default`)
/// to the `End`.
fn success_path(asl: &Value) -> Vec<&str> {
    let mut path = Vec::new();
    let mut next = asl["StartAt"].as_str();
    while let Some(name) = next {
        assert!(
            !path.contains(&name),
            "the success path loops at {name}: {path:?}"
        );
        path.push(name);
        let entered = state(asl, name);
        next = entered["Next"].as_str().or(entered["Default"].as_str());
    }
    path
}

/// Every `${Name}` the template leaves for the deployment to fill in.
fn placeholders(template: &str) -> BTreeSet<&str> {
    template
        .split("${")
        .skip(1)
        .map(|rest| rest.split_once('}').expect("an unterminated ${").0)
        .collect()
}

/// Every error type execute-task can end with (its Lambda error's `errorType`). A webhook's
/// failure is an outcome, not among them.
fn execute_task_error_types() -> Vec<&'static str> {
    let store = StoreError::Unavailable {
        message: "throttled".into(),
        request_id: None,
    };
    let refused = StoreError::NotFound("gone".into());
    vec![
        "TaskNotDue",
        store_error_type(&store),
        store_error_type(&refused),
        "InvalidInput",
    ]
}

#[test]
fn execute_task_retries_exactly_the_retryable_errors() {
    let asl = asl();
    let execute = state(&asl, "ExecuteTask");
    let retriers = rules(execute, "Retry");
    assert_eq!(retriers.len(), 3, "{retriers:?}");

    let retried = names(&retriers[0]["ErrorEquals"]);
    assert_eq!(set(retried.clone()), set(RETRYABLE_ERRORS));
    assert_eq!(
        retried.len(),
        RETRYABLE_ERRORS.len(),
        "duplicates: {retried:?}"
    );
    assert_eq!(policy(&retriers[0]), EXECUTE_RETRY);
    let service = names(&retriers[1]["ErrorEquals"]);
    assert_eq!(set(service.clone()), set(LAMBDA_SERVICE_ERRORS));
    assert_eq!(
        service.len(),
        LAMBDA_SERVICE_ERRORS.len(),
        "duplicates: {service:?}"
    );
    assert_eq!(names(&retriers[2]["ErrorEquals"]), [LAMBDA_THROTTLED]);
    assert_eq!(policy(&retriers[2]), THROTTLE_RETRY);

    // Webhook failures are the task's policy's business, never the state machine's.
    for (name, state) in asl["States"].as_object().expect("States is an object") {
        for retrier in rules(state, "Retry") {
            for error in names(&retrier["ErrorEquals"]) {
                assert!(
                    error != "States.ALL" && !WEBHOOK_FAILURES.contains(&error),
                    "{name} retries {error}"
                );
            }
        }
    }

    let catchers = rules(execute, "Catch");
    assert_eq!(catchers.len(), 1, "{catchers:?}");
    assert_eq!(names(&catchers[0]["ErrorEquals"]), ["States.ALL"]);
    assert_eq!(catchers[0]["Next"], "MarkFailed");
    assert_eq!(catchers[0]["ResultPath"], "$.error");

    for update in ["MarkCompleted", "MarkFailed"] {
        assert_eq!(
            retry_policy_for(&asl, update, "StoreUnavailable"),
            STATUS_RETRY,
            "{update}"
        );
    }
    for lambda in ["MarkCompleted", "MarkFailed", "NotifyFailure"] {
        assert_eq!(
            retry_policy_for(&asl, lambda, LAMBDA_THROTTLED),
            THROTTLE_RETRY,
            "{lambda}"
        );
    }

    // The failure callback is called at most once: only a throttled invocation (which never
    // ran) is tried again.
    let notify = state(&asl, "NotifyFailure");
    let notify_retriers = notify["Retry"].as_array().unwrap();
    assert_eq!(notify_retriers.len(), 1);
    assert_eq!(notify_retriers[0]["ErrorEquals"], json!([LAMBDA_THROTTLED]));

    for error in execute_task_error_types() {
        let retrier = rule_for(retriers, error).map(|(index, _)| index);
        if is_retryable(error) {
            assert_eq!(retrier, Some(0), "{error} is retried with EXECUTE_RETRY");
        } else {
            assert_eq!(retrier, None, "{error} cannot be cured by retrying");
        }
        let (_, catcher) = rule_for(catchers, error)
            .unwrap_or_else(|| panic!("{error} escapes the catch (after its retries)"));
        assert_eq!(catcher["Next"], "MarkFailed", "{error}");
    }
}

/// The loop the task's retry policy drives: a Choice on the attempt's outcome, a Wait until its
/// retryAt, and execute-task again; names as the report serializes them.
#[test]
fn a_retry_waits_until_retry_at_and_runs_execute_task_again() {
    let asl = asl();
    assert_eq!(state(&asl, "ExecuteTask")["Next"], "Decide");
    let decide = state(&asl, "Decide");
    assert_eq!(decide["Type"], "Choice");
    assert_eq!(decide["Default"], "MarkCompleted");
    let outcome = |outcome| serde_json::to_value(outcome).unwrap();
    let report = AttemptReport {
        outcome: AttemptOutcome::Retry,
        status_code: Some(503),
        attempt: 1,
        attempt_in_series: 1,
        executed_at: None,
        lateness_ms: None,
        retry_at: Some(Utc::now()),
        error: None,
        record: None,
        task_status: None,
        recorded: false,
    };
    let result = serde_json::to_value(&report).unwrap();
    let choices = decide["Choices"].as_array().unwrap();
    let mut routes = Vec::new();
    for choice in choices {
        assert_eq!(choice["Variable"], "$.result.outcome");
        routes.push((
            choice["StringEquals"].clone(),
            choice["Next"].as_str().unwrap(),
        ));
    }
    assert_eq!(
        routes,
        [
            (outcome(AttemptOutcome::Retry), "WaitForRetry"),
            (outcome(AttemptOutcome::Failed), "MarkFailed")
        ]
    );
    let wait = state(&asl, "WaitForRetry");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["TimestampPath"], "$.result.retryAt");
    assert!(result["retryAt"].is_string(), "{result}");
    assert_eq!(wait["Next"], "ExecuteTask");
}

#[test]
fn the_local_workflow_runs_the_state_machine() {
    assert_eq!(
        DEFINITION, ASL,
        "local mode embeds state-machine/tasks.asl.json"
    );
    let machine = asl::StateMachine::parse(DEFINITION).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        machine.task_resources(),
        [EXECUTE_TASK_RESOURCE, UPDATE_STATUS_RESOURCE],
        "local mode answers every Task resource"
    );
    assert_eq!(EXECUTE_TASK_RESOURCE, format!("${{{EXECUTE_TASK_ARN}}}"));
    assert_eq!(UPDATE_STATUS_RESOURCE, format!("${{{UPDATE_STATUS_ARN}}}"));

    let asl = asl();
    assert_eq!(asl["StartAt"], SUCCESS_PATH[0]);
    assert_eq!(success_path(&asl), SUCCESS_PATH);
    assert_eq!(state(&asl, SUCCESS_PATH[4])["End"], true);
    let route = state(&asl, "Route");
    assert_eq!(route["Choices"][0]["Next"], SLOT_PATH[1]);
    assert_eq!(state(&asl, SLOT_PATH[1])["TimestampPath"], "$.wakeAt");
    assert_eq!(state(&asl, SLOT_PATH[1])["Next"], SLOT_PATH[2]);
    assert_eq!(state(&asl, SLOT_PATH[2])["End"], true);
    assert_eq!(
        route["Choices"][1]["Next"], "Decide",
        "a hand-over goes on from its report"
    );

    let catchers = rules(state(&asl, "ExecuteTask"), "Catch");
    assert!(
        !catchers.is_empty() && catchers.iter().all(|c| c["Next"] == CATCH_STATE),
        "{catchers:?}"
    );

    let wait = state(&asl, "WaitUntilWakeAt");
    assert_eq!(wait["Type"], "Wait");
    assert_eq!(wait["TimestampPath"], "$.wakeAt");
    let input = ExecutionInput {
        id: "task".into(),
        timestamp: Utc::now(),
        wake_at: Utc::now(),
        series: 1,
    };
    assert!(
        serde_json::to_value(&input).unwrap()["wakeAt"].is_string(),
        "the execution input carries wakeAt"
    );

    assert_eq!(
        placeholders(ASL),
        set([EXECUTE_TASK_ARN, UPDATE_STATUS_ARN])
    );

    for error in RETRYABLE_ERRORS {
        assert_eq!(
            retry_policy_for(&asl, "ExecuteTask", error),
            EXECUTE_RETRY,
            "{error}"
        );
    }
    for update in ["MarkCompleted", CATCH_STATE] {
        assert_eq!(
            retry_policy_for(&asl, update, "StoreUnavailable"),
            STATUS_RETRY,
            "{update}"
        );
    }
}

/// Queues moto's answers to the next Lambda invocations, in order, whichever the function: one
/// queue per emulator and region, and no other test in this binary invokes a Lambda.
async fn queue_lambda_replies(endpoint: &str, replies: &[Value]) {
    let results: Vec<String> = replies.iter().map(Value::to_string).collect();
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/moto-api/static/lambda-simple/response"))
        .json(&json!({"results": results, "region": "us-east-1"}))
        .send()
        .await
        .expect("moto's API answers");
    assert!(response.status().is_success(), "{response:?}");
}

fn chrono_time(time: &SdkDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos()).expect("a representable time")
}

async fn execution_history(sfn: &aws_sdk_sfn::Client, arn: &str) -> Vec<HistoryEvent> {
    sfn.get_execution_history()
        .execution_arn(arn)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<_, _>>()
        .await
        .expect("the execution history")
}

/// The states an execution entered, in order.
fn entered(history: &[HistoryEvent]) -> Vec<&str> {
    history
        .iter()
        .filter_map(|event| event.state_entered_event_details.as_ref())
        .map(|details| details.name.as_str())
        .collect()
}

async fn wait_until_closed(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
    deadline: DateTime<Utc>,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    loop {
        let execution = sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .expect("describe the execution");
        if execution.status != ExecutionStatus::Running {
            return execution;
        }
        assert!(Utc::now() < deadline, "{arn} still RUNNING at {deadline}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test]
async fn the_state_machine_runs_wait_execute_complete_on_the_emulator() {
    let endpoint = local_emulator::shared_endpoint()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let config = tasks_aws::emulator_config(endpoint).await;
    let sfn = aws_sdk_sfn::Client::new(&config);
    let execute_arn = function_arn(&unique("execute-task"));
    let update_arn = function_arn(&unique("update-status"));
    let definition = ASL
        .replace(&format!("${{{EXECUTE_TASK_ARN}}}"), &execute_arn)
        .replace(&format!("${{{UPDATE_STATUS_ARN}}}"), &update_arn);
    assert!(placeholders(&definition).is_empty(), "{definition}");
    let machine = ensure_state_machine(&sfn, &unique("tasks"), &definition, ROLE_ARN)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let workflow = StepFunctionsWorkflow::new(sfn.clone(), machine);

    let timestamp = Utc::now() + Duration::seconds(3);
    let input = ExecutionInput {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp,
        wake_at: Pacing::default().wake_at(timestamp),
        series: 1,
    };
    let report = AttemptReport {
        outcome: AttemptOutcome::Delivered,
        status_code: Some(200),
        attempt: 1,
        attempt_in_series: 1,
        executed_at: Some(input.timestamp + Duration::milliseconds(3)),
        lateness_ms: Some(3),
        retry_at: None,
        error: None,
        record: None,
        task_status: None,
        recorded: false,
    };
    let report_json = serde_json::to_value(&report).unwrap();
    let completed = serde_json::to_value(TaskStatus::Completed).unwrap();
    queue_lambda_replies(endpoint, &[report_json.clone(), completed.clone()]).await;

    let started = Instant::now();
    let started_execution = workflow.start(&Execution::of_task(&input, None)).await;
    assert_eq!(started_execution, Ok(StartOutcome::Started));
    let arn = workflow.execution_arn(&input.execution_name()).unwrap();
    let execution = wait_until_closed(&sfn, &arn, input.wake_at + EXECUTION_DEADLINE).await;
    let elapsed = started.elapsed();
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.error
    );
    assert_eq!(execution.name, Some(input.execution_name()));

    let history = execution_history(&sfn, &arn).await;
    assert_eq!(entered(&history), SUCCESS_PATH);

    let wait_ended = history
        .iter()
        .find(|event| {
            event
                .state_exited_event_details
                .as_ref()
                .is_some_and(|details| details.name == SUCCESS_PATH[1])
        })
        .map(|event| chrono_time(&event.timestamp))
        .expect("the Wait state exited");
    let early = input.wake_at - wait_ended;
    println!(
        "wakeAt {} (started {} ms before it); the Wait ended {} ms early; the execution took {elapsed:?}",
        input.wake_at.format("%H:%M:%S%.3f"),
        (input.wake_at - chrono_time(&execution.start_date)).num_milliseconds(),
        early.num_milliseconds()
    );
    assert!(
        early <= Duration::seconds(2),
        "the Wait ended {} ms before wakeAt",
        early.num_milliseconds()
    );

    let output: Value =
        serde_json::from_str(execution.output.as_deref().expect("an output")).unwrap();
    let sent = serde_json::to_value(&input).unwrap();
    for field in ["id", "timestamp", "wakeAt", "series"] {
        assert_eq!(output[field], sent[field], "{field} in {output}");
    }
    assert_eq!(output["result"], report_json, "{output}");
    assert_eq!(output["status"], completed, "{output}");

    // A slot: Wait, then one execute-task run for all its tasks.
    let summary =
        json!({"completed": 2, "failed": 0, "handedOver": 0, "skipped": 0, "lostHandOvers": 0});
    queue_lambda_replies(endpoint, std::slice::from_ref(&summary)).await;
    let due = Utc::now() + Duration::seconds(2);
    let slot = Slot {
        name: unique("slot"),
        wake_at: Pacing::default().wake_at(due),
        tasks: ["a", "b"]
            .map(|id| DispatchMessage {
                id: id.into(),
                timestamp: due,
                series: 1,
            })
            .to_vec(),
        held: false,
    };
    let started_slot = workflow.start(&Execution::of_slot(&slot)).await;
    assert_eq!(started_slot, Ok(StartOutcome::Started));
    let arn = workflow.execution_arn(&slot.name).unwrap();
    let execution = wait_until_closed(&sfn, &arn, slot.wake_at + EXECUTION_DEADLINE).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        execution.error
    );
    assert_eq!(entered(&execution_history(&sfn, &arn).await), SLOT_PATH);
    let output: Value =
        serde_json::from_str(execution.output.as_deref().expect("an output")).unwrap();
    assert_eq!(output["summary"], summary, "{output}");
    assert_eq!(output["tasks"], serde_json::to_value(&slot.tasks).unwrap());
}
