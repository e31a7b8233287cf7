//! The whole service in one process, on a local AWS emulator: the api router on a TCP port, the
//! cron on a timer, an SQS poller feeding process-sqs-records, and an in-process stand-in for
//! Step Functions that runs the state machine's definition, calling execute-task and
//! update-status. Every handler is the Lambdas' own.

pub mod consumer;
pub mod workflow;

use execute_task::signing::{Keyring, SigningKeys};
use execute_task::webhook::HttpSender;
use execute_task::ExecuteTask;
use local_emulator::Moto;
use process_sqs_records::ProcessRecords;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tasks_core::config::{self, env_bool, env_optional, env_u64, ConfigError};
use tasks_core::{Clock, Pacing, SystemClock};
use tasks_cron::Cron;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use update_status::UpdateStatus;
use workflow::LocalWorkflow;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub cron_interval: Duration,
    pub table_name: String,
    pub queue_name: String,
    pub webhook_timeout: Duration,
    pub allow_private_webhooks: bool,
    /// From `WEBHOOK_KEEP_ANSWERS` (true): whether attempts keep the start of each answer.
    pub keep_webhook_answers: bool,
    /// From `WEBHOOK_SIGNING_SECRETS`, or generated at start (`signing_secret_generated`).
    pub signing_keys: SigningKeys,
    pub signing_secret_generated: bool,
    /// From `WEBHOOK_NAMED_SIGNING_SECRETS`: the secrets a task may choose by name.
    pub named_signing_keys: BTreeMap<String, SigningKeys>,
    /// From `API_KEYS`: when any is given, the API requires one in `x-api-key`.
    pub api_keys: Vec<String>,
    pub pacing: Pacing,
    /// An emulator to use instead of starting one (`AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
}

impl Settings {
    /// `PORT` (3000), `CRON_INTERVAL_SECONDS` (60), `WEBHOOK_TIMEOUT_MS` (10000),
    /// `WEBHOOK_ALLOW_PRIVATE` (true here: local receivers are the point of local mode),
    /// `WEBHOOK_KEEP_ANSWERS` (true),
    /// `WEBHOOK_SIGNING_SECRETS` (one or two comma-separated `whsec_` secrets; one is generated
    /// when unset), `WEBHOOK_NAMED_SIGNING_SECRETS` (`name=secret[,previous]` entries separated
    /// by `;`; none by default), `API_KEYS` (comma-separated; none by default), `AWS_ENDPOINT_URL`, and the
    /// pacing variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let configured = env_optional(config::SIGNING_SECRETS).filter(|s| !s.trim().is_empty());
        let signing_secret_generated = configured.is_none();
        let signing_keys = match configured {
            Some(secrets) => SigningKeys::parse(&secrets),
            None => SigningKeys::generate(),
        }
        .map_err(|_| ConfigError {
            name: config::SIGNING_SECRETS,
            expected: "one or two comma-separated whsec_ secrets of 24 to 64 bytes",
            value: "(not shown)".into(),
        })?;
        let named_signing_keys =
            Keyring::parse_named(&env_optional(config::NAMED_SIGNING_SECRETS).unwrap_or_default())
                .map_err(|_| ConfigError {
                    name: config::NAMED_SIGNING_SECRETS,
                    expected: "name=secret[,previous] entries separated by ;, each name of 1 to \
                               64 letters, digits, - and _, each secret whsec_ and 24 to 64 bytes",
                    value: "(not shown)".into(),
                })?;
        let api_keys = env_optional(config::API_KEYS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Settings {
            port: u16::try_from(env_u64(config::PORT, 3000)?).map_err(|_| ConfigError {
                name: config::PORT,
                expected: "a port number",
                value: env_optional(config::PORT).unwrap_or_default(),
            })?,
            cron_interval: Duration::from_secs(env_u64(config::CRON_INTERVAL_SECONDS, 60)?.max(1)),
            table_name: "tasksTable-local".into(),
            queue_name: "tasksQueue-local".into(),
            webhook_timeout: Duration::from_millis(env_u64(config::WEBHOOK_TIMEOUT_MS, 10_000)?),
            allow_private_webhooks: env_bool(config::WEBHOOK_ALLOW_PRIVATE, true)?,
            keep_webhook_answers: env_bool(config::WEBHOOK_KEEP_ANSWERS, true)?,
            signing_keys,
            signing_secret_generated,
            named_signing_keys,
            api_keys,
            pacing: Pacing::from_env()?,
            endpoint: env_optional(config::AWS_ENDPOINT_URL),
        })
    }

    /// The environment's settings on a free port, with an emulator of its own: a service a test
    /// starts beside others.
    pub fn isolated_from_env() -> Result<Self, ConfigError> {
        Ok(Settings {
            port: 0,
            endpoint: None,
            ..Settings::from_env()?
        })
    }
}

