//! What the four event-driven Lambdas share: the event decoded by the function itself, so that
//! every error they raise carries a stable `errorType` (the names the state machine's Retry and
//! Catch match, documented in the README), never a Rust type name.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use std::future::Future;
use tasks_core::retry::store_error_type;
use tasks_core::StoreError;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Logging that would carry values, held below TRACE whatever `RUST_LOG` or
/// `AWS_LAMBDA_LOG_LEVEL` say: the Lambda runtime logs every raw event at TRACE (an API
/// request's `Authorization`, a task's webhook headers), the AWS SDK every request, response and
/// decoded output (a task's item, its header values included), and the HTTP stacks their frames.
pub const VALUE_LOGGING_OFF: [&str; 6] = [
    "lambda_runtime::layers::api_response=off",
    "aws_smithy_runtime=debug",
    "aws_smithy_runtime_api=debug",
    "aws_smithy_http=debug",
    "hyper=debug",
    "h2=debug",
];

/// The functions' logging: the Lambda runtime's default (the level from `AWS_LAMBDA_LOG_LEVEL`
/// or `RUST_LOG`, JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON`), with the logging that would
/// carry values held back ([`VALUE_LOGGING_OFF`]), added last so that no directive lifts it.
pub fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG"));
    let level = level
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = VALUE_LOGGING_OFF.iter().fold(
        EnvFilter::builder()
            .with_default_directive(level.into())
            .from_env_lossy(),
        |filter, directive| filter.add_directive(directive.parse().expect("a valid directive")),
    );
    let logger = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    let format = std::env::var("AWS_LAMBDA_LOG_FORMAT").unwrap_or_default();
    if format.eq_ignore_ascii_case("json") {
        logger.json().init()
    } else {
        logger.init()
    }
}

/// The event is not the shape the function takes: retrying the same event cannot help.
pub const INVALID_INPUT: &str = "InvalidInput";

/// An error as the Lambda service reports it: `errorType` is one of the documented names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct FunctionError {
    pub error_type: &'static str,
    pub message: String,
}

impl FunctionError {
    pub fn invalid_input(error: &serde_json::Error) -> Self {
        FunctionError {
            error_type: INVALID_INPUT,
            message: format!("the event does not have the expected shape: {error}"),
        }
    }

    pub fn store(error: &StoreError) -> Self {
        FunctionError {
            error_type: store_error_type(error),
            message: error.to_string(),
        }
    }
}

impl From<StoreError> for FunctionError {
    fn from(error: StoreError) -> Self {
        FunctionError::store(&error)
    }
}

impl From<FunctionError> for Diagnostic {
    fn from(error: FunctionError) -> Self {
        Diagnostic {
            error_type: error.error_type.to_string(),
            error_message: error.message,
        }
    }
}

/// Decodes an event the way the function would have had the runtime done it, but with a
/// malformed event reported as `InvalidInput`. The runtime hands over the event's JSON text,
/// decoded here once (through a `Value` it would be parsed twice).
pub fn decode<T: DeserializeOwned>(event: &RawValue) -> Result<T, FunctionError> {
    serde_json::from_str(event.get()).map_err(|error| FunctionError::invalid_input(&error))
}

/// Runs `handler` as the Lambda function: each event decoded into `T` (or `InvalidInput`),
/// each handler error reported with its own `errorType`.
pub async fn run<T, R, E, F, Fut>(handler: F) -> Result<(), Error>
where
    T: DeserializeOwned,
    R: Serialize,
    E: Into<Diagnostic>,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let input = decode(&event.payload).map_err(Diagnostic::from)?;
            handler(input).await.map_err(Into::into)
        },
    ))
    .await
}
