//! Runs a function binary as AWS Lambda runs it, without Lambda: a Lambda Runtime API emulator
//! hands it events and records its responses and errors, and the process's own CPU time and
//! peak memory are read from /proc. The contract tests and `make bench-lambda` both use it.

pub mod bench;
pub mod events;
mod runtime_api;

pub use runtime_api::{Invocation, RuntimeApi};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The variables the Lambda service sets for every function (lambda_runtime requires them).
fn lambda_env(name: &str, runtime_api: &str) -> [(&'static str, String); 6] {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local".to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
    ]
}

/// One function: its binary, its environment, and the emulator it polls.
pub struct Function {
    pub name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    pub api: RuntimeApi,
}

impl Function {
    /// A function whose AWS clients talk to the local emulator at `endpoint`.
    pub async fn new(name: &str, binary: impl AsRef<Path>, endpoint: &str) -> Self {
        let api = RuntimeApi::start().await;
        let mut env: Vec<(String, String)> = lambda_env(name, api.address())
            .into_iter()
            .chain(local_emulator::aws_env(endpoint))
            .map(|(key, value)| (key.to_string(), value))
            .collect();
        env.push(("RUST_LOG".into(), "info".into()));
        Function {
            name: name.to_string(),
            binary: binary.as_ref().to_path_buf(),
            env,
            api,
        }
    }

    /// A function on the shared local emulator of the test process (started on first use;
    /// fails, never skips, when moto is missing).
    pub async fn on_emulator(name: &str, binary: impl AsRef<Path>) -> Self {
        let endpoint = local_emulator::shared_endpoint()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Function::new(name, binary, endpoint).await
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(name, _)| name != key);
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Starts a fresh process (a cold start). Its output goes to a log file beside the binary.
    pub fn spawn(&self) -> Process {
        let log_path = std::env::temp_dir().join(format!(
            "{}-{}.log",
            self.name,
            uuid::Uuid::new_v4().simple()
        ));
        let log = std::fs::File::create(&log_path).expect("create the function's log file");
        let child = Command::new(&self.binary)
            .env_clear()
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        Process { child, log_path }
    }

    /// One invocation on whatever process is polling.
    pub async fn invoke(&self, event: &serde_json::Value) -> Invocation {
        self.api
            .invoke(event.clone(), Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{} did not answer within 30 s", self.name))
    }
}

/// A running function process.
pub struct Process {
    child: Child,
    pub log_path: PathBuf,
}

/// What /proc says about a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// utime + stime of all its threads.
    pub cpu: Duration,
    /// Peak resident set (VmHWM), in kB.
    pub peak_rss_kb: u64,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    pub fn usage(&self) -> Usage {
        let pid = self.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..]
            .split(' ')
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
        let peak_rss_kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status");
        Usage {
            cpu: Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks_per_second()),
            peak_rss_kb,
        }
    }

    /// The function's log so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// Invokes a fresh process of `function` at TRACE with `event`, which carries `secret`, and
/// asserts that the log never shows the value while trace logging is on: the Lambda runtime
/// logs every raw event at TRACE unless the function filters it out.
pub async fn assert_event_never_logged(
    function: Function,
    event: &serde_json::Value,
    secret: &str,
) {
    let function = function.env("RUST_LOG", "trace");
    let process = function.spawn();
    function.invoke(event).await;
    let log = process.log();
    process.stop().await;
    assert!(log.contains("TRACE"), "not logging at TRACE: {log}");
    assert!(!log.contains(secret), "the secret is in the log: {log}");
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100)
}

/// A webhook signing secret in the emulator's Secrets Manager, as the template creates it (bare
/// base64): execute-task reads it at start from `WEBHOOK_SIGNING_SECRET_ARN`.
pub async fn signing_secret_arn() -> String {
    let config = tasks_aws::testing::emulator_config().await;
    let created = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(tasks_aws::testing::unique("signing"))
        .secret_string("MfKQ9r0HHJF2ysB1xFpLQ4X5rP7w3cMzqYz5mA8YcSQ=")
        .send()
        .await
        .expect("a secret on the emulator");
    created.arn().expect("the secret's ARN").to_string()
}

/// The workspace's root, where the state machine and the event fixtures live.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
