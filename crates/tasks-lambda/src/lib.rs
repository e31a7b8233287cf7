//! What the four event-driven Lambdas share: the event decoded by the function itself, so that
//! every error they raise carries a stable `errorType` (the names the state machine's Retry and
//! Catch match, documented in docs/architecture.md), never a Rust type name.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::future::Future;
use tasks_core::rules::error_types::store_error_type;
use tasks_core::{config, StoreError};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Logging that would carry values, held below TRACE whatever `RUST_LOG` or
/// `AWS_LAMBDA_LOG_LEVEL` say: the Lambda runtime logs every raw event at TRACE (an API
/// request's `Authorization`, a task's webhook headers), the AWS SDK every request, response and
/// decoded output (a task's item, its header values included), and the HTTP stacks their frames.
/// Each target's cap; the function's level applies below it (a cap never lifts a target above
/// the function's level: at INFO, the SDK's DEBUG lines stay out).
pub const VALUE_LOGGING_CAPS: [(&str, LevelFilter); 6] = [
    ("lambda_runtime::layers::api_response", LevelFilter::OFF),
    ("aws_smithy_runtime", LevelFilter::DEBUG),
    ("aws_smithy_runtime_api", LevelFilter::DEBUG),
    ("aws_smithy_http", LevelFilter::DEBUG),
    ("hyper", LevelFilter::DEBUG),
    ("h2", LevelFilter::DEBUG),
];

/// The function's level: `AWS_LAMBDA_LOG_LEVEL` (what Lambda sets from the template's logging
/// config), else `RUST_LOG` when it is a bare level, else INFO.
fn level_from(aws_level: Option<&str>, rust_log: Option<&str>) -> LevelFilter {
    aws_level
        .or(rust_log)
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// `RUST_LOG`'s directives at `level` by default, then each target's cap (at most `level`),
/// added last so that no directive lifts it.
fn filter(level: LevelFilter, rust_log: Option<&str>) -> EnvFilter {
    let builder = EnvFilter::builder().with_default_directive(level.into());
    let filter = builder.parse_lossy(rust_log.unwrap_or_default());
    VALUE_LOGGING_CAPS
        .iter()
        .fold(filter, |filter, (target, cap)| {
            let directive = format!("{target}={}", (*cap).min(level));
            filter.add_directive(directive.parse().expect("a valid directive"))
        })
}

/// The functions' logging: the Lambda runtime's default (the level from `AWS_LAMBDA_LOG_LEVEL`
/// or `RUST_LOG`, JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON`), with the logging that would
/// carry values held back ([`VALUE_LOGGING_CAPS`]).
pub fn init_logging() {
    let rust_log = std::env::var(config::RUST_LOG).ok();
    let level = level_from(
        std::env::var(config::LAMBDA_LOG_LEVEL).ok().as_deref(),
        rust_log.as_deref(),
    );
    let logger = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(level, rust_log.as_deref()));
    let format = std::env::var(config::LAMBDA_LOG_FORMAT).unwrap_or_default();
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

/// One invocation of `handler` as the Lambda service makes it: the event decoded into `T` (or
/// `InvalidInput`), the handler run, its error reported with its own `errorType`. The deployed
/// functions serve every event through it ([`run`]); local mode and the simulator invoke the
/// same handlers through it ([`invoke_json`]).
pub async fn invoke<T, R, E, F, Fut>(event: &RawValue, handler: F) -> Result<R, Diagnostic>
where
    T: DeserializeOwned,
    E: Into<Diagnostic>,
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let input = decode(event).map_err(Diagnostic::from)?;
    handler(input).await.map_err(Into::into)
}

/// [`invoke`] for a host that holds the event as JSON (the state machine's interpreter), with the
/// handler's answer as JSON.
pub async fn invoke_json<T, R, E, F, Fut>(event: &Value, handler: F) -> Result<Value, Diagnostic>
where
    T: DeserializeOwned,
    R: Serialize,
    E: Into<Diagnostic>,
    F: FnOnce(T) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let event = serde_json::value::to_raw_value(event).expect("a JSON value serializes");
    let answer = invoke(&event, handler).await?;
    serde_json::to_value(answer).map_err(|error| Diagnostic {
        error_type: "InvalidResponseError".into(),
        error_message: error.to_string(),
    })
}

/// Runs `handler` as the Lambda function: each event through [`invoke`].
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
            invoke(&event.payload, handler).await
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    /// Which of (target, level) a function logging at `level` with `rust_log` writes.
    fn writes(level: LevelFilter, rust_log: &str, target: &str, at: Level) -> bool {
        let subscriber = tracing_subscriber::registry().with(filter(level, Some(rust_log)));
        tracing::subscriber::with_default(subscriber, || match (target, at) {
            ("aws_smithy_runtime", Level::DEBUG) => {
                tracing::enabled!(target: "aws_smithy_runtime", Level::DEBUG)
            }
            ("aws_smithy_runtime", Level::TRACE) => {
                tracing::enabled!(target: "aws_smithy_runtime", Level::TRACE)
            }
            ("hyper", Level::DEBUG) => tracing::enabled!(target: "hyper", Level::DEBUG),
            ("lambda_runtime::layers::api_response", Level::ERROR) => {
                tracing::enabled!(target: "lambda_runtime::layers::api_response", Level::ERROR)
            }
            ("tasks_core", Level::INFO) => tracing::enabled!(target: "tasks_core", Level::INFO),
            ("tasks_core", Level::DEBUG) => tracing::enabled!(target: "tasks_core", Level::DEBUG),
            other => panic!("no probe for {other:?}"),
        })
    }

    #[test]
    fn a_cap_never_lifts_a_target_above_the_function_s_level() {
        let info = LevelFilter::INFO;
        assert!(writes(info, "", "tasks_core", Level::INFO));
        assert!(!writes(info, "", "tasks_core", Level::DEBUG));
        assert!(!writes(info, "", "aws_smithy_runtime", Level::DEBUG));
        assert!(!writes(info, "", "hyper", Level::DEBUG));
    }

    #[test]
    fn values_stay_out_whatever_the_level_asks() {
        let trace = LevelFilter::TRACE;
        let everything = "trace,aws_smithy_runtime=trace,lambda_runtime=trace";
        assert!(writes(
            trace,
            everything,
            "aws_smithy_runtime",
            Level::DEBUG
        ));
        assert!(!writes(
            trace,
            everything,
            "aws_smithy_runtime",
            Level::TRACE
        ));
        assert!(!writes(
            trace,
            everything,
            "lambda_runtime::layers::api_response",
            Level::ERROR
        ));
        assert!(writes(LevelFilter::DEBUG, "", "tasks_core", Level::DEBUG));
    }

    #[test]
    fn the_level_is_lambda_s_then_a_bare_rust_log_then_info() {
        assert_eq!(level_from(Some("WARN"), Some("debug")), LevelFilter::WARN);
        assert_eq!(level_from(None, Some("debug")), LevelFilter::DEBUG);
        assert_eq!(
            level_from(None, Some("tasks_core=debug")),
            LevelFilter::INFO
        );
        assert_eq!(level_from(None, None), LevelFilter::INFO);
    }
}
