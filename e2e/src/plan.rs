//! When each task of the precision run is due, decided just before it is created.
//!
//! Tasks are created latest first, so the earliest are created last. Before each create the
//! planner estimates, from the pace so far, when creating will have finished, and keeps the
//! window's start at least `lead` after that: no task comes due while others are still being
//! created, whose requests would then compete with the webhooks being timed. The tasks still to
//! create are spread evenly between the window's start and the earliest task created so far;
//! while the start stays put, that is an even spread over the whole window.

/// Times are Unix milliseconds.
#[derive(Debug)]
pub struct Plan {
    count: i64,
    in_flight: i64,
    lead_ms: i64,
    began_ms: i64,
    planned_start_ms: i64,
    start_ms: i64,
    earliest_ms: i64,
}

impl Plan {
    pub fn new(
        now_ms: i64,
        start_ms: i64,
        spread_ms: i64,
        count: usize,
        in_flight: usize,
        lead_ms: i64,
    ) -> Self {
        Plan {
            count: to_i64(count),
            in_flight: to_i64(in_flight),
            lead_ms,
            began_ms: now_ms,
            planned_start_ms: start_ms,
            start_ms,
            earliest_ms: start_ms + spread_ms,
        }
    }

    /// The time of task `index`; indices must come in descending order, from `count - 1` to 0.
    pub fn time_of(&mut self, index: usize, now_ms: i64) -> i64 {
        let left = to_i64(index) + 1;
        let created = self.count - left;
        let finish = if created == 0 {
            now_ms
        } else {
            // The last create still takes about as long as `in_flight` of them do at this pace.
            now_ms + (now_ms - self.began_ms) * (left + self.in_flight) / created
        };
        self.start_ms = self.start_ms.max(finish + self.lead_ms);
        let span = (self.earliest_ms - self.start_ms).max(0);
        let at = self.start_ms + span * to_i64(index) / left;
        self.earliest_ms = self.earliest_ms.min(at);
        at
    }

    /// How much later than planned the window starts, because creating was slow.
    pub fn start_moved_ms(&self) -> i64 {
        self.start_ms - self.planned_start_ms
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_creates_spread_evenly_over_the_window() {
        let mut plan = Plan::new(0, 5_000, 60_000, 4, 16, 2_000);
        let times: Vec<i64> = (0..4).rev().map(|i| plan.time_of(i, 10)).collect();
        assert_eq!(times, [50_000, 35_000, 20_000, 5_000]);
        assert_eq!(plan.start_moved_ms(), 0);
    }

    #[test]
    fn slow_creates_move_the_start_and_squeeze_the_rest() {
        // 2 in flight, 1 s per create: after 4 creates in 2 s, 6 to go and 2 in flight ahead
        // means creating ends at 2 s + 8 * 0.5 s = 6 s, so the start moves to 8 s.
        let mut plan = Plan::new(0, 5_000, 10_000, 10, 2, 2_000);
        let first: Vec<i64> = (6..10).rev().map(|i| plan.time_of(i, 0)).collect();
        assert_eq!(first, [14_000, 13_000, 12_000, 11_000]);
        assert_eq!(plan.time_of(5, 2_000), 8_000 + 3_000 * 5 / 6);
        assert_eq!(plan.start_moved_ms(), 3_000);
        let rest: Vec<i64> = (0..5).rev().map(|i| plan.time_of(i, 2_000)).collect();
        assert!(rest.windows(2).all(|pair| pair[0] > pair[1]));
        assert_eq!(*rest.last().unwrap(), 8_000);
    }

    #[test]
    fn a_closed_window_puts_the_rest_at_its_start() {
        let mut plan = Plan::new(0, 1_000, 1_000, 3, 1, 500);
        assert_eq!(plan.time_of(2, 0), 1_666);
        // 1 s per create, 2 to go plus 1 in flight: done at 4 s, start at 4.5 s.
        assert_eq!(plan.time_of(1, 1_000), 4_500);
        assert_eq!(plan.time_of(0, 1_000), 4_500);
    }

    #[test]
    fn a_zero_spread_puts_every_task_at_the_start() {
        let mut plan = Plan::new(0, 5_000, 0, 3, 16, 2_000);
        assert_eq!([2, 1, 0].map(|i| plan.time_of(i, 0)), [5_000; 3]);
    }
}
