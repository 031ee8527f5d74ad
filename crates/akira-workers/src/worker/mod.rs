//! The worker lifecycle: configure, connect, verify, run, drain, exit.

mod check;
mod core;
mod pull;
mod push;
mod settle;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::connect::{self, ConnectError};
use crate::delivery::Publisher;
use crate::health::Health;
use crate::logging::RateLimiter;
use crate::metrics::WorkerMetrics;
use crate::outcome::BoxError;
use crate::systemd;

pub use check::ConsumerMismatch;

/// Error that kept a worker from starting or stopped it.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot serve metrics on {address}: {source}; change metrics.listen or set it to \"\" to disable")]
    Metrics {
        address: String,
        source: std::io::Error,
    },
    #[error("stream `{stream}` not found; declare it with `akira-workerctl apply` or set worker.ensure = true")]
    StreamNotFound { stream: String },
    #[error("consumer `{consumer}` not found on stream `{stream}`; declare it with `akira-workerctl apply` or set worker.ensure = true")]
    ConsumerNotFound { stream: String, consumer: String },
    #[error("{0}")]
    Mismatch(ConsumerMismatch),
    #[error("JetStream request failed while {action}: {message}")]
    JetStream { action: String, message: String },
    #[error("subscribing to {subject} failed: {message}")]
    Subscribe { subject: String, message: String },
    #[error("service failed: {0}")]
    Service(BoxError),
}

/// State shared by every task of one worker process.
pub(crate) struct Runtime {
    pub config: Config,
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub metrics: WorkerMetrics,
    pub health: Health,
    pub shutdown: CancellationToken,
    pub limiter: RateLimiter,
    /// `<name>@<host>`, the `Akira-Dlq-Worker` header.
    pub identity: String,
    pub publisher: Publisher,
}

/// A started worker: connected to NATS, serving metrics, listening for SIGTERM and SIGINT.
///
/// Call one of the `run_*` methods to receive messages; each returns after a graceful stop.
pub struct Worker {
    runtime: Arc<Runtime>,
    metrics_address: Option<SocketAddr>,
}

impl Worker {
    /// Installs logging, starts the metrics endpoint and the signal handler, and connects.
    pub async fn start(config: Config) -> Result<Worker, WorkerError> {
        crate::logging::init(&config.log);
        let metrics = WorkerMetrics::new(&config.worker.name);
        let health = Health::new();
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        tracing::info!(
            worker = %config.worker.name,
            version = env!("CARGO_PKG_VERSION"),
            config = %config.origin(),
            "starting"
        );
        systemd::notify("STATUS=connecting to NATS");

        let metrics_address = if config.metrics.listen.is_empty() {
            None
        } else {
            let address = crate::http::serve(
                &config.metrics.listen,
                metrics.clone(),
                health.clone(),
                shutdown.clone(),
            )
            .await
            .map_err(|source| WorkerError::Metrics {
                address: config.metrics.listen.clone(),
                source,
            })?;
            tracing::info!(address = %address, "serving /metrics, /healthz and /readyz");
            Some(address)
        };

        let client = connect::connect(&config, metrics.clone(), health.clone(), &shutdown).await?;
        tracing::info!(servers = %config.nats_servers().join(","), "connected to NATS");
        let jetstream = jetstream::new(client.clone());
        let publisher = Publisher::new(client.clone(), jetstream.clone());
        systemd::spawn_watchdog(health.clone(), shutdown.clone());
        health.tick();

        let identity = crate::dlq::worker_identity(&config.worker.name);
        let runtime = Runtime {
            config,
            client,
            jetstream,
            metrics,
            health,
            shutdown,
            limiter: RateLimiter::new(Duration::from_secs(10)),
            identity,
            publisher,
        };
        Ok(Worker {
            runtime: Arc::new(runtime),
            metrics_address,
        })
    }

    pub fn config(&self) -> &Config {
        &self.runtime.config
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.runtime.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.runtime.jetstream
    }

    pub fn metrics(&self) -> &WorkerMetrics {
        &self.runtime.metrics
    }

    /// Cancelled on SIGTERM or SIGINT; tasks the worker author spawns should stop on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.runtime.shutdown.clone()
    }

    /// Returns a publisher that stamps a new correlation id on each message.
    pub fn publisher(&self) -> Publisher {
        self.runtime.publisher.clone()
    }

    /// Returns the address `/metrics` is served on, when enabled.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// Runs a worker with its own loop, such as a publisher, until it returns or the process
    /// is asked to stop. The worker counts as ready once the service starts.
    pub async fn run_service<F, Fut>(self, service: F) -> Result<(), WorkerError>
    where
        F: FnOnce(ServiceContext) -> Fut,
        Fut: Future<Output = Result<(), BoxError>>,
    {
        let runtime = self.runtime.clone();
        let context = ServiceContext {
            shutdown: runtime.shutdown.clone(),
            client: runtime.client.clone(),
            jetstream: runtime.jetstream.clone(),
            metrics: runtime.metrics.clone(),
            publisher: runtime.publisher.clone(),
            health: runtime.health.clone(),
            identity: runtime.identity.clone(),
            config: runtime.config.clone(),
        };
        mark_ready(&runtime);
        let result = service(context).await;
        finish(&runtime).await;
        result.map_err(WorkerError::Service)
    }
}

/// Handles and settings given to a service started by [`Worker::run_service`].
#[derive(Clone)]
pub struct ServiceContext {
    /// Cancelled on SIGTERM or SIGINT: finish the current step, save state, return.
    pub shutdown: CancellationToken,
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub metrics: WorkerMetrics,
    pub publisher: Publisher,
    /// `<name>@<host>` for `Akira-Dlq-Worker`.
    pub identity: String,
    pub config: Config,
    health: Health,
}

impl ServiceContext {
    /// Tells the systemd watchdog that the service's loop turned; call it every few seconds.
    pub fn tick(&self) {
        self.health.tick();
    }

    /// Returns whether NATS is connected right now.
    pub fn is_connected(&self) -> bool {
        self.health.is_connected()
    }
}

pub(crate) fn mark_ready(runtime: &Runtime) {
    runtime.health.set_ready(true);
    runtime.health.tick();
    systemd::notify("READY=1\nSTATUS=ready");
    tracing::info!("ready");
}

/// Flushes what is buffered, then reports the stop.
pub(crate) async fn finish(runtime: &Runtime) {
    runtime.health.set_ready(false);
    if let Err(err) = tokio::time::timeout(Duration::from_secs(5), runtime.client.flush()).await {
        tracing::error!(error = %err, "flushing to NATS timed out; acks sent just now may be lost and their messages redelivered");
    }
    systemd::notify("STATUS=stopped");
    tracing::info!("stopped");
}

pub(crate) fn spawn_signal_handler(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};

    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM");
            return;
        }
    };
    let mut interrupt = match signal(SignalKind::interrupt()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            return;
        }
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            _ = shutdown.cancelled() => return,
        };
        tracing::info!(signal = name, "draining: stop requested");
        systemd::notify("STOPPING=1\nSTATUS=draining");
        shutdown.cancel();
    });
}
