//! Executions on a virtual clock: each state type, Retry and Catch, timeouts, and the service's
//! own state machine.

mod host;

use asl::{ExecutionOutcome, Failure, HistoryEvent};
use chrono::Duration;
use host::{at, err, ok, FakeHost, Reply};
use serde_json::{json, Value};

const TASKS: &str = include_str!("../../../state-machine/tasks.asl.json");
const EXECUTE_TASK: &str = "${ExecuteTaskFunctionArn}";
const UPDATE_STATUS: &str = "${UpdateStatusFunctionArn}";

fn succeeded(outcome: ExecutionOutcome) -> Value {
    match outcome {
        ExecutionOutcome::Succeeded(output) => output,
        other => panic!("expected success, got {other:?}"),
    }
}

fn failed(outcome: ExecutionOutcome) -> Failure {
    match outcome {
        ExecutionOutcome::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A machine of one Task state `T` (fields from `task`); its catchers may go to `Caught`.
fn one_task(task: Value) -> String {
    let mut state = json!({"Type": "Task", "Resource": "work", "End": true});
    state
        .as_object_mut()
        .unwrap()
        .extend(task.as_object().unwrap().clone());
    let mut states = json!({"T": state});
    if task.get("Catch").is_some() {
        states["Caught"] = json!({"Type": "Pass", "End": true});
    }
    json!({"StartAt": "T", "States": states}).to_string()
}

#[tokio::test(start_paused = true)]
async fn pass_applies_input_parameters_result_and_output_paths() {
    let host = FakeHost::scripted(vec![]);
    let definition = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "InputPath": "$.in",
              "Parameters": {"id.$": "$.id", "name.$": "$$.Execution.Name", "fixed": [1, {"deep.$": "$.id"}]},
              "ResultPath": "$.out", "Next": "Q"},
        "Q": {"Type": "Pass", "Result": {"r": 1}, "ResultPath": "$.out.result", "OutputPath": "$.out", "Next": "R"},
        "R": {"Type": "Pass", "ResultPath": null, "End": true}
    }});
    let output = succeeded(
        host.run(
            &definition.to_string(),
            json!({"in": {"id": 7}, "keep": true}),
        )
        .await,
    );
    assert_eq!(
        output,
        json!({"id": 7, "name": "execution-1", "fixed": [1, {"deep": 7}], "result": {"r": 1}})
    );
    assert_eq!(host.entered(), ["P", "Q", "R"]);
}

#[tokio::test(start_paused = true)]
async fn result_path_replaces_merges_discards_or_fails() {
    let run = |result_path: Value, input: Value| async move {
        let host = FakeHost::scripted(vec![ok(json!({"v": 1}))]);
        host.run(&one_task(json!({"ResultPath": result_path})), input)
            .await
    };
    assert_eq!(
        succeeded(run(json!("$"), json!({"a": 1})).await),
        json!({"v": 1})
    );
    assert_eq!(
        succeeded(run(Value::Null, json!({"a": 1})).await),
        json!({"a": 1})
    );
    assert_eq!(
        succeeded(run(json!("$.a.b"), json!({"a": {"c": 2}, "d": 3})).await),
        json!({"a": {"c": 2, "b": {"v": 1}}, "d": 3})
    );
    assert_eq!(
        succeeded(run(json!("$.x.y"), json!({"a": 1})).await),
        json!({"a": 1, "x": {"y": {"v": 1}}})
    );
    assert_eq!(
        failed(run(json!("$.a.b"), json!({"a": "text"})).await).error,
        "States.ResultPathMatchFailure"
    );
}

#[tokio::test(start_paused = true)]
async fn task_parameters_result_selector_and_context() {
    let host = FakeHost::scripted(vec![ok(json!({"payload": {"x": 1}, "noise": true}))]);
    let definition = one_task(json!({
        "Parameters": {"id.$": "$.id", "start.$": "$$.Execution.StartTime", "entered.$": "$$.State.EnteredTime",
                       "state.$": "$$.State.Name", "input.$": "$$.Execution.Input"},
        "ResultSelector": {"x.$": "$.payload.x"},
        "ResultPath": "$.result"
    }));
    let output = succeeded(host.run(&definition, json!({"id": "a"})).await);
    assert_eq!(output, json!({"id": "a", "result": {"x": 1}}));
    let calls = host.calls.lock().unwrap();
    assert_eq!(
        calls[0].input,
        json!({"id": "a", "start": "2026-01-01T00:00:00.000Z", "entered": "2026-01-01T00:00:00.000Z",
               "state": "T", "input": {"id": "a"}})
    );
}

