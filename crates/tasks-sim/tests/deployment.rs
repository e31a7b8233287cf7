//! The simulated deployment is the SAM template's: each function billed at the memory the template
//! gives it and ended at its timeout, execute-task's concurrency reserved as the template's
//! default reserves it, and the clients' requests throttled by the stage as the template's defaults
//! throttle them.

use tasks_sim::quotas::Quotas;
use tasks_sim::usage::Function;

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

#[test]
fn each_function_is_billed_at_the_template_s_memory_size() {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML");
    for function in Function::ALL {
        let memory = &template["Resources"][function.resource()]["Properties"]["MemorySize"];
        assert_eq!(
            memory.as_u64(),
            Some(function.memory_mb()),
            "{}",
            function.resource()
        );
    }
}

#[test]
fn each_function_runs_with_the_template_s_timeout() {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML");
    for function in Function::ALL {
        let timeout = &template["Resources"][function.resource()]["Properties"]["Timeout"];
        assert_eq!(
            timeout.as_u64(),
            Some(function.timeout().as_secs()),
            "{}",
            function.resource()
        );
    }
}

#[test]
fn execute_task_s_reservation_is_the_template_s_default() {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML");
    let default = &template["Parameters"]["ExecuteTaskReservedConcurrency"]["Default"];
    assert_eq!(
        default.as_u64(),
        Some(Quotas::DEFAULT.execute_task_reserved as u64)
    );
}

#[test]
fn the_stage_throttle_is_the_template_s_default() {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML");
    let default = |name: &str| template["Parameters"][name]["Default"].as_f64();
    let stage = Quotas::DEFAULT.stage_requests;
    assert_eq!(default("ApiThrottleRate"), Some(stage.per_second));
    assert_eq!(default("ApiThrottleBurst"), Some(stage.burst));
}

/// The month's bill prices the stack the template deploys: its retention, its log retention, the
/// metrics its alarms watch, its dashboard and its secret.
#[test]
fn the_bill_s_stack_is_the_template_s() {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML");
    let deployment = tasks_sim::cost::Deployment::template_defaults();
    let default = |name: &str| template["Parameters"][name]["Default"].as_f64();
    assert_eq!(default("RetentionDays"), Some(deployment.retention_days));
    assert_eq!(
        default("LogRetentionDays"),
        Some(deployment.log_retention_days)
    );
    assert_eq!(
        template["Parameters"]["SigningSecretNames"]["Default"].as_str(),
        Some(""),
        "the deployment's own signing secret is its only one"
    );
    let resources = template["Resources"].as_mapping().unwrap();
    let of_type = |kind: &'static str| {
        resources
            .values()
            .filter(move |resource| resource["Type"].as_str() == Some(kind))
    };
    let alarm_metrics: usize = of_type("AWS::CloudWatch::Alarm")
        .map(|alarm| match alarm["Properties"]["Metrics"].as_sequence() {
            Some(metrics) => metrics
                .iter()
                .filter(|metric| !metric["MetricStat"].is_null())
                .count(),
            None => 1,
        })
        .sum();
    assert_eq!(alarm_metrics as u32, deployment.alarm_metrics);
    assert_eq!(
        of_type("AWS::CloudWatch::Dashboard").count() as u32,
        deployment.dashboards
    );
    assert_eq!(
        of_type("AWS::SecretsManager::Secret").count() as u32,
        deployment.secrets
    );
}
