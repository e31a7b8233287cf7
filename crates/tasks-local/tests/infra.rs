//! The SAM template, the state machine and the code agree.

use serde_yaml_ng::Value;
use std::collections::BTreeSet;

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");
const STATE_MACHINE: &str = include_str!("../../../state-machine/tasks.asl.json");

/// Each Lambda binary and the environment its `main` reads (`tasks_core::config::FUNCTIONS`).
fn functions() -> Vec<(&'static str, Vec<&'static str>)> {
    tasks_core::config::FUNCTIONS
        .iter()
        .map(|environment| (environment.function, environment.variables()))
        .collect()
}

fn template() -> Value {
    serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML")
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_mapping()
        .map(|map| {
            map.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn serverless_functions(template: &Value) -> Vec<(String, Value)> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, resource)| (name.as_str().unwrap().to_string(), resource.clone()))
        .collect()
}

#[test]
fn every_lambda_binary_is_a_function_of_the_template_and_nothing_else() {
    let template = template();
    let binaries: BTreeSet<String> = serverless_functions(&template)
        .iter()
        .map(|(_, resource)| {
            assert_eq!(
                resource["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda")
            );
            resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("BuildProperties.Binary")
                .to_string()
        })
        .collect();
    let expected: BTreeSet<String> = functions().iter().map(|(bin, _)| bin.to_string()).collect();
    assert_eq!(binaries, expected);
    for binary in &binaries {
        let main = format!("{}/../{binary}/src/main.rs", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&main).is_file(), "{main} is missing");
    }
}

#[test]
fn every_variable_a_function_reads_is_set_for_it() {
    let template = template();
    let globals = keys(&template["Globals"]["Function"]["Environment"]["Variables"]);
    for (name, resource) in serverless_functions(&template) {
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        let own = keys(&resource["Properties"]["Environment"]["Variables"]);
        let (_, reads) = functions()
            .into_iter()
            .find(|(bin, _)| *bin == binary)
            .unwrap();
        for variable in reads {
            assert!(
                globals.contains(variable) || own.contains(variable),
                "{name} ({binary}) reads {variable}, which the template does not set"
            );
        }
    }
}

#[test]
fn every_state_machine_substitution_is_defined_by_the_template() {
    let template = template();
    let machine = template["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::Serverless::StateMachine"))
        .expect("a state machine resource");
    assert_eq!(machine["Properties"]["Type"].as_str(), Some("STANDARD"));
    assert_eq!(
        machine["Properties"]["DefinitionUri"].as_str(),
        Some("../state-machine/tasks.asl.json")
    );
    let defined = keys(&machine["Properties"]["DefinitionSubstitutions"]);
    let used: BTreeSet<String> = STATE_MACHINE
        .split("${")
        .skip(1)
        .map(|rest| rest.split('}').next().unwrap().to_string())
        .collect();
    assert!(!used.is_empty());
    assert_eq!(used, defined);
}

/// The template's timings (defaults of its parameters, the queue, the functions' timeouts) fit
/// the relations `tasks_core::timing` states.
#[test]
fn the_template_timings_fit_together() {
    let template = template();
    let number = |value: &Value, what: &str| -> i64 {
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            .unwrap_or_else(|| panic!("{what} is not a number: {value:?}"))
    };
    let bound = |name: &str, bound: &str| number(&template["Parameters"][name][bound], name);
    let resource = |name: &str| &template["Resources"][name]["Properties"];
    let seconds = chrono::Duration::seconds;
    let queue = resource("TasksQueue");
    let cron_rate = resource("CronFunction")["Events"]["EveryMinute"]["Properties"]["Schedule"]
        .as_str()
        .unwrap();
    assert_eq!(cron_rate, "rate(1 minute)");
    // Each timing parameter at its default, or at one of the bounds the template allows.
    let timings_at = |at: &dyn Fn(&str) -> &'static str| tasks_core::rules::timing::Timings {
        pacing: tasks_core::Pacing {
            lead_time: seconds(bound("LeadTimeSeconds", at("LeadTimeSeconds"))),
            wake_ahead: chrono::Duration::milliseconds(bound("WakeAheadMs", at("WakeAheadMs"))),
            claim_grace: seconds(bound("ClaimGraceSeconds", at("ClaimGraceSeconds"))),
            stuck_after: seconds(bound("StuckAfterSeconds", at("StuckAfterSeconds"))),
            start_rate: bound("StartRatePerSecond", "Default") as u32,
        },
        cron_period: seconds(60),
        visibility_timeout: seconds(number(&queue["VisibilityTimeout"], "VisibilityTimeout")),
        max_receive_count: number(
            &queue["RedrivePolicy"]["maxReceiveCount"],
            "maxReceiveCount",
        ) as u32,
        start_timeout: seconds(number(
            &resource("ProcessSqsRecordsFunction")["Timeout"],
            "process-sqs-records Timeout",
        )),
        execute_timeout: seconds(number(
            &resource("ExecuteTaskFunction")["Timeout"],
            "execute-task Timeout",
        )),
        update_timeout: seconds(number(
            &resource("UpdateStatusFunction")["Timeout"],
            "update-status Timeout",
        )),
        webhook_timeout: chrono::Duration::milliseconds(number(
            &resource("ExecuteTaskFunction")["Environment"]["Variables"]["WEBHOOK_TIMEOUT_MS"],
            "WEBHOOK_TIMEOUT_MS",
        )),
    };
    let timings = timings_at(&|_| "Default");
    assert_eq!(timings.violations(), Vec::<String>::new());
    // The relations are monotone in each parameter: they hold for every setting the template
    // allows if they hold at every corner of the allowed ranges.
    let bounded = [
        "LeadTimeSeconds",
        "WakeAheadMs",
        "ClaimGraceSeconds",
        "StuckAfterSeconds",
    ];
    for corner in 0..1u32 << bounded.len() {
        let at = |name: &str| {
            let index = bounded.iter().position(|bounded| *bounded == name).unwrap();
            if corner & (1 << index) == 0 {
                "MinValue"
            } else {
                "MaxValue"
            }
        };
        let broken = timings_at(&at).violations();
        let setting: Vec<String> = bounded
            .iter()
            .map(|name| format!("{name} at its {}", at(name)))
            .collect();
        assert_eq!(broken, Vec::<String>::new(), "{}", setting.join(", "));
    }
    assert_eq!(
        timings.visibility_timeout,
        tasks_core::rules::timing::QUEUE_VISIBILITY_TIMEOUT,
        "local mode's queue times out as the deployed one"
    );
    assert_eq!(
        timings.max_receive_count,
        tasks_core::rules::timing::QUEUE_MAX_RECEIVE_COUNT
    );
    assert_eq!(
        timings.pacing,
        tasks_core::Pacing::default(),
        "the template's defaults are the code's"
    );
}

