//! Reading the environment: every main's settings come through these, so that a bad value stops
//! the function's start naming the variable, and a missing one falls back to its documented
//! default.

use std::env;

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

/// Reads a required environment variable.
pub fn env_required(name: &'static str) -> Result<String, ConfigError> {
    env::var(name).map_err(|_| ConfigError {
        name,
        expected: "set",
        value: String::new(),
    })
}