#[tokio::test(start_paused = true)]
async fn wait_states_end_at_their_time() {
    let definition = json!({"StartAt": "S", "States": {
        "S": {"Type": "Wait", "Seconds": 10, "Next": "SP"},
        "SP": {"Type": "Wait", "SecondsPath": "$.s", "Next": "T"},
        "T": {"Type": "Wait", "Timestamp": at(100), "Next": "TP"},
        "TP": {"Type": "Wait", "TimestampPath": "$.t", "Next": "Past"},
        "Past": {"Type": "Wait", "Timestamp": at(1), "Next": "Task"},
        "Task": {"Type": "Task", "Resource": "r", "ResultPath": null, "End": true}
    }});
    let host = FakeHost::scripted(vec![ok(json!(null))]);
    let input = json!({"s": 15, "t": "2026-01-01T02:00:00.500+01:00"});
    assert_eq!(
        succeeded(host.run(&definition.to_string(), input.clone()).await),
        input
    );
    assert_eq!(host.call_times(), [3600.5]);
    let waits: Vec<String> = host
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            HistoryEvent::WaitStarted { until, .. } => Some(until.to_rfc3339()),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 5);
    assert_eq!(
        waits[1], "2026-01-01T00:00:25+00:00",
        "SecondsPath counts from entering"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_on_a_bad_value_is_a_runtime_error() {
    let wait = |field: &str, path: &str| {
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", field: path, "End": true}}})
            .to_string()
    };
    for (field, input) in [
        ("SecondsPath", json!({"v": -1})),
        ("SecondsPath", json!({"v": 1.5})),
        ("SecondsPath", json!({"v": "10"})),
        ("SecondsPath", json!({})),
        ("TimestampPath", json!({"v": "tomorrow"})),
        ("TimestampPath", json!({"v": 1})),
    ] {
        let host = FakeHost::scripted(vec![]);
        let failure = failed(host.run(&wait(field, "$.v"), input.clone()).await);
        assert_eq!(failure.error, "States.Runtime", "{field} {input}");
    }
}

#[tokio::test(start_paused = true)]
async fn choice_picks_the_first_matching_rule_then_default() {
    let definition = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"},
                {"And": [{"Variable": "$.n", "NumericGreaterThan": 5}, {"Variable": "$.tag", "IsPresent": true}], "Next": "Tagged"}
              ], "Default": "Other"},
        "Big": {"Type": "Succeed"},
        "Tagged": {"Type": "Succeed"},
        "Other": {"Type": "Succeed"}
    }})
    .to_string();
    for (input, expected) in [
        (json!({"n": 11}), "Big"),
        (json!({"n": 6, "tag": null}), "Tagged"),
        (json!({"n": 6}), "Other"),
    ] {
        let host = FakeHost::scripted(vec![]);
        succeeded(host.run(&definition, input).await);
        assert_eq!(host.entered(), ["C", expected]);
    }
    let host = FakeHost::scripted(vec![]);
    assert_eq!(
        failed(host.run(&definition, json!({"tag": 1})).await).error,
        "States.Runtime"
    );

    let no_default = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "One"}]},
        "One": {"Type": "Succeed"}
    }});
    let host = FakeHost::scripted(vec![]);
    let failure = failed(host.run(&no_default.to_string(), json!({"n": 2})).await);
    assert_eq!(failure.error, "States.NoChoiceMatched");
}

