//! `akira-demo`: runs the worker fleet on the bundled sample input and prints a summary.
//!
//! It starts nats-server and a throwaway PostgreSQL in temp dirs (or uses `NATS_URL` and
//! `DATABASE_URL`), declares the streams with `akira-workerctl apply`, starts the workers as
//! child processes, feeds the Kamailio sample to the bridge's file line by line, posts the
//! Alertmanager samples to the relay, runs the retention job once with `--dry-run`, waits
//! until every count settles, prints the summary and stops everything, also on Ctrl-C.

mod configs;
mod fleet;
mod receiver;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use akira_testkit::{free_port, NatsServer, Postgres};
use anyhow::{bail, Context};
use async_nats::jetstream;
use clap::Parser;
use tokio::io::AsyncWriteExt;

use crate::fleet::{metric_sum, run_to_end, StopResult, WorkerProcess};
use crate::receiver::WebhookReceiver;
use crate::summary::{DatabaseCounts, Summary};

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

/// Binaries the demo runs, all from `--bin-dir`.
const WORKERCTL: &str = "akira-workerctl";
const BRIDGE: &str = "akira-cdr-bridge";
const PIPELINE: &str = "akira-cdr-pipeline";
const DISPATCHER: &str = "akira-notification-dispatcher";
const RELAY: &str = "akira-alert-relay";
const RETENTION: &str = "akira-audit-retention";
const BINARIES: [&str; 6] = [WORKERCTL, BRIDGE, PIPELINE, DISPATCHER, RELAY, RETENTION];

/// Time each worker gets to finish after SIGTERM; configs set `shutdown_timeout = "10s"`.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the demo started; everything in it is stopped at the end.
#[derive(Default)]
struct Fleet {
    workers: Vec<WorkerProcess>,
    nats: Option<NatsServer>,
    postgres: Option<Postgres>,
    temp_dir: Option<tempfile::TempDir>,
    receiver: Option<WebhookReceiver>,
}

impl Fleet {
    /// Stops the workers (last started first), then the receiver and the servers. Returns
    /// whether every worker exited 0 after SIGTERM.
    async fn shutdown(&mut self) -> bool {
        let mut clean = true;
        while let Some(mut worker) = self.workers.pop() {
            let result = worker.stop(STOP_TIMEOUT).await;
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

fn step(message: &str) {
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

/// Paths of the inputs in the repository.
struct Inputs {
    bin_dir: PathBuf,
    streams: PathBuf,
    accounting_sample: PathBuf,
    alert_samples: Vec<PathBuf>,
}

impl Inputs {
    fn locate(args: &Args) -> anyhow::Result<Inputs> {
        let bin_dir = match &args.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .context("cannot find the demo's own binary")?
                .parent()
                .context("the demo's binary has no parent directory")?
                .to_path_buf(),
        };
        for binary in BINARIES {
            if !bin_dir.join(binary).is_file() {
                bail!(
                    "{binary} not found in {}; build the workspace first (cargo build --workspace --bins, \
                     which scripts/demo runs) or point --bin-dir at the binaries",
                    bin_dir.display()
                );
            }
        }

        let root = &args.root;
        let streams = root.join("deploy/streams.toml");
        let accounting_sample = root.join("examples/data/kamailio-acc.jsonl");
        let alerts_dir = root.join("examples/data/alertmanager");
        for path in [&streams, &accounting_sample, &alerts_dir] {
            if !path.exists() {
                bail!(
                    "{} not found; run the demo from the repository root or pass --root",
                    path.display()
                );
            }
        }
        let mut alert_samples: Vec<PathBuf> = std::fs::read_dir(&alerts_dir)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        alert_samples.sort();
        Ok(Inputs {
            bin_dir,
            streams,
            accounting_sample,
            alert_samples,
        })
    }

    fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
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

    let client = async_nats::connect(endpoints.nats_url.as_str())
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
    fleet.receiver = Some(receiver);

    // Counts from before this run, so NATS_URL and DATABASE_URL may point at used servers.
    let dead_letters_before = summary::dead_letter_position(&jetstream).await?;
    let database_before = DatabaseCounts::read(&pool).await?;

    let lines_fed =
        feed_accounting_file(&inputs.accounting_sample, &accounting_file, args.line_delay).await?;
    let (alert_payloads, alerts) =
        post_alerts(&inputs.alert_samples, &endpoints.relay_listen).await?;

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
    collect(
        &mut summary,
        fleet,
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

/// Appends the sample to `target` one line at a time, as Kamailio appends records, and
/// returns the number of lines written.
async fn feed_accounting_file(
    sample: &Path,
    target: &Path,
    delay: Duration,
) -> anyhow::Result<u64> {
    let text =
        std::fs::read(sample).with_context(|| format!("cannot read {}", sample.display()))?;
    let lines: Vec<&[u8]> = text
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    step(&format!(
        "appending {} lines of {} to {} ({}ms apart)",
        lines.len(),
        sample.display(),
        target.display(),
        delay.as_millis()
    ));
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(target)
        .await?;
    for line in &lines {
        let mut record = line.to_vec();
        record.push(b'\n');
        file.write_all(&record).await?;
        file.flush().await?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(lines.len() as u64)
}

/// Posts each Alertmanager payload to the relay; returns the payload and alert counts.
async fn post_alerts(samples: &[PathBuf], relay_listen: &str) -> anyhow::Result<(u64, u64)> {
    let url = format!("http://{relay_listen}/alertmanager");
    let http = reqwest::Client::new();
    let mut alerts = 0;
    for sample in samples {
        let body =
            std::fs::read(sample).with_context(|| format!("cannot read {}", sample.display()))?;
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("{} is not JSON", sample.display()))?;
        alerts += parsed["alerts"]
            .as_array()
            .map_or(0, |list| list.len() as u64);
        let response = http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("posting {} to {url} failed", sample.display()))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "the relay answered {status} to {}: {}",
                sample.display(),
                text.trim()
            );
        }
        step(&format!("posted {} to {url}: {status}", sample.display()));
    }
    Ok((samples.len() as u64, alerts))
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
    let last_line = read_log(&log_path)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(format!("dry run exited 0; its last log line: {last_line}"))
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| format!("(cannot read {}: {err})", path.display()))
}

/// The conditions that say the fleet has processed everything the demo fed it.
struct Progress<'a> {
    workers: &'a [WorkerProcess],
    jetstream: &'a jetstream::Context,
    lines_fed: u64,
    alert_payloads: u64,
}

