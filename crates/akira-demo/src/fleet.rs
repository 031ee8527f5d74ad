//! The worker processes the demo starts, watches and stops.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One long-running worker: its child process, log file and metrics address.
pub struct WorkerProcess {
    pub name: String,
    pub metrics_address: String,
    pub log_path: PathBuf,
    child: Option<Child>,
    /// Exit status seen by [`WorkerProcess::terminate`] when the process had already exited.
    exited_before_stop: Option<ExitStatus>,
}

impl WorkerProcess {
    /// Starts `binary --config config` with its output in `log_path`.
    ///
    /// The child gets its own process group, so Ctrl-C in the terminal reaches only the demo,
    /// which then stops the workers in order with SIGTERM.
    pub fn spawn(
        name: &str,
        binary: &Path,
        config: &Path,
        metrics_address: &str,
        log_path: &Path,
    ) -> anyhow::Result<WorkerProcess> {
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("cannot create log file {}", log_path.display()))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(WorkerProcess {
            name: name.to_string(),
            metrics_address: metrics_address.to_string(),
            log_path: log_path.to_path_buf(),
            child: Some(child),
            exited_before_stop: None,
        })
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_address)
    }

    /// Waits until `/readyz` returns 200; fails when the process exits first or `timeout` passes.
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.metrics_address);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                bail!(
                    "{} exited with {status} before it was ready; its log:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            let ready = match http.get(&url).send().await {
                Ok(response) => response.status().is_success(),
                Err(_) => false,
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {}s; its log:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns the exit status if the process has exited.
    pub fn try_exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM, unless the process has already exited.
    pub fn terminate(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(Some(status)) = child.try_wait() {
            self.exited_before_stop = Some(status);
            return;
        }
        // SAFETY: kill(2) on the pid of a child that has not been waited for yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits until the process exits after [`WorkerProcess::terminate`]; kills it with
    /// SIGKILL at `deadline`.
    pub async fn wait_stopped(&mut self, deadline: Instant) -> StopResult {
        if let Some(status) = self.exited_before_stop.take() {
            self.child = None;
            return StopResult::Exited(status);
        }
        let Some(mut child) = self.child.take() else {
            return StopResult::NotRunning;
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return StopResult::Stopped(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return StopResult::Killed;
                }
            }
        }
    }

    /// Returns the last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        all[start..].join("\n")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Outcome of stopping one worker.
#[derive(Debug)]
pub enum StopResult {
    /// Stopped after SIGTERM with this status.
    Stopped(ExitStatus),
    /// Had already exited before SIGTERM.
    Exited(ExitStatus),
    /// Did not stop in time and was killed with SIGKILL.
    Killed,
    NotRunning,
}

impl StopResult {
    pub fn is_clean(&self) -> bool {
        matches!(self, StopResult::Stopped(status) if status.success())
    }
}

/// Runs a program to completion with its output in `log_path`; returns its exit status.
pub async fn run_to_end(
    binary: &Path,
    args: &[&str],
    log_path: &Path,
    timeout: Duration,
) -> anyhow::Result<ExitStatus> {
    let log = std::fs::File::create(log_path)
        .with_context(|| format!("cannot create log file {}", log_path.display()))?;
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => bail!(
            "{} {} did not finish within {}s; see {}",
            binary.display(),
            args.join(" "),
            timeout.as_secs(),
            log_path.display()
        ),
    }
}

/// Sums the samples of `name` in Prometheus text output whose labels contain every pair
/// in `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(inner) => match inner.split_once("} ") {
                Some((label_text, value)) => (label_text, value),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue,
            },
        };
        let matches = labels
            .iter()
            .all(|(key, wanted)| label_text.contains(&format!("{key}=\"{wanted}\"")));
        if matches {
            sum += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP akira_cdr_bridge_lines Lines.\n\
        # TYPE akira_cdr_bridge_lines counter\n\
        akira_cdr_bridge_lines_total{worker=\"cdr-bridge\",outcome=\"published\"} 930\n\
        akira_cdr_bridge_lines_total{worker=\"cdr-bridge\",outcome=\"invalid\"} 10\n\
        akira_worker_in_flight{worker=\"cdr-bridge\"} 0\n\
        akira_cdr_bridge_lines_total_other 5\n";

    #[test]
    fn metric_sum_adds_matching_samples() {
        assert_eq!(metric_sum(TEXT, "akira_cdr_bridge_lines_total", &[]), 940.0);
        assert_eq!(
            metric_sum(
                TEXT,
                "akira_cdr_bridge_lines_total",
                &[("outcome", "invalid")]
            ),
            10.0
        );
        assert_eq!(metric_sum(TEXT, "akira_worker_in_flight", &[]), 0.0);
        assert_eq!(metric_sum(TEXT, "akira_missing_total", &[]), 0.0);
    }
}
