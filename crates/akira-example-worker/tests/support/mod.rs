//! Running the example worker binaries as processes, the way systemd runs workers.

#![allow(dead_code)]

use std::path::Path;

pub use akira_testkit::{sample, wait_until, WorkerProcess};

/// Starts `binary --config <dir>/<name>.toml ARGS` with the configuration `toml` and the
/// extra environment variables `env`; its stderr goes to `<dir>/<name>.<test pid>.log`.
pub fn start_worker(
    binary: &str,
    dir: &Path,
    name: &str,
    toml: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> WorkerProcess {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, toml).unwrap();
    let log_path = dir.join(format!("{name}.{}.log", std::process::id()));
    WorkerProcess::command(binary, &config_path, log_path)
        .args(args)
        .envs(env.iter().copied())
        .spawn()
}

pub fn worker_binary() -> &'static str {
    env!("CARGO_BIN_EXE_akira-example-worker")
}

pub fn job_binary() -> &'static str {
    env!("CARGO_BIN_EXE_akira-example-job")
}

/// Fetches `http://<address><path>` and returns (status, body); `None` when unreachable.
pub async fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{address}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Returns the lines of a record file: `<subject> <sequence> <delivered> <ok|failed> <payload>`.
pub fn records(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| line.splitn(5, ' ').map(str::to_string).collect())
        .collect()
}
