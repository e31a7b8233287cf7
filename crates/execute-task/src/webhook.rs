//! Sends signed webhooks with reqwest, refusing targets inside private networks.
//!
//! Every name is resolved by [`GuardedResolver`], which checks every address it returns, and
//! reqwest connects only to the addresses it was given: a name that resolves to a private address
//! cannot slip through on a second lookup. Literal IP addresses skip resolvers, so they are
//! checked before sending. Redirects are not followed (a redirect could point anywhere), and no
//! proxy is used, whatever the environment says (a proxy would connect on our behalf, unchecked).
//!
//! Error texts never carry the URL: it may hold a token in its query string, and the text becomes
//! the task's `lastError`, a log line and the execution's Cause.

use crate::signing::Keyring;
use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tasks_core::delivery::RESPONSE_BODY_BYTES;
use tasks_core::model::task::truncated;
use tasks_core::model::task::REDACTED;
use tasks_core::model::time::rfc3339_millis;
use tasks_core::request::new_task::is_reserved_header;
use tasks_core::rules::timing::DNS_TIMEOUT;
use tasks_core::{DeliveryError, Webhook, WebhookCall, WebhookResponse, WebhookSender};

/// IANA's IPv4 Special-Purpose Address Registry (every entry, globally reachable or not: none is
/// a webhook receiver), plus multicast, which the registry leaves to its own.
const SPECIAL_IPV4: [([u8; 4], u8); 19] = [
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, with the instance metadata endpoint
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 31, 196, 0], 24), // AS112-v4
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and the limited broadcast address
    ([255, 255, 255, 255], 32),
];

/// The special-purpose blocks of IANA's IPv6 registry that lie inside global unicast (2000::/3);
/// everything outside 2000::/3 is refused as a whole (loopback, unspecified, IPv4-compatible
/// ::a.b.c.d, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, discard-only 100::/64, unique-local,
/// link-local, site-local, multicast, SRv6 5f00::/16).
const SPECIAL_IPV6_GLOBAL: [([u16; 8], u8); 5] = [
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments (Teredo, ORCHID, ...)
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), // 6to4: embeds any IPv4 address
    ([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), // direct delegation AS112
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation
];

/// Whether an address must not be a webhook target: anything in the IANA special-purpose
/// registries (loopback, private, link-local, shared, documentation, benchmarking, multicast,
/// translation prefixes, ...). IPv4-mapped IPv6 addresses are judged by their IPv4 address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => SPECIAL_IPV4
            .iter()
            .any(|(network, prefix)| in_v4(v4, Ipv4Addr::from(*network), *prefix)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                !in_v6(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
                    || SPECIAL_IPV6_GLOBAL.iter().any(|(network, prefix)| {
                        let [a, b, c, d, e, f, g, h] = *network;
                        in_v6(v6, Ipv6Addr::new(a, b, c, d, e, f, g, h), *prefix)
                    })
            }
        },
    }
}

fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
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
        // Bounded, so that execute-task's worst case fits its Lambda timeout (`timing`).
        let dns_timeout = DNS_TIMEOUT.to_std().unwrap_or_default();
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(dns_timeout, tokio::net::lookup_host((host, 0)))
                .await
                .map_err(|_| {
                    DeliveryError::Connection(format!(
                        "cannot resolve {host}: no answer within {} ms",
                        dns_timeout.as_millis()
                    ))
                })?
                .map_err(|e| DeliveryError::Connection(format!("cannot resolve {host}: {e}")))?
                .collect();
        if addrs.is_empty() {
            return Err(DeliveryError::Connection(format!("{host} has no address")));
        }
        // The refusal does not say which address: that would tell what is inside the network.
        if !self.allow_private && addrs.iter().any(|addr| is_private(addr.ip())) {
            return Err(DeliveryError::Refused(format!(
                "{host} resolves to a private or special-purpose address"
            )));
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
    keys: Keyring,
    /// Whether the start of each answer is kept (redacted) in the attempt's record.
    keep_answers: bool,
}

