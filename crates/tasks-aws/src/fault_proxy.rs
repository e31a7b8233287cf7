//! An HTTP proxy in front of the local emulator that fails chosen requests the ways AWS's
//! answers fail: refused before the service sees them, or applied by the service with the answer
//! lost (a 500 in its place, or the connection closed). The real SDK clients talk to it like to
//! AWS, with their own retries, so a test sees what an adapter returns for a fault, and can
//! hold the simulator's model of that fault to it.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What the proxy does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers `500 InternalServerError` without forwarding: the service never saw it.
    Refuse,
    /// Answers `400 ThrottlingException` without forwarding.
    Throttle,
    /// Forwards, then answers `500 InternalServerError` in place of the service's answer: the
    /// request was applied and its answer lost.
    LoseAnswer,
    /// Forwards, then closes the connection without an answer.
    DropConnection,
}

#[derive(Default)]
struct Plan {
    /// Per action, the faults the next requests meet, in order.
    faults: BTreeMap<String, Vec<Fault>>,
    /// Per action, the requests seen.
    seen: BTreeMap<String, usize>,
}

/// The proxy, serving until dropped.
pub struct FaultProxy {
    endpoint: String,
    plan: Arc<Mutex<Plan>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let plan = Arc::new(Mutex::new(Plan::default()));
        let forwarder = Forwarder {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            plan: plan.clone(),
        };
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let forwarder = forwarder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let forwarder = forwarder.clone();
                        async move { forwarder.handle(request).await }
                    });
                    // A dropped connection ends here with the error that closed it.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy {
            endpoint,
            plan,
            server,
        })
    }

    /// The URL to give the SDK as its endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next requests of `action` (the operation in `X-Amz-Target`, e.g. `UpdateItem`,
    /// `SendMessageBatch`, `StartExecution`) meet these faults, one each, in order.
    pub fn inject(&self, action: &str, faults: &[Fault]) {
        self.plan
            .lock()
            .unwrap()
            .faults
            .entry(action.to_string())
            .or_default()
            .extend(faults);
    }

    /// How many requests of `action` reached the proxy.
    pub fn requests(&self, action: &str) -> usize {
        self.plan
            .lock()
            .unwrap()
            .seen
            .get(action)
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Clone)]
struct Forwarder {
    upstream: String,
    client: reqwest::Client,
    plan: Arc<Mutex<Plan>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the connection was dropped on purpose")]
struct Dropped;

type Answer = Response<Full<Bytes>>;

impl Forwarder {
    async fn handle(&self, request: Request<Incoming>) -> Result<Answer, Dropped> {
        let action = request
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.to_str().ok())
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or_default()
            .to_string();
        let fault = {
            let mut plan = self.plan.lock().unwrap();
            *plan.seen.entry(action.clone()).or_default() += 1;
            plan.faults
                .get_mut(&action)
                .and_then(|faults| (!faults.is_empty()).then(|| faults.remove(0)))
        };
        match fault {
            Some(Fault::Refuse) => return Ok(error_answer(500, "InternalServerError")),
            Some(Fault::Throttle) => return Ok(error_answer(400, "ThrottlingException")),
            _ => {}
        }
        let forwarded = self.forward(request).await;
        match fault {
            Some(Fault::LoseAnswer) => Ok(error_answer(500, "InternalServerError")),
            Some(Fault::DropConnection) => Err(Dropped),
            _ => Ok(forwarded.unwrap_or_else(|error| {
                error_answer(502, &format!("the emulator did not answer: {error}"))
            })),
        }
    }

    async fn forward(&self, request: Request<Incoming>) -> Result<Answer, reqwest::Error> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map(|body| body.to_bytes());
        let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let mut upstream = self
            .client
            .request(parts.method, format!("{}{path}", self.upstream));
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                upstream = upstream.header(name, value);
            }
        }
        let answer = upstream.body(body.unwrap_or_default()).send().await?;
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                response = response.header(name, value);
            }
        }
        let body = answer.bytes().await?;
        Ok(response
            .body(Full::new(body))
            .expect("a response copied from a valid one"))
    }
}

/// Headers of one connection, not of the request: the proxy's own connections set them.
const HOP_BY_HOP: [&str; 5] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

/// An AWS JSON-protocol error answer.
fn error_answer(status: u16, code: &str) -> Answer {
    let body = serde_json::json!({ "__type": code, "message": "injected by the fault proxy" });
    Response::builder()
        .status(StatusCode::from_u16(status).expect("a valid status"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-requestid", "fault-proxy")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}
