//! Webhooks never go through a proxy from the environment: a proxy would connect on the
//! service's behalf, past the private-address guard. Its own test binary, as it sets the
//! process environment.

use axum::routing::any;
use axum::Router;
use execute_task::signing::SigningKeys;
use execute_task::webhook::HttpSender;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tasks_core::{Pacing, Task, Webhook, WebhookCall, WebhookSender};

/// Counts the requests it gets on a free loopback port, answering 204.
async fn counting_server() -> (Arc<AtomicUsize>, String) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { axum::http::StatusCode::NO_CONTENT }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (count, base)
}

#[tokio::test]
async fn a_proxy_in_the_environment_is_ignored() {
    let (proxied, proxy) = counting_server().await;
    let (received, receiver) = counting_server().await;
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
    ] {
        std::env::set_var(name, &proxy);
    }
    let sender = HttpSender::new(
        Duration::from_secs(2),
        true,
        SigningKeys::generate().unwrap(),
    )
    .unwrap();
    let webhook = Webhook {
        url: format!("{receiver}/hook"),
        method: "POST".into(),
        headers: Default::default(),
        body: None,
        signing: None,
        keep_response_body: true,
    };
    let task = Task::new(
        "t",
        chrono::Utc::now(),
        Pacing::default().lead_time,
        chrono::Utc::now(),
    );
    let status = sender
        .send(WebhookCall {
            task: &task,
            webhook: &webhook,
            attempt: 1,
            message_id: task.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(status.status, 204);
    assert_eq!(received.load(Ordering::SeqCst), 1);
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "the request went through the proxy"
    );
}
