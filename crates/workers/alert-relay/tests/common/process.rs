//! A worker binary run as a child process, with its log in a file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running worker; it is killed when dropped.
pub struct WorkerProcess {
    child: Option<Child>,
    log_path: PathBuf,
    metrics_url: String,
}

impl WorkerProcess {
    /// Starts `binary --config config_path` and waits until `/readyz` on `metrics_address`
    /// returns 200.
    pub async fn start(binary: &str, config_path: &Path, metrics_address: &str) -> WorkerProcess {
        let log_path = config_path.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(config_path)
            .env("AKIRA_LOG__FORMAT", "text")
            .env(
                "RUST_LOG",
                "info,akira_workers=debug,akira_alert_relay=debug",
            )
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut process = WorkerProcess {
            child: Some(child),
            log_path,
            metrics_url: format!("http://{metrics_address}"),
        };
        process.wait_ready(Duration::from_secs(30)).await;
        process
    }

    async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "worker exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            let url = format!("{}/readyz", self.metrics_url);
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "worker not ready within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns the text of `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("worker already stopped");
        // SAFETY: kill(2) with a pid this test spawned and has not yet waited for.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!(
                    "worker did not stop within {timeout:?} after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// Waits until `condition` returns true, polling every 50 ms, or panics naming `condition_name`.
pub async fn wait_for<F, Fut>(condition_name: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {condition_name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
