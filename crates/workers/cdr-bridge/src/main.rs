//! `akira-cdr-bridge`: a publisher. Tails a file of Kamailio accounting records (one JSON
//! object per line) and publishes each line to `akira.cdr.<source>` in the `CDR` stream,
//! awaiting every PubAck. Lines that are not a JSON object go to
//! `akira.dlq.cdr-bridge.<source>` in `AKIRA_DLQ` with reason `invalid_record`.

mod bridge;
mod line;
mod metrics;
mod settings;
mod state;
mod tail;

use std::process::ExitCode;

use akira_workers::{BoxError, Worker, WorkerArgs};
use clap::Parser;

use crate::settings::BridgeSettings;

/// Publish Kamailio accounting records from a file to the CDR stream.
#[derive(Parser)]
#[command(name = "akira-cdr-bridge", version)]
struct Args {
    #[command(flatten)]
    common: WorkerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    akira_workers::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let config = akira_workers::Config::load(&args.common.config)?;
    let state_directory = std::env::var("STATE_DIRECTORY").ok();
    let settings = config
        .section::<BridgeSettings>("bridge")?
        .validate(config.origin(), state_directory.as_deref())?;
    if args.common.check_config {
        println!("configuration ok: {}", args.common.config.display());
        return Ok(());
    }

    let worker = Worker::start(config).await?;
    worker
        .run_service(move |ctx| bridge::run(ctx, settings))
        .await?;
    Ok(())
}
