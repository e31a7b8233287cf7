//! The environment: every variable a binary reads is a constant here, each function's list is
//! one table ([`FUNCTIONS`], checked against the template), and every main reads through these
//! readers, so that a bad value stops the function's start naming the variable and a missing one
//! falls back to its documented default.

use std::env;

/// The tasks table (`tasksTable-<stage>`).
pub const TABLE_NAME: &str = "TABLE_NAME";
/// The dispatch queue's URL.
pub const QUEUE_URL: &str = "QUEUE_URL";
/// The state machine that runs slots and tasks.
pub const STATE_MACHINE_ARN: &str = "STATE_MACHINE_ARN";
/// Days a finished task is kept (the template's `RetentionDays`; 0: for ever).
pub const RETENTION_DAYS: &str = "RETENTION_DAYS";
/// The api behind API Gateway's stage: its paths come without the stage.
pub const IGNORE_STAGE_IN_PATH: &str = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH";
/// The names of the operator's signing secrets a task may choose.
pub const SIGNING_SECRET_NAMES: &str = "WEBHOOK_SIGNING_SECRET_NAMES";
/// Where the named signing secrets are in Secrets Manager: `<prefix><name>`.
pub const SIGNING_SECRET_PREFIX: &str = "WEBHOOK_SIGNING_SECRET_PREFIX";
/// The deployment's own signing secret in Secrets Manager.
pub const SIGNING_SECRET_ARN: &str = "WEBHOOK_SIGNING_SECRET_ARN";
/// A webhook request's timeout.
pub const WEBHOOK_TIMEOUT_MS: &str = "WEBHOOK_TIMEOUT_MS";
/// Whether webhooks may go to private addresses (local receivers).
pub const WEBHOOK_ALLOW_PRIVATE: &str = "WEBHOOK_ALLOW_PRIVATE";
/// Whether attempts keep the start of the receiver's answer.
pub const WEBHOOK_KEEP_ANSWERS: &str = "WEBHOOK_KEEP_ANSWERS";

/// Pacing (`crate::rules::pacing::Pacing::from_env`).
pub const LEAD_TIME_SECONDS: &str = "LEAD_TIME_SECONDS";
pub const WAKE_AHEAD_MS: &str = "WAKE_AHEAD_MS";
pub const CLAIM_GRACE_SECONDS: &str = "CLAIM_GRACE_SECONDS";
pub const STUCK_AFTER_SECONDS: &str = "STUCK_AFTER_SECONDS";
pub const START_RATE_PER_SECOND: &str = "START_RATE_PER_SECOND";
/// Every pacing variable, in `Pacing::from_env`'s order.
pub const PACING: [&str; 5] = [
    LEAD_TIME_SECONDS,
    WAKE_AHEAD_MS,
    CLAIM_GRACE_SECONDS,
    STUCK_AFTER_SECONDS,
    START_RATE_PER_SECOND,
];

/// Local mode only (`tasks-local`): its port, cron interval, signing secrets, API keys and
/// emulator.
pub const PORT: &str = "PORT";
pub const CRON_INTERVAL_SECONDS: &str = "CRON_INTERVAL_SECONDS";
pub const SIGNING_SECRETS: &str = "WEBHOOK_SIGNING_SECRETS";
pub const NAMED_SIGNING_SECRETS: &str = "WEBHOOK_NAMED_SIGNING_SECRETS";
pub const API_KEYS: &str = "API_KEYS";
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// Set by Lambda itself, not by the template.
pub const LAMBDA_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
pub const LAMBDA_LOG_GROUP_NAME: &str = "AWS_LAMBDA_LOG_GROUP_NAME";
pub const LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
pub const LAMBDA_LOG_FORMAT: &str = "AWS_LAMBDA_LOG_FORMAT";
/// The log filter every binary takes (the template's `RustLog`).
pub const RUST_LOG: &str = "RUST_LOG";

/// What one Lambda binary reads from the environment that the template sets (besides
/// [`RUST_LOG`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionEnvironment {
    pub function: &'static str,
    pub reads: &'static [&'static str],
    /// It also reads the [`PACING`] variables.
    pub paced: bool,
}

impl FunctionEnvironment {
    /// Every variable it reads.
    pub fn variables(&self) -> Vec<&'static str> {
        let pacing: &[&str] = if self.paced { &PACING } else { &[] };
        [self.reads, pacing].concat()
    }
}

/// Each Lambda binary's environment: a test checks each function's variables in the template
/// against it.
pub const FUNCTIONS: [FunctionEnvironment; 5] = [
    FunctionEnvironment {
        function: "api",
        reads: &[
            TABLE_NAME,
            QUEUE_URL,
            STATE_MACHINE_ARN,
            RETENTION_DAYS,
            IGNORE_STAGE_IN_PATH,
            SIGNING_SECRET_NAMES,
        ],
        paced: true,
    },
    FunctionEnvironment {
        function: "cron",
        reads: &[TABLE_NAME, QUEUE_URL, STATE_MACHINE_ARN, RETENTION_DAYS],
        paced: true,
    },
    FunctionEnvironment {
        function: "process-sqs-records",
        reads: &[TABLE_NAME, STATE_MACHINE_ARN, RETENTION_DAYS],
        paced: true,
    },
    FunctionEnvironment {
        function: "execute-task",
        reads: &[
            TABLE_NAME,
            QUEUE_URL,
            RETENTION_DAYS,
            WEBHOOK_TIMEOUT_MS,
            WEBHOOK_ALLOW_PRIVATE,
            WEBHOOK_KEEP_ANSWERS,
            SIGNING_SECRET_ARN,
            SIGNING_SECRET_NAMES,
            SIGNING_SECRET_PREFIX,
        ],
        paced: true,
    },
    FunctionEnvironment {
        function: "update-status",
        reads: &[TABLE_NAME, RETENTION_DAYS],
        paced: false,
    },
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("environment variable {name} must be {expected}, got `{value}`")]
pub struct ConfigError {
    pub name: &'static str,
    pub expected: &'static str,
    pub value: String,
}

/// Reads a non-negative integer environment variable, falling back to `default` when unset.
pub fn env_u64(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => value.trim().parse().map_err(|_| ConfigError {
            name,
            expected: "a non-negative integer",
            value,
        }),
    }
}

/// Reads a boolean environment variable (`true`/`false`, `1`/`0`), `default` when unset.
pub fn env_bool(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            _ => Err(ConfigError {
                name,
                expected: "true or false",
                value,
            }),
        },
    }
}

/// Reads an optional environment variable; unset and empty are the same.
pub fn env_optional(name: &'static str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.is_empty())
}

/// Reads a required environment variable.
pub fn env_required(name: &'static str) -> Result<String, ConfigError> {
    env::var(name).map_err(|_| ConfigError {
        name,
        expected: "set",
        value: String::new(),
    })
}
