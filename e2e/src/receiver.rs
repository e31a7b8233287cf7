//! The webhook receiver: an HTTP server that records when each request arrived and which task
//! (and attempt) it was for, and answers 200 (or 410 when asked to, by [`gone`]).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::task::JoinHandle;

/// Webhook bodies are small; a larger one is drained up to this and dropped.
const BODY_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub arrived_at: DateTime<Utc>,
    pub task_id: Option<String>,
    pub attempt: Option<String>,
    pub task_timestamp: Option<String>,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

pub struct Receiver {
    url: String,
    log: Log,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Binds `bind` and serves every path; the service is given `url`, or
    /// `http://<bound address>/hook` when none is set.
    pub async fn start(bind: SocketAddr, url: Option<String>) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("webhook receiver: cannot bind {bind}: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("webhook receiver: no local address: {e}"))?;
        let log = Log::default();
        let app = Router::new().fallback(record).with_state(log.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("webhook receiver on {local} stopped: {error}");
            }
        });
        Ok(Receiver {
            url: url.unwrap_or_else(|| format!("http://{local}/hook")),
            log,
            server,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn count(&self) -> usize {
        lock(&self.log).len()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.log).clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A panic elsewhere cannot leave the log half-written (pushes are atomic), so a poisoned lock
/// is still good to read.
fn lock(log: &Log) -> std::sync::MutexGuard<'_, Vec<Delivery>> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn record(State(log): State<Log>, request: Request) -> StatusCode {
    // The clock is read first: extractors above do not touch the body, so this is as close to
    // the request's arrival as the handler gets.
    let arrived_at = Utc::now();
    let headers = request.headers();
    let delivery = Delivery {
        arrived_at,
        task_id: header(headers, "x-task-id"),
        attempt: header(headers, "x-task-attempt"),
        task_timestamp: header(headers, "x-task-timestamp"),
    };
    let gone = request
        .uri()
        .query()
        .is_some_and(|query| query.split('&').any(|pair| pair == GONE_QUERY));
    lock(&log).push(delivery);
    // Reading the body to its end lets the service keep the connection for its next call.
    let _ = axum::body::to_bytes(request.into_body(), BODY_LIMIT).await;
    if gone {
        StatusCode::GONE
    } else {
        StatusCode::OK
    }
}

/// A request whose query has this is answered `410 Gone`, a failure no retry policy retries.
const GONE_QUERY: &str = "answer=410";

/// `url` with the query that makes the receiver answer 410.
pub fn gone(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{GONE_QUERY}")
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}
