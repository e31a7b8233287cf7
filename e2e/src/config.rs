//! Command-line flags and environment variables. A flag wins over its environment variable,
//! which wins over the default.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub const USAGE: &str = "\
e2e: end-to-end checks of a running Tasks Service.

Usage: e2e [--seed-only | --precision-only] [--flag value]...

Phases (both by default):
  --seed-only                     only the seed scenario
  --precision-only                only the precision run
  E2E_PHASES=seed|precision|all   the same, from the environment

Flags (environment variable, default):
  --api-url URL                   (API_URL, http://127.0.0.1:3000)
  --api-key KEY                   sent as x-api-key; the error checks then also try a
                                  missing and a wrong key (API_KEY, none)
  --seed-seconds N                seed task's relative time (E2E_SEED_SECONDS, 65)
  --seed-timeout-seconds N        seed must complete within (E2E_SEED_TIMEOUT_SECONDS, 180)
  --tasks N                       precision run's tasks (E2E_TASKS, 200)
  --spread-seconds S              spread over S seconds (E2E_SPREAD_SECONDS, 60)
  --start-seconds S               first task at now+S, or once creating is done
                                  (E2E_START_SECONDS, 5)
  --concurrency N                 requests in flight (E2E_CONCURRENCY, 16)
  --grace-seconds S               wait after the last task's time (E2E_GRACE_SECONDS, 60)
  --max-p99-ms MS                 fail above this p99 lateness (E2E_MAX_P99_MS, 1000)
  --receiver-bind ADDR            webhook receiver's address (E2E_RECEIVER_BIND, 127.0.0.1:0)
  --receiver-url URL              webhook URL given to the service
                                  (E2E_RECEIVER_URL, http://<bound address>/hook)
  --signing-secret SECRET         the deployment's whsec_ signing secret: every request the
                                  seed scenario's receiver gets must carry a valid signature
                                  (WEBHOOK_SIGNING_SECRET, none: signatures not checked)
  -h, --help                      this text
";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub api_url: String,
    pub api_key: Option<String>,
    pub seed: bool,
    pub precision: bool,
    pub seed_seconds: u64,
    pub seed_timeout: Duration,
    pub tasks: usize,
    pub spread: Duration,
    pub start: Duration,
    pub concurrency: usize,
    pub grace: Duration,
    pub max_p99_ms: u64,
    pub receiver_bind: SocketAddr,
    pub receiver_url: Option<String>,
    pub signing_secret: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

/// Flags that take a value, with the environment variable that stands in for each.
const VALUE_FLAGS: &[(&str, &str)] = &[
    ("--api-url", "API_URL"),
    ("--api-key", "API_KEY"),
    ("--seed-seconds", "E2E_SEED_SECONDS"),
    ("--seed-timeout-seconds", "E2E_SEED_TIMEOUT_SECONDS"),
    ("--tasks", "E2E_TASKS"),
    ("--spread-seconds", "E2E_SPREAD_SECONDS"),
    ("--start-seconds", "E2E_START_SECONDS"),
    ("--concurrency", "E2E_CONCURRENCY"),
    ("--grace-seconds", "E2E_GRACE_SECONDS"),
    ("--max-p99-ms", "E2E_MAX_P99_MS"),
    ("--receiver-bind", "E2E_RECEIVER_BIND"),
    ("--receiver-url", "E2E_RECEIVER_URL"),
    ("--signing-secret", "WEBHOOK_SIGNING_SECRET"),
];

struct Sources<E> {
    flags: HashMap<&'static str, String>,
    env: E,
}

impl<E: Fn(&str) -> Option<String>> Sources<E> {
    fn raw(&self, flag: &str) -> Option<String> {
        let (flag, var) = VALUE_FLAGS.iter().find(|(name, _)| *name == flag)?;
        self.flags
            .get(flag)
            .cloned()
            .or_else(|| (self.env)(var).filter(|value| !value.trim().is_empty()))
    }

    fn get<T>(&self, flag: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(flag) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("{flag}: cannot use {text:?}: {e}")),
        }
    }
}

pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut flags = HashMap::new();
    let mut seed_only = false;
    let mut precision_only = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--seed-only" => seed_only = true,
            "--precision-only" => precision_only = true,
            _ => {
                let Some((flag, _)) = VALUE_FLAGS.iter().find(|(flag, _)| *flag == name) else {
                    return Err(format!("unknown argument {arg:?} (see --help)"));
                };
                let value = match inline {
                    Some(value) => value,
                    None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
                };
                flags.insert(*flag, value);
            }
        }
    }
    let (seed, precision) = match (seed_only, precision_only) {
        (true, true) => return Err("give --seed-only or --precision-only, not both".into()),
        (true, false) => (true, false),
        (false, true) => (false, true),
        (false, false) => phases_from_env(env("E2E_PHASES"))?,
    };
    let sources = Sources { flags, env };

    let config = Config {
        api_url: sources
            .get("--api-url", "http://127.0.0.1:3000".to_string())?
            .trim_end_matches('/')
            .to_string(),
        api_key: sources.raw("--api-key").map(|key| key.trim().to_string()),
        seed,
        precision,
        seed_seconds: sources.get("--seed-seconds", 65)?,
        seed_timeout: Duration::from_secs(sources.get("--seed-timeout-seconds", 180)?),
        tasks: sources.get("--tasks", 200)?,
        spread: Duration::from_secs(sources.get("--spread-seconds", 60)?),
        start: Duration::from_secs(sources.get("--start-seconds", 5)?),
        concurrency: sources.get("--concurrency", 16)?,
        grace: Duration::from_secs(sources.get("--grace-seconds", 60)?),
        max_p99_ms: sources.get("--max-p99-ms", 1000)?,
        receiver_bind: sources.get("--receiver-bind", SocketAddr::from(([127, 0, 0, 1], 0)))?,
        receiver_url: sources.raw("--receiver-url"),
        signing_secret: sources
            .raw("--signing-secret")
            .map(|secret| secret.trim().to_string()),
    };
    validate(&config)?;
    Ok(Command::Run(Box::new(config)))
}