/// The secret Secrets Manager generates is what execute-task reads: characters of the base64
/// alphabet only (all punctuation but `+` and `/` excluded), a length that decodes to 24..=64 bytes.
#[test]
fn the_generated_signing_secret_is_base64_execute_task_accepts() {
    let template = template();
    let generate =
        &template["Resources"]["WebhookSigningSecret"]["Properties"]["GenerateSecretString"];
    let length = generate["PasswordLength"].as_u64().unwrap() as usize;
    let excluded = generate["ExcludeCharacters"].as_str().unwrap();
    // Secrets Manager's punctuation set.
    let kept: String = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##
        .chars()
        .filter(|c| !excluded.contains(*c))
        .collect();
    assert_eq!(kept, "+/");
    assert_eq!(length % 4, 0, "no padding needed");
    assert!((24..=64).contains(&(length / 4 * 3)));
    let example: String = "Ab9+/".chars().cycle().take(length).collect();
    assert!(execute_task::signing::SigningKeys::parse(&example).is_ok());
}

/// The name a `!Ref` gives, if `value` is one.
fn reference(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => None,
    }
}

/// What an emulator that runs the functions on its host needs (`make deploy-local`), set by
/// parameters whose defaults are what AWS gets: the architecture, webhooks to private addresses
/// (off), and the metric-math alarms (on), which nothing references unless they exist.
#[test]
fn an_emulator_gets_its_host_architecture_private_receivers_and_no_metric_math() {
    let template = template();
    let parameters = &template["Parameters"];
    for (name, default) in [
        ("Architecture", "arm64"),
        ("WebhookAllowPrivate", "false"),
        ("MetricMathAlarms", "true"),
    ] {
        assert_eq!(
            parameters[name]["Default"].as_str(),
            Some(default),
            "{name}"
        );
    }
    assert_eq!(
        reference(&template["Globals"]["Function"]["Architectures"][0]),
        Some("Architecture")
    );
    let execute_task = &template["Resources"]["ExecuteTaskFunction"]["Properties"];
    assert_eq!(
        reference(&execute_task["Environment"]["Variables"]["WEBHOOK_ALLOW_PRIVATE"]),
        Some("WebhookAllowPrivate")
    );
    let resources = template["Resources"].as_mapping().unwrap();
    let with_math: BTreeSet<&str> = resources
        .iter()
        .filter(|(_, resource)| !resource["Properties"]["Metrics"].is_null())
        .map(|(name, resource)| {
            assert_eq!(
                resource["Condition"].as_str(),
                Some("HasMetricMathAlarms"),
                "{name:?}"
            );
            name.as_str().unwrap()
        })
        .collect();
    assert_eq!(
        with_math,
        BTreeSet::from(["CronErrorsAlarm", "FailedRateAlarm"])
    );
    // Referenced only inside the branch of an `!If` on the same condition.
    let dashboard = serde_yaml_ng::to_string(&template["Resources"]["Dashboard"]).unwrap();
    for alarm in &with_math {
        assert_eq!(dashboard.matches(alarm).count(), 1, "{dashboard}");
    }
    assert!(dashboard.contains("HasMetricMathAlarms"), "{dashboard}");
}

