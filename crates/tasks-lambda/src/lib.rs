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
