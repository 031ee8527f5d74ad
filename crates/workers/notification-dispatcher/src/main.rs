//! `akira-notification-dispatcher --config PATH`: JetStream push worker on `NOTIFY`.

use std::process::ExitCode;
use std::sync::Arc;

use akira_notification_dispatcher::{handle, Dispatcher, DispatcherSettings};
use akira_workers::{BoxError, Config, Worker, WorkerArgs};
use clap::Parser;

/// Delivers notifications from the NOTIFY stream by HTTP POST to configured endpoints.
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
    let config = Config::load(&args.common.config)?;
    let settings: DispatcherSettings = config.section("dispatcher")?;
    let endpoints = settings.endpoints(config.origin())?;
    if args.common.check_config {
        println!("configuration ok: {}", args.common.config.display());
        return Ok(());
    }

    let dispatcher = Arc::new(Dispatcher::new(endpoints)?);
    let max_delay = config.retry.cap;
    let worker = Worker::start(config).await?;
    worker
        .run_push(move |delivery| {
            let dispatcher = dispatcher.clone();
            async move { handle(&dispatcher, max_delay, delivery).await }
        })
        .await?;
    Ok(())
}
