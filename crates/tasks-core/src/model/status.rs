//! The task lifecycle: statuses and the one table of allowed transitions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Stored, waiting for its start time to come within the lead time.
    Scheduled,
    /// Claimed by the cron (or the API hand-off) and sent to the queue; no execution confirmed yet.
    Queued,
    /// Its workflow execution has started.
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

/// How many key values each status's entries in the status index are spread over. DynamoDB takes
/// about 1,000 writes a second per index key value: keyed by the status alone, every SCHEDULED task
/// would share one, and a burst of creates or a hotspot's attempts would throttle the table. It is
/// part of the table's layout, not a setting: changing it re-keys every item.
pub const STATUS_SHARDS: u32 = 16;

/// The shard of a task id: FNV-1a of its bytes, which is the same on every platform and version.
pub fn status_shard(id: &str) -> u32 {
    let mut hasher = fnv::FnvHasher::default();
    std::hash::Hasher::write(&mut hasher, id.as_bytes());
    (std::hash::Hasher::finish(&hasher) % u64::from(STATUS_SHARDS)) as u32
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Scheduled,
        TaskStatus::Queued,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Scheduled => "SCHEDULED",
            TaskStatus::Queued => "QUEUED",
            TaskStatus::InProgress => "IN_PROGRESS",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Cancelled => "CANCELLED",
        }
    }

    /// The status index's key value for the task `id` in this status: `<status>#<shard>`.
    pub fn shard_key(self, id: &str) -> String {
        format!("{self}#{}", status_shard(id))
    }

    /// Every key value this status's tasks are spread over, in shard order.
    pub fn shard_keys(self) -> impl Iterator<Item = String> {
        (0..STATUS_SHARDS).map(move |shard| format!("{self}#{shard}"))
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for TaskStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// Everything that may happen to a task. Each event names the statuses it may start from and the
/// status it leads to; the stores turn that into a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The cron or the API hand-off takes a due task to send it to the queue.
    Claim,
    /// The send failed: give the task back so the next cron run takes it again.
    Unclaim,
    /// A claim whose message or start was lost is sent again after the grace period.
    Redispatch,
    /// The execution of the task's series ended before any attempt began (it found the task
    /// not yet claimed, or failed before its attempt): the task runs again in a new series.
    Restart,
    /// process-sqs-records started (or found) the task's execution.
    Start,
    /// execute-task is about to send the webhook: from here on the task cannot be cancelled.
    BeginAttempt,
    /// A slot's report of an attempt that asked for a retry reached the task after its own
    /// execution had started: the retry's time and try count are kept on the task, where that
    /// execution finds them.
    ScheduleRetry,
    Complete,
    Fail,
    Cancel,
    /// The user changed the task's time, webhook or payload before its attempt began: it waits
    /// again in a new series, so an execution started for the old values can never deliver.
    Reschedule,
    /// The user runs a FAILED task again: a new series of attempts; the attempts already made
    /// keep counting.
    Retry,
    /// An execution is about to call the failure callback of the task's FAILED series: taken
    /// once per series, so the callback is called at most once whoever tries.
    ClaimCallback,
}

impl Event {
    pub const ALL: [Event; 13] = [
        Event::Claim,
        Event::Unclaim,
        Event::Redispatch,
        Event::Restart,
        Event::Start,
        Event::BeginAttempt,
        Event::ScheduleRetry,
        Event::Complete,
        Event::Fail,
        Event::Cancel,
        Event::Reschedule,
        Event::Retry,
        Event::ClaimCallback,
    ];