/// API Gateway's own answers (a bad key, an unknown route, throttling, its 4xx and 5xx) are in the
/// service's `{"error": {"code", "message", "requestId"}}` shape, with the status a client expects.
#[test]
fn the_gateway_answers_in_the_service_s_error_shape() {
    let template = template();
    let responses = &template["Resources"]["Api"]["Properties"]["GatewayResponses"];
    let mut seen = BTreeSet::new();
    for (kind, response) in responses.as_mapping().unwrap() {
        let kind = kind.as_str().unwrap();
        let body = response["ResponseTemplates"]["application/json"]
            .as_str()
            .unwrap()
            .replace("$context.error.messageString", r#""the gateway's message""#)
            .replace("$context.requestId", "request-1");
        let body: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("{kind}: not JSON once filled in: {error}"));
        let error = &body["error"];
        for field in ["code", "message"] {
            assert!(
                error[field].as_str().is_some_and(|v| !v.is_empty()),
                "{kind}: {body}"
            );
        }
        assert_eq!(error["requestId"], "request-1", "{kind}");
        let status = response["StatusCode"].as_str();
        let expected = match kind {
            "INVALID_API_KEY" => Some("403"),
            "MISSING_AUTHENTICATION_TOKEN" => Some("404"),
            "THROTTLED" | "QUOTA_EXCEEDED" => Some("429"),
            _ => None,
        };
        assert_eq!(status, expected, "{kind}");
        seen.insert(kind.to_string());
    }
    let expected = [
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "INVALID_API_KEY",
        "MISSING_AUTHENTICATION_TOKEN",
        "QUOTA_EXCEEDED",
        "THROTTLED",
    ];
    assert_eq!(seen, expected.iter().map(|k| k.to_string()).collect());
}

/// Data with a lifetime: finished tasks carry `expiresAt` (`RetentionDays` after they finished,
/// 30 by default, read by every function's store) and the table's TTL deletes them.
#[test]
fn finished_tasks_expire_through_the_table_s_ttl() {
    let template = template();
    let retention = &template["Parameters"]["RetentionDays"];
    assert_eq!(retention["Default"].as_u64(), Some(30));
    assert_eq!(
        reference(&template["Globals"]["Function"]["Environment"]["Variables"]["RETENTION_DAYS"]),
        Some("RetentionDays")
    );
    let ttl = &template["Resources"]["TasksTable"]["Properties"]["TimeToLiveSpecification"];
    assert_eq!(ttl["AttributeName"].as_str(), Some("expiresAt"));
    assert_eq!(ttl["Enabled"].as_bool(), Some(true));
}

/// The alarms and the dashboard watch only metrics a handler publishes: a renamed metric would
/// leave an alarm that never fires.
#[test]
fn the_alarms_and_the_dashboard_watch_published_metrics() {
    use tasks_core::metrics::{is_cataloged, CATALOG, NAMESPACE};
    let template = template();
    let handler_of = |resource: &str| match resource {
        "ApiFunction" => "api",
        "CronFunction" => "cron",
        "ProcessSqsRecordsFunction" => "process-sqs-records",
        "ExecuteTaskFunction" => "execute-task",
        "UpdateStatusFunction" => "update-status",
        other => panic!("a metric dimension names {other}, not a function"),
    };
    let mut watched = BTreeSet::new();
    let mut note = |metric: &Value| {
        if metric["Namespace"].as_str() != Some(NAMESPACE) {
            return;
        }
        let function = &metric["Dimensions"][0];
        assert_eq!(
            function["Name"].as_str(),
            Some("FunctionName"),
            "{metric:?}"
        );
        let handler = handler_of(reference(&function["Value"]).expect("a function reference"));
        watched.insert((handler, metric["MetricName"].as_str().unwrap().to_string()));
    };
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let properties = &resource["Properties"];
        match properties["Metrics"].as_sequence() {
            Some(metrics) => metrics
                .iter()
                .filter(|m| !m["MetricStat"].is_null())
                .for_each(|m| note(&m["MetricStat"]["Metric"])),
            None => note(properties),
        }
    }
    let dashboard = serde_yaml_ng::to_string(&template["Resources"]["Dashboard"]).unwrap();
    let pattern = format!("[\"{NAMESPACE}\", \"");
    for (at, _) in dashboard.match_indices(&pattern) {
        let fields: Vec<&str> = dashboard[at + 1..]
            .split(',')
            .take(4)
            .map(|field| field.trim().trim_matches('"'))
            .collect();
        let resource = fields[3].trim_start_matches("${").trim_end_matches('}');
        watched.insert((handler_of(resource), fields[1].to_string()));
    }
    assert!(watched.len() > 10, "{watched:?}");
    for (handler, metric) in &watched {
        assert!(
            is_cataloged(handler, metric),
            "{handler} does not publish {metric} (metrics::CATALOG: {CATALOG:?})"
        );
    }
}
