//! The simulated deployment is the SAM template's: each function billed at the memory the template
//! gives it and ended at its timeout, and execute-task's concurrency reserved as the template's
//! default reserves it.

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
