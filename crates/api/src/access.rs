//! API keys for local mode: the same `x-api-key` check API Gateway applies to a deployed stack,
//! so that a local service reachable from a network is not open to it.

use crate::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::sync::Arc;

/// Routes that answer without a key, as on API Gateway.
const OPEN_PATHS: [&str; 2] = ["/health", "/openapi.json"];

/// Requires one of `keys` in the `x-api-key` header on every route but the open ones; with no
/// keys the router is returned unchanged.
pub fn require_api_key(router: Router, keys: &[String]) -> Router {
    if keys.is_empty() {
        return router;
    }
    let keys: Arc<[Vec<u8>]> = keys.iter().map(|key| key.as_bytes().to_vec()).collect();
    router.layer(middleware::from_fn_with_state(keys, check_key))
}

async fn check_key(
    State(keys): State<Arc<[Vec<u8>]>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request
        .headers()
        .get("x-api-key")
        .map(|value| value.as_bytes());
    let open = OPEN_PATHS.contains(&request.uri().path());
    if open || given.is_some_and(|given| keys.iter().any(|key| same(key, given))) {
        return Ok(next.run(request).await);
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this route needs a valid API key in the x-api-key header",
    ))
}

/// Compares without stopping at the first difference, so timing does not tell how much matched.
fn same(key: &[u8], given: &[u8]) -> bool {
    key.len() == given.len() && key.iter().zip(given).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
}
