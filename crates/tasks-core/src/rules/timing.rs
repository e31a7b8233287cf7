//! How the pipeline's timings must relate, in one place. The values live in the SAM template
//! (and, for local mode, in `tasks-local`'s settings); a test reads them from the template and
//! runs [`Timings::violations`], so changing one value without the others fails the build.

use crate::model::retry_policy::RetryPolicy;
use crate::rules::error_types::{StateRetry, STATUS_RETRY};
use crate::rules::pacing::Pacing;
use crate::rules::slot_plan::{IN_SLOT_ATTEMPT_MARGIN, MAX_PREPARE, RECORD_PATIENCE};
use crate::support::call_tries::Tries;
use chrono::Duration;

/// Step Functions ends a Wait at the start of the second, so it may wake up to a second early.
pub const WAIT_TRUNCATION: Duration = Duration::seconds(1);
/// The longest one DynamoDB call may take in execute-task, retries included (the SDK's
/// operation timeout in Lambda).
pub const STORE_CALL_TIMEOUT: Duration = Duration::seconds(5);
/// The longest execute-task waits for the webhook's DNS answer.
pub const DNS_TIMEOUT: Duration = Duration::seconds(2);
/// Longer than one attempt can take once it is sent (the webhook timeout, 10 s, and a store
/// call): a new attempt of the same series waits this long after the last one's send time.
pub const ATTEMPT_IN_FLIGHT: Duration = Duration::seconds(20);
/// How long process-sqs-records waits for its records' starts before it reports the unfinished
/// ones failed (they come back after the visibility timeout): its function timeout must leave
/// time to answer after it.
pub const START_BUDGET: Duration = Duration::seconds(8);
/// What process-sqs-records needs after its budget: to count, log and answer.
pub const START_ANSWER_TIME: Duration = Duration::seconds(1);
/// The dispatch queue's visibility timeout and receives before the dead-letter queue, as the
/// template sets them (a test checks) and local mode creates its queue.
pub const QUEUE_VISIBILITY_TIMEOUT: Duration = Duration::seconds(60);
pub const QUEUE_MAX_RECEIVE_COUNT: u32 = 3;

/// Every timing the relations speak of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    pub pacing: Pacing,
    /// How often the cron runs (EventBridge `rate(1 minute)`).
    pub cron_period: Duration,
    /// The dispatch queue's visibility timeout.
    pub visibility_timeout: Duration,
    /// Deliveries of one message before SQS moves it to the dead-letter queue.
    pub max_receive_count: u32,
    /// process-sqs-records' function timeout.
    pub start_timeout: Duration,
    /// execute-task's function timeout.
    pub execute_timeout: Duration,
    /// update-status' function timeout.
    pub update_timeout: Duration,
    pub webhook_timeout: Duration,
}

impl Timings {
    /// The longest one execute-task invocation runs, the longer of a slot's two worst paths. It
    /// is woken at most the wake-ahead, a slot's preparation and the Wait's truncation early.
    /// The first attempt reads the task, begins the attempt with its tries and resolves the
    /// target (all before the task's time when they are quick), sleeps to the time, sends, and
    /// records the outcome patiently; the record's last try leaves time for the hand-over's send
    /// within the patience. The last attempt a slot starts (a retry, or a try after a failed
    /// call) starts [`IN_SLOT_ATTEMPT_MARGIN`] before the patience ends: its calls, its send,
    /// one record try and the hand-over's send. A failure callback is never called in a slot
    /// (the task's own execution calls it), and a single task's run is shorter than a slot's.
    pub fn execute_task_worst_case(&self) -> Duration {
        let before_time = MAX_PREPARE + self.pacing.wake_ahead + WAIT_TRUNCATION;
        let begin = BEGIN_TRIES.worst_case(STORE_CALL_TIMEOUT);
        let calls = STORE_CALL_TIMEOUT + begin + DNS_TIMEOUT;
        let first =
            before_time.max(calls) + self.webhook_timeout + RECORD_PATIENCE + STORE_CALL_TIMEOUT;
        let last = before_time + RECORD_PATIENCE - IN_SLOT_ATTEMPT_MARGIN
            + calls
            + self.webhook_timeout
            + STORE_CALL_TIMEOUT
            + send_batch_worst_case();
        first.max(last)
    }

    /// The longest an execution with the default retry policy runs after its task's time:
    /// every attempt, the waits between them, then update-status with its retries. (A task's
    /// own policy may run for hours; the stuck sweep leaves a running execution alone.)
    pub fn execution_after_time(&self) -> Duration {
        let policy = RetryPolicy::default();
        let waits = (1..policy.max_attempts)
            .map(|retry| policy.backoff(retry))
            .fold(Duration::zero(), |sum, wait| sum + wait);
        self.execute_timeout * policy.max_attempts as i32
            + waits
            + series_span(STATUS_RETRY, self.update_timeout)
    }

