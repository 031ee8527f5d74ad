//! `akira-cdr-pipeline`: a JetStream pull worker on stream `CDR` (subjects `akira.cdr.>`).
//! Stores each batch of Kamailio accounting records in PostgreSQL in one transaction,
//! idempotently. An unparseable record is dead-lettered as permanent, naming the field; a
//! database outage is retried.

mod pipeline;
mod record;
mod settings;
mod store;

use std::process::ExitCode;
use std::sync::Arc;

use akira_workers::{BoxError, Config, Worker, WorkerArgs};
use clap::Parser;

use crate::pipeline::Pipeline;
use crate::settings::PipelineSettings;

/// Store Kamailio accounting records from the CDR stream in PostgreSQL.
#[derive(Parser)]
#[command(name = "akira-cdr-pipeline", version)]
struct Args {
    #[command(flatten)]
    common: WorkerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    akira_workers::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let config = Config::load(&args.common.config)?;
    let settings = config
        .section::<PipelineSettings>("pipeline")?
        .validate(config.origin())?;
    let database_url = settings.database_url()?;
    if args.common.check_config {
        println!("configuration ok: {}", args.common.config.display());
        return Ok(());
    }

    let worker = Worker::start(config).await?;
    let pool = store::connect(&database_url, settings.pool_size, settings.connect_timeout)
        .map_err(|err| format!("invalid pipeline database URL: {err}"))?;
    store::migrate(
        &pool,
        worker.config().worker.startup_timeout,
        &worker.shutdown_token(),
    )
    .await
    .map_err(|err| format!("applying the cdr_events schema failed: {err}"))?;
    tracing::info!(
        version = store::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
        "database schema is up to date"
    );

    let pipeline = Arc::new(Pipeline::new(
        pool,
        settings.extra_fields(),
        worker.metrics(),
    ));
    worker
        .run_pull(move |batch| {
            let pipeline = pipeline.clone();
            async move { pipeline.handle_batch(batch).await }
        })
        .await?;
    Ok(())
}