/// The running service. Dropping it stops every loop and the emulator it started.
pub struct LocalService {
    pub addr: SocketAddr,
    pub endpoint: String,
    pub workflow: Arc<LocalWorkflow>,
    loops: Vec<JoinHandle<()>>,
    _emulator: Option<Moto>,
}

impl Drop for LocalService {
    fn drop(&mut self) {
        for task in &self.loops {
            task.abort();
        }
    }
}

pub async fn start(settings: Settings) -> Result<LocalService, Error> {
    // Bind first: a second instance must fail at once, before it starts an emulator.
    let listener = TcpListener::bind(("127.0.0.1", settings.port))
        .await
        .map_err(|error| {
            format!(
                "cannot listen on 127.0.0.1:{}: {error}. Is the service already running? \
                 Stop it, or choose another port with PORT=...",
                settings.port
            )
        })?;
    let addr = listener.local_addr()?;
    let emulator = match &settings.endpoint {
        Some(_) => None,
        None => Some(Moto::start().await?),
    };
    let endpoint = match (&settings.endpoint, &emulator) {
        (Some(endpoint), _) => endpoint.clone(),
        (None, Some(moto)) => moto.endpoint().to_string(),
        (None, None) => unreachable!("an emulator was started when no endpoint was given"),
    };
    let config = tasks_aws::emulator_config(&endpoint).await;
    let (store, queue) =
        tasks_aws::local_resources(&config, &settings.table_name, &settings.queue_name).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keyring = Keyring::new(
        settings.signing_keys.clone(),
        settings.named_signing_keys.clone(),
    );
    let signing_secrets = keyring.names();
    let store = Arc::new(store);
    let queue = Arc::new(queue);
    let execute = Arc::new(ExecuteTask {
        store: store.clone(),
        sender: Arc::new({
            let sender = HttpSender::new(
                settings.webhook_timeout,
                settings.allow_private_webhooks,
                keyring,
            )?;
            if settings.keep_webhook_answers {
                sender
            } else {
                sender.without_answers()
            }
        }),
        queue: queue.clone(),
        clock: clock.clone(),
        pacing: settings.pacing,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    });
    let update = Arc::new(UpdateStatus {
        store: store.clone(),
        clock: clock.clone(),
        metrics: Arc::new(tasks_core::metrics::Stdout),
    });
    let workflow = Arc::new(LocalWorkflow::new(execute, update, clock.clone())?);

    let router = api::router(api::AppState {
        store: store.clone(),
        queue: queue.clone(),
        workflow: workflow.clone(),
        clock: clock.clone(),
        pacing: settings.pacing,
        signing_secrets,
        diagnostics: Default::default(),
    });
    let router = api::require_api_key(router, &settings.api_keys);
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the HTTP server stopped");
        }
    });

    let cron = Cron {
        store: store.clone(),
        queue: queue.clone(),
        workflow: workflow.clone(),
        clock: clock.clone(),
        pacing: settings.pacing,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    };
    let interval = settings.cron_interval;
    let timer = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // The run logs its own summary or error; the next tick tries again either way.
            let _ = cron.run().await;
        }
    });

    let records = Arc::new(ProcessRecords {
        store,
        workflow: workflow.clone(),
        clock,
        pacing: settings.pacing,
        metrics: Arc::new(tasks_core::metrics::Stdout),
    });
    let mut loops = vec![server, timer];
    // Lambda's SQS event source polls with several concurrent pollers; so do we, so that a
    // burst of tasks due within the lead time is started without queueing behind one poller.
    for _ in 0..consumer::POLLERS {
        let (queue, records) = (queue.clone(), records.clone());
        loops.push(tokio::spawn(async move {
            consumer::consume(&queue, &records).await
        }));
    }

    Ok(LocalService {
        addr,
        endpoint,
        workflow,
        loops,
        _emulator: emulator,
    })
}
