//! Running the example worker binaries as processes, the way systemd runs workers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A worker process whose stderr goes to a file; killed on drop.
pub struct Process {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Process {
    /// Starts `binary --config <dir>/<name>.toml` with the configuration `toml` and `env`.
    pub fn start(
        binary: &str,
        dir: &Path,
        name: &str,
        toml: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Process {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, toml).unwrap();
        let stderr_path = dir.join(format!("{name}.{}.log", std::process::id()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn worker binary");
        Process { child, stderr_path }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn worker_binary() -> &'static str {
    env!("CARGO_BIN_EXE_akira-example-worker")
}

pub fn job_binary() -> &'static str {
    env!("CARGO_BIN_EXE_akira-example-job")
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fetches `http://<address><path>` and returns (status, body); `None` when unreachable.
pub async fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{address}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Returns the value of the first sample line that starts with `series`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Returns the lines of a record file: `<subject> <sequence> <delivered> <ok|failed> <payload>`.
pub fn records(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| line.splitn(5, ' ').map(str::to_string).collect())
        .collect()
}
