//! The handlers' metrics as CloudWatch embedded metric format (EMF) lines: one JSON object per
//! line on stdout, which CloudWatch Logs turns into metrics without an API call. Local mode prints
//! the same lines.
//!
//! Every metric is in the `TasksService` namespace with one dimension, `FunctionName` (the Lambda
//! function's name, so that stages stay apart; the handler's name in local mode).

use crate::contracts::{AttemptOutcome, AttemptReport};
use crate::flow::cron::CronSummary;
use crate::flow::execute::ExecuteError;
use crate::flow::start::StartReport;
use crate::model::status::TaskStatus;
use crate::rules::error_types::{RETRYABLE_ERRORS, WEBHOOK_FAILURES};
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "TasksService";

/// Every metric each handler publishes, by handler: what the alarms and the dashboard may watch,
/// and what CloudWatch bills a month each (the cost model counts them). A record refuses, in a
/// debug build, a metric this table does not list for its handler.
pub const CATALOG: [(&str, &[&str]); 4] = [
    (
        "execute-task",
        &[
            "AttemptDurationMs",
            "Delivered",
            "Completed",
            "Retried",
            "Failed",
            "Skipped",
            "LatenessMs",
            "TasksCompleted",
            "TasksFailed",
            "TasksFailedByReceiver",
        ],
    ),
    (
        "cron",
        &[
            "DueFound",
            "Dispatched",
            "LostRaces",
            "Errors",
            "StaleClaimsFound",
            "StaleClaimsResent",
            "StuckTasksFound",
            "StuckTasksStillRunning",
            "RecoveredTasks",
            "RecoveryFailed",
            "UndecodableItems",
            "LookAheadMs",
            "RunFailures",
        ],
    ),
    (
        "process-sqs-records",
        &[
            "Started",
            "AlreadyStarted",
            "ReportsHandedOver",
            "NotStarted",
            "StartFailures",
            "MalformedRecords",
        ],
    ),
    (
        "update-status",
        &["TasksCompleted", "TasksFailed", "TasksFailedByReceiver"],
    ),
];

/// Whether `handler` publishes `metric` (see [`CATALOG`]).
pub fn is_cataloged(handler: &str, metric: &str) -> bool {
    CATALOG
        .iter()
        .any(|(name, metrics)| *name == handler && metrics.contains(&metric))
}

/// The custom metrics a stage publishes: one per handler and name (its one dimension is the
/// function).
pub fn custom_metric_count() -> usize {
    CATALOG.iter().map(|(_, metrics)| metrics.len()).sum()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF record: the metrics of one handler invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    handler: &'static str,
    function: String,
    metrics: Vec<(&'static str, Unit, f64)>,
    properties: Map<String, Value>,
}

impl Record {
    /// `handler` names the record when not running in Lambda.
    pub fn new(handler: &'static str) -> Self {
        let function = std::env::var(crate::config::LAMBDA_FUNCTION_NAME)
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| handler.to_string());
        Record {
            handler,
            function,
            metrics: Vec::new(),
            properties: Map::new(),
        }
    }

    pub fn count(mut self, name: &'static str, value: usize) -> Self {
        self.check(name);
        self.metrics.push((name, Unit::Count, value as f64));
        self
    }

    pub fn milliseconds(mut self, name: &'static str, value: i64) -> Self {
        self.check(name);
        self.metrics.push((name, Unit::Milliseconds, value as f64));
        self
    }

    fn check(&self, metric: &str) {
        debug_assert!(
            is_cataloged(self.handler, metric),
            "{} publishes {metric}, which metrics::CATALOG does not list",
            self.handler
        );
    }

    /// A searchable field of the log line that is not a metric (e.g. the task id).
    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(name.to_string(), value.into());
        self
    }

    /// The EMF JSON object, timestamped `now_ms` (milliseconds since the epoch).
    pub fn to_json(&self, now_ms: i64) -> Value {
        let mut root = self.properties.clone();
        root.insert("FunctionName".into(), self.function.clone().into());
        let mut definitions = Vec::with_capacity(self.metrics.len());
        for (name, unit, value) in &self.metrics {
            definitions.push(json!({"Name": name, "Unit": unit.as_str()}));
            root.insert((*name).into(), json!(value));
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root)
    }

    /// Hands the record, stamped `now_ms`, to `sink`.
    pub fn emit(&self, sink: &dyn MetricsSink, now_ms: i64) {
        sink.write(self.to_json(now_ms));
    }
}