    /// The transition table: the statuses an event may leave from.
    pub fn from(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Event::Claim => &[Scheduled],
            Event::Unclaim => &[Queued],
            Event::Redispatch => &[Queued],
            Event::Restart => &[Queued, InProgress],
            Event::Start => &[Queued],
            // An execution can reach execute-task before process-sqs-records has recorded its start.
            Event::BeginAttempt => &[Queued, InProgress],
            Event::ScheduleRetry | Event::Complete => &[InProgress],
            // A workflow can fail before its first attempt began (refused target, woken too early).
            Event::Fail => &[Queued, InProgress],
            Event::Cancel | Event::Reschedule => &[Scheduled, Queued, InProgress],
            Event::Retry | Event::ClaimCallback => &[Failed],
        }
    }

    /// The transition table: the status an event leads to.
    pub fn to(self) -> TaskStatus {
        use TaskStatus::*;
        match self {
            Event::Claim | Event::Redispatch | Event::Restart => Queued,
            Event::Unclaim | Event::Reschedule | Event::Retry => Scheduled,
            Event::Start | Event::BeginAttempt | Event::ScheduleRetry => InProgress,
            Event::Complete => Completed,
            Event::Fail | Event::ClaimCallback => Failed,
            Event::Cancel => Cancelled,
        }
    }

    /// Cancelling or changing a task is refused once a webhook attempt of its current series has
    /// begun, whatever the status says.
    pub fn requires_no_attempt_in_series(self) -> bool {
        matches!(self, Event::Cancel | Event::Reschedule)
    }

    /// A claim, a restart, a reschedule or a retry starts a new delivery series (a new execution
    /// name).
    pub fn starts_series(self) -> bool {
        matches!(
            self,
            Event::Claim | Event::Restart | Event::Reschedule | Event::Retry
        )
    }

    /// A task the user changed or retried gets the full bound on redispatches again.
    pub fn resets_redispatches(self) -> bool {
        matches!(self, Event::Reschedule | Event::Retry)
    }

    /// Re-sends and restarts count against the task's bound on redispatches.
    pub fn counts_redispatch(self) -> bool {
        matches!(self, Event::Redispatch | Event::Restart)
    }

    pub fn allows(self, status: TaskStatus) -> bool {
        self.from().contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_keeps_its_shard_across_statuses_and_ids_spread_over_every_shard() {
        assert_eq!(status_shard("task-1"), status_shard("task-1"));
        assert_eq!(
            TaskStatus::Scheduled.shard_key("task-1"),
            format!("SCHEDULED#{}", status_shard("task-1"))
        );
        let mut per_shard = [0u32; STATUS_SHARDS as usize];
        for n in 0..16_000 {
            per_shard[status_shard(&uuid::Uuid::from_u128(n).to_string()) as usize] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (800..1200).contains(&n)),
            "{per_shard:?}"
        );
        assert_eq!(
            TaskStatus::Queued.shard_keys().collect::<Vec<_>>()[15],
            "QUEUED#15"
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert!("DONE".parse::<TaskStatus>().is_err());
        assert!("scheduled".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn only_a_retry_leaves_a_terminal_status_and_only_from_failed_and_a_callback_keeps_it() {
        for event in Event::ALL {
            for status in event.from() {
                if status.is_terminal() {
                    assert!(
                        matches!(event, Event::Retry | Event::ClaimCallback)
                            && *status == TaskStatus::Failed,
                        "{event:?} from {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_table_is_the_documented_lifecycle() {
        use TaskStatus::*;
        let edges: Vec<(TaskStatus, TaskStatus)> = Event::ALL
            .iter()
            .flat_map(|event| event.from().iter().map(move |from| (*from, event.to())))
            .collect();
        for expected in [
            (Scheduled, Queued),
            (Queued, Scheduled),
            (Queued, Queued),
            (Queued, InProgress),
            (InProgress, Queued),
            (InProgress, InProgress),
            (InProgress, Completed),
            (InProgress, Failed),
            (Queued, Failed),
            (Scheduled, Cancelled),
            (Queued, Cancelled),
            (InProgress, Cancelled),
            (Queued, Scheduled),
            (InProgress, Scheduled),
            (Failed, Scheduled),
        ] {
            assert!(edges.contains(&expected), "missing {expected:?}");
        }
        assert!(!edges.contains(&(Scheduled, Completed)));
        assert!(!edges.contains(&(Scheduled, InProgress)));
        assert!(!edges.contains(&(Completed, Failed)));
        assert!(!edges.contains(&(Cancelled, Queued)));
        assert!(!edges.contains(&(Cancelled, Scheduled)));
        assert!(!edges.contains(&(Completed, Scheduled)));
    }

    #[test]
    fn only_the_user_s_changes_require_that_no_attempt_began() {
        for event in Event::ALL {
            assert_eq!(
                event.requires_no_attempt_in_series(),
                matches!(event, Event::Cancel | Event::Reschedule)
            );
        }
        assert!(Event::BeginAttempt.allows(TaskStatus::Queued));
        assert!(!Event::Complete.allows(TaskStatus::Queued));
    }
}
