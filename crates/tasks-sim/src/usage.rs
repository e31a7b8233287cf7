//! What a run asked of AWS: calls by API, DynamoDB capacity units, Lambda invocations with their
//! billed GB-seconds and concurrency, and the requests each quota throttled. The cost table
//! ([`crate::cost`]) turns these into dollars.

use crate::quotas::Quotas;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The five functions, with the memory the template gives each (a test checks the template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Function {
    Api,
    Cron,
    ProcessSqsRecords,
    ExecuteTask,
    UpdateStatus,
}

impl Function {
    pub const ALL: [Function; 5] = [
        Function::Api,
        Function::Cron,
        Function::ProcessSqsRecords,
        Function::ExecuteTask,
        Function::UpdateStatus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::Api => "api",
            Function::Cron => "cron",
            Function::ProcessSqsRecords => "process-sqs-records",
            Function::ExecuteTask => "execute-task",
            Function::UpdateStatus => "update-status",
        }
    }

    /// The template's logical id of the function.
    pub fn resource(self) -> &'static str {
        match self {
            Function::Api => "ApiFunction",
            Function::Cron => "CronFunction",
            Function::ProcessSqsRecords => "ProcessSqsRecordsFunction",
            Function::ExecuteTask => "ExecuteTaskFunction",
            Function::UpdateStatus => "UpdateStatusFunction",
        }
    }

    /// The function's timeout, as the template sets it (a test checks).
    pub fn timeout(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            Function::Api => 10,
            Function::Cron => 120,
            Function::ProcessSqsRecords => 10,
            Function::ExecuteTask => 120,
            Function::UpdateStatus => 10,
        })
    }

    pub fn memory_mb(self) -> u64 {
        match self {
            Function::Api => 256,
            Function::Cron => 1024,
            Function::ProcessSqsRecords => 256,
            Function::ExecuteTask => 512,
            Function::UpdateStatus => 128,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FunctionUsage {
    pub invocations: u64,
    /// Billed milliseconds (each invocation rounded up to the millisecond) times megabytes.
    pub mb_ms: u64,
    pub peak_concurrency: usize,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    /// Requests by `service.Action`.
    pub calls: BTreeMap<&'static str, u64>,
    pub write_units: u64,
    /// Half units: an eventually consistent read of 4 KB is one half.
    pub read_half_units: u64,
    pub state_transitions: u64,
    pub functions: BTreeMap<Function, FunctionUsage>,
    /// Lambda concurrency across the account, now and at its peak.
    pub concurrency: usize,
    pub peak_concurrency: usize,
    in_flight: BTreeMap<Function, usize>,
    /// Requests a quota refused or delayed, by quota.
    pub throttled: BTreeMap<&'static str, u64>,
    /// What slot runs did with their tasks: completed, failed, handed over, skipped, lost.
    pub slot_tasks: BTreeMap<&'static str, u64>,
}

impl Usage {
    pub fn call(&mut self, api: &'static str) {
        *self.calls.entry(api).or_default() += 1;
    }

    pub fn throttle(&mut self, quota: &'static str) {
        *self.throttled.entry(quota).or_default() += 1;
    }

    /// Counts a slot run's tasks by what it did with them.
    pub fn slot_run(&mut self, summary: &tasks_core::flow::run_slot::SlotSummary) {
        for (outcome, n) in [
            ("completed", summary.completed),
            ("failed", summary.failed),
            ("handed over", summary.handed_over),
            ("skipped", summary.skipped),
            ("hand-over lost", summary.lost_hand_overs),
        ] {
            *self.slot_tasks.entry(outcome).or_default() += n as u64;
        }
    }

    /// Adds another run's usage (peaks are the higher of the two), for a table over many seeds.
    pub fn add(&mut self, other: &Usage) {
        for (api, n) in &other.calls {
            *self.calls.entry(api).or_default() += n;
        }
        for (quota, n) in &other.throttled {
            *self.throttled.entry(quota).or_default() += n;
        }
        for (outcome, n) in &other.slot_tasks {
            *self.slot_tasks.entry(outcome).or_default() += n;
        }
        for (function, used) in &other.functions {
            let all = self.functions.entry(*function).or_default();
            all.invocations += used.invocations;
            all.mb_ms += used.mb_ms;
            all.peak_concurrency = all.peak_concurrency.max(used.peak_concurrency);
        }
        self.write_units += other.write_units;
        self.read_half_units += other.read_half_units;
        self.state_transitions += other.state_transitions;
        self.peak_concurrency = self.peak_concurrency.max(other.peak_concurrency);
    }
}

/// The account's Lambda concurrency: an invocation holds a slot from its start to its end.
pub struct Invocation {
    usage: Arc<Mutex<Usage>>,
    function: Function,
    started: tokio::time::Instant,
}

/// Starts an invocation of `function`, or refuses it when its share of the account's concurrency
/// is used up: execute-task's reservation if it has one, the rest of the account otherwise.
pub fn invoke(
    usage: &Arc<Mutex<Usage>>,
    function: Function,
    quotas: &Quotas,
) -> Option<Invocation> {
    let mut all = usage.lock().unwrap();
    let reserved = quotas.execute_task_reserved;
    let executing = all
        .in_flight
        .get(&Function::ExecuteTask)
        .copied()
        .unwrap_or(0);
    let (used, limit) = match (reserved, function) {
        (0, _) => (all.concurrency, quotas.lambda_concurrency),
        (_, Function::ExecuteTask) => (executing, reserved),
        _ => (
            all.concurrency - executing,
            quotas.lambda_concurrency.saturating_sub(reserved),
        ),
    };
    if used >= limit {
        all.throttle("lambda.concurrency");
        return None;
    }
    all.concurrency += 1;
    all.peak_concurrency = all.peak_concurrency.max(all.concurrency);
    let in_flight = {
        let count = all.in_flight.entry(function).or_default();
        *count += 1;
        *count
    };
    let entry = all.functions.entry(function).or_default();
    entry.invocations += 1;
    entry.peak_concurrency = entry.peak_concurrency.max(in_flight);
    Some(Invocation {
        usage: usage.clone(),
        function,
        started: tokio::time::Instant::now(),
    })
}

impl Drop for Invocation {
    fn drop(&mut self) {
        let billed_ms = self.started.elapsed().as_micros().div_ceil(1000).max(1) as u64;
        let mut all = self.usage.lock().unwrap();
        all.concurrency -= 1;
        if let Some(count) = all.in_flight.get_mut(&self.function) {
            *count -= 1;
        }
        all.functions.entry(self.function).or_default().mb_ms +=
            billed_ms * self.function.memory_mb();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(lambda_concurrency: usize, execute_task_reserved: usize) -> Quotas {
        Quotas {
            lambda_concurrency,
            execute_task_reserved,
            ..Quotas::DEFAULT
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_holds_a_slot_and_is_billed_by_the_millisecond_at_its_memory() {
        let usage = Arc::new(Mutex::new(Usage::default()));
        let quotas = account(2, 0);
        let first = invoke(&usage, Function::ExecuteTask, &quotas).expect("a slot");
        let second = invoke(&usage, Function::UpdateStatus, &quotas).expect("a slot");
        assert!(
            invoke(&usage, Function::Api, &quotas).is_none(),
            "the account is full"
        );
        tokio::time::advance(std::time::Duration::from_micros(1_500)).await;
        drop(first);
        drop(second);
        assert!(invoke(&usage, Function::Api, &quotas).is_some());
        let usage = usage.lock().unwrap();
        assert_eq!(usage.peak_concurrency, 2);
        assert_eq!(usage.throttled.get("lambda.concurrency"), Some(&1));
        assert_eq!(usage.functions[&Function::ExecuteTask].mb_ms, 2 * 512);
        assert_eq!(usage.functions[&Function::UpdateStatus].mb_ms, 2 * 128);
        assert_eq!(usage.functions[&Function::Api].invocations, 1);
    }

    #[test]
    fn execute_task_s_reservation_is_its_ceiling_and_keeps_the_rest_for_the_others() {
        let usage = Arc::new(Mutex::new(Usage::default()));
        let quotas = account(3, 2);
        let executing: Vec<_> = (0..2)
            .map(|_| invoke(&usage, Function::ExecuteTask, &quotas).expect("within its share"))
            .collect();
        assert!(invoke(&usage, Function::ExecuteTask, &quotas).is_none());
        let api = invoke(&usage, Function::Api, &quotas).expect("the rest is the others'");
        assert!(invoke(&usage, Function::UpdateStatus, &quotas).is_none());
        drop(executing);
        assert!(invoke(&usage, Function::UpdateStatus, &quotas).is_none());
        drop(api);
        assert!(invoke(&usage, Function::UpdateStatus, &quotas).is_some());
    }
}