impl HttpSender {
    pub fn new(
        timeout: Duration,
        allow_private: bool,
        keys: impl Into<Keyring>,
    ) -> Result<Self, reqwest::Error> {
        let resolver = Arc::new(GuardedResolver {
            allow_private,
            ..GuardedResolver::default()
        });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(SharedResolver(resolver.clone())))
            .user_agent(concat!("tasks-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpSender {
            client,
            resolver,
            timeout,
            keys: keys.into(),
            keep_answers: true,
        })
    }

    /// The sender that keeps nothing of the receivers' answers but their status (the
    /// deployment's `WEBHOOK_KEEP_ANSWERS=false`): the body is not even read.
    pub fn without_answers(self) -> Self {
        HttpSender {
            keep_answers: false,
            ..self
        }
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
        self.keys.keys_for(webhook)?;
        self.check_target(webhook).await
    }

    async fn send(&self, call: WebhookCall<'_>) -> Result<WebhookResponse, DeliveryError> {
        let keys = self.keys.keys_for(call.webhook)?;
        self.check_target(call.webhook).await?;
        let webhook = call.webhook;
        let method = reqwest::Method::from_bytes(webhook.method.as_bytes())
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        // The body is made here, not by reqwest, because the signature covers its exact bytes.
        let (body, is_json) = match &webhook.body {
            Some(serde_json::Value::String(text)) => (text.clone(), false),
            Some(body) => (body.to_string(), true),
            None if method == reqwest::Method::GET || method == reqwest::Method::DELETE => {
                (String::new(), false)
            }
            None => (
                json!({
                    "id": call.task.id,
                    "timestamp": rfc3339_millis::format(&call.task.timestamp),
                    "payload": call.task.payload,
                })
                .to_string(),
                true,
            ),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = keys.signature(&call.message_id, timestamp, &body);
        let secrets = secrets_of(webhook, &signature);
        let mut request = self
            .client
            .request(method, &webhook.url)
            .header("webhook-id", &call.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", &signature)
            .header("Idempotency-Key", &call.message_id)
            .header("X-Task-Id", &call.task.id)
            .header("X-Task-Attempt", call.attempt.to_string())
            .header(
                "X-Task-Timestamp",
                rfc3339_millis::format(&call.task.timestamp),
            );
        // Create refuses the service's own headers; tasks stored before that rule are filtered.
        for (name, value) in webhook
            .headers
            .iter()
            .filter(|(name, _)| !is_reserved_header(name))
        {
            request = request.header(name, value);
        }
        let sets_type = webhook
            .headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case(CONTENT_TYPE.as_str()));
        if is_json && !sets_type {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                DeliveryError::Timeout(self.timeout.as_millis() as u64)
            } else if error.is_builder() {
                DeliveryError::Invalid(describe(error, &webhook.url))
            } else {
                refusal_in(&error)
                    .unwrap_or_else(|| DeliveryError::Connection(describe(error, &webhook.url)))
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok());
        Ok(WebhookResponse {
            status,
            retry_after,
            body: if self.keep_answers && webhook.keep_response_body {
                body_start(response, &secrets).await
            } else {
                String::new()
            },
        })
    }
}

/// What an answer must not carry back out (a receiver that echoes its request): every value of
/// the request's stored headers and the signature. A stored value shorter than
/// [`MIN_REDACTED_BYTES`] is left alone unless its header's name suggests a credential: redacting
/// every `1` or `no` would leave nothing readable.
fn secrets_of(webhook: &Webhook, signature: &str) -> Vec<String> {
    let mut secrets: Vec<String> = webhook
        .headers
        .iter()
        .filter(|(name, value)| {
            !value.is_empty() && (value.len() >= MIN_REDACTED_BYTES || names_a_credential(name))
        })
        .map(|(_, value)| value.clone())
        .chain(std::iter::once(signature.to_string()))
        .collect();
    // The longest first: a value inside another is redacted with it.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets.dedup();
    secrets
}

/// Stored header values shorter than this are not redacted from answers (unless the header's
/// name suggests a credential).
const MIN_REDACTED_BYTES: usize = 4;

/// Whether a header's name suggests it carries a credential.
fn names_a_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "token",
        "key",
        "secret",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The first [`RESPONSE_BODY_BYTES`] of the body with every secret replaced by `<redacted>`. It is
/// read as far as the longest secret beyond that length and redacted whole *before* it is cut, so
/// that no prefix of a secret survives the cut; a body that fails midway keeps what arrived.
async fn body_start(mut response: reqwest::Response, secrets: &[String]) -> String {
    let longest = secrets.iter().map(String::len).max().unwrap_or(0);
    let wanted = RESPONSE_BODY_BYTES + longest;
    let mut start = Vec::with_capacity(wanted);
    while start.len() < wanted {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let mut text = String::from_utf8_lossy(&start).into_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), REDACTED);
    }
    truncated(&text, RESPONSE_BODY_BYTES)
}

/// The error and its causes, without the URL (reqwest puts it in its text; the causes should not
/// have it, but the text is scrubbed of it all the same).
fn describe(error: reqwest::Error, url: &str) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text.replace(url, "<url>")
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
    fn every_special_purpose_range_is_refused() {
        for special in [
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.9",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.1.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:198.18.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2620:4f:8000::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_private(special.parse().unwrap()), "{special}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
        ] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
