//! Pacing: the lead time, the wake-ahead, the claim grace, the stuck margin, the start rate, and the
//! limits on when a task may be scheduled.

use crate::config::{env_u64, ConfigError};
use crate::contracts::{DispatchMessage, ExecutionInput};
use crate::model::retry_policy::RetryPolicy;
use crate::model::task::start_execution_at;
use chrono::{DateTime, Duration, Utc};

/// A task due within this long when it is created is handed to the workflow by the api: the
/// cron runs every minute and needs half a minute to claim, send and start a slot.
pub const HAND_OFF_WITHIN: Duration = Duration::seconds(90);
/// execute-task sleeps at most this much beyond the wake-ahead when woken early.
pub const EARLY_WAKE_ALLOWANCE: Duration = Duration::seconds(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// How long before its time a task is handed to the workflow engine.
    pub lead_time: Duration,
    /// How long before its time the workflow wakes execute-task, which sleeps the rest itself.
    pub wake_ahead: Duration,
    /// How long a claimed (QUEUED) task may wait for its execution before the cron re-sends it.
    pub claim_grace: Duration,
    /// How long after its time an IN_PROGRESS task may wait for its outcome before the cron asks
    /// the workflow engine about its execution. At least the longest an execution runs past the
    /// task's time (`timing::check` holds the relation), so a healthy execution is never disturbed.
    pub stuck_after: Duration,
    /// The executions per second the cron counts on starting when it decides how far ahead to
    /// claim (`look_ahead`); 0 claims only within the lead time. Below Step Functions'
    /// StartExecution refill (300/s in the large regions), leaving room for the api's hand-offs,
    /// the slots' hand-overs and retries.
    pub start_rate: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            lead_time: Duration::seconds(180),
            wake_ahead: Duration::milliseconds(1000),
            claim_grace: Duration::seconds(180),
            stuck_after: Duration::seconds(900),
            start_rate: 250,
        }
    }
}

impl Pacing {
    /// `LEAD_TIME_SECONDS` (default 180), `WAKE_AHEAD_MS` (default 1000, 0 turns it off),
    /// `CLAIM_GRACE_SECONDS` (default 180), `STUCK_AFTER_SECONDS` (default 900),
    /// `START_RATE_PER_SECOND` (default 250, 0 turns look-ahead off).
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Pacing::default();
        let [lead_time, wake_ahead, claim_grace, stuck_after, start_rate] = crate::config::PACING;
        Ok(Pacing {
            lead_time: Duration::seconds(env_u64(
                lead_time,
                defaults.lead_time.num_seconds() as u64,
            )? as i64),
            wake_ahead: Duration::milliseconds(env_u64(
                wake_ahead,
                defaults.wake_ahead.num_milliseconds() as u64,
            )? as i64),
            claim_grace: Duration::seconds(env_u64(
                claim_grace,
                defaults.claim_grace.num_seconds() as u64,
            )? as i64),
            stuck_after: Duration::seconds(env_u64(
                stuck_after,
                defaults.stuck_after.num_seconds() as u64,
            )? as i64),
            start_rate: u32::try_from(env_u64(start_rate, u64::from(defaults.start_rate))?)
                .unwrap_or(u32::MAX),
        })
    }

    /// Epoch second from which the cron hands the task on.
    pub fn start_execution_at(&self, timestamp: DateTime<Utc>) -> i64 {
        start_execution_at(timestamp, self.lead_time)
    }

    /// Whether a task created (or changed) now goes to the workflow at once: it is due before
    /// the next cron run (at most [`HAND_OFF_WITHIN`] less a minute away) could claim it with time
    /// to spare. One due later waits for the cron, which puts it in a slot with the other tasks of
    /// its second instead of one of its own.
    pub fn hands_off_at_once(&self, timestamp: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        timestamp - now <= HAND_OFF_WITHIN.min(self.lead_time)
    }

    pub fn wake_at(&self, timestamp: DateTime<Utc>) -> DateTime<Utc> {
        timestamp - self.wake_ahead
    }

    pub fn execution_input(&self, message: &DispatchMessage) -> ExecutionInput {
        ExecutionInput {
            id: message.id.clone(),
            timestamp: message.timestamp,
            wake_at: self.wake_at(message.timestamp),
            series: message.series,
        }
    }

    /// The longest execute-task will sleep to reach a task's second; woken earlier, it fails
    /// with a retryable error instead of holding a Lambda for long.
    pub fn max_sleep(&self) -> Duration {
        self.wake_ahead + EARLY_WAKE_ALLOWANCE
    }

    /// The GSI bound for claims that have waited too long for their execution.
    pub fn stale_claim_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.claim_grace
    }

    /// The GSI bound (`startExecutionAt`) for IN_PROGRESS tasks whose time is more than
    /// `stuck_after` ago.
    pub fn stuck_start_execution_at(&self, now: DateTime<Utc>) -> i64 {
        self.start_execution_at(now - self.stuck_after)
    }

    /// When an execution still running a task with `policy` has outlived every deadline the
    /// policy allows: `stuck_after` covers the default policy (a relation `timing.rs` checks),
    /// and a policy of its own adds what it allows beyond the default's: longer waits (each up
    /// to its `maxSeconds`), and each further attempt a default attempt's share of
    /// `stuck_after`. Before this, a running execution is healthy, however long it has run.
    pub fn overdue_at(&self, time: DateTime<Utc>, policy: &RetryPolicy) -> DateTime<Utc> {
        let default = RetryPolicy::default();
        let longer_waits = (policy.longest_waits() - default.longest_waits()).max(Duration::zero());
        let more_attempts = policy.max_attempts.saturating_sub(default.max_attempts) as i32;
        let per_attempt = self.stuck_after / default.max_attempts as i32;
        time + self.stuck_after + longer_waits + per_attempt * more_attempts
    }
}

