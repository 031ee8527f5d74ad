//! The runtime for timer jobs: run once, record the outcome for Prometheus, exit.
//!
//! A job records `akira_job_runs_total{outcome}`, `akira_job_duration_seconds` and
//! `akira_job_last_success_timestamp_seconds` in `<job.textfile_dir>/<worker name>.prom` for
//! node_exporter's textfile collector. The file is written to a temporary name and renamed,
//! so the collector never reads half a file, and counters carry over from the previous run.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::connect::{self, ConnectError};
use crate::health::Health;
use crate::metrics::WorkerMetrics;
use crate::outcome::BoxError;

/// Settings, stop signal and NATS connection given to a timer job.
pub struct JobContext {
    config: Config,
    shutdown: CancellationToken,
    nats: OnceCell<async_nats::Client>,
}

impl JobContext {
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Cancelled on SIGTERM or SIGINT; a long job should stop at the next safe point.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Connects to NATS on first use, with the same settings as long-running workers.
    pub async fn nats(&self) -> Result<async_nats::Client, ConnectError> {
        self.nats
            .get_or_try_init(|| async {
                connect::connect(
                    &self.config,
                    WorkerMetrics::new(&self.config.worker.name),
                    Health::new(),
                    &self.shutdown,
                )
                .await
            })
            .await
            .cloned()
    }
}

/// The result of a run as recorded in the textfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Success,
    Failure,
}

impl JobOutcome {
    fn label(self) -> &'static str {
        match self {
            JobOutcome::Success => "success",
            JobOutcome::Failure => "failure",
        }
    }
}

/// Runs `job` once and records its outcome. Returns the job's error, or an error when the
/// textfile could not be written, so the process exits non-zero and systemd marks the run failed.
pub async fn run<F, Fut>(config: Config, job: F) -> Result<(), BoxError>
where
    F: FnOnce(JobContext) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    crate::logging::init(&config.log);
    let name = config.worker.name.clone();
    let textfile_dir = config.job.textfile_dir.clone();
    tracing::info!(worker = %name, config = %config.origin(), "starting job");

    let shutdown = CancellationToken::new();
    crate::worker::spawn_signal_handler(shutdown.clone());
    let context = JobContext {
        config,
        shutdown,
        nats: OnceCell::new(),
    };

    let started = Instant::now();
    let result = job(context).await;
    let elapsed = started.elapsed();
    let outcome = if result.is_ok() {
        JobOutcome::Success
    } else {
        JobOutcome::Failure
    };
    match &result {
        Ok(()) => tracing::info!(duration_ms = elapsed.as_millis() as u64, "job finished"),
        Err(err) => {
            tracing::error!(error = %err, duration_ms = elapsed.as_millis() as u64, "job failed")
        }
    }

    if let Some(dir) = textfile_dir {
        let path = textfile_path(&dir, &name);
        if let Err(err) = record(&path, &name, outcome, elapsed, SystemTime::now()) {
            tracing::error!(path = %path.display(), error = %err, "writing the job's metrics textfile failed");
            let message = format!(
                "cannot write job metrics to {}: {err}; check job.textfile_dir",
                path.display()
            );
            return Err(match result {
                Ok(()) => message.into(),
                Err(job_error) => format!("{job_error}; also {message}").into(),
            });
        }
    }
    result
}

/// Returns `<dir>/<name>.prom`.
pub fn textfile_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.prom"))
}

/// Reads the previous textfile (if any), adds this run and replaces the file atomically.
pub fn record(
    path: &Path,
    worker: &str,
    outcome: JobOutcome,
    elapsed: Duration,
    now: SystemTime,
) -> std::io::Result<()> {
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => parse_previous(&text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Previous::default(),
        Err(err) => return Err(err),
    };
    let mut runs = previous.runs;
    *runs.entry(outcome.label().to_string()).or_insert(0) += 1;
    for label in ["success", "failure"] {
        runs.entry(label.to_string()).or_insert(0);
    }
    let now_seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let last_success = match outcome {
        JobOutcome::Success => Some(now_seconds),
        JobOutcome::Failure => previous.last_success,
    };

    let worker_label = escape_label(worker);
    let mut text = String::new();
    text.push_str("# HELP akira_job_runs_total Timer job runs, by outcome.\n");
    text.push_str("# TYPE akira_job_runs_total counter\n");
    for (label, count) in &runs {
        text.push_str(&format!(
            "akira_job_runs_total{{worker=\"{worker_label}\",outcome=\"{label}\"}} {count}\n"
        ));
    }
    text.push_str("# HELP akira_job_duration_seconds Duration of the last run.\n");
    text.push_str("# TYPE akira_job_duration_seconds gauge\n");
    text.push_str(&format!(
        "akira_job_duration_seconds{{worker=\"{worker_label}\"}} {}\n",
        elapsed.as_secs_f64()
    ));
    if let Some(timestamp) = last_success {
        text.push_str("# HELP akira_job_last_success_timestamp_seconds Unix time of the last successful run.\n");
        text.push_str("# TYPE akira_job_last_success_timestamp_seconds gauge\n");
        text.push_str(&format!(
            "akira_job_last_success_timestamp_seconds{{worker=\"{worker_label}\"}} {timestamp}\n"
        ));
    }

    let temporary = path.with_extension(format!("prom.{}.tmp", std::process::id()));
    // node_exporter runs as another user: the file must be world-readable whatever the umask.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temporary)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[derive(Debug, Default)]
struct Previous {
    runs: BTreeMap<String, u64>,
    last_success: Option<f64>,
}

fn parse_previous(text: &str) -> Previous {
    let mut previous = Previous::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("akira_job_runs_total{") {
            let outcome = rest
                .split("outcome=\"")
                .nth(1)
                .and_then(|tail| tail.split('"').next());
            let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(outcome), Some(value)) = (outcome, value) {
                previous.runs.insert(outcome.to_string(), value as u64);
            }
        } else if let Some(rest) = line.strip_prefix("akira_job_last_success_timestamp_seconds{") {
            previous.last_success = rest.rsplit(' ').next().and_then(|v| v.parse().ok());
        }
    }
    previous
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_over_between_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = textfile_path(dir.path(), "retention");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        record(
            &path,
            "retention",
            JobOutcome::Success,
            Duration::from_millis(1500),
            t0,
        )
        .unwrap();
        record(
            &path,
            "retention",
            JobOutcome::Failure,
            Duration::from_secs(2),
            t0 + Duration::from_secs(60),
        )
        .unwrap();
        record(
            &path,
            "retention",
            JobOutcome::Success,
            Duration::from_secs(1),
            t0 + Duration::from_secs(120),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("akira_job_runs_total{worker=\"retention\",outcome=\"success\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("akira_job_runs_total{worker=\"retention\",outcome=\"failure\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("akira_job_last_success_timestamp_seconds{worker=\"retention\"} 1120\n"),
            "{text}"
        );
        assert!(
            text.contains("akira_job_duration_seconds{worker=\"retention\"} 1\n"),
            "{text}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn failure_keeps_last_success_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = textfile_path(dir.path(), "job");
        let t0 = UNIX_EPOCH + Duration::from_secs(500);
        record(&path, "job", JobOutcome::Success, Duration::ZERO, t0).unwrap();
        record(
            &path,
            "job",
            JobOutcome::Failure,
            Duration::ZERO,
            t0 + Duration::from_secs(10),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("akira_job_last_success_timestamp_seconds{worker=\"job\"} 500\n"),
            "{text}"
        );
    }
}
