//! The router as a Lambda function behind API Gateway.

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use lambda_http::lambda_runtime::Diagnostic;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, RequestExt, Service};
use serde_json::value::RawValue;

/// Serves `router` to the Lambda Runtime API. An event that is not an API Gateway request fails
/// with `InvalidInput`; the router itself never fails (every error is an HTTP answer).
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    let staged = lambda_http::service_fn(move |request: lambda_http::Request| {
        let prefix = stage_prefix(request.request_context_ref());
        let response = router.clone().call(request);
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(with_stage(response, prefix.as_deref()))
        }
    });
    let mut adapter = Adapter::from(staged);
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: LambdaEvent<Box<RawValue>>| {
            let request = tasks_lambda::decode::<LambdaRequest>(&event.payload);
            let response =
                request.map(|request| adapter.call(LambdaEvent::new(request, event.context)));
            async move {
                match response {
                    Ok(response) => response.await.map_err(Diagnostic::from),
                    Err(invalid) => Err(Diagnostic::from(invalid)),
                }
            }
        },
    ))
    .await
}

/// The path prefix a client's URL carries before the router's paths: `/<stage>` for a request
/// through an API Gateway stage (as in `https://<api>.execute-api.<region>.amazonaws.com/Prod`),
/// nothing for HTTP API's `$default` stage.
pub fn stage_prefix(context: Option<&RequestContext>) -> Option<String> {
    let stage = match context? {
        RequestContext::ApiGatewayV1(context) => context.stage.as_deref(),
        RequestContext::ApiGatewayV2(context) => context.stage.as_deref(),
        _ => None,
    }?;
    (!stage.is_empty() && stage != "$default").then(|| format!("/{stage}"))
}

/// A `Location` the router wrote relative to its own root, made relative to the client's.
pub fn with_stage(mut response: Response, prefix: Option<&str>) -> Response {
    let Some(prefix) = prefix else {
        return response;
    };
    let staged = response
        .headers()
        .get(header::LOCATION)
        .and_then(|location| location.to_str().ok())
        .filter(|location| location.starts_with('/'))
        .and_then(|location| HeaderValue::try_from(format!("{prefix}{location}")).ok());
    if let Some(location) = staged {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