fn phases_from_env(value: Option<String>) -> Result<(bool, bool), String> {
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok((true, true));
    };
    let mut seed = false;
    let mut precision = false;
    for phase in value.split(',').map(str::trim) {
        match phase {
            "seed" => seed = true,
            "precision" => precision = true,
            "all" => (seed, precision) = (true, true),
            other => {
                return Err(format!(
                    "E2E_PHASES: unknown phase {other:?} (seed, precision or all)"
                ))
            }
        }
    }
    Ok((seed, precision))
}

fn validate(config: &Config) -> Result<(), String> {
    if !config.api_url.starts_with("http://") && !config.api_url.starts_with("https://") {
        return Err(format!(
            "API_URL must start with http:// or https://: {:?}",
            config.api_url
        ));
    }
    if config.seed_seconds == 0 {
        return Err("--seed-seconds must be at least 1".into());
    }
    if Duration::from_secs(config.seed_seconds) >= config.seed_timeout {
        return Err(format!(
            "--seed-seconds ({}) must be shorter than the seed timeout ({} s)",
            config.seed_seconds,
            config.seed_timeout.as_secs()
        ));
    }
    if config.tasks == 0 {
        return Err("--tasks must be at least 1".into());
    }
    if config.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if config.start.is_zero() {
        return Err("--start-seconds must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(|a| a.to_string()), move |k| {
            env.get(k).cloned()
        })
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse_with(args, env).unwrap() {
            Command::Run(config) => *config,
            Command::Help => panic!("expected a config"),
        }
    }

    #[test]
    fn defaults() {
        let c = config(&[], &[]);
        assert_eq!(c.api_url, "http://127.0.0.1:3000");
        assert!(c.seed && c.precision);
        assert_eq!(c.seed_seconds, 65);
        assert_eq!(c.seed_timeout, Duration::from_secs(180));
        assert_eq!(c.tasks, 200);
        assert_eq!(c.spread, Duration::from_secs(60));
        assert_eq!(c.start, Duration::from_secs(5));
        assert_eq!(c.concurrency, 16);
        assert_eq!(c.grace, Duration::from_secs(60));
        assert_eq!(c.max_p99_ms, 1000);
        assert_eq!(c.receiver_bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.receiver_url, None);
        assert_eq!(c.api_key, None);
    }

    #[test]
    fn the_api_key_comes_from_the_flag_or_the_environment() {
        let c = config(&[], &[("API_KEY", " k3y ")]);
        assert_eq!(c.api_key.as_deref(), Some("k3y"));
        let c = config(&["--api-key", "other"], &[("API_KEY", "k3y")]);
        assert_eq!(c.api_key.as_deref(), Some("other"));
    }

    #[test]
    fn flags_win_over_env() {
        let c = config(
            &["--tasks", "20", "--spread-seconds=15", "--precision-only"],
            &[
                ("E2E_TASKS", "7"),
                ("E2E_GRACE_SECONDS", "9"),
                ("API_URL", "http://api:8080/"),
                ("E2E_PHASES", "seed"),
            ],
        );
        assert_eq!(c.tasks, 20);
        assert_eq!(c.spread, Duration::from_secs(15));
        assert_eq!(c.grace, Duration::from_secs(9));
        assert_eq!(c.api_url, "http://api:8080");
        assert!(!c.seed && c.precision);
    }

    #[test]
    fn phases_from_the_environment() {
        let c = config(&[], &[("E2E_PHASES", "seed")]);
        assert!(c.seed && !c.precision);
        let c = config(&[], &[("E2E_PHASES", "precision, seed")]);
        assert!(c.seed && c.precision);
        assert!(parse_with(&[], &[("E2E_PHASES", "soak")]).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_with(&["--seed-only", "--precision-only"], &[]).is_err());
        assert!(parse_with(&["--tasks"], &[]).is_err());
        assert!(parse_with(&["--tasks", "many"], &[]).is_err());
        assert!(parse_with(&["--tasks", "0"], &[]).is_err());
        assert!(parse_with(&["--bogus"], &[]).is_err());
        assert!(parse_with(&["--seed-seconds", "200"], &[]).is_err());
        assert!(parse_with(&[], &[("API_URL", "localhost:3000")]).is_err());
    }

    #[test]
    fn help() {
        assert_eq!(parse_with(&["--tasks", "3", "-h"], &[]), Ok(Command::Help));
    }
}
