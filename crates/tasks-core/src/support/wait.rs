//! Waiting for a wall-clock instant closer than the timer's millisecond allows, never before it:
//! tokio's timer (which the simulator pauses and advances) sleeps until shortly before, then the
//! last stretch is a bounded yield loop that re-reads the clock.

use crate::ports::Clock;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// tokio's timer fires on a 1 ms tick and up to a tick late: waking this long before the
/// instant leaves the rest to the yield loop, which is also the most CPU one wait spends.
pub const FINE_WINDOW: Duration = Duration::from_millis(2);

/// A clock that reads the same this many times in a row does not move by itself (the
/// simulator's paused clock): the rest of the wait goes back to the timer.
const STILL_READINGS: u32 = 8;

/// Returns once `clock` reads `at` or later.
pub async fn sleep_until(clock: &dyn Clock, at: DateTime<Utc>) {
    loop {
        let remaining = match (at - clock.now()).to_std() {
            Ok(remaining) if !remaining.is_zero() => remaining,
            _ => return,
        };
        if remaining > FINE_WINDOW {
            tokio::time::sleep(remaining - FINE_WINDOW).await;
        } else if !yield_until(clock, at).await {
            tokio::time::sleep(remaining).await;
        }
    }
}

/// Yields to the runtime until `clock` reads `at`: true when it does; false when the clock
/// stands still or moves back out of the window (the timer takes over).
async fn yield_until(clock: &dyn Clock, at: DateTime<Utc>) -> bool {
    let window = TimeDelta::from_std(FINE_WINDOW).unwrap_or_default();
    let mut last = clock.now();
    let mut still = 0;
    while last < at {
        tokio::task::yield_now().await;
        let now = clock.now();
        still = if now == last { still + 1 } else { 0 };
        if still == STILL_READINGS || at - now > window {
            return false;
        }
        last = now;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SystemClock;

    struct PausedClock(DateTime<Utc>, tokio::time::Instant);

    impl Clock for PausedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0 + TimeDelta::from_std(tokio::time::Instant::now() - self.1).unwrap()
        }
    }

    #[tokio::test]
    async fn the_system_clock_reads_the_instant_or_later_on_return() {
        let clock = SystemClock;
        for delay_ms in [0, 1, 3, 7] {
            let at = clock.now() + TimeDelta::milliseconds(delay_ms);
            sleep_until(&clock, at).await;
            assert!(clock.now() >= at, "returned before {at}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_returns_at_the_instant_without_spinning_forever() {
        let start = Utc::now();
        let clock = PausedClock(start, tokio::time::Instant::now());
        let at = start + TimeDelta::milliseconds(1_500) + TimeDelta::microseconds(250);
        sleep_until(&clock, at).await;
        // The paused timer advances to its next millisecond tick.
        assert!(clock.now() >= at && clock.now() - at < TimeDelta::milliseconds(1));
    }

    #[tokio::test]
    async fn an_instant_in_the_past_returns_at_once() {
        let clock = SystemClock;
        let before = std::time::Instant::now();
        sleep_until(&clock, clock.now() - TimeDelta::seconds(1)).await;
        assert!(before.elapsed() < Duration::from_millis(1));
    }
}
