//! Helpers for the end-to-end tests that mirror the NixOS VM tests in `tests/vm/`.
//!
//! The tests run the workspace's real binaries against a nats-server from the test kit, with
//! the worker settings, stream declarations and `akira-workerctl` arguments that the NixOS
//! module generates for each VM test node. Those are committed under `fixtures/module/`, and
//! `tests/nix/run` fails when they differ from what the module generates
//! (`tests/nix/run --write-fixtures` rewrites them). What systemd does in a VM test, such as
//! restarting a killed worker, firing a timer or reloading the provisioning unit on a switch,
//! the tests do themselves.
//!
//! The binaries are not dependencies of this crate, so the tests look for them next to the
//! test executable (`target/<profile>/`), or in `AKIRA_BIN_DIR` when it is set.
//! `cargo nextest run --workspace --all-targets` builds them first; for this crate alone run
//! `cargo build --workspace --bins` before `cargo nextest run -p akira-e2e`.

mod fixture;
mod machine;
mod nats;
mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fixture::{to_toml, ModuleFixture};
pub use machine::{Machine, Worker, READY_TIMEOUT};
pub use nats::{stored_message, StoredMessage};
pub use process::{Notifications, Process};

/// Returns the path of the workspace binary `name`, failing the test when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let directory = binary_directory();
    let path = directory.join(name);
    assert!(
        path.is_file(),
        "binary {name} not found at {}; build the workspace binaries first with \
         `cargo build --workspace --bins` (with the same CARGO_TARGET_DIR as the tests), \
         or set AKIRA_BIN_DIR to the directory that contains them",
        path.display()
    );
    path
}

/// Returns `AKIRA_BIN_DIR`, or the profile directory of the running test executable:
/// `target/debug/deps/vm_mirror-<hash>` has its binaries in `target/debug`.
fn binary_directory() -> PathBuf {
    if let Some(directory) = std::env::var_os("AKIRA_BIN_DIR").filter(|value| !value.is_empty()) {
        return PathBuf::from(directory);
    }
    let executable = std::env::current_exe().expect("the test executable has a path");
    let mut directory = executable
        .parent()
        .expect("the test executable is in a directory")
        .to_path_buf();
    if directory.ends_with("deps") {
        directory.pop();
    }
    directory
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    akira_testkit::wait_until_every(Duration::from_millis(100), timeout, condition).await
}

/// Fetches `http://<address><path>` and returns the status and body, or `None` when the
/// server cannot be reached.
pub async fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{address}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Returns the values of the samples of metric `name` whose labels include `labels`, like
/// `metric_values` in the VM tests' Python helpers.
pub fn metric_values(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let mut values = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(labelled) = rest.strip_prefix('{') {
            match labelled.split_once("} ") {
                Some((label_text, value)) => (label_text, value),
                None => continue,
            }
        } else if let Some(value) = rest.strip_prefix(' ') {
            ("", value)
        } else {
            continue;
        };
        let found = parse_labels(label_text);
        let matches = labels.iter().all(|(key, expected)| {
            found
                .iter()
                .any(|(found_key, found_value)| found_key == key && found_value == expected)
        });
        if !matches {
            continue;
        }
        if let Some(Ok(number)) = value.split_whitespace().next().map(str::parse::<f64>) {
            values.push(number);
        }
    }
    values
}

/// Splits `a="x",b="y"` into pairs; label values in these tests contain no quotes or commas.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), value.trim_matches('"').to_string()))
        .collect()
}

/// One line of the example worker's record file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub subject: String,
    pub sequence: u64,
    pub delivered: u64,
    /// `ok` or `failed`.
    pub result: String,
    pub payload: String,
}

impl Record {
    /// Creates the record the example worker writes for one handled delivery.
    pub fn new(
        subject: &str,
        sequence: u64,
        delivered: u64,
        result: &str,
        payload: &str,
    ) -> Record {
        Record {
            subject: subject.to_string(),
            sequence,
            delivered,
            result: result.to_string(),
            payload: payload.to_string(),
        }
    }
}

/// Reads the example worker's record file: one line per handled delivery,
/// `<subject> <stream sequence> <delivery count> <ok|failed> <payload>`. A missing file has
/// no records.
pub fn records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(5, ' ').collect();
            assert_eq!(
                fields.len(),
                5,
                "malformed record line {line:?} in {}",
                path.display()
            );
            Record {
                subject: fields[0].to_string(),
                sequence: fields[1].parse().expect("record sequence is a number"),
                delivered: fields[2]
                    .parse()
                    .expect("record delivery count is a number"),
                result: fields[3].to_string(),
                payload: fields[4].to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_match_labels() {
        let text = "# TYPE akira_worker_messages counter\n\
                    akira_worker_messages_total{worker=\"example\",outcome=\"ack\"} 1\n\
                    akira_worker_messages_total{worker=\"example\",outcome=\"retry\"} 2\n\
                    akira_worker_redeliveries_total{worker=\"example\"} 2\n\
                    akira_up 1\n";
        assert_eq!(
            metric_values(text, "akira_worker_messages_total", &[("outcome", "retry")]),
            vec![2.0]
        );
        assert_eq!(
            metric_values(
                text,
                "akira_worker_messages_total",
                &[("worker", "example")]
            ),
            vec![1.0, 2.0]
        );
        assert_eq!(
            metric_values(text, "akira_worker_redeliveries_total", &[]),
            vec![2.0]
        );
        assert_eq!(metric_values(text, "akira_up", &[]), vec![1.0]);
        assert!(metric_values(text, "akira_worker_messages", &[]).is_empty());
    }
}