#[tokio::test(start_paused = true)]
async fn fail_reports_its_error_and_cause() {
    let definition =
        json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "why"}}});
    let host = FakeHost::scripted(vec![]);
    assert_eq!(
        failed(host.run(&definition.to_string(), json!({})).await),
        Failure::new("Boom", "why")
    );

    let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c.text"}}});
    let host = FakeHost::scripted(vec![]);
    let failure = failed(
        host.run(
            &definition.to_string(),
            json!({"e": "E", "c": {"text": "T"}}),
        )
        .await,
    );
    assert_eq!(failure, Failure::new("E", "T"));

    let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail"}}});
    let host = FakeHost::scripted(vec![]);
    assert_eq!(
        failed(host.run(&definition.to_string(), json!({})).await),
        Failure {
            error: String::new(),
            cause: None
        }
    );
}

#[tokio::test(start_paused = true)]
async fn retriers_count_their_own_attempts_and_the_first_match_wins() {
    // The States Language's own example: errors A, B, C, B. The first two use the first
    // retrier (1 s, 2 s), C the second (5 s); the second B finds the first retrier spent and
    // goes to Catch, although a later retrier would match it.
    let definition = one_task(json!({
        "Retry": [
            {"ErrorEquals": ["A", "B"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 2},
            {"ErrorEquals": ["C"], "IntervalSeconds": 5},
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 100}
        ],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]
    }));
    let host = FakeHost::scripted(vec![err("A"), err("B"), err("C"), err("B")]);
    let output = succeeded(host.run(&definition, json!({"in": 1})).await);
    assert_eq!(host.call_times(), [0.0, 1.0, 3.0, 8.0]);
    assert_eq!(
        output,
        json!({"in": 1, "error": {"Error": "B", "Cause": "B cause"}})
    );
    assert_eq!(host.entered(), ["T", "Caught"]);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_then_catch_and_zero_attempts() {
    let definition = one_task(json!({
        "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 2, "IntervalSeconds": 3},
                  {"ErrorEquals": ["Never"], "MaxAttempts": 0}],
        "Catch": [{"ErrorEquals": ["Flaky", "Never"], "Next": "Caught"}]
    }));
    let host = FakeHost::scripted(vec![err("Flaky"), err("Flaky"), err("Flaky")]);
    let output = succeeded(host.run(&definition, json!({})).await);
    assert_eq!(host.call_times(), [0.0, 3.0, 9.0]);
    assert_eq!(
        output,
        json!({"Error": "Flaky", "Cause": "Flaky cause"}),
        "Catch's ResultPath defaults to $"
    );

    let host = FakeHost::scripted(vec![err("Never")]);
    succeeded(host.run(&definition, json!({})).await);
    assert_eq!(host.call_times(), [0.0]);

    let host = FakeHost::scripted(vec![err("Unknown")]);
    assert_eq!(
        failed(host.run(&definition, json!({})).await),
        Failure::new("Unknown", "Unknown cause")
    );
}

#[tokio::test(start_paused = true)]
async fn max_delay_and_full_jitter_shape_the_backoff() {
    let definition = one_task(json!({
        "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 10, "BackoffRate": 3.0, "MaxDelaySeconds": 20,
                   "MaxAttempts": 3, "JitterStrategy": "FULL"}]
    }));
    let mut host = FakeHost::scripted(vec![err("E"), err("E"), err("E"), ok(json!(1))]);
    host.fraction = 0.25;
    succeeded(host.run(&definition, json!({})).await);
    // 10 s, 30 s -> 20 s, 90 s -> 20 s; each times 0.25.
    assert_eq!(host.call_times(), [0.0, 2.5, 7.5, 12.5]);
}

