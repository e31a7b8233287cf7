//! The simulated deployment bills each function at the memory the SAM template gives it.

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
