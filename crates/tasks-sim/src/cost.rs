//! Cost per million tasks from a run's usage, at published us-east-1 prices (arm64 Lambda,
//! DynamoDB on-demand, Step Functions Standard, API Gateway REST, SQS standard). Free tiers and
//! CloudWatch (logs, metrics) are left out; the cron's EventBridge schedule is free.

use crate::usage::{Function, Usage};

pub const API_GATEWAY_PER_MILLION_REQUESTS: f64 = 3.50;
pub const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
pub const LAMBDA_PER_GB_SECOND: f64 = 0.000_013_333_4;
pub const STEP_FUNCTIONS_PER_THOUSAND_TRANSITIONS: f64 = 0.025;
pub const DYNAMODB_PER_MILLION_WRITE_UNITS: f64 = 0.625;
pub const DYNAMODB_PER_MILLION_READ_UNITS: f64 = 0.125;
pub const SQS_PER_MILLION_REQUESTS: f64 = 0.40;

/// One service's part of the bill: what was counted, per task, and dollars per million tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub service: &'static str,
    pub measure: String,
    pub per_million_tasks: f64,
}

/// The bill for `tasks` tasks, per service, then the total.
pub fn bill(usage: &Usage, tasks: u64) -> Vec<Line> {
    let tasks = tasks.max(1) as f64;
    let per_task = |n: f64| n / tasks;
    let scale = 1_000_000.0 / tasks;
    let calls = |prefix: &str| -> u64 {
        usage
            .calls
            .iter()
            .filter(|(api, _)| api.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    let api_requests = calls("apigateway.") as f64;
    let sqs_requests = calls("sqs.") as f64;
    let invocations: u64 = usage.functions.values().map(|f| f.invocations).sum();
    let gb_seconds: f64 = usage
        .functions
        .values()
        .map(|f| f.mb_ms as f64 / 1024.0 / 1000.0)
        .sum();
    let read_units = usage.read_half_units as f64 / 2.0;
    let lambda_detail: Vec<String> = Function::ALL
        .iter()
        .filter_map(|function| {
            let used = usage.functions.get(function)?;
            Some(format!(
                "{} {:.2} ({:.0} ms at {} MB)",
                function.name(),
                per_task(used.invocations as f64),
                used.mb_ms as f64 / function.memory_mb() as f64 / used.invocations.max(1) as f64,
                function.memory_mb()
            ))
        })
        .collect();
    let mut lines = vec![
        Line {
            service: "API Gateway",
            measure: format!("{:.2} requests", per_task(api_requests)),
            per_million_tasks: api_requests * scale * API_GATEWAY_PER_MILLION_REQUESTS / 1e6,
        },
        Line {
            service: "Lambda",
            measure: format!(
                "{:.2} invocations: {}",
                per_task(invocations as f64),
                lambda_detail.join(", ")
            ),
            per_million_tasks: (invocations as f64 * LAMBDA_PER_MILLION_REQUESTS / 1e6
                + gb_seconds * LAMBDA_PER_GB_SECOND)
                * scale,
        },
        Line {
            service: "Step Functions",
            measure: format!(
                "{:.2} state transitions",
                per_task(usage.state_transitions as f64)
            ),
            per_million_tasks: usage.state_transitions as f64
                * scale
                * STEP_FUNCTIONS_PER_THOUSAND_TRANSITIONS
                / 1000.0,
        },
        Line {
            service: "DynamoDB",
            measure: format!(
                "{:.2} write units, {:.2} read units",
                per_task(usage.write_units as f64),
                per_task(read_units)
            ),
            per_million_tasks: (usage.write_units as f64 * DYNAMODB_PER_MILLION_WRITE_UNITS
                + read_units * DYNAMODB_PER_MILLION_READ_UNITS)
                / 1e6
                * scale,
        },
        Line {
            service: "SQS",
            measure: format!("{:.2} requests", per_task(sqs_requests)),
            per_million_tasks: sqs_requests * scale * SQS_PER_MILLION_REQUESTS / 1e6,
        },
    ];
    let total = lines.iter().map(|line| line.per_million_tasks).sum();
    lines.push(Line {
        service: "total",
        measure: String::new(),
        per_million_tasks: total,
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::FunctionUsage;

    #[test]
    fn each_service_is_priced_per_million_tasks() {
        let mut usage = Usage::default();
        usage.calls.insert("apigateway.request", 2_000_000);
        usage.calls.insert("sqs.SendMessageBatch", 500_000);
        usage.state_transitions = 4_000_000;
        usage.write_units = 10_000_000;
        usage.read_half_units = 4_000_000;
        usage.functions.insert(
            Function::ExecuteTask,
            FunctionUsage {
                invocations: 1_000_000,
                // One second at 1,024 MB each: a million GB-seconds.
                mb_ms: 1_000_000 * 1024 * 1000,
                peak_concurrency: 1,
            },
        );
        let bill = bill(&usage, 1_000_000);
        let dollars = |service: &str| {
            bill.iter()
                .find(|line| line.service == service)
                .map(|line| (line.per_million_tasks * 100.0).round() / 100.0)
                .unwrap()
        };
        assert_eq!(dollars("API Gateway"), 7.0);
        assert_eq!(dollars("SQS"), 0.2);
        assert_eq!(dollars("Step Functions"), 100.0);
        // 10 M write units, 2 M read units.
        assert_eq!(dollars("DynamoDB"), 6.5);
        // $0.20 of requests and $13.33 of GB-seconds.
        assert_eq!(dollars("Lambda"), 13.53);
        assert_eq!(dollars("total"), 127.23);
        // Twice the tasks for the same usage: half the price per million.
        assert_eq!(
            super::bill(&usage, 2_000_000)
                .last()
                .unwrap()
                .per_million_tasks,
            bill.last().unwrap().per_million_tasks / 2.0
        );
    }
}
