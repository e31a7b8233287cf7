//! Calls to AWS that may fail for a moment (after the SDK's own retries): tried again a few
//! times within the same run, because the alternative is a later run, a minute or more away.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How often a call is tried, and the pause after its first failure (the n-th pause is n times
/// as long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tries {
    pub count: u32,
    pub pause: Duration,
}

impl Tries {
    /// The longest every try of a call takes, each at most `call`, with the pauses between.
    pub(crate) fn worst_case(self, call: chrono::Duration) -> chrono::Duration {
        let pauses: u32 = (1..self.count).sum();
        let pause =
            chrono::Duration::from_std(self.pause * pauses).unwrap_or(chrono::Duration::MAX);
        call * self.count as i32 + pause
    }

    /// Calls `call` (with the try's number, from 1) until it succeeds, fails in a way `passing`
    /// says will not pass, or has been tried `count` times; returns the last result.
    pub(crate) async fn run<T, E, Fut>(
        self,
        what: &str,
        mut call: impl FnMut(u32) -> Fut,
        passing: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        E: Display,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut tries = 1;
        loop {
            match call(tries).await {
                Err(error) if tries < self.count && passing(&error) => {
                    tracing::warn!(%error, tries, "{what} failed; trying again");
                    tokio::time::sleep(self.pause * tries).await;
                    tries += 1;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const THREE: Tries = Tries {
        count: 3,
        pause: Duration::from_millis(100),
    };

    #[tokio::test(start_paused = true)]
    async fn tries_again_while_the_error_may_pass() {
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<u32, String> = THREE
            .run(
                "call",
                |tries| {
                    calls.set(calls.get() + 1);
                    async move {
                        if tries < 3 {
                            Err("busy".to_string())
                        } else {
                            Ok(tries)
                        }
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Ok(3));
        assert_eq!(calls.get(), 3);
        // Paused 100 ms, then 200 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_try_or_an_error_that_stays() {
        let calls = Cell::new(0);
        let always = THREE
            .run(
                "call",
                |_| {
                    calls.set(calls.get() + 1);
                    async { Err::<(), _>("busy") }
                },
                |_| true,
            )
            .await;
        assert_eq!((always, calls.get()), (Err("busy"), 3));
        calls.set(0);
        let lasting = THREE
            .run(
                "call",
                |_| {
                    calls.set(calls.get() + 1);
                    async { Err::<(), _>("not found") }
                },
                |error| *error != "not found",
            )
            .await;
        assert_eq!((lasting, calls.get()), (Err("not found"), 1));
    }
}
