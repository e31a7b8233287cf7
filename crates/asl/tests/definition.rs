//! What the parser accepts and refuses.

use asl::StateMachine;
use serde_json::{json, Value};

const TASKS: &str = include_str!("../../../state-machine/tasks.asl.json");

fn parse(definition: Value) -> Result<StateMachine, asl::DefinitionError> {
    StateMachine::parse(&definition.to_string())
}

fn refused(definition: Value, expected: &str) {
    let error = parse(definition.clone()).expect_err(&definition.to_string());
    assert!(
        error.to_string().contains(expected),
        "{error} does not say {expected:?}"
    );
}

fn machine(states: Value) -> Value {
    json!({"StartAt": "A", "States": states})
}

#[test]
fn the_service_state_machine_parses() {
    let machine = StateMachine::parse(TASKS).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(machine.start_at(), "Route");
    assert_eq!(
        machine.state_names().collect::<Vec<_>>(),
        [
            "Decide",
            "ExecuteTask",
            "MarkCompleted",
            "MarkFailed",
            "NotifyFailure",
            "Route",
            "RunSlot",
            "TaskFailed",
            "WaitForRetry",
            "WaitForSlot",
            "WaitUntilWakeAt"
        ]
    );
    assert_eq!(
        machine.task_resources(),
        ["${ExecuteTaskFunctionArn}", "${UpdateStatusFunctionArn}"]
    );
    assert_eq!(machine.timeout_seconds(), None);
}

#[test]
fn accepts_every_supported_field() {
    let definition = json!({
        "Comment": "all of it",
        "StartAt": "A",
        "TimeoutSeconds": 60,
        "States": {
            "A": {"Type": "Pass", "Comment": "c", "Result": null, "Parameters": {"a.$": "$.a", "b": [1]},
                  "InputPath": null, "ResultPath": "$.r", "OutputPath": "$", "Next": "B"},
            "B": {"Type": "Wait", "SecondsPath": "$.s", "InputPath": "$", "OutputPath": null, "Next": "C"},
            "C": {"Type": "Task", "Resource": "r", "Parameters": {"x": 1}, "InputPath": "$",
                  "ResultSelector": {"y.$": "$.y"}, "ResultPath": null, "OutputPath": "$",
                  "TimeoutSeconds": 5,
                  "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 2, "MaxAttempts": 0,
                             "BackoffRate": 1.5, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"},
                            {"ErrorEquals": ["States.ALL"], "JitterStrategy": "NONE"}],
                  "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.e", "Next": "E"},
                            {"ErrorEquals": ["States.ALL"], "Next": "F"}],
                  "Next": "D"},
            "D": {"Type": "Choice", "InputPath": "$", "OutputPath": "$",
                  "Choices": [{"Variable": "$.a", "IsPresent": true, "Next": "E"}], "Default": "F"},
            "E": {"Type": "Succeed", "InputPath": "$", "OutputPath": "$"},
            "F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}
        }
    });
    parse(definition).unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn refuses_broken_graphs() {
    let end = json!({"Type": "Succeed"});
    refused(json!({"StartAt": "X", "States": {"A": end}}), "StartAt");
    refused(
        machine(json!({"A": {"Type": "Pass", "Next": "Z"}})),
        "\"Z\"",
    );
    refused(
        machine(json!({"A": {"Type": "Pass"}})),
        "exactly one of Next",
    );
    refused(
        machine(json!({"A": {"Type": "Pass", "Next": "B", "End": true}, "B": end})),
        "exactly one of Next",
    );
    refused(
        machine(json!({"A": {"Type": "Pass", "End": false}})),
        "exactly one of Next",
    );
    refused(
        machine(json!({"A": {"Type": "Pass", "End": true}, "B": end})),
        "B: no state leads to it",
    );
    refused(
        machine(json!({"A": {"Type": "Choice", "Choices": [], "Default": "A"}})),
        "Choices",
    );
    refused(
        machine(
            json!({"A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "B"}], "Default": "Y"}, "B": end}),
        ),
        "\"Y\"",
    );
    refused(
        machine(
            json!({"A": {"Type": "Task", "Resource": "r", "End": true, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Q"}]}}),
        ),
        "\"Q\"",
    );
    refused(
        machine(json!({"A": {"Type": "Succeed", "Next": "A"}})),
        "unknown field `Next`",
    );
}

#[test]
fn refuses_what_it_does_not_implement() {
    refused(
        machine(json!({"A": {"Type": "Map", "End": true}})),
        "unknown variant `Map`",
    );
    refused(
        machine(json!({"A": {"Type": "Parallel", "End": true}})),
        "unknown variant `Parallel`",
    );
    refused(
        machine(
            json!({"A": {"Type": "Task", "Resource": "r", "HeartbeatSeconds": 5, "End": true}}),
        ),
        "unknown field `HeartbeatSeconds`",
    );
    refused(
        machine(
            json!({"A": {"Type": "Task", "Resource": "r", "TimeoutSecondsPath": "$.t", "End": true}}),
        ),
        "unknown field `TimeoutSecondsPath`",
    );
    refused(
        machine(
            json!({"A": {"Type": "Pass", "Parameters": {"a.$": "States.Format('{}', $.x)"}, "End": true}}),
        ),
        "intrinsic",
    );
    refused(
        machine(json!({"A": {"Type": "Pass", "InputPath": "$.a[*]", "End": true}})),
        "JSONPath",
    );
    refused(
        machine(json!({"A": {"Type": "Pass", "ResultPath": "$.a[0]", "End": true}})),
        "ResultPath",
    );
    refused(
        machine(json!({"A": {"Type": "Pass", "ResultPath": "$$.a", "End": true}})),
        "ResultPath",
    );
    refused(
        machine(
            json!({"A": {"Type": "Choice", "Choices": [{"Variable": "$.a", "StringMatches": "x*", "Next": "A"}]}}),
        ),
        "StringMatches",
    );
    refused(
        json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}, "Version": "1.0"}),
        "unknown field `Version`",
    );
    refused(
        json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}, "QueryLanguage": "JSONata"}),
        "QueryLanguage",
    );
}

