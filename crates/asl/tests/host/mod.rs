//! A host on tokio's paused clock: virtual time that jumps to the next timer, so an hour of
//! waits takes microseconds and every instant is exact.

use asl::{Context, ExecutionOutcome, Failure, HistoryEvent, Host, StateMachine};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::sync::Mutex;
use tokio::time::Instant;

/// What a fake task answers, and how long it takes to.
pub struct Reply {
    pub after: Duration,
    pub result: Result<Value, Failure>,
}

pub fn ok(value: Value) -> Reply {
    Reply {
        after: Duration::zero(),
        result: Ok(value),
    }
}

pub fn err(error: &str) -> Reply {
    Reply {
        after: Duration::zero(),
        result: Err(Failure::new(error, format!("{error} cause"))),
    }
}

type Handler = Box<dyn FnMut(&str, &Value, DateTime<Utc>) -> Reply + Send>;

/// One invocation: when (seconds after the origin), which resource, with what input.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub at: f64,
    pub resource: String,
    pub input: Value,
}

pub struct FakeHost {
    origin: DateTime<Utc>,
    base: Instant,
    handler: Mutex<Handler>,
    pub calls: Mutex<Vec<Call>>,
    pub events: Mutex<Vec<HistoryEvent>>,
    pub fraction: f64,
}

pub fn origin() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// `origin + seconds`, as the States Language writes it.
pub fn at(seconds: i64) -> String {
    (origin() + Duration::seconds(seconds))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl FakeHost {
    pub fn new(handler: impl FnMut(&str, &Value, DateTime<Utc>) -> Reply + Send + 'static) -> Self {
        FakeHost {
            origin: origin(),
            base: Instant::now(),
            handler: Mutex::new(Box::new(handler)),
            calls: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            fraction: 0.5,
        }
    }

    /// A host whose tasks answer `replies` in order, whatever the resource.
    pub fn scripted(replies: Vec<Reply>) -> Self {
        let mut replies = replies.into_iter();
        FakeHost::new(move |_, _, _| replies.next().expect("a reply for every invocation"))
    }

    /// Seconds since the origin.
    pub fn elapsed(&self) -> f64 {
        (self.now() - self.origin).num_milliseconds() as f64 / 1000.0
    }

    pub fn call_times(&self) -> Vec<f64> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|call| call.at)
            .collect()
    }

    pub fn entered(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter_map(|event| match event {
                HistoryEvent::StateEntered { state, .. } => Some(state.clone()),
                _ => None,
            })
            .collect()
    }

    pub async fn run(&self, definition: &str, input: Value) -> ExecutionOutcome {
        let machine = StateMachine::parse(definition).unwrap_or_else(|error| panic!("{error}"));
        let context = Context {
            execution_name: "execution-1".into(),
            start_time: self.now(),
        };
        asl::execute(&machine, self, input, context).await
    }
}

#[async_trait]
impl Host for FakeHost {
    fn now(&self) -> DateTime<Utc> {
        self.origin + Duration::from_std(self.base.elapsed()).unwrap()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Ok(wait) = (at - self.origin).to_std() {
            tokio::time::sleep_until(self.base + wait).await;
        }
    }

    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, Failure> {
        let now = self.now();
        let reply = (self.handler.lock().unwrap())(resource, &input, now);
        self.calls.lock().unwrap().push(Call {
            at: self.elapsed(),
            resource: resource.to_string(),
            input,
        });
        tokio::time::sleep(reply.after.to_std().unwrap()).await;
        reply.result
    }

    fn random_fraction(&self) -> f64 {
        self.fraction
    }

    fn record(&self, event: HistoryEvent) {
        self.events.lock().unwrap().push(event);
    }
}