impl Progress<'_> {
    async fn wait_until_settled(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let pending = self.pending().await;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the fleet did not finish within {}s: {}; the worker logs are in the temp dir (run with --keep)",
                    timeout.as_secs(),
                    pending.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Returns what is still outstanding, empty when everything settled.
    async fn pending(&self) -> Vec<String> {
        let mut pending = Vec::new();

        let bridge = self.metrics("cdr-bridge").await;
        let lines_read = metric_sum(&bridge, "akira_cdr_bridge_lines_total", &[]) as u64;
        if lines_read < self.lines_fed {
            pending.push(format!(
                "the bridge read {lines_read} of {} lines",
                self.lines_fed
            ));
        }

        let relay = self.metrics("alert-relay").await;
        let handled = metric_sum(&relay, "akira_worker_messages_total", &[]) as u64;
        if handled < self.alert_payloads {
            pending.push(format!(
                "the relay handled {handled} of {} payloads",
                self.alert_payloads
            ));
        }

        for (stream, consumer) in [
            (configs::CDR_STREAM, configs::CDR_CONSUMER),
            (configs::NOTIFY_STREAM, configs::NOTIFY_CONSUMER),
        ] {
            match consumer_backlog(self.jetstream, stream, consumer).await {
                Ok(0) => {}
                Ok(backlog) => pending.push(format!(
                    "{backlog} messages not yet acknowledged by {consumer}"
                )),
                Err(err) => pending.push(format!("cannot read consumer {consumer}: {err:#}")),
            }
        }
        pending
    }

    async fn metrics(&self, name: &str) -> String {
        worker_metrics(self.workers, name).await
    }
}

/// Returns the `/metrics` text of worker `name`, or an empty text when it cannot be read.
async fn worker_metrics(workers: &[WorkerProcess], name: &str) -> String {
    let Some(worker) = workers.iter().find(|worker| worker.name == name) else {
        return String::new();
    };
    match reqwest::get(worker.metrics_url()).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Returns the messages of a consumer that are not delivered or not acknowledged yet.
async fn consumer_backlog(
    jetstream: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> anyhow::Result<u64> {
    let stream = jetstream.get_stream(stream).await?;
    let info = stream.consumer_info(consumer).await?;
    Ok(info.num_pending + info.num_ack_pending as u64)
}

async fn collect(
    summary: &mut Summary,
    fleet: &Fleet,
    jetstream: &jetstream::Context,
    pool: &sqlx::PgPool,
    dead_letters_before: u64,
    database_before: DatabaseCounts,
) -> anyhow::Result<()> {
    let bridge = worker_metrics(&fleet.workers, "cdr-bridge").await;
    let lines = |outcome: &str| {
        metric_sum(
            &bridge,
            "akira_cdr_bridge_lines_total",
            &[("outcome", outcome)],
        ) as u64
    };
    summary.lines_published = lines("published");
    summary.lines_invalid = lines("invalid");
    summary.lines_blank = lines("blank");
    summary.lines_read = summary.lines_published + summary.lines_invalid + summary.lines_blank;

    let database = DatabaseCounts::read(pool).await?;
    summary.records_stored = database.records - database_before.records;
    summary.calls = database.calls - database_before.calls;
    summary.calls_answered = database.answered - database_before.answered;
    summary.calls_with_bye = database.with_bye - database_before.with_bye;

    let (total, groups) = summary::dead_letters_since(jetstream, dead_letters_before).await?;
    summary.dead_letter_total = total;
    summary.dead_letters = groups;

    let relay = worker_metrics(&fleet.workers, "alert-relay").await;
    summary.notifications_published = metric_sum(
        &relay,
        "akira_relay_notifications_total",
        &[("outcome", "published")],
    ) as u64;
    if let Some(receiver) = &fleet.receiver {
        summary.notifications_delivered = receiver.distinct_notifications();
        summary.requests_by_endpoint = receiver.requests();
    }
    for worker in &fleet.workers {
        summary
            .metrics_endpoints
            .insert(worker.name.clone(), worker.metrics_url());
    }
    Ok(())
}
