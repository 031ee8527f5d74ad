//! `akira-demo`: runs the worker fleet on the bundled sample input and prints a summary.
//!
//! It starts nats-server and a throwaway PostgreSQL in temp dirs, or uses `NATS_URL` and
//! `DATABASE_URL`. It declares the streams with `akira-workerctl apply` and starts the
//! workers as child processes. Then it feeds the Kamailio sample and the edge cases to the
//! bridge's file line by line and posts the Alertmanager samples to the relay. Once every count has settled, it
//! runs the retention job with `--dry-run`, prints the summary and stops everything. Ctrl-C
//! stops everything too.

mod configs;
mod feed;
mod fleet;
mod inputs;
mod progress;
mod receiver;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::fleet::{run_to_end, StopResult, WorkerProcess};
use crate::inputs::{Inputs, BRIDGE, DISPATCHER, PIPELINE, RELAY, RETENTION, WORKERCTL};
use crate::progress::Progress;
use crate::receiver::WebhookReceiver;
use crate::summary::{DatabaseCounts, Summary};
use akira_testkit::{free_port, NatsServer, Postgres};
use anyhow::{bail, Context};
use async_nats::jetstream;
use clap::Parser;

/// Runs the akira worker fleet on the bundled sample input and prints what it did.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Directory with akira-workerctl and the worker binaries; defaults to this program's directory.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// Repository root; examples/data and deploy/streams.toml are read from it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,

    /// Pause between two lines appended to the bridge's file, such as 2ms.
    #[arg(long, value_name = "DURATION", default_value = "2ms", value_parser = parse_duration)]
    line_delay: Duration,

    /// How long the fleet may take to process the sample before the demo fails.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,

    /// Keep the temp dir with the configurations, logs and the accounting file.
    #[arg(long)]
    keep: bool,

    /// After the summary, keep the fleet running until Ctrl-C, so the metrics can be read.
    #[arg(long)]
    keep_running: bool,

    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    akira_workers::duration::parse(text)
}

/// Time each worker gets to finish after SIGTERM; configs set `shutdown_timeout = "10s"`.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Processes and servers the demo started; [`Fleet::shutdown`] stops all of them.
#[derive(Default)]
struct Fleet {
    workers: Vec<WorkerProcess>,
    nats: Option<NatsServer>,
    postgres: Option<Postgres>,
    temp_dir: Option<tempfile::TempDir>,
    receiver: Option<WebhookReceiver>,
}

