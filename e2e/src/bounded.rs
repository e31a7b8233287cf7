//! Running async jobs with a cap on how many are in flight.

use std::future::Future;
use tokio::task::{JoinError, JoinSet};

/// Runs `job` on each item with at most `limit` in flight and returns the results in completion
/// order. `job` is called only once a slot is free, so whatever it computes before its future
/// starts (a task's time, say) is computed just before its request goes out, in item order. The
/// first error ends the run; jobs still in flight are then aborted.
pub async fn try_for_each<I, T, F, Fut>(
    items: I,
    limit: usize,
    mut job: F,
) -> Result<Vec<T>, String>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let limit = limit.max(1);
    let mut running = JoinSet::new();
    let mut done = Vec::new();
    for item in items {
        if running.len() >= limit {
            if let Some(result) = running.join_next().await {
                done.push(joined(result)?);
            }
        }
        running.spawn(job(item));
    }
    while let Some(result) = running.join_next().await {
        done.push(joined(result)?);
    }
    Ok(done)
}

fn joined<T>(result: Result<Result<T, String>, JoinError>) -> Result<T, String> {
    result.map_err(|e| format!("a worker stopped: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn keeps_to_the_limit_and_calls_jobs_in_order() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut started = Vec::new();
        let mut results = try_for_each(0..20, 4, |i| {
            started.push(i);
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(i * 2)
            }
        })
        .await
        .unwrap();
        results.sort_unstable();
        assert_eq!(results, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(started, (0..20).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[tokio::test]
    async fn stops_at_the_first_error() {
        let mut started = 0;
        let result = try_for_each(0..100, 2, |i| {
            started += 1;
            async move {
                if i == 3 {
                    Err(format!("job {i} failed"))
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok(i)
                }
            }
        })
        .await;
        assert_eq!(result, Err("job 3 failed".to_string()));
        assert!(started < 100);
    }
}