/// Where a function's metric records go: the function's host decides, as it decides the time.
pub trait MetricsSink: Send + Sync {
    fn write(&self, record: Value);
}

/// Lambda's: each record one line on stdout, where Lambda's log capture picks it up and
/// CloudWatch turns it into metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl MetricsSink for Stdout {
    fn write(&self, record: Value) {
        println!("{record}");
    }
}

/// execute-task: the attempt's outcome, its lateness, and how long the attempt took from the
/// task's time (or from the start of the handler, if later) to its end.
pub fn execution(
    task_id: &str,
    result: &Result<AttemptReport, ExecuteError>,
    attempt_ms: i64,
) -> Record {
    let record = Record::new("execute-task")
        .property("taskId", task_id)
        .milliseconds("AttemptDurationMs", attempt_ms);
    match result {
        Ok(report) => {
            let failure = failure_of(report)
                .and_then(|error| error.split(':').next())
                .unwrap_or_default()
                .to_string();
            let record = match report.outcome {
                AttemptOutcome::Delivered => record.count("Delivered", 1),
                AttemptOutcome::Completed => record.count("Completed", 1),
                AttemptOutcome::Retry => record.count("Retried", 1).property("errorType", failure),
                AttemptOutcome::Failed => record.count("Failed", 1).property("errorType", failure),
                AttemptOutcome::Skipped | AttemptOutcome::Superseded => record.count("Skipped", 1),
            };
            // Precision is the first attempt's: a retry is late by its policy's design.
            let first_delivery = matches!(
                report.outcome,
                AttemptOutcome::Delivered | AttemptOutcome::Completed
            ) && report.attempt_in_series <= 1;
            match report.lateness_ms {
                Some(lateness) if first_delivery => record.milliseconds("LatenessMs", lateness),
                _ => record,
            }
        }
        Err(error) if RETRYABLE_ERRORS.contains(&error.error_type) => record
            .count("Retried", 1)
            .property("errorType", error.error_type),
        Err(error) => record
            .count("Failed", 1)
            .property("errorType", error.error_type),
    }
}

/// cron: one run's summary. A new summary field is one line here.
pub fn cron_run(summary: &CronSummary) -> Record {
    Record::new("cron")
        .count("DueFound", summary.due.found)
        .count("Dispatched", summary.due.dispatched)
        .count(
            "LostRaces",
            summary.due.lost_races + summary.stale.lost_races + summary.stuck.lost_races,
        )
        .count(
            "Errors",
            summary.due.errors + summary.stale.errors + summary.stuck.errors,
        )
        .count("StaleClaimsFound", summary.stale.found)
        .count("StaleClaimsResent", summary.stale.requeued)
        // Stuck: past every deadline the task's policy allows (an ended execution, or one
        // running past its policy's); a running execution within its policy is healthy.
        .count(
            "StuckTasksFound",
            summary.stuck.found - summary.stuck.running + summary.stuck.overdue,
        )
        .count(
            "StuckTasksStillRunning",
            summary.stuck.running - summary.stuck.overdue,
        )
        .count(
            "RecoveredTasks",
            summary.stale.requeued
                + summary.stale.resumed
                + summary.stuck.requeued
                + summary.stuck.resumed,
        )
        .count(
            "RecoveryFailed",
            summary.stale.failed + summary.stuck.failed,
        )
        .count("UndecodableItems", summary.undecodable)
        .milliseconds("LookAheadMs", summary.look_ahead_seconds * 1000)
}

/// cron: a run that could not read the index at all.
pub fn cron_failure() -> Record {
    Record::new("cron").count("RunFailures", 1)
}

