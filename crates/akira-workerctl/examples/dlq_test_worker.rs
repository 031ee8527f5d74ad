//! A pull worker for akira-workerctl's tests, built on the akira-workers runtime.
//!
//! `[test_worker] behaviour` sets what its handler does with every message:
//! - `ok`: succeeds, and appends `<subject> <payload>` to `record_file` when it is set;
//! - `fail`: fails with a retryable error, so the library dead-letters the message with
//!   reason `max_deliver` on the last delivery;
//! - `permanent`: fails with a permanent error (reason `permanent`);
//! - `exit`: exits the process without settling the message, as a crashing handler would.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use akira_workers::{Delivery, HandlerError, HandlerResult, Worker, WorkerArgs};
use clap::Parser;
use serde::Deserialize;

/// Runs the test worker.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: WorkerArgs,
}

/// `[test_worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    behaviour: Behaviour,
    record_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Behaviour {
    Ok,
    Fail,
    Permanent,
    Exit,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    akira_workers::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), akira_workers::BoxError> {
    let Some(config) = args.common.load()? else {
        return Ok(());
    };
    let settings: Arc<Settings> = Arc::new(config.section("test_worker")?);
    let worker = Worker::start(config).await?;
    worker
        .run_pull(move |batch: Vec<Delivery>| {
            let settings = settings.clone();
            async move {
                let mut results = Vec::with_capacity(batch.len());
                for delivery in batch {
                    results.push(handle(&settings, &delivery));
                }
                results
            }
        })
        .await?;
    Ok(())
}

fn handle(settings: &Settings, delivery: &Delivery) -> HandlerResult {
    match settings.behaviour {
        Behaviour::Ok => {
            if let Some(path) = &settings.record_file {
                record(path, delivery);
            }
            Ok(())
        }
        Behaviour::Fail => Err(HandlerError::retry(format!(
            "downstream unavailable for {}",
            delivery.subject()
        ))),
        Behaviour::Permanent => Err(HandlerError::permanent("payload rejected")),
        Behaviour::Exit => {
            tracing::error!(
                subject = delivery.subject(),
                "exiting without settling the message"
            );
            std::process::exit(3);
        }
    }
}

fn record(path: &PathBuf, delivery: &Delivery) {
    let line = format!(
        "{} {}\n",
        delivery.subject(),
        String::from_utf8_lossy(delivery.payload())
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open record file");
    file.write_all(line.as_bytes()).expect("write record file");
}
