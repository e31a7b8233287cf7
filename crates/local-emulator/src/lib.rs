//! Launches the pinned moto server (the local AWS emulator) for integration tests and the local
//! runner. The binary comes from `.venv` at the workspace root (`make venv`), or `$MOTO_SERVER`.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OnceCell};

const ATOMIC_WRITES_LAUNCHER: &str = include_str!("moto_atomic_writes.py");

/// Overrides the path of the `moto_server` binary.
pub const MOTO_SERVER_ENV: &str = "MOTO_SERVER";
/// When set, [`shared_endpoint`] uses this emulator instead of starting one.
pub const ENDPOINT_ENV: &str = "TASKS_EMULATOR_ENDPOINT";
/// Step Functions runs the ASL of machines created after this is posted; Lambda invocations
/// echo their payload instead of needing Docker.
pub const MOTO_CONFIG: &str =
    r#"{"stepfunctions":{"execute_state_machine":true},"lambda":{"use_docker":false}}"#;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Another process may take the free port between our probe and moto's bind.
const START_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("moto_server not found at {}: run `make venv` (installs the pinned emulator into .venv)", .0.display())]
    NotInstalled(PathBuf),
    #[error("could not start {}: {source}", .program.display())]
    Spawn { program: PathBuf, source: io::Error },
    #[error("moto_server exited during startup ({status}); its output is in {}", .log.display())]
    Exited { status: ExitStatus, log: PathBuf },
    #[error("moto_server at {endpoint} was not ready within {waited:?}; its output is in {}", .log.display())]
    NotReady {
        endpoint: String,
        waited: Duration,
        log: PathBuf,
    },
    #[error("configuring the emulator at {endpoint} failed: {reason}")]
    Config { endpoint: String, reason: String },
}

