//! The worker binary under test, started with the test kit and checked over HTTP.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

/// A running worker whose `/readyz` returned 200. It is killed when dropped.
pub struct WorkerProcess {
    process: akira_testkit::WorkerProcess,
    metrics_url: String,
}

impl WorkerProcess {
    /// Starts `binary --config config_path` and waits until `/readyz` on `metrics_address`
    /// returns 200.
    pub async fn start(binary: &str, config_path: &Path, metrics_address: &str) -> WorkerProcess {
        let mut process = akira_testkit::WorkerProcess::command(
            binary,
            config_path,
            config_path.with_extension("log"),
        )
        .env("AKIRA_LOG__FORMAT", "text")
        .env(
            "RUST_LOG",
            "info,akira_workers=debug,akira_alert_relay=debug",
        )
        .log_stdout()
        .spawn();
        let metrics_url = format!("http://{metrics_address}");

        let readyz_url = format!("{metrics_url}/readyz");
        let client = reqwest::Client::new();
        process
            .wait_ready(Duration::from_secs(30), || async {
                client
                    .get(&readyz_url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            })
            .await;

        WorkerProcess {
            process,
            metrics_url,
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
        self.process.log()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.process.stop(timeout).await
    }
}
