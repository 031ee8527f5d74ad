//! Connecting to NATS with the configured authentication, TLS and reconnect handling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, Event};
use tokio_util::sync::CancellationToken;

use crate::config::{read_secret, resolve_secret_path_checked, Config, ConfigError};
use crate::health::Health;
use crate::metrics::WorkerMetrics;

/// Error from the first connection to NATS.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {servers} within {timeout}: {message}; check that nats-server runs and nats.servers (or NATS_URL) points at it")]
    Unreachable {
        servers: String,
        timeout: String,
        message: String,
    },
    #[error("stopped while connecting to NATS")]
    Cancelled,
}

async fn options(
    config: &Config,
    metrics: WorkerMetrics,
    health: Health,
) -> Result<ConnectOptions, ConnectError> {
    let nats = &config.nats;
    let name = nats
        .name
        .clone()
        .unwrap_or_else(|| format!("akira-{}", config.worker.name));
    let mut options = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(nats.connect_timeout.unwrap_or(Duration::from_secs(5)));

    if let Some(user) = &nats.user {
        let password = match &nats.password_file {
            Some(path) => read_secret("nats.password_file", path)?,
            None => String::new(),
        };
        options = options.user_and_password(user.clone(), password);
    }
    if let Some(path) = &nats.token_file {
        options = options.token(read_secret("nats.token_file", path)?);
    }
    if let Some(path) = &nats.nkey_seed_file {
        options = options.nkey(read_secret("nats.nkey_seed_file", path)?);
    }
    if let Some(path) = &nats.creds_file {
        let path = resolve_secret_path_checked("nats.creds_file", path)?;
        options = options
            .credentials_file(&path)
            .await
            .map_err(|source| ConnectError::Credentials { path, source })?;
    }
    let tls = &nats.tls;
    if let Some(ca) = &tls.ca_file {
        options =
            options.add_root_certificates(resolve_secret_path_checked("nats.tls.ca_file", ca)?);
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            options = options.add_client_certificate(
                resolve_secret_path_checked("nats.tls.cert_file", cert)?,
                resolve_secret_path_checked("nats.tls.key_file", key)?,
            );
        }
        (None, None) => {}
        _ => {
            return Err(ConfigError::invalid(
                "nats.tls.cert_file",
                config.origin(),
                "cert_file and key_file must be set together",
            )
            .into())
        }
    }
    if tls.required || tls.ca_file.is_some() || tls.cert_file.is_some() {
        options = options.require_tls(true);
    }

    let ever_connected = Arc::new(AtomicBool::new(false));
    let options = options.event_callback(move |event| {
        let metrics = metrics.clone();
        let health = health.clone();
        let ever_connected = ever_connected.clone();
        async move {
            match event {
                Event::Connected => {
                    metrics.set_connected(true);
                    health.set_connected(true);
                    if ever_connected.swap(true, Ordering::Relaxed) {
                        metrics.record_reconnect();
                        tracing::info!("reconnected to NATS");
                    }
                }
                Event::Disconnected => {
                    metrics.set_connected(false);
                    health.set_connected(false);
                    tracing::warn!("disconnected from NATS; reconnecting");
                }
                Event::LameDuckMode => tracing::warn!("NATS server entered lame duck mode"),
                Event::SlowConsumer(sid) => {
                    metrics.record_swallowed_error();
                    tracing::error!(
                        sid,
                        "slow consumer: the client dropped messages for a subscription"
                    );
                }
                Event::ServerError(err) => {
                    metrics.record_swallowed_error();
                    tracing::error!(error = %err, "NATS server error");
                }
                Event::ClientError(err) => {
                    metrics.record_swallowed_error();
                    tracing::error!(error = %err, "NATS client error");
                }
                Event::Draining | Event::Closed => {}
            }
        }
    });
    Ok(options)
}

/// Connects, retrying with backoff until `worker.startup_timeout` or `shutdown`.
///
/// After the first connection the client reconnects by itself for as long as the process runs.
pub async fn connect(
    config: &Config,
    metrics: WorkerMetrics,
    health: Health,
    shutdown: &CancellationToken,
) -> Result<async_nats::Client, ConnectError> {
    let servers = config.nats_servers();
    let deadline = Instant::now() + config.worker.startup_timeout;
    let mut delay = Duration::from_millis(200);
    loop {
        let opts = options(config, metrics.clone(), health.clone()).await?;
        let attempt = opts.connect(servers.clone());
        let error = tokio::select! {
            _ = shutdown.cancelled() => return Err(ConnectError::Cancelled),
            result = attempt => match result {
                Ok(client) => {
                    metrics.set_connected(true);
                    health.set_connected(true);
                    return Ok(client);
                }
                Err(err) => err,
            },
        };
        if Instant::now() + delay > deadline {
            return Err(ConnectError::Unreachable {
                servers: servers.join(","),
                timeout: crate::duration::format(config.worker.startup_timeout),
                message: error.to_string(),
            });
        }
        tracing::warn!(servers = %servers.join(","), error = %error, retry_in_ms = delay.as_millis() as u64, "cannot connect to NATS; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return Err(ConnectError::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
