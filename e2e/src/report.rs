//! The precision run's verdict, computed from the tasks' final state and what the receiver
//! saw. Everything here is pure, so that it can be tested without a service.

use crate::api::{format_time, CANCELLED, COMPLETED, FAILED};
use crate::receiver::Delivery;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fmt::Write;

/// Detail lines listed per kind of problem; the counts in the table stay exact.
const MAX_DETAILS: usize = 10;

/// What the run knows about one task once waiting has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    pub id: String,
    /// The task's time as the create response gave it.
    pub timestamp: DateTime<Utc>,
    /// The last status seen, or `None` if no `GET` ever succeeded.
    pub status: Option<String>,
    /// The service's own lateness measure, taken before it sent the webhook.
    pub lateness_ms: Option<i64>,
    /// The service's `lastError`, or why the last poll failed.
    pub note: Option<String>,
}

/// Nearest-rank percentiles of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub count: usize,
    pub min: i64,
    pub p50: i64,
    pub p95: i64,
    pub p99: i64,
    pub max: i64,
}

impl Stats {
    pub fn of(values: &[i64]) -> Option<Stats> {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        Some(Stats {
            count: sorted.len(),
            min: *sorted.first()?,
            p50: nearest_rank(&sorted, 50)?,
            p95: nearest_rank(&sorted, 95)?,
            p99: nearest_rank(&sorted, 99)?,
            max: *sorted.last()?,
        })
    }
}

/// The smallest value with at least `percent`% of the sample at or below it.
pub fn nearest_rank(sorted: &[i64], percent: usize) -> Option<i64> {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub tasks: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
    /// Not terminal when the deadline passed.
    pub unfinished: usize,
    /// COMPLETED, yet the receiver never saw a request for it.
    pub never_received: usize,
    pub requests: usize,
    /// Tasks that the receiver saw more than once.
    pub duplicates: usize,
    /// Requests that arrived before their task's time.
    pub early: usize,
    /// Requests whose `X-Task-Timestamp` was missing or not the task's time.
    pub timestamp_mismatches: usize,
    /// Requests without an `X-Task-Id` of this run.
    pub unknown: usize,
    /// First deliveries that were not attempt 1.
    pub retried: usize,
    /// Receiver arrival minus the task's time, in microseconds, first delivery per task.
    pub lateness_us: Option<Stats>,
    /// The samples behind `lateness_us`, for the histogram.
    pub lateness_samples_us: Vec<i64>,
    pub service_lateness_ms: Option<Stats>,
    pub max_p99_ms: u64,
    pub details: Vec<String>,
}

impl Report {
    pub fn lost(&self) -> usize {
        self.unfinished + self.never_received
    }

    pub fn analyze(tasks: &[TaskOutcome], deliveries: &[Delivery], max_p99_ms: u64) -> Report {
        let mut details = Details::default();
        let by_id: HashMap<&str, &TaskOutcome> =
            tasks.iter().map(|task| (task.id.as_str(), task)).collect();

        let mut received: HashMap<&str, Vec<&Delivery>> = HashMap::new();
        let mut early = 0;
        let mut timestamp_mismatches = 0;
        let mut unknown = 0;
        for delivery in deliveries {
            let Some(task) = delivery.task_id.as_deref().and_then(|id| by_id.get(id)) else {
                unknown += 1;
                details.push(
                    "unknown",
                    format!(
                        "request at {} with X-Task-Id {:?} is for no task of this run",
                        format_time(&delivery.arrived_at),
                        delivery.task_id
                    ),
                );
                continue;
            };
            received.entry(&task.id).or_default().push(delivery);
            if delivery.arrived_at < task.timestamp {
                early += 1;
                details.push(
                    "early",
                    format!(
                        "task {} (attempt {}) arrived {} early",
                        task.id,
                        attempt(delivery),
                        format_ms(micros(task.timestamp - delivery.arrived_at))
                    ),
                );
            }
            let header_time = delivery
                .task_timestamp
                .as_deref()
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok());
            if header_time.is_none_or(|time| time != task.timestamp) {
                timestamp_mismatches += 1;
                details.push(
                    "timestamp",
                    format!(
                        "task {}: X-Task-Timestamp {:?}, the task's time is {}",
                        task.id,
                        delivery.task_timestamp,
                        format_time(&task.timestamp)
                    ),
                );
            }
        }