#[tokio::test(start_paused = true)]
async fn retry_count_is_in_the_context() {
    let definition = one_task(json!({
        "Parameters": {"retry.$": "$$.State.RetryCount", "entered.$": "$$.State.EnteredTime"},
        "Retry": [{"ErrorEquals": ["E"]}]
    }));
    let host = FakeHost::scripted(vec![err("E"), err("E"), ok(json!(1))]);
    succeeded(host.run(&definition, json!({})).await);
    let calls = host.calls.lock().unwrap();
    let seen: Vec<&Value> = calls.iter().map(|call| &call.input).collect();
    let entered = "2026-01-01T00:00:00.000Z";
    assert_eq!(
        seen,
        [
            &json!({"retry": 0, "entered": entered}),
            &json!({"retry": 1, "entered": entered}),
            &json!({"retry": 2, "entered": entered})
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn task_timeout_is_states_timeout_which_task_failed_does_not_match() {
    let slow = || Reply {
        after: Duration::seconds(30),
        result: Ok(json!("late")),
    };
    let definition = one_task(json!({
        "TimeoutSeconds": 10,
        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 5}],
        "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Caught"}]
    }));
    let host = FakeHost::scripted(vec![slow()]);
    let output = succeeded(host.run(&definition, json!({})).await);
    assert_eq!(output, json!({"error": {"Error": "States.Timeout"}}));
    assert_eq!(host.elapsed(), 10.0);
    assert_eq!(
        host.call_times(),
        [0.0],
        "States.TaskFailed does not retry a timeout"
    );

    let fast = Reply {
        after: Duration::seconds(9),
        result: Ok(json!("in time")),
    };
    let host = FakeHost::scripted(vec![fast]);
    assert_eq!(
        succeeded(host.run(&definition, json!({})).await),
        json!("in time")
    );

    let host = FakeHost::scripted(vec![err("Other"), ok(json!(2))]);
    assert_eq!(
        succeeded(host.run(&definition, json!({})).await),
        json!(2),
        "TaskFailed matches others"
    );
}

#[tokio::test(start_paused = true)]
async fn execution_timeout_stops_the_execution() {
    let definition = json!({"StartAt": "W", "TimeoutSeconds": 60, "States": {
        "W": {"Type": "Wait", "Seconds": 100, "End": true}
    }});
    let host = FakeHost::scripted(vec![]);
    assert_eq!(
        host.run(&definition.to_string(), json!({})).await,
        ExecutionOutcome::TimedOut
    );
    assert_eq!(host.elapsed(), 60.0);
    assert_eq!(
        host.events.lock().unwrap().last(),
        Some(&HistoryEvent::ExecutionTimedOut)
    );
}

#[tokio::test(start_paused = true)]
async fn runtime_errors_are_not_caught() {
    let definition = one_task(json!({
        "InputPath": "$.missing",
        "Retry": [{"ErrorEquals": ["States.ALL"]}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]
    }));
    let host = FakeHost::scripted(vec![]);
    let failure = failed(host.run(&definition, json!({})).await);
    assert_eq!(failure.error, "States.Runtime");
    assert!(failure.cause.unwrap().contains("$.missing"));
    assert!(host.call_times().is_empty());

    let definition = one_task(json!({"Parameters": {"a.$": "$.missing"}}));
    let host = FakeHost::scripted(vec![]);
    assert_eq!(
        failed(host.run(&definition, json!({})).await).error,
        "States.Runtime"
    );
}

/// The loop a task that retries on its own schedule runs: the task answers "retry at T", a
/// Choice sends the execution to a Wait until T, and the task runs again.
#[tokio::test(start_paused = true)]
async fn a_choice_and_wait_loop_retries_at_the_time_the_task_gives() {
    let definition = json!({"StartAt": "Run", "States": {
        "Run": {"Type": "Task", "Resource": "execute", "ResultPath": "$.result", "Next": "Decide"},
        "Decide": {"Type": "Choice", "Choices": [
            {"Variable": "$.result.next", "StringEquals": "retry", "Next": "WaitForRetry"},
            {"Variable": "$.result.next", "StringEquals": "done", "Next": "Done"}
        ], "Default": "Failed"},
        "WaitForRetry": {"Type": "Wait", "TimestampPath": "$.result.at", "Next": "Run"},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "TaskFailed"}
    }})
    .to_string();
    let host = FakeHost::scripted(vec![
        ok(json!({"next": "retry", "at": at(30)})),
        ok(json!({"next": "retry", "at": at(90)})),
        ok(json!({"next": "done"})),
    ]);
    let output = succeeded(host.run(&definition, json!({"id": "t"})).await);
    assert_eq!(output, json!({"id": "t", "result": {"next": "done"}}));
    assert_eq!(host.call_times(), [0.0, 30.0, 90.0]);
    assert_eq!(
        host.entered(),
        [
            "Run",
            "Decide",
            "WaitForRetry",
            "Run",
            "Decide",
            "WaitForRetry",
            "Run",
            "Decide",
            "Done"
        ]
    );

    let host = FakeHost::scripted(vec![ok(json!({"next": "give up"}))]);
    assert_eq!(
        failed(host.run(&definition, json!({})).await).error,
        "TaskFailed"
    );
}