#[test]
fn refuses_bad_values() {
    let task = |extra: Value| {
        let mut state = json!({"Type": "Task", "Resource": "r", "End": true});
        state
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        machine(json!({"A": state}))
    };
    refused(task(json!({"TimeoutSeconds": 0})), "TimeoutSeconds");
    refused(
        task(json!({"Retry": [{"ErrorEquals": []}]})),
        "ErrorEquals is empty",
    );
    refused(
        task(json!({"Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 0}]})),
        "IntervalSeconds",
    );
    refused(
        task(json!({"Retry": [{"ErrorEquals": ["E"], "BackoffRate": 0.5}]})),
        "BackoffRate",
    );
    refused(
        task(json!({"Retry": [{"ErrorEquals": ["E"], "MaxDelaySeconds": 0}]})),
        "MaxDelaySeconds",
    );
    refused(
        task(json!({"Retry": [{"ErrorEquals": ["E"], "JitterStrategy": "HALF"}]})),
        "HALF",
    );
    refused(
        task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}]})),
        "States.ALL must be alone",
    );
    refused(
        task(json!({"Catch": [{"ErrorEquals": ["States.ALL", "E"], "Next": "A"}]})),
        "States.ALL must be alone",
    );
    refused(
        machine(json!({"A": {"Type": "Wait", "End": true}})),
        "exactly one of Seconds",
    );
    refused(
        machine(json!({"A": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": true}})),
        "exactly one of Seconds",
    );
    refused(
        machine(json!({"A": {"Type": "Wait", "Seconds": -1, "End": true}})),
        "invalid value",
    );
    refused(
        machine(json!({"A": {"Type": "Wait", "Timestamp": "2026-01-01 00:00:00Z", "End": true}})),
        "RFC 3339",
    );
    refused(
        machine(json!({"A": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}})),
        "Error and ErrorPath",
    );
    refused(
        json!({"StartAt": "A", "TimeoutSeconds": 0, "States": {"A": {"Type": "Succeed"}}}),
        "TimeoutSeconds",
    );
    let error = StateMachine::parse("{\"StartAt\": ").unwrap_err();
    assert_eq!(error.at, "definition", "{error}");
}
