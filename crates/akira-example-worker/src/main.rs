//! `akira-example-worker`: a worker whose handler does what its `[example]` table sets.
//!
//! It exists for the library's process-level tests, the NixOS VM tests and for trying the
//! library out. Each handled message appends a line to `example.record_file`:
//! `<subject> <stream sequence> <delivery count> <payload as UTF-8>`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use akira_workers::{Delivery, HandlerError, HandlerResult, Worker, WorkerArgs};
use clap::Parser;
use serde::Deserialize;

/// Runs the example worker.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: WorkerArgs,
}

/// `[example]`: what the handler does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleSettings {
    /// `core`, `push`, `pull`, or `service` (an idle loop of its own).
    class: Class,
    #[serde(default)]
    behaviour: Behaviour,
    /// With `fail-then-succeed`: deliveries that fail before one succeeds.
    #[serde(default = "default_fail_times")]
    fail_times: i64,
    /// With `sleep`: how long each message takes.
    #[serde(with = "akira_workers::duration", default = "default_sleep")]
    sleep: Duration,
    /// A payload equal to this string is treated as poison by `poison` behaviour.
    #[serde(default = "default_poison")]
    poison: String,
    record_file: Option<PathBuf>,
    /// With class `service`: block the loop's thread for `sleep` after this long, once.
    #[serde(with = "akira_workers::duration::option", default)]
    block_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Class {
    Core,
    Push,
    Pull,
    Service,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Behaviour {
    /// Succeed at once.
    #[default]
    Ok,
    /// Fail `fail_times` deliveries with a retryable error, then succeed.
    FailThenSucceed,
    /// Always fail with a retryable error.
    AlwaysFail,
    /// Fail with a permanent error.
    Permanent,
    /// Panic on the first delivery, succeed on later ones.
    PanicOnce,
    /// Sleep for `sleep`, then succeed.
    Sleep,
    /// Exit the process without settling a message whose payload is `poison`.
    Poison,
}

fn default_fail_times() -> i64 {
    2
}
fn default_sleep() -> Duration {
    Duration::from_secs(1)
}
fn default_poison() -> String {
    "poison".to_string()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    akira_workers::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), akira_workers::BoxError> {
    let Some((config, settings)) = args
        .common
        .load_with_section::<ExampleSettings>("example")?
    else {
        return Ok(());
    };
    let worker = Worker::start(config).await?;
    let settings = Arc::new(settings);
    match settings.class {
        Class::Core => {
            worker
                .run_core(move |delivery| handle(settings.clone(), delivery))
                .await?
        }
        Class::Push => {
            worker
                .run_push(move |delivery| handle(settings.clone(), delivery))
                .await?
        }
        Class::Pull => {
            worker
                .run_pull(move |batch: Vec<Delivery>| {
                    let settings = settings.clone();
                    async move {
                        let mut results = Vec::with_capacity(batch.len());
                        for delivery in batch {
                            results.push(handle(settings.clone(), delivery).await);
                        }
                        results
                    }
                })
                .await?
        }
        Class::Service => {
            worker
                .run_service(move |context| idle_loop(settings, context))
                .await?
        }
    }
    Ok(())
}

/// Ticks every 50 ms until stopped; with `block_after`, blocks its thread once, as a hung
/// loop would, so the watchdog stops pinging.
async fn idle_loop(
    settings: Arc<ExampleSettings>,
    context: akira_workers::ServiceContext,
) -> Result<(), akira_workers::BoxError> {
    let started = std::time::Instant::now();
    let mut blocked = false;
    while !context.shutdown.is_cancelled() {
        if let Some(after) = settings.block_after {
            if !blocked && started.elapsed() >= after {
                blocked = true;
                tracing::warn!("blocking the service loop on purpose");
                std::thread::sleep(settings.sleep);
            }
        }
        context.tick();
        tokio::select! {
            _ = context.shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    Ok(())
}

async fn handle(settings: Arc<ExampleSettings>, delivery: Delivery) -> HandlerResult {
    let delivered = delivery.delivered();
    let result = match settings.behaviour {
        Behaviour::Ok => Ok(()),
        Behaviour::FailThenSucceed if delivered <= settings.fail_times => {
            Err(HandlerError::retry(format!(
                "failing delivery {delivered} of {} on purpose",
                settings.fail_times
            )))
        }
        Behaviour::FailThenSucceed => Ok(()),
        Behaviour::AlwaysFail => Err(HandlerError::retry("always failing on purpose")),
        Behaviour::Permanent => Err(HandlerError::permanent("rejected on purpose")),
        Behaviour::PanicOnce if delivered == 1 => panic!("panicking on purpose"),
        Behaviour::PanicOnce => Ok(()),
        Behaviour::Sleep => {
            tokio::time::sleep(settings.sleep).await;
            Ok(())
        }
        Behaviour::Poison if delivery.payload().as_ref() == settings.poison.as_bytes() => {
            tracing::error!("poison message: exiting without settling it");
            std::process::exit(3);
        }
        Behaviour::Poison => Ok(()),
    };
    if let Some(path) = &settings.record_file {
        record(path, &delivery, result.is_ok());
    }
    result
}

fn record(path: &PathBuf, delivery: &Delivery, succeeded: bool) {
    let line = format!(
        "{} {} {} {} {}\n",
        delivery.subject(),
        delivery.stream_sequence().unwrap_or(0),
        delivery.delivered(),
        if succeeded { "ok" } else { "failed" },
        String::from_utf8_lossy(delivery.payload()),
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(err) = written {
        tracing::error!(path = %path.display(), error = %err, "cannot append to the record file");
    }
}
