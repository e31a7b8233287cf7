//! The AWS quotas a large workload meets, as named parameters with their us-east-1 defaults (each
//! service's quota page), and the token bucket most of them are.
//!
//! | quota | default | what happens past it |
//! |---|---|---|
//! | Step Functions Standard `StartExecution` | bucket 1,300, refill 300/s | `ThrottlingException` |
//! | Step Functions Standard state transitions | bucket 5,000, refill 5,000/s | the transition waits |
//! | Lambda concurrent executions (account, region) | 1,000 | `TooManyRequestsException` |
//! | DynamoDB partition writes (one index key value lives in one partition) | 1,000 WCU/s | throttled; the SDK retries, then an error |
//! | DynamoDB on-demand table (and each index) | 40,000 WRU/s | throttled, as above |
//! | API Gateway requests (account, region) | 10,000/s, burst 5,000 | 429 to the client |
//! | the stage's throttle (the template's `ApiThrottleRate` / `ApiThrottleBurst`; and the usage plan's, the same) | 10,000/s, burst 5,000 (the account's, lowered by the parameters) | 429 to the client |
//!
//! Not modelled: Lambda's scaling rate (1,000 more concurrent executions per function every 10 s)
//! and a new on-demand table's warm throughput (4,000 writes/s until traffic has been seen);
//! both are described in docs/performance.md with how to raise them.

use tokio::time::Instant;

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_second: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quotas {
    pub start_execution: Rate,
    pub state_transitions: Rate,
    pub lambda_concurrency: usize,
    /// Not a quota but how the deployment divides it: the template's
    /// `ExecuteTaskReservedConcurrency`. execute-task may run this many at once and no more, and
    /// the other functions share the rest of `lambda_concurrency`; 0 reserves nothing.
    pub execute_task_reserved: usize,
    pub partition_writes: Rate,
    pub table_writes: Rate,
    pub api_requests: Rate,
    /// Not an AWS quota but the deployment's own limit: the stage's method throttle (and the
    /// usage plan's, with the same parameters), under the account's `api_requests`.
    pub stage_requests: Rate,
}

impl Quotas {
    /// us-east-1's defaults for a new account's Standard workflows, Lambda, DynamoDB on-demand and
    /// API Gateway REST.
    pub const DEFAULT: Quotas = Quotas {
        start_execution: Rate {
            burst: 1_300.0,
            per_second: 300.0,
        },
        state_transitions: Rate {
            burst: 5_000.0,
            per_second: 5_000.0,
        },
        lambda_concurrency: 1_000,
        execute_task_reserved: 0,
        partition_writes: Rate {
            burst: 1_000.0,
            per_second: 1_000.0,
        },
        table_writes: Rate {
            burst: 40_000.0,
            per_second: 40_000.0,
        },
        api_requests: Rate {
            burst: 5_000.0,
            per_second: 10_000.0,
        },
        stage_requests: Rate {
            burst: 5_000.0,
            per_second: 10_000.0,
        },
    };
}

#[derive(Debug)]
pub struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: Rate) -> Self {
        Bucket {
            rate,
            tokens: rate.burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let refill = (now - self.at).as_secs_f64() * self.rate.per_second;
        self.tokens = (self.tokens + refill).min(self.rate.burst);
        self.at = now;
    }

    /// Takes `n` tokens if the bucket holds them (a request that is refused when throttled).
    pub fn try_take(&mut self, n: f64) -> bool {
        let enough = self.has(n);
        if enough {
            self.take(n);
        }
        enough
    }

    /// Whether `n` tokens are there now.
    pub fn has(&mut self, n: f64) -> bool {
        self.refill();
        self.tokens >= n
    }

    pub fn take(&mut self, n: f64) {
        self.refill();
        self.tokens -= n;
    }

    /// Reserves `n` tokens and says how long to wait until they are there (a request that is
    /// delayed when throttled); reservations are served in the order they are made.
    pub fn reserve(&mut self, n: f64) -> std::time::Duration {
        self.refill();
        self.tokens -= n;
        if self.tokens >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-self.tokens / self.rate.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RATE: Rate = Rate {
        burst: 10.0,
        per_second: 5.0,
    };

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refuses_past_its_burst_and_refills_at_its_rate() {
        let mut bucket = Bucket::new(RATE);
        assert!(bucket.try_take(10.0));
        assert!(!bucket.try_take(1.0));
        tokio::time::advance(Duration::from_millis(400)).await;
        assert!(bucket.try_take(2.0));
        assert!(!bucket.try_take(1.0));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            bucket.has(10.0) && !bucket.has(10.5),
            "refilled to its burst, no more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_wait_in_turn() {
        let mut bucket = Bucket::new(RATE);
        assert_eq!(bucket.reserve(10.0), Duration::ZERO);
        assert_eq!(bucket.reserve(5.0), Duration::from_secs(1));
        assert_eq!(bucket.reserve(5.0), Duration::from_secs(2));
    }
}