impl Fleet {
    /// Stops the workers, then the receiver and the servers. Returns whether every worker
    /// exited 0 after SIGTERM.
    async fn shutdown(&mut self) -> bool {
        // All at once: on Ctrl-C the terminal has also interrupted nats-server, which shares
        // the demo's process group, and each worker waits for its last flush to time out.
        for worker in &mut self.workers {
            worker.terminate();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut clean = true;
        while let Some(mut worker) = self.workers.pop() {
            let result = worker.wait_stopped(deadline).await;
            match &result {
                StopResult::Stopped(status) if status.success() => {
                    step(&format!("stopped {}", worker.name))
                }
                StopResult::Stopped(status) | StopResult::Exited(status) => {
                    eprintln!(
                        "{} exited with {status}; the end of its log ({}):\n{}",
                        worker.name,
                        worker.log_path.display(),
                        worker.log_tail(15)
                    );
                }
                StopResult::Killed => eprintln!(
                    "{} did not stop within {}s of SIGTERM and was killed; see {}",
                    worker.name,
                    STOP_TIMEOUT.as_secs(),
                    worker.log_path.display()
                ),
                StopResult::NotRunning => {}
            }
            clean &= result.is_clean();
        }
        self.receiver = None;
        if let Some(mut nats) = self.nats.take() {
            tokio::task::spawn_blocking(move || nats.stop()).await.ok();
            step("stopped nats-server");
        }
        if let Some(mut postgres) = self.postgres.take() {
            tokio::task::spawn_blocking(move || postgres.stop())
                .await
                .ok();
            step("stopped PostgreSQL");
        }
        clean
    }
}

pub(crate) fn step(message: &str) {
    println!("==> {message}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut fleet = Fleet::default();

    let outcome = tokio::select! {
        result = run(&args, &mut fleet) => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    let interrupted = outcome.is_none();
    let mut summary = match outcome {
        Some(Ok(summary)) => Some(summary),
        Some(Err(err)) => {
            eprintln!("error: {err:#}");
            None
        }
        None => {
            println!();
            step("interrupted; stopping the fleet");
            None
        }
    };

    if summary.is_some() && args.keep_running {
        step("the fleet keeps running; press Ctrl-C to stop it");
        let _ = tokio::signal::ctrl_c().await;
        println!();
    }

    step("stopping the fleet");
    let clean = fleet.shutdown().await;
    if let Some(dir) = fleet.temp_dir.take() {
        if args.keep {
            let kept = dir.keep();
            step(&format!(
                "kept the configurations, logs and accounting file in {}",
                kept.display()
            ));
        }
    }

    if interrupted {
        return ExitCode::from(130);
    }
    let Some(summary) = summary.as_mut() else {
        return ExitCode::FAILURE;
    };
    summary.workers_stopped_cleanly = Some(clean);
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&summary).expect("the summary serializes");
        if let Err(err) = std::fs::write(path, json) {
            eprintln!(
                "error: cannot write the summary to {}: {err}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    if !clean {
        eprintln!("error: not every worker stopped cleanly; see the messages above");
        return ExitCode::FAILURE;
    }
    step("demo finished");
    ExitCode::SUCCESS
}

/// Addresses of the local servers the workers use.
struct Endpoints {
    nats_url: String,
    database_url: String,
    relay_listen: String,
}

async fn run(args: &Args, fleet: &mut Fleet) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let inputs = Inputs::locate(args)?;
    let temp_dir = tempfile::Builder::new().prefix("akira-demo-").tempdir()?;
    let dir = temp_dir.path().to_path_buf();
    fleet.temp_dir = Some(temp_dir);

    let nats_url = start_nats(fleet).await?;
    let database_url = start_postgres(fleet).await?;
    let endpoints = Endpoints {
        nats_url,
        database_url,
        relay_listen: format!("127.0.0.1:{}", free_port()),
    };

    step(&format!(
        "declaring streams: {WORKERCTL} apply {}",
        inputs.streams.display()
    ));
    let apply_log = dir.join("workerctl-apply.log");
    let streams = inputs.streams.display().to_string();
    let status = run_to_end(
        &inputs.binary(WORKERCTL),
        &["--server", &endpoints.nats_url, "apply", &streams],
        &apply_log,
        Duration::from_secs(60),
    )
    .await?;
    if !status.success() {
        bail!(
            "{WORKERCTL} apply failed with {status}:\n{}",
            read_log(&apply_log)
        );
    }

    // NATS_URL may list several servers, separated by commas.
    let servers: Vec<&str> = endpoints
        .nats_url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect();
    let client = async_nats::connect(servers)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", endpoints.nats_url))?;
    let jetstream = jetstream::new(client);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&endpoints.database_url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", endpoints.database_url))?;

    let receiver = WebhookReceiver::start().await?;
    let accounting_file = dir.join("kamailio-acc.log");
    std::fs::File::create(&accounting_file)?;
    start_workers(
        fleet,
        &inputs,
        &endpoints,
        &receiver,
        &dir,
        &accounting_file,
    )
    .await?;

    // Counts from before this run, so NATS_URL and DATABASE_URL may point at used servers.
    let dead_letters_before = summary::dead_letter_position(&jetstream).await?;
    let database_before = DatabaseCounts::read(&pool).await?;

    let lines_fed = feed::feed_accounting_file(
        &inputs.accounting_samples,
        &accounting_file,
        args.line_delay,
    )
    .await?;
    let (alert_payloads, alerts) =
        feed::post_alerts(&inputs.alert_samples, &endpoints.relay_listen).await?;

    step(&format!(
        "waiting for the fleet to process everything (at most {}s)",
        args.timeout.as_secs()
    ));
    let progress = Progress {
        workers: &fleet.workers,
        jetstream: &jetstream,
        lines_fed,
        alert_payloads,
    };
    progress.wait_until_settled(args.timeout).await?;

    let retention = run_retention(&inputs, &endpoints, &dir).await?;

    let mut summary = Summary {
        lines_fed,
        alert_payloads,
        alerts,
        retention,
        ..Summary::default()
    };
    summary::collect(
        &mut summary,
        &fleet.workers,
        &receiver,
        &jetstream,
        &pool,
        dead_letters_before,
        database_before,
    )
    .await?;

    step(&format!(
        "summary ({:.1}s)",
        started.elapsed().as_secs_f64()
    ));
    summary.print();
    fleet.receiver = Some(receiver);
    Ok(summary)
}

async fn start_nats(fleet: &mut Fleet) -> anyhow::Result<String> {
    if let Some(url) = std::env::var("NATS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        step(&format!("using NATS at {url} (NATS_URL)"));
        return Ok(url);
    }
    let nats = tokio::task::spawn_blocking(NatsServer::try_start)
        .await?
        .context("cannot start nats-server; install it (scripts/demo does) or set NATS_URL")?;
    let url = nats.url();
    step(&format!("started nats-server at {url}"));
    fleet.nats = Some(nats);
    Ok(url)
}

async fn start_postgres(fleet: &mut Fleet) -> anyhow::Result<String> {
    if let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        step("using PostgreSQL at DATABASE_URL");
        return Ok(url);
    }
    let postgres = tokio::task::spawn_blocking(Postgres::try_start)
        .await?
        .context("cannot start PostgreSQL; install it (scripts/demo does) or set DATABASE_URL")?;
    let url = postgres.url();
    step(&format!("started PostgreSQL at {url}"));
    fleet.postgres = Some(postgres);
    Ok(url)
}

async fn start_workers(
    fleet: &mut Fleet,
    inputs: &Inputs,
    endpoints: &Endpoints,
    receiver: &WebhookReceiver,
    dir: &Path,
    accounting_file: &Path,
) -> anyhow::Result<()> {
    let nats_url = &endpoints.nats_url;
    let metrics = |_: &str| format!("127.0.0.1:{}", free_port());

    let pipeline_metrics = metrics("cdr-pipeline");
    let dispatcher_metrics = metrics("notification-dispatcher");
    let relay_metrics = metrics("alert-relay");
    let bridge_metrics = metrics("cdr-bridge");
    // Consumers first, publishers last, so nothing waits in a stream for a worker to start.
    let workers = [
        (
            "cdr-pipeline",
            PIPELINE,
            configs::pipeline(nats_url, &pipeline_metrics, &endpoints.database_url),
            pipeline_metrics.clone(),
        ),
        (
            "notification-dispatcher",
            DISPATCHER,
            configs::dispatcher(nats_url, &dispatcher_metrics, |name| receiver.url(name)),
            dispatcher_metrics.clone(),
        ),
        (
            "alert-relay",
            RELAY,
            configs::relay(nats_url, &relay_metrics, &endpoints.relay_listen),
            relay_metrics.clone(),
        ),
        (
            "cdr-bridge",
            BRIDGE,
            configs::bridge(
                nats_url,
                &bridge_metrics,
                accounting_file,
                &dir.join("cdr-bridge-state.json"),
            ),
            bridge_metrics.clone(),
        ),
    ];

    let http = reqwest::Client::new();
    for (name, binary, config, metrics_address) in workers {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config)?;
        let log_path = dir.join(format!("{name}.log"));
        let mut worker = WorkerProcess::spawn(
            name,
            &inputs.binary(binary),
            &config_path,
            &metrics_address,
            &log_path,
        )?;
        worker.wait_ready(&http, READY_TIMEOUT).await?;
        step(&format!(
            "started {name} (metrics at {})",
            worker.metrics_url()
        ));
        fleet.workers.push(worker);
    }
    Ok(())
}

async fn run_retention(
    inputs: &Inputs,
    endpoints: &Endpoints,
    dir: &Path,
) -> anyhow::Result<String> {
    let config_path = dir.join("audit-retention.toml");
    std::fs::write(
        &config_path,
        configs::retention(&endpoints.nats_url, &endpoints.database_url, dir),
    )?;
    let log_path = dir.join("audit-retention.log");
    let config = config_path.display().to_string();

    step(&format!("running {RETENTION} --dry-run once"));
    let status = run_to_end(
        &inputs.binary(RETENTION),
        &["--config", &config, "--dry-run"],
        &log_path,
        Duration::from_secs(60),
    )
    .await?;
    if !status.success() {
        bail!(
            "{RETENTION} --dry-run failed with {status}:\n{}",
            read_log(&log_path)
        );
    }

    // The job prints "dry run: would delete N rows from TABLE ..." on stdout.
    let log = read_log(&log_path);
    let report = log
        .lines()
        .find(|line| line.starts_with("dry run:"))
        .unwrap_or("dry run finished; it printed no report")
        .trim()
        .to_string();
    Ok(report)
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| format!("(cannot read {}: {err})", path.display()))
}