        let mut lateness = Vec::new();
        let mut duplicates = 0;
        let mut retried = 0;
        for task in tasks {
            let Some(seen) = received.get_mut(task.id.as_str()) else {
                continue;
            };
            seen.sort_by_key(|delivery| delivery.arrived_at);
            let first = seen[0];
            lateness.push(micros(first.arrived_at - task.timestamp));
            if first.attempt.as_deref() != Some("1") {
                retried += 1;
            }
            if seen.len() > 1 {
                duplicates += 1;
                let attempts: Vec<String> = seen.iter().map(|d| attempt(d)).collect();
                details.push(
                    "duplicate",
                    format!(
                        "task {} delivered {} times (X-Task-Attempt {})",
                        task.id,
                        seen.len(),
                        attempts.join(", ")
                    ),
                );
            }
        }

        let count = |status: &str| {
            tasks
                .iter()
                .filter(|task| task.status.as_deref() == Some(status))
                .count()
        };
        let (completed, failed, cancelled) = (count(COMPLETED), count(FAILED), count(CANCELLED));

        let mut unfinished = 0;
        let mut never_received = 0;
        for task in tasks {
            let status = task.status.as_deref();
            let note = task
                .note
                .as_deref()
                .map(|note| format!(": {note}"))
                .unwrap_or_default();
            match status {
                Some(COMPLETED) if !received.contains_key(task.id.as_str()) => {
                    never_received += 1;
                    details.push(
                        "lost",
                        format!("task {} COMPLETED but never received", task.id),
                    );
                }
                Some(FAILED | CANCELLED) => details.push(
                    "failed",
                    format!("task {} {}{note}", task.id, status.unwrap_or_default()),
                ),
                Some(COMPLETED) => {}
                other => {
                    unfinished += 1;
                    details.push(
                        "lost",
                        format!(
                            "task {} still {} at the deadline{note}",
                            task.id,
                            other.unwrap_or("unknown")
                        ),
                    );
                }
            }
        }

        let service: Vec<i64> = tasks.iter().filter_map(|task| task.lateness_ms).collect();
        Report {
            tasks: tasks.len(),
            completed,
            failed,
            cancelled,
            unfinished,
            never_received,
            requests: deliveries.len(),
            duplicates,
            early,
            timestamp_mismatches,
            unknown,
            retried,
            lateness_us: Stats::of(&lateness),
            lateness_samples_us: lateness,
            service_lateness_ms: Stats::of(&service),
            max_p99_ms,
            details: details.finish(),
        }
    }

    /// Why the run fails; empty when it passes.
    pub fn failures(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let mut check = |count: usize, what: &str| {
            if count > 0 {
                reasons.push(format!("{count} {what}"));
            }
        };
        check(self.lost(), "lost");
        check(self.duplicates, "duplicated");
        check(self.early, "early");
        check(self.failed, "FAILED");
        check(self.cancelled, "CANCELLED (nothing cancels them)");
        check(self.timestamp_mismatches, "X-Task-Timestamp mismatches");
        check(self.unknown, "requests for unknown tasks");
        if let Some(stats) = self.lateness_us {
            if stats.p99 > i64::try_from(self.max_p99_ms.saturating_mul(1000)).unwrap_or(i64::MAX) {
                reasons.push(format!(
                    "p99 lateness {} > {} ms",
                    format_ms(stats.p99),
                    self.max_p99_ms
                ));
            }
        }
        reasons
    }

    pub fn verdict(&self) -> String {
        verdict(&self.failures())
    }

    /// A markdown table, ready to paste into the docs.
    pub fn markdown(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("tasks".into(), self.tasks.to_string()),
            ("completed".into(), self.completed.to_string()),
            ("failed".into(), self.failed.to_string()),
            ("cancelled".into(), self.cancelled.to_string()),
            (
                "lost".into(),
                format!(
                    "{} ({} not terminal by the deadline, {} completed but never received)",
                    self.lost(),
                    self.unfinished,
                    self.never_received
                ),
            ),
            ("webhook requests".into(), self.requests.to_string()),
            (
                "duplicates (tasks with >1 request)".into(),
                self.duplicates.to_string(),
            ),
            (
                "retried (first request not attempt 1)".into(),
                self.retried.to_string(),
            ),
            (
                "early (before the task's time)".into(),
                self.early.to_string(),
            ),
            (
                "X-Task-Timestamp mismatches".into(),
                self.timestamp_mismatches.to_string(),
            ),
            (
                "requests for unknown tasks".into(),
                self.unknown.to_string(),
            ),
        ];
        match self.lateness_us {
            Some(stats) => {
                rows.push((
                    "lateness samples (first request per task)".into(),
                    stats.count.to_string(),
                ));
                rows.extend(stat_rows("lateness", &stats, format_ms));
            }
            None => rows.push(("lateness".into(), "no requests".into())),
        }
        match self.service_lateness_ms {
            Some(stats) => {
                rows.push(("service latenessMs p50".into(), format!("{} ms", stats.p50)));
                rows.push(("service latenessMs p99".into(), format!("{} ms", stats.p99)));
                rows.push(("service latenessMs max".into(), format!("{} ms", stats.max)));
            }
            None => rows.push(("service latenessMs".into(), "not reported".into())),
        }

        let mut table = String::from("| metric | value |\n|---|---|\n");
        for (metric, value) in rows {
            let _ = writeln!(table, "| {metric} | {value} |");
        }
        table
    }
}

