//! Cost per million tasks from a run's usage, at published us-east-1 prices (arm64 Lambda,
//! DynamoDB on-demand, Step Functions Standard, API Gateway REST, SQS standard), and the month's
//! bill ([`monthly`]): those per task, plus the logs each task writes, and what the stack costs
//! whatever it runs (the cron's idle runs, storage at the retention and its backup, custom
//! metrics, alarms, the dashboard, the signing secret). Free tiers are left out; the cron's
//! EventBridge schedule is free.

use crate::usage::{Function, Usage};

pub const API_GATEWAY_PER_MILLION_REQUESTS: f64 = 3.50;
pub const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
pub const LAMBDA_PER_GB_SECOND: f64 = 0.000_013_333_4;
pub const STEP_FUNCTIONS_PER_THOUSAND_TRANSITIONS: f64 = 0.025;
pub const DYNAMODB_PER_MILLION_WRITE_UNITS: f64 = 0.625;
pub const DYNAMODB_PER_MILLION_READ_UNITS: f64 = 0.125;
pub const SQS_PER_MILLION_REQUESTS: f64 = 0.40;
pub const LOGS_PER_GB_INGESTED: f64 = 0.50;
pub const LOGS_PER_GB_MONTH_STORED: f64 = 0.03;
pub const DYNAMODB_PER_GB_MONTH_STORED: f64 = 0.25;
pub const DYNAMODB_BACKUP_PER_GB_MONTH: f64 = 0.20;
pub const CUSTOM_METRIC_PER_MONTH: f64 = 0.30;
pub const ALARM_METRIC_PER_MONTH: f64 = 0.10;
pub const DASHBOARD_PER_MONTH: f64 = 3.00;
pub const SECRET_PER_MONTH: f64 = 0.40;

const GB: f64 = 1024.0 * 1024.0 * 1024.0;
const DAYS_PER_MONTH: f64 = 30.0;
/// The cron runs every minute.
const CRON_RUNS_PER_MONTH: f64 = DAYS_PER_MONTH * 24.0 * 60.0;
/// DynamoDB's per-item overhead in storage, in the table and again in each index.
const ITEM_OVERHEAD_BYTES: f64 = 100.0;

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

/// The stack as the template deploys it by default, for the month's bill (a test checks each
/// figure against the template and the code).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deployment {
    /// Days a finished task is kept (`RetentionDays`).
    pub retention_days: f64,
    /// Days the functions' logs are kept (`LogRetentionDays`).
    pub log_retention_days: f64,
    /// Metrics the alarms watch (a metric-math alarm is billed for each of its metrics).
    pub alarm_metrics: u32,
    /// Custom metrics the functions publish (`tasks_core::metrics::CATALOG`).
    pub custom_metrics: u32,
    pub dashboards: u32,
    /// The deployment's signing secret; `SigningSecretNames` adds one each.
    pub secrets: u32,
}

impl Deployment {
    pub fn template_defaults() -> Self {
        Deployment {
            retention_days: 30.0,
            log_retention_days: 14.0,
            alarm_metrics: 12,
            custom_metrics: tasks_core::metrics::custom_metric_count() as u32,
            dashboards: 1,
            secrets: 1,
        }
    }
}

/// What the real binaries leave per unit of work, measured by `make e2e-deployed`
/// (`infra/scripts/deployed-footprint.py`: the functions as Lambda functions on the emulator,
/// whose log capture writes what Lambda writes, START/END/REPORT lines included; each event
/// counted as CloudWatch Logs bills it, its bytes plus 26).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    /// Mean log bytes per invocation of each function but the cron.
    pub log_bytes_per_invocation: [(Function, f64); 4],
    /// Log bytes of a cron run.
    pub log_bytes_per_cron_run: f64,
    /// A finished task's item as DynamoDB sizes it (attribute names and values).
    pub item_bytes: f64,
}

/// `make e2e-deployed` on 2026-12-08 (debug binaries, their default level INFO; 451 api, 42
/// execute-task, 30 process-sqs-records and 1 update-status invocations, 2 cron runs, 59
/// finished tasks). The emulator writes Lambda's START/END/REPORT lines as text; with the
/// template's JSON log format Lambda writes them as JSON objects, a few hundred bytes more per
/// invocation.
pub const MEASURED: Footprint = Footprint {
    log_bytes_per_invocation: [
        (Function::Api, 424.0),
        (Function::ProcessSqsRecords, 1_311.0),
        (Function::ExecuteTask, 1_764.0),
        (Function::UpdateStatus, 939.0),
    ],
    log_bytes_per_cron_run: 2_173.0,
    item_bytes: 751.0,
};

impl Footprint {
    /// Log bytes per task: each function's invocations per task in a run, times its bytes per
    /// invocation (the cron's are counted per run, in [`monthly`]).
    pub fn log_bytes_per_task(&self, usage: &Usage, tasks: u64) -> f64 {
        self.log_bytes_per_invocation
            .iter()
            .map(|(function, bytes)| {
                let invocations = usage.functions.get(function).map_or(0, |f| f.invocations);
                invocations as f64 / tasks.max(1) as f64 * bytes
            })
            .sum()
    }
}

/// A month of cron runs with nothing due, in dollars, from the usage of a run without tasks
/// (priced as a million tasks' usage: the dollars of that usage itself), scaled by its cron
/// runs; and those runs.
pub fn idle_month(idle: &Usage) -> (f64, u64) {
    let runs = idle
        .functions
        .get(&Function::Cron)
        .map_or(1, |cron| cron.invocations.max(1));
    let dollars = bill(idle, 1_000_000)
        .last()
        .map_or(0.0, |total| total.per_million_tasks);
    (dollars * CRON_RUNS_PER_MONTH / runs as f64, runs)
}