fn tasks_input() -> Value {
    json!({"id": "task-1", "timestamp": at(10), "wakeAt": at(8), "series": 1})
}

#[tokio::test(start_paused = true)]
async fn the_service_machine_runs_wait_execute_complete() {
    let host = FakeHost::new(|resource, _, _| match resource {
        EXECUTE_TASK => ok(json!({"outcome": "DELIVERED"})),
        UPDATE_STATUS => ok(json!("COMPLETED")),
        other => panic!("unexpected resource {other}"),
    });
    let output = succeeded(host.run(TASKS, tasks_input()).await);
    let mut expected = tasks_input();
    expected["result"] = json!({"outcome": "DELIVERED"});
    expected["status"] = json!("COMPLETED");
    assert_eq!(output, expected);
    assert_eq!(
        host.entered(),
        [
            "Route",
            "WaitUntilWakeAt",
            "ExecuteTask",
            "Decide",
            "MarkCompleted"
        ]
    );
    assert_eq!(host.call_times(), [8.0, 8.0]);
    let calls = host.calls.lock().unwrap();
    assert_eq!(calls[0].input, tasks_input());
    let mut update = tasks_input();
    update["result"] = json!({"outcome": "DELIVERED"});
    assert_eq!(calls[1].input, update);
}

#[tokio::test(start_paused = true)]
async fn the_service_machine_retries_its_own_errors_for_a_minute_and_a_half_then_marks_failed() {
    let host = FakeHost::new(|resource, _, _| match resource {
        EXECUTE_TASK => err("StoreUnavailable"),
        UPDATE_STATUS => ok(json!("FAILED")),
        other => panic!("unexpected resource {other}"),
    });
    let failure = failed(host.run(TASKS, tasks_input()).await);
    assert_eq!(failure.error, "TaskFailed");
    // 2, 4, 8, 16, then 30 s apart (MaxDelaySeconds).
    assert_eq!(
        host.call_times(),
        [8.0, 10.0, 14.0, 22.0, 38.0, 68.0, 98.0, 98.0, 98.0]
    );
    assert_eq!(
        host.entered(),
        [
            "Route",
            "WaitUntilWakeAt",
            "ExecuteTask",
            "MarkFailed",
            "NotifyFailure",
            "TaskFailed"
        ]
    );
    let calls = host.calls.lock().unwrap();
    assert_eq!(calls[7].resource, UPDATE_STATUS);
    let mut update = tasks_input();
    update["error"] = json!({"Error": "StoreUnavailable", "Cause": "StoreUnavailable cause"});
    assert_eq!(calls[7].input, update);
}

/// A webhook's failure comes back as an outcome: RETRY loops through a Wait until retryAt with
/// the report beside the input, FAILED goes to MarkFailed with it.
#[tokio::test(start_paused = true)]
async fn the_service_machine_loops_on_retry_until_the_policy_says_failed() {
    let mut attempt = 0;
    let host = FakeHost::new(move |resource, _, _| match resource {
        EXECUTE_TASK => {
            attempt += 1;
            match attempt {
                1 => ok(json!({"outcome": "RETRY", "retryAt": at(12), "attempt": 1})),
                2 => ok(json!({"outcome": "RETRY", "retryAt": at(20), "attempt": 2})),
                _ => ok(json!({"outcome": "FAILED", "error": "WebhookRejected: HTTP 404"})),
            }
        }
        UPDATE_STATUS => ok(json!("FAILED")),
        other => panic!("unexpected resource {other}"),
    });
    let failure = failed(host.run(TASKS, tasks_input()).await);
    assert_eq!(failure.error, "TaskFailed");
    assert_eq!(host.call_times(), [8.0, 12.0, 20.0, 20.0, 20.0]);
    assert_eq!(
        host.entered(),
        [
            "Route",
            "WaitUntilWakeAt",
            "ExecuteTask",
            "Decide",
            "WaitForRetry",
            "ExecuteTask",
            "Decide",
            "WaitForRetry",
            "ExecuteTask",
            "Decide",
            "MarkFailed",
            "NotifyFailure",
            "TaskFailed"
        ]
    );
    let calls = host.calls.lock().unwrap();
    let mut second = tasks_input();
    second["result"] = json!({"outcome": "RETRY", "retryAt": at(12), "attempt": 1});
    assert_eq!(
        calls[1].input, second,
        "the next attempt sees the one before"
    );
    let mut update = tasks_input();
    update["result"] = json!({"outcome": "FAILED", "error": "WebhookRejected: HTTP 404"});
    assert_eq!(calls[3].input, update);
}

