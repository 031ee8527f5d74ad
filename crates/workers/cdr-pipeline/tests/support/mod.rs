//! Running the pipeline (and the bridge) as processes against test servers.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

pub use akira_testkit::{fetch_metrics, sample, wait_until, WorkerProcess};
use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use sqlx::{Connection, PgConnection};

/// Starts `binary` with the configuration file `config`; its log is a file next to
/// `config`, new for every start.
pub fn start_worker(binary: &Path, config: &Path) -> WorkerProcess {
    let log_path = config.with_extension(format!("{}.log", next_run()));
    WorkerProcess::command(binary, config, log_path)
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUST_LOG")
        .spawn()
}

fn next_run() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static RUN: AtomicU32 = AtomicU32::new(0);
    RUN.fetch_add(1, Ordering::Relaxed)
}

pub fn pipeline_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_akira-cdr-pipeline"))
}

/// Returns the bridge binary, which cargo builds into the same directory as the pipeline's
/// when the whole workspace is built (as `scripts/test` does).
pub fn bridge_binary() -> PathBuf {
    let path = pipeline_binary().with_file_name("akira-cdr-bridge");
    assert!(
        path.is_file(),
        "{} not found; build it first with `cargo build -p akira-cdr-bridge`",
        path.display()
    );
    path
}

/// Writes the pipeline configuration to `<dir>/pipeline.toml` and returns its path.
pub fn write_pipeline_config(
    dir: &Path,
    nats_url: &str,
    database_url: &str,
    metrics_listen: &str,
) -> PathBuf {
    let text = format!(
        r#"[worker]
name = "cdr-pipeline"
ensure = true
shutdown_timeout = "10s"

[nats]
servers = ["{nats_url}"]

[consumer]
stream = "CDR"
durable_name = "cdr-pipeline"
filter_subject = "akira.cdr.>"
ack_wait = "2s"
batch_size = 100
max_wait = "200ms"

[retry]
base = "200ms"
cap = "1s"
max_deliver = 30
jitter = 0.0

[metrics]
listen = "{metrics_listen}"

[log]
format = "text"
level = "info"

[pipeline]
database_url = "{database_url}"
pool_size = 2
connect_timeout = "1s"
"#
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a bridge configuration to `<dir>/bridge.toml` and returns its path.
pub fn write_bridge_config(dir: &Path, nats_url: &str, input: &Path) -> PathBuf {
    let text = format!(
        r#"[worker]
name = "cdr-bridge"
ensure = true

[nats]
servers = ["{nats_url}"]

[metrics]
listen = ""

[log]
format = "text"

[bridge]
path = "{input}"
source = "edge1"
state_file = "{state}"
poll_interval = "50ms"
"#,
        input = input.display(),
        state = dir.join("bridge-state.json").display(),
    );
    let path = dir.join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub async fn connect_nats(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .expect("connect to the test nats-server");
    jetstream::new(client)
}

pub async fn connect_postgres(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"))
}

/// Reports whether the pipeline's durable consumer exists, which it creates once it is up.
pub async fn consumer_exists(js: &jetstream::Context) -> bool {
    let Ok(stream) = js.get_stream("CDR").await else {
        return false;
    };
    stream
        .get_consumer::<jetstream::consumer::pull::Config>("cdr-pipeline")
        .await
        .is_ok()
}

/// Publishes `payload` to `subject` with a `Nats-Msg-Id` and waits for the PubAck.
pub async fn publish(js: &jetstream::Context, subject: &str, msg_id: &str, payload: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(
        subject.to_string(),
        headers,
        Bytes::copy_from_slice(payload),
    )
    .await
    .expect("publish")
    .await
    .expect("PubAck");
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

/// Returns the number of rows in `cdr_events`, or `None` while the query fails.
pub async fn row_count(database_url: &str) -> Option<i64> {
    let mut connection = PgConnection::connect(database_url).await.ok()?;
    sqlx::query_scalar("SELECT count(*) FROM cdr_events")
        .fetch_one(&mut connection)
        .await
        .ok()
}

pub fn repository_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join(path)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Splits file content into lines without their newlines.
pub fn lines_of(content: &[u8]) -> Vec<Vec<u8>> {
    content
        .split_inclusive(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\n").unwrap_or(line).to_vec())
        .collect()
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