#[cfg(test)]
mod tests {
    use crate::model::retry_policy::Backoff;

    #[test]
    fn a_running_execution_is_overdue_only_past_its_own_policy_s_deadlines() {
        let pacing = Pacing::default();
        let time = Utc::now();
        let default = RetryPolicy::default();
        assert_eq!(pacing.overdue_at(time, &default), time + pacing.stuck_after);
        let fewer = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        assert_eq!(pacing.overdue_at(time, &fewer), time + pacing.stuck_after);
        // Twenty attempts up to an hour apart: 19 hours of waits where the default allows 15
        // minutes, and 16 more attempts.
        let patient = RetryPolicy {
            max_attempts: 20,
            backoff: Backoff {
                max_seconds: 3_600,
                ..default.backoff
            },
            ..RetryPolicy::default()
        };
        let expected = time
            + pacing.stuck_after
            + (Duration::hours(19) - default.longest_waits())
            + pacing.stuck_after / 4 * 16;
        assert_eq!(pacing.overdue_at(time, &patient), expected);
    }

    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 6, 1, h, m, s).unwrap()
    }

    #[test]
    fn start_execution_at_is_timestamp_minus_lead_time_in_epoch_seconds() {
        let pacing = Pacing::default();
        let ts = at(12, 0, 0) + Duration::milliseconds(999);
        assert_eq!(pacing.start_execution_at(ts), at(11, 57, 0).timestamp());
        let custom = Pacing {
            lead_time: Duration::seconds(30),
            ..Pacing::default()
        };
        assert_eq!(
            custom.start_execution_at(at(12, 0, 0)),
            at(11, 59, 30).timestamp()
        );
    }

    #[test]
    fn the_api_hands_off_what_the_next_cron_run_would_claim_too_late() {
        let pacing = Pacing::default();
        let due = at(12, 0, 0);
        assert!(!pacing.hands_off_at_once(due, at(11, 58, 29)));
        assert!(pacing.hands_off_at_once(due, at(11, 58, 30)));
        assert!(pacing.hands_off_at_once(due, at(12, 30, 0)));
        let short_lead = Pacing {
            lead_time: Duration::seconds(60),
            ..pacing
        };
        assert!(!short_lead.hands_off_at_once(due, at(11, 58, 59)));
        assert!(short_lead.hands_off_at_once(due, at(11, 59, 0)));
    }

    #[test]
    fn wake_at_is_timestamp_minus_wake_ahead() {
        let pacing = Pacing::default();
        let ts = at(12, 0, 0);
        assert_eq!(pacing.wake_at(ts), ts - Duration::seconds(1));
        let off = Pacing {
            wake_ahead: Duration::zero(),
            ..pacing
        };
        assert_eq!(off.wake_at(ts), ts);
        let input = pacing.execution_input(&DispatchMessage {
            id: "a".into(),
            timestamp: ts,
            series: 1,
        });
        assert_eq!(input.wake_at, ts - Duration::seconds(1));
        assert_eq!(pacing.max_sleep(), Duration::seconds(4));
    }
}