/// process-sqs-records: one batch's starts, by result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StartCounts {
    pub started: usize,
    pub already_started: usize,
    /// Slot reports applied to a task whose execution existed already.
    pub handed_over: usize,
    pub skipped: usize,
    /// Starts that failed (throttled or unavailable): those records are delivered again.
    pub failed: usize,
    pub malformed: usize,
}

impl StartCounts {
    pub fn add(&mut self, report: StartReport) {
        match report {
            StartReport::Started | StartReport::Restarted(_) => self.started += 1,
            StartReport::AlreadyStarted => self.already_started += 1,
            StartReport::HandedOver => self.handed_over += 1,
            StartReport::Skipped(_)
            | StartReport::Superseded
            | StartReport::Missing
            | StartReport::Failed => self.skipped += 1,
        }
    }
}

pub fn starts(counts: &StartCounts) -> Record {
    Record::new("process-sqs-records")
        .count("Started", counts.started)
        .count("AlreadyStarted", counts.already_started)
        .count("ReportsHandedOver", counts.handed_over)
        .count("NotStarted", counts.skipped)
        .count("StartFailures", counts.failed)
        .count("MalformedRecords", counts.malformed)
}

/// update-status, or execute-task for a slot's tasks (a slot records their outcomes itself): the
/// outcome `handler` recorded for a task. A FAILED task whose receiver refused or failed it
/// (`failure`, the last attempt's error, is one of [`WEBHOOK_FAILURES`]) also counts as
/// `TasksFailedByReceiver`: the FAILED-rate alarm leaves those out, since they are the
/// receiver's to fix, not the service's.
pub fn outcome(
    handler: &'static str,
    task_id: &str,
    status: TaskStatus,
    failure: Option<&str>,
) -> Record {
    let record = Record::new(handler).property("taskId", task_id);
    match status {
        TaskStatus::Completed => record.count("TasksCompleted", 1),
        TaskStatus::Failed if failure.is_some_and(is_receiver_failure) => record
            .count("TasksFailed", 1)
            .count("TasksFailedByReceiver", 1),
        TaskStatus::Failed => record.count("TasksFailed", 1),
        _ => record,
    }
}

/// The error of a report's attempt, if it failed (`<errorType>: <message>`).
pub fn failure_of(report: &AttemptReport) -> Option<&str> {
    report
        .error
        .as_deref()
        .or(report.record.as_ref().and_then(|r| r.error.as_deref()))
}