    /// Each broken relation, in words; empty when the timings fit together.
    pub fn violations(&self) -> Vec<String> {
        let s = &self.pacing;
        let mut broken = Vec::new();
        let mut require = |holds: bool, what: String| {
            if !holds {
                broken.push(what);
            }
        };
        require(
            self.start_timeout >= START_BUDGET + START_ANSWER_TIME,
            format!(
                "process-sqs-records' timeout ({}s) must cover its budget for the starts and its answer ({}s)",
                self.start_timeout.num_seconds(),
                (START_BUDGET + START_ANSWER_TIME).num_seconds()
            ),
        );
        require(
            self.visibility_timeout >= self.start_timeout * 6,
            format!(
                "the visibility timeout ({}s) must be at least 6x process-sqs-records' timeout ({}s), as AWS recommends for event sources",
                self.visibility_timeout.num_seconds(),
                self.start_timeout.num_seconds()
            ),
        );
        require(
            s.lead_time >= self.cron_period + self.visibility_timeout,
            format!(
                "the lead time ({}s) must cover a cron period ({}s) plus one visibility timeout ({}s), so a failed start is tried again before the task's time",
                s.lead_time.num_seconds(),
                self.cron_period.num_seconds(),
                self.visibility_timeout.num_seconds()
            ),
        );
        require(
            s.claim_grace >= self.visibility_timeout * self.max_receive_count as i32,
            format!(
                "the claim grace ({}s) must be at least the visibility timeout times maxReceiveCount ({}s), so the sweep does not race SQS's redeliveries",
                s.claim_grace.num_seconds(),
                (self.visibility_timeout * self.max_receive_count as i32).num_seconds()
            ),
        );
        require(
            self.execute_timeout > self.execute_task_worst_case(),
            format!(
                "execute-task's timeout ({}s) must exceed its worst case ({}s): a Lambda timeout after the send would leave the outcome unknown",
                self.execute_timeout.num_seconds(),
                self.execute_task_worst_case().num_seconds()
            ),
        );
        require(
            IN_SLOT_ATTEMPT_MARGIN > self.webhook_timeout + send_batch_worst_case(),
            format!(
                "a slot's last attempt ({}s before its patience ends) must leave time for its send and its hand-over ({}s)",
                IN_SLOT_ATTEMPT_MARGIN.num_seconds(),
                (self.webhook_timeout + send_batch_worst_case()).num_seconds()
            ),
        );
        require(
            ATTEMPT_IN_FLIGHT > self.webhook_timeout + STORE_CALL_TIMEOUT,
            format!(
                "an attempt's longest flight ({}s) must exceed the webhook timeout plus a store call ({}s), so no attempt begins while another may be in flight",
                ATTEMPT_IN_FLIGHT.num_seconds(),
                (self.webhook_timeout + STORE_CALL_TIMEOUT).num_seconds()
            ),
        );
        require(
            s.max_sleep() >= s.wake_ahead + WAIT_TRUNCATION,
            format!(
                "execute-task must sleep through the wake-ahead plus the Wait's truncation ({}ms), not fail as woken too early",
                (s.wake_ahead + WAIT_TRUNCATION).num_milliseconds()
            ),
        );
        require(
            s.stuck_after >= self.execution_after_time(),
            format!(
                "stuck-after ({}s) must be at least the longest an execution runs past the task's time ({}s), so a healthy execution is not disturbed",
                s.stuck_after.num_seconds(),
                self.execution_after_time().num_seconds()
            ),
        );
        broken
    }
}

/// The attempts of one retried Task state at their longest: each times out, then waits.
fn series_span(policy: StateRetry, attempt_timeout: Duration) -> Duration {
    let waits: Duration = (1..=policy.max_attempts)
        .map(|retry| Duration::from_std(policy.delay(retry)).unwrap_or(Duration::MAX))
        .fold(Duration::zero(), |sum, wait| sum + wait);
    attempt_timeout * (policy.max_attempts as i32 + 1) + waits
}

/// Tries of the write that begins an attempt before the run gives up (Step Functions then runs
/// execute-task again).
pub(crate) const BEGIN_TRIES: Tries = Tries {
    count: 3,
    pause: std::time::Duration::from_millis(100),
};

/// SQS takes at most ten messages per SendMessageBatch.
pub const SEND_BATCH_SIZE: usize = 10;

/// Sends of a batch before its refused claims are given back.
pub(crate) const SEND_TRIES: i32 = 3;

/// The pause before the `tries`-th send of a batch's refused messages.
pub(crate) fn send_pause(tries: i32) -> std::time::Duration {
    std::time::Duration::from_millis(200 * tries as u64)
}

/// The longest `flow::claim::send_batch_soon` takes: every send runs to the SDK's call timeout, with the
/// pauses between them.
pub fn send_batch_worst_case() -> Duration {
    let pauses = (1..SEND_TRIES)
        .map(|tries| Duration::from_std(send_pause(tries)).unwrap_or_default())
        .fold(Duration::zero(), |sum, pause| sum + pause);
    STORE_CALL_TIMEOUT * SEND_TRIES + pauses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed() -> Timings {
        Timings {
            pacing: Pacing::default(),
            cron_period: Duration::seconds(60),
            visibility_timeout: QUEUE_VISIBILITY_TIMEOUT,
            max_receive_count: QUEUE_MAX_RECEIVE_COUNT,
            start_timeout: Duration::seconds(10),
            execute_timeout: Duration::seconds(120),
            update_timeout: Duration::seconds(10),
            webhook_timeout: Duration::seconds(10),
        }
    }

    #[test]
    fn the_defaults_fit_together() {
        assert_eq!(deployed().violations(), Vec::<String>::new());
        assert_eq!(deployed().execute_task_worst_case(), Duration::seconds(107));
        assert_eq!(send_batch_worst_case(), Duration::milliseconds(15_600));
    }

    #[test]
    fn each_relation_is_checked() {
        let longer_visibility = Timings {
            visibility_timeout: Duration::seconds(180),
            ..deployed()
        };
        let broken = longer_visibility.violations();
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(broken[0].contains("lead time") && broken[1].contains("claim grace"));
        let short_lambda = Timings {
            execute_timeout: Duration::seconds(100),
            ..deployed()
        };
        assert!(short_lambda.violations()[0].contains("execute-task's timeout"));
        let eager_sweep = Timings {
            pacing: Pacing {
                stuck_after: Duration::seconds(60),
                ..Pacing::default()
            },
            ..deployed()
        };
        assert!(eager_sweep.violations()[0].contains("stuck-after"));
    }
}
