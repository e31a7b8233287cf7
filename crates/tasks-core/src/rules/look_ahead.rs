//! Look-ahead dispatch: how far ahead the cron claims. Step Functions starts executions at a
//! bounded rate (a token bucket per account), so a hotspot needs its executions started long
//! before the lead time. Tasks run in slots (`slot`), so a minute's tasks need at most one start
//! per [`SLOT_SIZE`] tasks plus one per second: 100,000 tasks due in one second are 400 starts,
//! two seconds at 250 a second, but 25 million due in one minute are 100,060 starts, almost seven
//! minutes. Each run, the cron counts the SCHEDULED tasks due in each of the next minutes and
//! claims through the last minute whose starts, together with those of every task due before
//! them, could not all be made in the time left (the minutes until they are due, plus the lead
//! time, less the cron period and a margin). A steady load never triggers it; a hotspot is
//! claimed minutes early, and its executions wait in their Wait state, which costs nothing.

use crate::rules::pacing::Pacing;
use crate::rules::slot_plan::SLOT_SIZE;
use chrono::Duration;

/// Minutes ahead the cron counts (one index count per minute).
pub const LOOK_AHEAD_MINUTES: usize = 15;
/// The width of one count.
pub const BUCKET: Duration = Duration::seconds(60);
/// The cron runs this often: a minute not claimed now waits for the next run.
pub const CRON_PERIOD: Duration = Duration::seconds(60);
/// Starting is never exactly at the planned rate (throttles, failed starts retried).
pub const START_MARGIN: Duration = Duration::seconds(30);

/// The `(from, to)` bounds of `startExecutionAt` (inclusive epoch seconds) of each minute the
/// cron counts, after `now`.
pub fn buckets(now: i64) -> Vec<(i64, i64)> {
    (0..LOOK_AHEAD_MINUTES as i64)
        .map(|j| {
            let width = BUCKET.num_seconds();
            (now + j * width + 1, now + (j + 1) * width)
        })
        .collect()
}

/// The most slot executions one minute's `count` tasks need: a slot per [`SLOT_SIZE`] tasks,
/// and one more for each second they spread over; never more than one per task.
pub fn starts(count: u64) -> u64 {
    let seconds = BUCKET.num_seconds() as u64;
    count.min(count.div_ceil(SLOT_SIZE as u64) + seconds)
}

/// The latest `startExecutionAt` to claim now, given the count of tasks in each of
/// [`buckets`]: `now` unless a hotspot is coming.
pub fn claim_horizon(now: i64, counts: &[u64], pacing: &Pacing) -> i64 {
    if pacing.start_rate == 0 {
        return now;
    }
    let rate = f64::from(pacing.start_rate);
    let slack = (pacing.lead_time - CRON_PERIOD - START_MARGIN).num_seconds() as f64;
    let mut due = 0u64;
    let mut horizon = now;
    for ((_, to), count) in buckets(now).into_iter().zip(counts) {
        due += starts(*count);
        let until_due = (to - BUCKET.num_seconds() + 1 - now) as f64;
        if due as f64 / rate > until_due + slack {
            horizon = to;
        }
    }
    horizon
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_900_000_000;

    fn counts(at_minute: usize, tasks: u64) -> Vec<u64> {
        let mut counts = vec![0; LOOK_AHEAD_MINUTES];
        counts[at_minute] = tasks;
        counts
    }

    #[test]
    fn a_steady_load_is_claimed_within_the_lead_time_only() {
        // A million a day is about 700 a minute: 2.8 s of starts.
        let steady = vec![700; LOOK_AHEAD_MINUTES];
        assert_eq!(claim_horizon(NOW, &steady, &Pacing::default()), NOW);
        assert_eq!(
            claim_horizon(NOW, &counts(0, 7_000), &Pacing::default()),
            NOW
        );
    }

    #[test]
    fn a_hotspot_is_claimed_as_early_as_its_starts_need() {
        // A two-minute lead time leaves 30 s of slack after a cron period and the margin.
        let pacing = Pacing {
            lead_time: Duration::seconds(120),
            ..Pacing::default()
        };
        // 100,000 tasks in one minute are at most 460 slots: two seconds of starts.
        assert_eq!(claim_horizon(NOW, &counts(0, 100_000), &pacing), NOW);
        assert_eq!(starts(100_000), 460);
        assert_eq!(starts(30), 30);
        // 25 million are 100,060 starts at 250/s, 400 s: minute 6 (due from 361 s) is claimed,
        // minute 7 (due from 421 s) not yet.
        assert_eq!(
            claim_horizon(NOW, &counts(6, 25_000_000), &pacing),
            NOW + 7 * 60
        );
        assert_eq!(claim_horizon(NOW, &counts(7, 25_000_000), &pacing), NOW);
        // 40,060 starts (160 s) for minute 2 (due from 121 s, 150 s with the slack) are claimed
        // now with everything due before them; 30,060 (120 s) wait for the next run.
        assert_eq!(
            claim_horizon(NOW, &counts(2, 10_000_000), &pacing),
            NOW + 3 * 60
        );
        assert_eq!(claim_horizon(NOW, &counts(2, 7_500_000), &pacing), NOW);
    }

    #[test]
    fn a_zero_rate_turns_it_off() {
        let off = Pacing {
            start_rate: 0,
            ..Pacing::default()
        };
        assert_eq!(claim_horizon(NOW, &counts(0, 1_000_000), &off), NOW);
    }

    #[test]
    fn the_buckets_cover_the_next_minutes_without_gaps() {
        let buckets = buckets(NOW);
        assert_eq!(buckets.len(), LOOK_AHEAD_MINUTES);
        assert_eq!(buckets[0], (NOW + 1, NOW + 60));
        for pair in buckets.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 + 1);
        }
    }
}
