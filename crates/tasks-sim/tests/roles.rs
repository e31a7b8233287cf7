//! Every AWS call a function makes is allowed by its role in the template. The simulator runs
//! each function's handler (the same code the Lambda binaries run) through every path its
//! faults open, and counts each AWS API a handler called; each must be an action of an Allow
//! statement in that function's `Policies`.

use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use tasks_sim::usage::Function;
use tasks_sim::{simulate, Faults, Scenario};

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// The IAM action that authorizes a call the simulator counts (`service.Action`). A batch call
/// is authorized by its single action.
fn iam_action(api: &str) -> String {
    let (service, action) = api.split_once('.').expect("service.Action");
    let service = match service {
        "stepfunctions" => "states",
        other => other,
    };
    let action = match (service, action) {
        ("sqs", "SendMessageBatch") => "SendMessage",
        ("sqs", "DeleteMessageBatch") => "DeleteMessage",
        _ => action,
    };
    format!("{service}:{action}")
}

/// The actions each function's inline policies allow.
fn allowed_actions() -> BTreeMap<String, BTreeSet<String>> {
    let template: Value = serde_yaml_ng::from_str(TEMPLATE).expect("the template is YAML");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut allowed = BTreeMap::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let mut actions = BTreeSet::new();
        for policy in resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for statement in policy["Statement"].as_sequence().into_iter().flatten() {
                if statement["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                match &statement["Action"] {
                    Value::String(action) => {
                        actions.insert(action.clone());
                    }
                    Value::Sequence(list) => {
                        actions.extend(list.iter().filter_map(|a| a.as_str().map(str::to_string)));
                    }
                    _ => {}
                }
            }
        }
        allowed.insert(name.as_str().expect("a logical id").to_string(), actions);
    }
    allowed
}

#[test]
fn every_aws_call_a_function_makes_is_allowed_by_its_role() {
    let allowed = allowed_actions();
    // Faults well above the realistic rates, so that the rare paths (recoveries, restarts,
    // hand-overs, callbacks) are taken too.
    let faults = Faults {
        store_error: 0.1,
        lambda_answer_lost: 0.1,
        lambda_crash_after: 0.05,
        webhook_error: 0.3,
        ..Faults::realistic()
    };
    let mut calls: BTreeSet<(Function, &'static str)> = BTreeSet::new();
    for seed in 1..=3 {
        let outcome = simulate(
            seed,
            Scenario {
                tasks: 150,
                faults,
                ..Scenario::standard()
            },
        );
        calls.extend(outcome.calls_by_function);
    }
    let functions: BTreeSet<Function> = calls.iter().map(|(function, _)| *function).collect();
    assert_eq!(
        functions,
        Function::ALL.into_iter().collect(),
        "every function's calls were seen"
    );
    let mut refused = Vec::new();
    for (function, api) in &calls {
        let actions = allowed
            .get(function.resource())
            .unwrap_or_else(|| panic!("{} is not in the template", function.resource()));
        if !actions.contains(&iam_action(api)) {
            refused.push(format!("{} calls {api}", function.name()));
        }
    }
    assert!(
        refused.is_empty(),
        "not allowed by the role: {refused:?} (calls seen: {calls:?})"
    );
}