/// One item of the month's bill: what was counted, and dollars a month.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub item: &'static str,
    pub measure: String,
    pub dollars: f64,
}

/// The month's bill for `tasks` tasks: per task (`per_million_tasks`, from a run), the logs they
/// write (`log_bytes_per_task`) and the cron's, the cron's idle month (`idle_month`: dollars of
/// a month with no task), storage of the tasks kept (table and its index, which projects every
/// attribute) and its continuous backup, and the stack's fixed items. Each line is dollars a
/// month.
pub fn monthly(
    tasks: f64,
    per_million_tasks: f64,
    idle_month: f64,
    log_bytes_per_task: f64,
    deployment: &Deployment,
    footprint: &Footprint,
) -> Vec<Charge> {
    let cron_runs = CRON_RUNS_PER_MONTH;
    let logs_gb = (tasks * log_bytes_per_task + cron_runs * footprint.log_bytes_per_cron_run) / GB;
    let kept_tasks = tasks * deployment.retention_days / DAYS_PER_MONTH;
    let table_gb = kept_tasks * (footprint.item_bytes + ITEM_OVERHEAD_BYTES) / GB;
    let fixed = [
        (
            "custom metrics",
            deployment.custom_metrics,
            CUSTOM_METRIC_PER_MONTH,
        ),
        (
            "alarm metrics",
            deployment.alarm_metrics,
            ALARM_METRIC_PER_MONTH,
        ),
        ("dashboards", deployment.dashboards, DASHBOARD_PER_MONTH),
        ("secrets", deployment.secrets, SECRET_PER_MONTH),
    ];
    let mut lines = vec![
        Charge {
            item: "requests and compute",
            measure: format!("{tasks:.0} tasks at ${per_million_tasks:.2} per million"),
            dollars: tasks / 1e6 * per_million_tasks,
        },
        Charge {
            item: "cron with nothing due",
            measure: format!("{cron_runs:.0} runs"),
            dollars: idle_month,
        },
        Charge {
            item: "CloudWatch Logs",
            measure: format!(
                "{logs_gb:.3} GB ingested, kept {} days",
                deployment.log_retention_days
            ),
            dollars: logs_gb * LOGS_PER_GB_INGESTED
                + logs_gb * deployment.log_retention_days / DAYS_PER_MONTH
                    * LOGS_PER_GB_MONTH_STORED,
        },
        Charge {
            item: "DynamoDB storage and backup",
            measure: format!(
                "{kept_tasks:.0} tasks kept ({} days), {:.3} GB in the table, as much in its index",
                deployment.retention_days, table_gb
            ),
            dollars: 2.0 * table_gb * DYNAMODB_PER_GB_MONTH_STORED
                + table_gb * DYNAMODB_BACKUP_PER_GB_MONTH,
        },
        Charge {
            item: "CloudWatch and Secrets Manager",
            measure: fixed
                .iter()
                .map(|(what, count, _)| format!("{count} {what}"))
                .collect::<Vec<_>>()
                .join(", "),
            dollars: fixed
                .iter()
                .map(|(_, count, price)| *count as f64 * price)
                .sum(),
        },
    ];
    let total = lines.iter().map(|line| line.dollars).sum();
    lines.push(Charge {
        item: "total",
        measure: String::new(),
        dollars: total,
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

    #[test]
    fn the_month_adds_logs_storage_backup_and_the_stack_s_fixed_items() {
        let deployment = Deployment {
            retention_days: 30.0,
            log_retention_days: 30.0,
            alarm_metrics: 10,
            custom_metrics: 20,
            dashboards: 1,
            secrets: 1,
        };
        let footprint = Footprint {
            log_bytes_per_invocation: [
                (Function::Api, 1000.0),
                (Function::ProcessSqsRecords, 0.0),
                (Function::ExecuteTask, 0.0),
                (Function::UpdateStatus, 0.0),
            ],
            log_bytes_per_cron_run: 0.0,
            item_bytes: GB / 1e6 - ITEM_OVERHEAD_BYTES,
        };
        let mut usage = Usage::default();
        usage.functions.insert(
            Function::Api,
            FunctionUsage {
                invocations: 2_000,
                ..FunctionUsage::default()
            },
        );
        assert_eq!(footprint.log_bytes_per_task(&usage, 1_000), 2_000.0);
        let month = monthly(1e6, 20.0, 1.5, GB / 1e6, &deployment, &footprint);
        let dollars = |item: &str| {
            month
                .iter()
                .find(|line| line.item == item)
                .map(|line| (line.dollars * 1000.0).round() / 1000.0)
                .unwrap()
        };
        assert_eq!(dollars("requests and compute"), 20.0);
        assert_eq!(dollars("cron with nothing due"), 1.5);
        // 1 GB ingested, kept a month.
        assert_eq!(dollars("CloudWatch Logs"), 0.53);
        // 1 GB in the table, as much in its index, and the table's backup.
        assert_eq!(dollars("DynamoDB storage and backup"), 0.7);
        assert_eq!(
            dollars("CloudWatch and Secrets Manager"),
            6.0 + 1.0 + 3.0 + 0.4
        );
        assert_eq!(dollars("total"), 33.13);
    }
}