pub fn verdict(failures: &[String]) -> String {
    if failures.is_empty() {
        "PASS".into()
    } else {
        format!("FAIL: {}", failures.join(", "))
    }
}

fn stat_rows(name: &str, stats: &Stats, format: fn(i64) -> String) -> Vec<(String, String)> {
    [
        ("min", stats.min),
        ("p50", stats.p50),
        ("p95", stats.p95),
        ("p99", stats.p99),
        ("max", stats.max),
    ]
    .into_iter()
    .map(|(which, value)| (format!("{name} {which}"), format(value)))
    .collect()
}

fn micros(duration: chrono::TimeDelta) -> i64 {
    duration.num_microseconds().unwrap_or(i64::MAX)
}

pub fn format_ms(micros: i64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

fn attempt(delivery: &Delivery) -> String {
    delivery.attempt.clone().unwrap_or_else(|| "?".into())
}

/// Detail lines in a stable order, at most `MAX_DETAILS` per kind.
#[derive(Default)]
struct Details {
    lines: Vec<(&'static str, String)>,
}

impl Details {
    fn push(&mut self, kind: &'static str, line: String) {
        self.lines.push((kind, line));
    }

    fn finish(self) -> Vec<String> {
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut out = Vec::new();
        for (kind, line) in self.lines {
            let index = match seen.iter().position(|(seen_kind, _)| *seen_kind == kind) {
                Some(index) => index,
                None => {
                    seen.push((kind, 0));
                    seen.len() - 1
                }
            };
            seen[index].1 += 1;
            if seen[index].1 <= MAX_DETAILS {
                out.push(line);
            }
        }
        for (kind, count) in seen {
            if count > MAX_DETAILS {
                out.push(format!("... and {} more {kind}", count - MAX_DETAILS));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_900_000_000_000 + ms).unwrap()
    }

    fn task(id: &str, ms: i64, status: &str) -> TaskOutcome {
        TaskOutcome {
            id: id.into(),
            timestamp: at(ms),
            status: Some(status.into()),
            lateness_ms: Some(1),
            note: None,
        }
    }

    fn delivery(task: &TaskOutcome, late_us: i64, attempt: &str) -> Delivery {
        Delivery {
            arrived_at: task.timestamp + TimeDelta::microseconds(late_us),
            task_id: Some(task.id.clone()),
            attempt: Some(attempt.into()),
            task_timestamp: Some(format_time(&task.timestamp)),
            path_and_query: "/hook".into(),
            body: Vec::new(),
            signature: crate::receiver::Signature::NotChecked,
            answered: 200,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&sorted, 50), Some(50));
        assert_eq!(nearest_rank(&sorted, 95), Some(95));
        assert_eq!(nearest_rank(&sorted, 99), Some(99));
        assert_eq!(nearest_rank(&sorted, 100), Some(100));
        assert_eq!(nearest_rank(&sorted, 0), Some(1));
        assert_eq!(nearest_rank(&[7], 99), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
        // 10 values: p50 is the 5th, p95 and p99 round up to the 10th.
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 95), Some(10));
        assert_eq!(nearest_rank(&[1, 2, 3], 50), Some(2));
    }

    #[test]
    fn stats_sort_their_input() {
        let stats = Stats::of(&[30, -2, 10, 20]).unwrap();
        assert_eq!(
            stats,
            Stats {
                count: 4,
                min: -2,
                p50: 10,
                p95: 30,
                p99: 30,
                max: 30
            }
        );
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn a_clean_run_passes() {
        let tasks: Vec<TaskOutcome> = (0..100)
            .map(|i| task(&format!("t{i}"), i * 100, COMPLETED))
            .collect();
        let deliveries: Vec<Delivery> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| delivery(t, (i as i64 + 1) * 1000, "1"))
            .collect();
        let report = Report::analyze(&tasks, &deliveries, 1000);
        assert_eq!(report.completed, 100);
        assert_eq!(report.lost(), 0);
        assert_eq!(report.requests, 100);
        let lateness = report.lateness_us.unwrap();
        assert_eq!((lateness.min, lateness.p50), (1000, 50_000));
        assert_eq!((lateness.p99, lateness.max), (99_000, 100_000));
        assert_eq!(report.service_lateness_ms.unwrap().p99, 1);
        assert_eq!(report.failures(), Vec::<String>::new());
        assert_eq!(report.verdict(), "PASS");
        assert!(report.details.is_empty());
        let table = report.markdown();
        assert!(table.starts_with("| metric | value |\n|---|---|\n| tasks | 100 |\n"));
        assert!(table.contains("| lateness p99 | 99.0 ms |"));
        assert!(table.contains("| service latenessMs p50 | 1 ms |"));
    }

    #[test]
    fn every_problem_is_counted_and_fails_the_run() {
        let ok = task("ok", 0, COMPLETED);
        let unsent = task("unsent", 0, COMPLETED);
        let pending = task("pending", 0, "IN_PROGRESS");
        let failed = task("failed", 0, FAILED);
        let twice = task("twice", 0, COMPLETED);
        let early = task("early", 0, COMPLETED);
        let slow = task("slow", 0, COMPLETED);
        let mut wrong_header = delivery(&ok, 500, "1");
        wrong_header.task_timestamp = Some("2030-01-01T00:00:00.000Z".into());
        let deliveries = vec![
            wrong_header,
            delivery(&twice, 2000, "1"),
            delivery(&twice, 9000, "2"),
            delivery(&early, -300, "1"),
            delivery(&slow, 1_500_000, "2"),
            Delivery {
                task_id: None,
                ..delivery(&ok, 0, "1")
            },
        ];
        let tasks = [ok, unsent, pending, failed, twice, early, slow];
        let report = Report::analyze(&tasks, &deliveries, 1000);
        assert_eq!(report.tasks, 7);
        assert_eq!(report.completed, 5);
        assert_eq!(report.failed, 1);
        assert_eq!((report.unfinished, report.never_received), (1, 1));
        assert_eq!(report.lost(), 2);
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.early, 1);
        assert_eq!(report.timestamp_mismatches, 1);
        assert_eq!(report.unknown, 1);
        assert_eq!(report.retried, 1);
        let lateness = report.lateness_us.unwrap();
        assert_eq!(
            (lateness.count, lateness.min, lateness.max),
            (4, -300, 1_500_000)
        );
        assert_eq!(
            report.verdict(),
            "FAIL: 2 lost, 1 duplicated, 1 early, 1 FAILED, 1 X-Task-Timestamp mismatches, \
             1 requests for unknown tasks, p99 lateness 1500.0 ms > 1000 ms"
        );
        assert!(report
            .details
            .iter()
            .any(|line| line == "task twice delivered 2 times (X-Task-Attempt 1, 2)"));
        assert!(report
            .details
            .iter()
            .any(|line| line == "task early (attempt 1) arrived 0.3 ms early"));
    }

    #[test]
    fn nothing_received() {
        let tasks = [task("a", 0, COMPLETED)];
        let report = Report::analyze(&tasks, &[], 1000);
        assert_eq!(report.lateness_us, None);
        assert_eq!(report.never_received, 1);
        assert!(report.markdown().contains("| lateness | no requests |"));
        assert_eq!(report.verdict(), "FAIL: 1 lost");
    }

    #[test]
    fn details_are_capped_per_kind() {
        let tasks: Vec<TaskOutcome> = (0..15)
            .map(|i| task(&format!("t{i}"), 0, "SCHEDULED"))
            .collect();
        let report = Report::analyze(&tasks, &[], 1000);
        assert_eq!(report.unfinished, 15);
        assert_eq!(report.details.len(), MAX_DETAILS + 1);
        assert_eq!(report.details.last().unwrap(), "... and 5 more lost");
    }
}
