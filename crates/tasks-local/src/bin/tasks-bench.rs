//! `make bench`: seeds N due tasks into the emulator and times one cron run until every task is
//! on the queue, while a consumer drains the queue as Lambda's event source would.
//!
//! The emulator is slow where AWS is not (its SQS recomputes queue attributes on every send), so
//! the table gives the time the service spent waiting on each kind of call beside the wall time.

use async_trait::async_trait;
use chrono::{Duration, Utc};
use futures::{stream, StreamExt};
use local_emulator::Moto;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tasks_aws::{DynamoDbStore, SqsQueue};
use tasks_core::testing::memory::MemoryWorkflow;
use tasks_core::{
    DispatchQueue, Pacing, Page, QueueError, QueueMessage, StatusQuery, StoreError, SystemClock,
    Task, TaskStatus, TaskStore, Transition,
};
use tasks_cron::Cron;

#[derive(Default)]
struct CallStats {
    calls: AtomicU64,
    micros: AtomicU64,
}

impl CallStats {
    fn record(&self, started: Instant) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} calls, {:.1} s summed |",
            self.calls.load(Ordering::Relaxed),
            self.micros.load(Ordering::Relaxed) as f64 / 1e6
        )
    }
}

/// Forwards to the real adapters and counts the time spent in each kind of call.
struct Timed<S> {
    inner: S,
    queries: CallStats,
    claims: CallStats,
    sends: CallStats,
}

#[async_trait]
impl TaskStore for Timed<DynamoDbStore> {
    async fn create(&self, task: &Task) -> Result<(), StoreError> {
        self.inner.create(task).await
    }
    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.inner.get(id).await
    }
    async fn query(&self, query: &StatusQuery) -> Result<Page, StoreError> {
        let started = Instant::now();
        let page = self.inner.query(query).await;
        self.queries.record(started);
        page
    }
    async fn transition(&self, id: &str, change: &Transition) -> Result<Task, StoreError> {
        let started = Instant::now();
        let task = self.inner.transition(id, change).await;
        self.claims.record(started);
        task
    }
    async fn count(&self, status: TaskStatus, from: i64, to: i64) -> Result<u64, StoreError> {
        let started = Instant::now();
        let count = self.inner.count(status, from, to).await;
        self.queries.record(started);
        count
    }
}

#[async_trait]
impl DispatchQueue for Timed<SqsQueue> {
    async fn send_batch(&self, messages: &[QueueMessage]) -> Result<Vec<String>, QueueError> {
        let started = Instant::now();
        let failed = self.inner.send_batch(messages).await;
        self.sends.record(started);
        failed
    }
}

fn timed<S>(inner: S) -> Arc<Timed<S>> {
    Arc::new(Timed {
        inner,
        queries: CallStats::default(),
        claims: CallStats::default(),
        sends: CallStats::default(),
    })
}

/// User + system CPU time this process has used: the service's own cost, apart from the
/// emulator's.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[tokio::main]
async fn main() -> Result<(), tasks_local::Error> {
    let count: usize = std::env::args()
        .skip_while(|arg| arg != "--tasks")
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let emulator = Moto::start().await?;
    let config = tasks_aws::emulator_config(emulator.endpoint()).await;
    let pacing = Pacing::default();
    let (store, queue) =
        tasks_aws::local_resources(&config, "tasksTable-bench", "tasksQueue-bench").await?;
    let store = timed(store);
    let queue = timed(queue);

    eprintln!("seeding {count} due tasks...");
    let seeding = Instant::now();
    let now = Utc::now();
    stream::iter(0..count)
        .map(|i| {
            let store = store.clone();
            async move {
                let timestamp = now + Duration::seconds(60) + Duration::milliseconds(i as i64);
                let task = Task::new(format!("bench-{i:06}"), timestamp, pacing.lead_time, now);
                store.create(&task).await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    eprintln!("seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    let drained = Arc::new(AtomicU64::new(0));
    // Several drainers, as Lambda's event source polls: the emulator's SQS slows down with
    // queue depth, so the queue must stay shallow for the figure to be about the cron.
    let drains: Vec<_> = (0..tasks_local::consumer::POLLERS)
        .map(|_| {
            let queue = queue.clone();
            let drained = drained.clone();
            tokio::spawn(async move {
                while (drained.load(Ordering::Relaxed) as usize) < count {
                    if let Ok(messages) = queue.inner.receive(10, 1).await {
                        let receipts: Vec<String> =
                            messages.iter().map(|m| m.receipt_handle.clone()).collect();
                        drained.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                        let _ = queue.inner.delete(&receipts).await;
                    }
                }
            })
        })
        .collect();

    let cron = Cron {
        store: store.clone(),
        queue: queue.clone(),
        // Nothing is stale or stuck in the benchmark: the sweeps find no task to ask about.
        workflow: Arc::new(MemoryWorkflow::new()),
        clock: Arc::new(SystemClock),
        pacing,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    let cpu_before_run = cpu_seconds();
    let started = Instant::now();
    let summary = cron.run().await?;
    let run_seconds = started.elapsed().as_secs_f64();
    for drain in drains {
        drain.await?;
    }
    let all_on_queue = started.elapsed().as_secs_f64();

    println!("| metric | value |");
    println!("|---|---|");
    println!("| tasks seeded (due) | {count} |");
    println!(
        "| dispatched by one cron run | {} |",
        summary.due.dispatched
    );
    println!(
        "| errors / lost races | {} / {} |",
        summary.due.errors, summary.due.lost_races
    );
    println!("| cron run wall time | {run_seconds:.2} s |");
    println!("| throughput | {:.0} tasks/s |", count as f64 / run_seconds);
    println!("| until the consumer had every task | {all_on_queue:.2} s |");
    println!(
        "| CPU time of the service process (seeding excluded) | {:.2} s |",
        cpu_seconds() - cpu_before_run
    );
    println!("{}", store.queries.row("DynamoDB Query (GSI pages)"));
    println!(
        "{}",
        store
            .claims
            .row("DynamoDB conditional UpdateItem (claims, 32 in flight)")
    );
    println!("{}", queue.sends.row("SQS SendMessageBatch (8 in flight)"));
    Ok(())
}
