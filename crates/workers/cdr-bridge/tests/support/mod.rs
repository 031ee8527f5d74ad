//! Running the bridge as a process against a test nats-server, and reading what it stored.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

pub use akira_testkit::{fetch_metrics, sample, wait_until, WorkerProcess};
use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;

/// Starts the bridge with the configuration file `config`.
pub fn start_bridge(config: &Path) -> WorkerProcess {
    start_bridge_with_args(config, &[])
}

/// Starts the bridge with `config` and extra command-line `args`; its log is a file next
/// to `config`, new for every start.
pub fn start_bridge_with_args(config: &Path, args: &[&str]) -> WorkerProcess {
    let log_path = config.with_extension(format!("{}.log", next_run()));
    WorkerProcess::command(env!("CARGO_BIN_EXE_akira-cdr-bridge"), config, log_path)
        .args(args)
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUST_LOG")
        .spawn()
}

fn next_run() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static RUN: AtomicU32 = AtomicU32::new(0);
    RUN.fetch_add(1, Ordering::Relaxed)
}

/// Writes a bridge configuration to `<dir>/bridge.toml` and returns its path.
pub fn write_config(
    dir: &Path,
    nats_url: &str,
    input: &Path,
    metrics_listen: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        r#"[worker]
name = "cdr-bridge"
ensure = true
shutdown_timeout = "10s"

[nats]
servers = ["{nats_url}"]

[metrics]
listen = "{metrics_listen}"

[log]
format = "text"
level = "info"

[bridge]
path = "{input}"
source = "edge1"
state_file = "{state}"
max_line_bytes = 1024
poll_interval = "50ms"
rotate_wait = "1s"
{extra}
"#,
        input = input.display(),
        state = dir.join("state.json").display(),
    );
    let path = dir.join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Appends bytes to a file, creating it if needed.
pub fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Splits file content into lines with their byte offsets, without the newlines.
pub fn lines_with_offsets(content: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut lines = Vec::new();
    let mut offset = 0u64;
    for line in content.split_inclusive(|&byte| byte == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        lines.push((offset, text.to_vec()));
        offset += line.len() as u64;
    }
    lines
}

/// A message as stored in a stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl Stored {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.as_str())
    }
}

pub async fn connect(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .expect("connect to the test nats-server");
    jetstream::new(client)
}

/// Returns the number of messages in `stream`, or 0 while it does not exist.
pub async fn message_count(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut stream) => stream
            .info()
            .await
            .map(|info| info.state.messages)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Reads every message of `stream` in sequence order.
pub async fn messages(js: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        out.push(Stored {
            subject: message.subject.to_string(),
            headers: message.headers,
            payload: message.payload,
        });
    }
    out
}

/// Returns the sample file of Kamailio accounting records bundled in `examples/data`.
pub fn sample_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/data/kamailio-acc.jsonl")
}

/// Returns a file under `examples/data/edge-cases`.
pub fn edge_case_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../examples/data/edge-cases")
        .join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