fn is_receiver_failure(failure: &str) -> bool {
    let error_type = failure.split(':').next().unwrap_or_default();
    WEBHOOK_FAILURES.contains(&error_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::claim::DispatchSummary;
    use crate::flow::cron::RecoverySummary;

    fn metric_names(record: &Value) -> Vec<String> {
        record["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_failure_is_the_receiver_s_when_its_attempt_failed_at_the_receiver() {
        let names = |failure| {
            metric_names(&outcome("update-status", "t", TaskStatus::Failed, failure).to_json(0))
        };
        assert_eq!(
            names(Some("WebhookRejected: the receiver answered HTTP 404")),
            ["TasksFailed", "TasksFailedByReceiver"]
        );
        assert_eq!(
            names(Some("WebhookTimeout: no answer in 30 s")),
            ["TasksFailed", "TasksFailedByReceiver"]
        );
        assert_eq!(names(Some("StoreUnavailable: throttled")), ["TasksFailed"]);
        assert_eq!(names(None), ["TasksFailed"]);
    }

    #[test]
    fn a_record_is_embedded_metric_format() {
        let record = Record::new("execute-task")
            .count("Delivered", 1)
            .milliseconds("LatenessMs", 3)
            .property("taskId", "t-1")
            .to_json(1_700_000_000_000);
        let metadata = &record["_aws"];
        assert_eq!(metadata["Timestamp"], 1_700_000_000_000i64);
        let directive = &metadata["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "Delivered", "Unit": "Count"},
                {"Name": "LatenessMs", "Unit": "Milliseconds"}
            ])
        );
        // Every metric and dimension named in the metadata is a member of the root object.
        assert_eq!(record["Delivered"], 1.0);
        assert_eq!(record["LatenessMs"], 3.0);
        assert!(record["FunctionName"].is_string());
        assert_eq!(record["taskId"], "t-1");
        assert!(!record.to_string().contains('\n'));
    }

    #[test]
    fn execution_outcomes_are_counted_by_kind() {
        let report = |outcome, error: Option<&str>| AttemptReport {
            outcome,
            status_code: Some(200),
            attempt: 1,
            attempt_in_series: 1,
            executed_at: None,
            lateness_ms: Some(2),
            retry_at: None,
            error: error.map(str::to_string),
            record: None,
            task_status: None,
            recorded: false,
        };
        let delivered = execution("t", &Ok(report(AttemptOutcome::Delivered, None)), 40).to_json(0);
        assert_eq!(
            metric_names(&delivered),
            ["AttemptDurationMs", "Delivered", "LatenessMs"]
        );
        let retried = report(AttemptOutcome::Retry, Some("WebhookTimeout: no answer"));
        let retried = execution("t", &Ok(retried), 10_000).to_json(0);
        assert_eq!(metric_names(&retried), ["AttemptDurationMs", "Retried"]);
        assert_eq!(retried["errorType"], "WebhookTimeout");
        let failed = report(AttemptOutcome::Failed, Some("WebhookRejected: HTTP 404"));
        let failed = execution("t", &Ok(failed), 5).to_json(0);
        assert_eq!(failed["errorType"], "WebhookRejected");
        assert!(metric_names(&failed).contains(&"Failed".to_string()));
        let broken = execution(
            "t",
            &Err(ExecuteError {
                error_type: "StoreUnavailable",
                message: "down".into(),
            }),
            5,
        )
        .to_json(0);
        assert_eq!(metric_names(&broken), ["AttemptDurationMs", "Retried"]);
    }

    #[test]
    fn the_cron_record_carries_every_summary_count() {
        let summary = CronSummary {
            due: DispatchSummary {
                found: 5,
                dispatched: 3,
                lost_races: 1,
                errors: 1,
            },
            stale: RecoverySummary {
                found: 2,
                requeued: 2,
                ..RecoverySummary::default()
            },
            stuck: RecoverySummary {
                found: 4,
                requeued: 1,
                failed: 1,
                running: 2,
                overdue: 1,
                ..RecoverySummary::default()
            },
            undecodable: 1,
            look_ahead_seconds: 420,
        };
        let record = cron_run(&summary).to_json(0);
        assert_eq!(record["LookAheadMs"], 420_000.0);
        // The two that ended, and the one running past its policy's deadlines.
        assert_eq!(record["StuckTasksFound"], 3.0);
        assert_eq!(record["StuckTasksStillRunning"], 1.0);
        assert_eq!(record["RecoveredTasks"], 3.0);
        assert_eq!(record["RecoveryFailed"], 1.0);
        assert_eq!(record["UndecodableItems"], 1.0);
        assert_eq!(record["DueFound"], 5.0);
        assert_eq!(record["Dispatched"], 3.0);
        assert_eq!(record["LostRaces"], 1.0);
        assert_eq!(record["Errors"], 1.0);
        assert_eq!(record["StaleClaimsFound"], 2.0);
        assert_eq!(record["StaleClaimsResent"], 2.0);
    }

    #[test]
    fn starts_are_counted_by_report() {
        let mut counts = StartCounts::default();
        for report in [
            StartReport::Started,
            StartReport::Started,
            StartReport::AlreadyStarted,
            StartReport::Missing,
            StartReport::Skipped(TaskStatus::Cancelled),
        ] {
            counts.add(report);
        }
        counts.failed += 1;
        let record = starts(&counts).to_json(0);
        assert_eq!(record["Started"], 2.0);
        assert_eq!(record["AlreadyStarted"], 1.0);
        assert_eq!(record["NotStarted"], 2.0);
        assert_eq!(record["StartFailures"], 1.0);
    }
}
