//! Sends webhooks with reqwest, refusing targets inside private networks.
//!
//! Every name is resolved by [`GuardedResolver`], which checks every address it returns, and
//! reqwest connects only to the addresses it was given: a name that resolves to a private address
//! cannot slip through on a second lookup. Literal IP addresses skip resolvers, so they are
//! checked before sending. Redirects are not followed (a redirect could point anywhere).

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tasks_core::task::rfc3339_millis;
use tasks_core::{DeliveryError, Webhook, WebhookCall, WebhookSender};

/// Whether an address is reachable only from inside a network: loopback, private, link-local
/// (169.254.0.0/16, with the instance metadata endpoint), shared, unspecified, unique-local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// How long a checked answer is reused: long enough to cover the wake-ahead between `prepare`
/// and the send, short enough that a warm function follows DNS changes.
const RESOLVED_TTL: Duration = Duration::from_secs(60);

/// Resolves names with the system resolver, refuses private addresses unless allowed, and keeps
/// the answers for a while so that the send at the task's second needs no lookup.
#[derive(Debug, Default)]
struct GuardedResolver {
    allow_private: bool,
    resolved: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
}

impl GuardedResolver {
    async fn resolve_checked(&self, host: &str) -> Result<Vec<SocketAddr>, DeliveryError> {
        if let Some((at, addrs)) = self.resolved.lock().unwrap().get(host) {
            if at.elapsed() < RESOLVED_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| DeliveryError::Connection(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(DeliveryError::Connection(format!("{host} has no address")));
        }
        if !self.allow_private {
            if let Some(private) = addrs.iter().find(|addr| is_private(addr.ip())) {
                return Err(DeliveryError::Refused(format!(
                    "{host} resolves to {}, a private address",
                    private.ip()
                )));
            }
        }
        self.resolved
            .lock()
            .unwrap()
            .insert(host.to_string(), (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[derive(Debug)]
struct SharedResolver(Arc<GuardedResolver>);

impl Resolve for SharedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let addrs = resolver.resolve_checked(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

pub struct HttpSender {
    client: reqwest::Client,
    resolver: Arc<GuardedResolver>,
    timeout: Duration,
}

impl HttpSender {
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, reqwest::Error> {
        let resolver = Arc::new(GuardedResolver {
            allow_private,
            ..GuardedResolver::default()
        });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(SharedResolver(resolver.clone())))
            .user_agent(concat!("tasks-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpSender {
            client,
            resolver,
            timeout,
        })
    }

    async fn check_target(&self, webhook: &Webhook) -> Result<(), DeliveryError> {
        let url = url::Url::parse(&webhook.url)
            .map_err(|e| DeliveryError::Invalid(format!("bad URL: {e}")))?;
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_literal(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_literal(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => self.resolver.resolve_checked(name).await.map(drop),
            None => Err(DeliveryError::Invalid("the URL has no host".into())),
        }
    }

    fn check_literal(&self, ip: IpAddr) -> Result<(), DeliveryError> {
        if is_private(ip) && !self.resolver.allow_private {
            return Err(DeliveryError::Refused(format!("{ip} is a private address")));
        }
        Ok(())
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn prepare(&self, webhook: &Webhook) -> Result<(), DeliveryError> {
        self.check_target(webhook).await
    }

    async fn send(&self, call: WebhookCall<'_>) -> Result<u16, DeliveryError> {
        self.check_target(call.webhook).await?;
        let method = reqwest::Method::from_bytes(call.webhook.method.as_bytes())
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let mut request = self
            .client
            .request(method.clone(), &call.webhook.url)
            .header("Idempotency-Key", &call.task.id)
            .header("X-Task-Id", &call.task.id)
            .header("X-Task-Attempt", call.attempt.to_string())
            .header(
                "X-Task-Timestamp",
                rfc3339_millis::format(&call.task.timestamp),
            );
        for (name, value) in &call.webhook.headers {
            request = request.header(name, value);
        }
        request = match &call.webhook.body {
            Some(serde_json::Value::String(text)) => request.body(text.clone()),
            Some(body) => request.json(body),
            None if method == reqwest::Method::GET || method == reqwest::Method::DELETE => request,
            None => request.json(&json!({
                "id": call.task.id,
                "timestamp": rfc3339_millis::format(&call.task.timestamp),
                "payload": call.task.payload,
            })),
        };
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                DeliveryError::Timeout(self.timeout.as_millis() as u64)
            } else if error.is_builder() {
                DeliveryError::Invalid(error.to_string())
            } else {
                refusal_in(&error).unwrap_or_else(|| DeliveryError::Connection(error.to_string()))
            }
        })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(status),
            500..=599 | 429 | 408 => Err(DeliveryError::ServerError(status)),
            _ => Err(DeliveryError::Rejected(status)),
        }
    }
}

/// A refusal raised inside the resolver reaches us wrapped in reqwest's connect error.
fn refusal_in(error: &reqwest::Error) -> Option<DeliveryError> {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(delivery) = inner.downcast_ref::<DeliveryError>() {
            return Some(delivery.clone());
        }
        source = inner.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
