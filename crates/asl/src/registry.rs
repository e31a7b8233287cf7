//! Executions by name, as Step Functions keeps them: a name starts one execution; once that
//! execution ends, its final status is kept and the name stays taken (Step Functions keeps it 90
//! days; the owner of the registry chooses how long, in its host's time). Local mode, the
//! simulator and the tests' in-memory workflow each keep their executions here, with whatever
//! each holds for a running one (a task handle, an input).

use crate::ExecutionOutcome;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How an execution ended, named as Step Functions names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl FinalStatus {
    pub const ALL: [FinalStatus; 4] = [
        FinalStatus::Succeeded,
        FinalStatus::Failed,
        FinalStatus::TimedOut,
        FinalStatus::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Succeeded => "SUCCEEDED",
            FinalStatus::Failed => "FAILED",
            FinalStatus::TimedOut => "TIMED_OUT",
            FinalStatus::Aborted => "ABORTED",
        }
    }

    /// The status Step Functions names `name`.
    pub fn named(name: &str) -> Option<FinalStatus> {
        FinalStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

impl From<&ExecutionOutcome> for FinalStatus {
    fn from(outcome: &ExecutionOutcome) -> Self {
        match outcome {
            ExecutionOutcome::Succeeded(_) => FinalStatus::Succeeded,
            ExecutionOutcome::Failed(_) => FinalStatus::Failed,
            ExecutionOutcome::TimedOut => FinalStatus::TimedOut,
        }
    }
}

/// Where an execution of a name stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionState {
    Running,
    Ended(FinalStatus),
}

/// What a start found: the name was free and the execution started, or it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Started,
    Taken(ExecutionState),
}

struct Entry<R> {
    run: R,
    ended: Option<(FinalStatus, DateTime<Utc>)>,
}

impl<R> Entry<R> {
    fn state(&self) -> ExecutionState {
        match self.ended {
            None => ExecutionState::Running,
            Some((status, _)) => ExecutionState::Ended(status),
        }
    }
}

/// The executions of one state machine, by name; `R` is what the owner keeps of each run.
pub struct Executions<R> {
    entries: Mutex<BTreeMap<String, Entry<R>>>,
    /// How long an ended execution's name stays taken; `None`: for as long as the registry lives.
    retention: Option<Duration>,
}

impl<R> Executions<R> {
    pub fn new(retention: Option<Duration>) -> Self {
        Executions {
            entries: Mutex::new(BTreeMap::new()),
            retention,
        }
    }

    /// Starts an execution of `name` at `now` with the run `start` returns, unless the name is
    /// taken (`start` is not called then). `start` runs with the registry held: a run it spawns
    /// that ends at once is recorded after it.
    pub fn start(&self, name: &str, now: DateTime<Utc>, start: impl FnOnce() -> R) -> Start {
        let mut entries = self.entries.lock().unwrap();
        self.forget_expired(&mut entries, now);
        if let Some(entry) = entries.get(name) {
            return Start::Taken(entry.state());
        }
        let run = start();
        entries.insert(name.to_string(), Entry { run, ended: None });
        Start::Started
    }

    /// Where the execution of `name` stands; `None` when there is none (or it was forgotten).
    pub fn state(&self, name: &str) -> Option<ExecutionState> {
        self.entries.lock().unwrap().get(name).map(Entry::state)
    }

    /// Asks `look` about the execution of `name`, with what the owner keeps of it.
    pub fn inspect<T>(&self, name: &str, look: impl FnOnce(&R, ExecutionState) -> T) -> Option<T> {
        let entries = self.entries.lock().unwrap();
        entries
            .get(name)
            .map(|entry| look(&entry.run, entry.state()))
    }

    /// Records that the execution of `name` ended at `now` with `status`; an execution ends once
    /// (a later end leaves the first). Whether it was running.
    pub fn end(&self, name: &str, status: FinalStatus, now: DateTime<Utc>) -> bool {
        let mut entries = self.entries.lock().unwrap();
        self.forget_expired(&mut entries, now);
        match entries.get_mut(name) {
            Some(entry) if entry.ended.is_none() => {
                entry.ended = Some((status, now));
                true
            }
            _ => false,
        }
    }

    /// Stops the execution of `name` if it runs: `abort` is given its run, and it ends ABORTED.
    /// Whether it was running.
    pub fn stop(&self, name: &str, now: DateTime<Utc>, abort: impl FnOnce(&R)) -> bool {
        let mut entries = self.entries.lock().unwrap();
        match entries.get_mut(name) {
            Some(entry) if entry.ended.is_none() => {
                abort(&entry.run);
                entry.ended = Some((FinalStatus::Aborted, now));
                true
            }
            _ => false,
        }
    }

    /// How many executions run.
    pub fn running(&self) -> usize {
        let entries = self.entries.lock().unwrap();
        entries
            .values()
            .filter(|entry| entry.ended.is_none())
            .count()
    }

    /// What the owner keeps of every execution it knows, running or ended, in name order.
    pub fn runs<T>(&self, mut pick: impl FnMut(&R) -> T) -> Vec<T> {
        let entries = self.entries.lock().unwrap();
        entries.values().map(|entry| pick(&entry.run)).collect()
    }

    fn forget_expired(&self, entries: &mut BTreeMap<String, Entry<R>>, now: DateTime<Utc>) {
        if let Some(retention) = self.retention {
            entries.retain(|_, entry| match entry.ended {
                Some((_, at)) => now - at < retention,
                None => true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_900_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_name_starts_once_and_stays_taken_for_the_retention_after_its_end() {
        let executions = Executions::new(Some(Duration::seconds(60)));
        assert_eq!(executions.start("a", at(0), || 1), Start::Started);
        assert_eq!(
            executions.start("a", at(1), || unreachable!()),
            Start::Taken(ExecutionState::Running)
        );
        assert!(executions.end("a", FinalStatus::Succeeded, at(10)));
        assert!(
            !executions.end("a", FinalStatus::Failed, at(11)),
            "ends once"
        );
        assert_eq!(
            executions.start("a", at(69), || unreachable!()),
            Start::Taken(ExecutionState::Ended(FinalStatus::Succeeded))
        );
        assert_eq!(executions.start("a", at(70), || 2), Start::Started);
        assert_eq!(executions.runs(|run| *run), [2]);
    }

    #[test]
    fn a_stop_aborts_a_running_execution_only() {
        let executions: Executions<u8> = Executions::new(None);
        executions.start("a", at(0), || 1);
        let mut aborted = Vec::new();
        assert!(executions.stop("a", at(1), |run| aborted.push(*run)));
        assert!(!executions.stop("a", at(2), |run| aborted.push(*run)));
        assert_eq!(aborted, [1]);
        assert_eq!(
            executions.state("a"),
            Some(ExecutionState::Ended(FinalStatus::Aborted))
        );
        assert_eq!(executions.running(), 0);
        assert_eq!(executions.state("b"), None);
    }

    #[test]
    fn statuses_have_step_functions_names() {
        for status in FinalStatus::ALL {
            assert_eq!(FinalStatus::named(status.as_str()), Some(status));
        }
        assert_eq!(FinalStatus::named("RUNNING"), None);
    }
}
