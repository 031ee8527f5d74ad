//! `akira-alert-relay --config PATH`: Alertmanager webhook receiver and core NATS worker.

use std::process::ExitCode;
use std::sync::Arc;

use akira_alert_relay::config::RelaySettings;
use akira_alert_relay::http::{self, WebhookState};
use akira_alert_relay::metrics::RelayMetrics;
use akira_alert_relay::subscriber;
use akira_workers::{BoxError, Config, Worker, WorkerArgs};
use clap::Parser;

/// Subjects the core worker reads when `core.subjects` is not set.
const DEFAULT_SUBJECT: &str = "akira.alerts.>";
/// Queue group when `core.queue_group` is not set, so instances share the payloads.
const DEFAULT_QUEUE_GROUP: &str = "alert-relay";

/// Receives Alertmanager webhooks and publishes one notification per alert and endpoint.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: WorkerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    akira_workers::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut config = Config::load(&args.common.config)?;
    let settings: RelaySettings = config.section("relay")?;
    let address = settings.listen_address(config.origin())?;
    let router = Arc::new(settings.router(config.origin())?);
    if config.core.subjects.is_empty() {
        config.core.subjects = vec![DEFAULT_SUBJECT.to_string()];
    }
    if config.core.queue_group.is_none() {
        config.core.queue_group = Some(DEFAULT_QUEUE_GROUP.to_string());
    }
    if args.common.check_config {
        println!("configuration ok: {}", args.common.config.display());
        return Ok(());
    }

    let worker = Worker::start(config).await?;
    let metrics = RelayMetrics::register(worker.metrics());

    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| {
            format!("cannot listen on {address} (relay.listen): {err}; choose a free address")
        })?;
    let app = http::app(
        &settings.path,
        WebhookState {
            publisher: worker.publisher(),
            metrics: metrics.clone(),
        },
    );
    let shutdown = worker.shutdown_token();
    tracing::info!(address = %address, path = %settings.path, "serving Alertmanager webhooks");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });

    let result = worker
        .run_core(move |delivery| {
            let router = router.clone();
            let metrics = metrics.clone();
            async move { subscriber::handle(&router, &metrics, delivery).await }
        })
        .await;

    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "webhook server failed"),
        Err(err) => tracing::error!(error = %err, "webhook server task panicked"),
    }
    result?;
    Ok(())
}