/// A running moto server, killed when dropped.
///
/// The process is spawned from a thread of its own that lives until the drop (or until the
/// process exits). On Linux the child has `PR_SET_PDEATHSIG = SIGKILL`, which fires when the
/// spawning *thread* ends: tying it to this thread, not to a test's runtime thread, keeps a shared
/// instance alive across tests and still kills it when the test process exits.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    pid: u32,
    log: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl Moto {
    /// Starts moto on a free loopback port, waits until it answers and configures it.
    pub async fn start() -> Result<Moto, EmulatorError> {
        let program = locate(std::env::var_os(MOTO_SERVER_ENV))?;
        let mut attempt = 1;
        loop {
            match Moto::start_once(&program).await {
                Err(EmulatorError::Exited { status, log }) if attempt < START_ATTEMPTS => {
                    tracing::warn!(%status, log = %log.display(), "moto_server exited at startup, retrying on another port");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where the server's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    async fn start_once(program: &Path) -> Result<Moto, EmulatorError> {
        let spawn_error = |source| EmulatorError::Spawn {
            program: program.to_path_buf(),
            source,
        };
        let port = free_port().map_err(spawn_error)?;
        let log = log_dir().join(format!("moto-{port}.log"));
        let output = File::create(&log)
            .and_then(|file| Ok((file.try_clone()?, file)))
            .map_err(spawn_error)?;
        // The venv's interpreter sits beside `moto_server`; it runs moto's server through a
        // wrapper that keeps DynamoDB's per-item atomicity (see the script).
        let mut command = Command::new(program.with_file_name("python"));
        command
            .args(["-c", ATOMIC_WRITES_LAUNCHER])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(output.0)
            .stderr(output.1);
        die_with_parent(&mut command);

        let (spawned_tx, spawned_rx) = oneshot::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let keeper = std::thread::Builder::new()
            .name(format!("moto-{port}"))
            .spawn(move || keep(command, spawned_tx, stopped))
            .map_err(spawn_error)?;
        let child = match spawned_rx.await {
            Ok(Ok(child)) => child,
            Ok(Err(source)) => return Err(spawn_error(source)),
            Err(_) => return Err(spawn_error(io::Error::other("the keeper thread died"))),
        };
        let pid = child.lock().unwrap_or_else(PoisonError::into_inner).id();
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid,
            log,
            stop: Some(stop),
            keeper: Some(keeper),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        moto.wait_ready(addr, &child).await?;
        configure(addr, &moto.endpoint).await?;
        tracing::info!(endpoint = %moto.endpoint, pid, log = %moto.log.display(), "moto_server ready");
        Ok(moto)
    }

    async fn wait_ready(
        &self,
        addr: SocketAddr,
        child: &Mutex<Child>,
    ) -> Result<(), EmulatorError> {
        let started = Instant::now();
        loop {
            let exited = child
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait();
            if let Ok(Some(status)) = exited {
                return Err(EmulatorError::Exited {
                    status,
                    log: self.log.clone(),
                });
            }
            if let Ok((status, _)) = http(addr, "GET", "/moto-api/config", "").await {
                if (200..300).contains(&status) {
                    return Ok(());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(EmulatorError::NotReady {
                    endpoint: self.endpoint.clone(),
                    waited: started.elapsed(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Closing the channel tells the keeper to kill and reap the child.
        self.stop.take();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// Body of the keeper thread: owns the child for as long as the [`Moto`] lives.
fn keep(
    mut command: Command,
    spawned: oneshot::Sender<io::Result<Arc<Mutex<Child>>>>,
    stopped: mpsc::Receiver<()>,
) {
    let child = match command.spawn() {
        Ok(child) => Arc::new(Mutex::new(child)),
        Err(error) => {
            let _ = spawned.send(Err(error));
            return;
        }
    };
    let _ = spawned.send(Ok(Arc::clone(&child)));
    let _ = stopped.recv();
    let mut child = child.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec; it only calls the async-signal-safe
    // prctl and getppid and does not allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Had the parent died before prctl, no signal would ever come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere only the drop stops the server.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

enum Shared {
    External(String),
    Owned(Moto),
}

/// One emulator per test process, started on first use and shared by every test, whatever
/// runtime each test runs on; `$TASKS_EMULATOR_ENDPOINT` names an already running (and already
/// configured) one instead. Fails, never skips, when moto is not installed.
pub async fn shared_endpoint() -> Result<&'static str, EmulatorError> {
    static SHARED: OnceCell<Shared> = OnceCell::const_new();
    let shared = SHARED
        .get_or_try_init(|| async {
            match std::env::var(ENDPOINT_ENV) {
                Ok(endpoint) if !endpoint.trim().is_empty() => Ok(Shared::External(endpoint)),
                _ => Moto::start().await.map(Shared::Owned),
            }
        })
        .await?;
    Ok(match shared {
        Shared::External(endpoint) => endpoint,
        Shared::Owned(moto) => moto.endpoint(),
    })
}

/// The environment that points an AWS SDK (or CLI) in a child process at the emulator, with
/// the dummy credentials moto accepts.
pub fn aws_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        // Keeps the SDK from probing the instance metadata service for anything it lacks.
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(Path::parent).unwrap_or(manifest)
}

fn locate(explicit: Option<OsString>) -> Result<PathBuf, EmulatorError> {
    let path = explicit
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/moto_server"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(EmulatorError::NotInstalled(path))
    }
}

fn log_dir() -> PathBuf {
    let dir = workspace_root().join("target/moto");
    if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    }
}

fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Posts [`MOTO_CONFIG`] and checks that moto took it.
async fn configure(addr: SocketAddr, endpoint: &str) -> Result<(), EmulatorError> {
    let failed = |reason: String| EmulatorError::Config {
        endpoint: endpoint.to_string(),
        reason,
    };
    let (status, body) = http(addr, "POST", "/moto-api/config", MOTO_CONFIG)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(failed(format!("HTTP {status}: {body}")));
    }
    let config: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| failed(format!("{e}: {body}")))?;
    // moto 5.2.5 echoes only the batch and lambda sections.
    let executes = config
        .pointer("/stepfunctions/execute_state_machine")
        .is_none_or(|executes| executes == true);
    let no_docker = config["lambda"]["use_docker"] == false;
    if executes && no_docker {
        Ok(())
    } else {
        Err(failed(format!("the configuration did not take: {body}")))
    }
}

/// One HTTP/1.1 exchange with `Connection: close`: enough for moto's own API.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, io::Error>(response)
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_its_path_and_the_fix() {
        let error = locate(Some("/nonexistent/moto_server".into())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "moto_server not found at /nonexistent/moto_server: run `make venv` (installs the pinned emulator into .venv)"
        );
    }

    #[test]
    fn the_sdk_environment_points_at_the_emulator_with_dummy_credentials() {
        let env = aws_env("http://127.0.0.1:5000");
        assert!(env.contains(&("AWS_ENDPOINT_URL", "http://127.0.0.1:5000".to_string())));
        assert!(env.contains(&("AWS_ACCESS_KEY_ID", "test".to_string())));
        assert!(env.contains(&("AWS_SECRET_ACCESS_KEY", "test".to_string())));
        assert!(env.contains(&("AWS_REGION", "us-east-1".to_string())));
    }

    #[test]
    fn the_default_binary_is_in_the_workspace_venv() {
        let expected = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
        let found = match locate(None) {
            Ok(path) | Err(EmulatorError::NotInstalled(path)) => path,
            Err(other) => panic!("{other}"),
        };
        assert_eq!(
            found.canonicalize().ok(),
            expected.canonicalize().ok(),
            "{}",
            found.display()
        );
        assert!(found.ends_with(".venv/bin/moto_server"));
    }
}