#[tokio::test(start_paused = true)]
async fn the_service_machine_sends_an_error_no_retry_can_cure_straight_to_mark_failed() {
    let host = FakeHost::new(|resource, _, _| match resource {
        EXECUTE_TASK => err("InvalidInput"),
        _ => ok(json!("FAILED")),
    });
    assert_eq!(
        failed(host.run(TASKS, tasks_input()).await).error,
        "TaskFailed"
    );
    // execute-task, update-status, then execute-task for the failure callback.
    assert_eq!(host.call_times(), [8.0, 8.0, 8.0]);
}

#[tokio::test(start_paused = true)]
async fn the_service_machine_fails_when_the_status_cannot_be_recorded() {
    // MarkCompleted retries StoreUnavailable 10 times (1, 2, 4, 8, 16, then 30 s apart) and has
    // no Catch.
    let host = FakeHost::new(|resource, _, _| match resource {
        EXECUTE_TASK => ok(json!({"outcome": "DELIVERED"})),
        _ => err("StoreUnavailable"),
    });
    assert_eq!(
        failed(host.run(TASKS, tasks_input()).await).error,
        "StoreUnavailable"
    );
    assert_eq!(
        host.call_times(),
        [8.0, 8.0, 9.0, 11.0, 15.0, 23.0, 39.0, 69.0, 99.0, 129.0, 159.0, 189.0]
    );
}

#[test]
fn an_execution_is_a_send_future() {
    fn send<T: Send>(_: &T) {}
    let machine = asl::StateMachine::parse(TASKS).unwrap();
    let host = FakeHost::scripted(vec![]);
    let context = asl::Context {
        execution_name: "e".into(),
        start_time: host::origin(),
    };
    send(&asl::execute(&machine, &host, json!({}), context));
}

/// A slot waits until its wakeAt and runs once; a task handed over with its attempt's report goes
/// on from the report (here a retry) without waiting for its wakeAt again.
#[tokio::test(start_paused = true)]
async fn the_service_machine_runs_a_slot_and_goes_on_from_a_hand_over() {
    let host = FakeHost::new(|resource, _, _| match resource {
        EXECUTE_TASK => ok(json!({"completed": 2})),
        other => panic!("unexpected resource {other}"),
    });
    let slot = json!({"slot": "slot-1", "wakeAt": at(8), "tasks": [tasks_input(), tasks_input()]});
    let output = succeeded(host.run(TASKS, slot.clone()).await);
    assert_eq!(output["summary"], json!({"completed": 2}));
    assert_eq!(host.entered(), ["Route", "WaitForSlot", "RunSlot"]);
    assert_eq!(host.call_times(), [8.0]);
    assert_eq!(host.calls.lock().unwrap()[0].input, slot);

    let host = FakeHost::new(|resource, _, _| match resource {
        EXECUTE_TASK => ok(json!({"outcome": "DELIVERED"})),
        UPDATE_STATUS => ok(json!("COMPLETED")),
        other => panic!("unexpected resource {other}"),
    });
    let mut hand_over = tasks_input();
    hand_over["result"] = json!({"outcome": "RETRY", "retryAt": at(14), "attempt": 1});
    succeeded(host.run(TASKS, hand_over).await);
    assert_eq!(
        host.entered(),
        [
            "Route",
            "Decide",
            "WaitForRetry",
            "ExecuteTask",
            "Decide",
            "MarkCompleted"
        ]
    );
    assert_eq!(host.call_times(), [14.0, 14.0]);
}
