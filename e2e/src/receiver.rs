//! The webhook receiver: an HTTP server that records when each request arrived, which task (and
//! attempt) it was for, its path, body and signature headers, and answers 200 (or 410 when asked
//! to, by [`gone`]; or 503 to a task's first request, by [`flaky`]).

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
    pub path_and_query: String,
    /// The body as sent (a signature covers these bytes).
    pub body: Vec<u8>,
    /// Checked on arrival (its timestamp must be recent) when the receiver has the secret.
    pub signature: Signature,
    pub answered: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Signature {
    NotChecked,
    Valid,
    Invalid(String),
}

type Log = Arc<Mutex<Vec<Delivery>>>;

#[derive(Clone)]
struct Shared {
    log: Log,
    /// The deployment's signing secret, as Standard Webhooks' own library verifies with it.
    verifier: Option<Arc<standardwebhooks::Webhook>>,
}

pub struct Receiver {
    url: String,
    log: Log,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Binds `bind` and serves every path; the service is given `url`, or
    /// `http://<bound address>/hook` when none is set. With `signing_secret` (`whsec_…`), each
    /// request's signature is checked on arrival.
    pub async fn start(
        bind: SocketAddr,
        url: Option<String>,
        signing_secret: Option<&str>,
    ) -> Result<Self, String> {
        let verifier = signing_secret
            .map(|secret| {
                standardwebhooks::Webhook::new(secret)
                    .map(Arc::new)
                    .map_err(|e| format!("webhook receiver: the signing secret is not usable: {e}"))
            })
            .transpose()?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("webhook receiver: cannot bind {bind}: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("webhook receiver: no local address: {e}"))?;
        let log = Log::default();
        let shared = Shared {
            log: log.clone(),
            verifier,
        };
        let app = Router::new().fallback(record).with_state(shared);
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

async fn record(State(Shared { log, verifier }): State<Shared>, request: Request) -> StatusCode {
    // The clock is read first: extractors above do not touch the body, so this is as close to
    // the request's arrival as the handler gets.
    let arrived_at = Utc::now();
    let headers = request.headers().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.as_str().to_string());
    let query = request.uri().query().unwrap_or_default().to_string();
    let asks = |answer: &str| query.split('&').any(|pair| pair == answer);
    let task_id = header(&headers, "x-task-id");
    let answered = if asks(GONE_QUERY) {
        StatusCode::GONE
    } else if asks(FLAKY_QUERY)
        && !lock(&log)
            .iter()
            .any(|earlier| earlier.task_id.is_some() && earlier.task_id == task_id)
    {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    // Reading the body to its end lets the service keep the connection for its next call.
    let body = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
        .await
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default();
    let signature = match &verifier {
        None => Signature::NotChecked,
        Some(verifier) => match verifier.verify(&body, &headers) {
            Ok(()) => Signature::Valid,
            Err(error) => Signature::Invalid(error.to_string()),
        },
    };
    lock(&log).push(Delivery {
        arrived_at,
        task_id,
        attempt: header(&headers, "x-task-attempt"),
        task_timestamp: header(&headers, "x-task-timestamp"),
        path_and_query,
        body,
        signature,
        answered: answered.as_u16(),
    });
    answered
}

/// How many requests carried a valid signature, or each that did not, as `Err`.
pub fn verified(deliveries: &[Delivery]) -> Result<usize, String> {
    let mut valid = 0;
    let mut invalid = Vec::new();
    for delivery in deliveries {
        match &delivery.signature {
            Signature::Valid => valid += 1,
            Signature::Invalid(error) => invalid.push(format!(
                "{} (task {:?}): {error}",
                delivery.path_and_query, delivery.task_id
            )),
            Signature::NotChecked => invalid.push(format!(
                "{} (task {:?}): not checked",
                delivery.path_and_query, delivery.task_id
            )),
        }
    }
    match (valid, invalid.is_empty()) {
        (0, _) => Err("no signed request arrived".into()),
        (valid, true) => Ok(valid),
        (_, false) => Err(format!(
            "{} requests without a valid signature: {}",
            invalid.len(),
            invalid.join("; ")
        )),
    }
}

/// A request whose query has this is answered `410 Gone`, a failure no retry policy retries.
const GONE_QUERY: &str = "answer=410";
/// A task's first request to a URL whose query has this is answered `503`, its next ones `200`.
const FLAKY_QUERY: &str = "answer=503-once";

/// `url` with the query that makes the receiver answer 410.
pub fn gone(url: &str) -> String {
    with_query(url, GONE_QUERY)
}

/// `url` with the query that makes the receiver answer a task's first request 503.
pub fn flaky(url: &str) -> String {
    with_query(url, FLAKY_QUERY)
}

/// `url` with `pair` added to its query.
pub fn with_query(url: &str, pair: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{pair}")
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}
