//! The dispatcher binary against a real nats-server and a scripted local HTTP receiver.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use akira_testkit::wait_for;
use akira_testkit::{free_port, NatsServer};
use akira_workers::dlq::{headers, DLQ_STREAM};
use async_nats::jetstream::{self, message::StreamMessage};
use common::process::WorkerProcess;
use common::receiver::{Receiver, Reply};

const BINARY: &str = env!("CARGO_BIN_EXE_akira-notification-dispatcher");
const ENDPOINT_TIMEOUT: &str = "300ms";
const MAX_DELIVER: usize = 3;

struct Fixture {
    nats: NatsServer,
    receiver: Receiver,
    jetstream: jetstream::Context,
    worker: WorkerProcess,
    _dir: tempfile::TempDir,
}

fn config(nats_url: &str, receiver: &Receiver, metrics: &str) -> String {
    format!(
        r#"
[worker]
name = "notification-dispatcher"
ensure = true
shutdown_timeout = "5s"

[nats]
servers = ["{nats_url}"]

[consumer]
stream = "NOTIFY"
durable_name = "notification-dispatcher"
filter_subject = "akira.notify.>"
deliver_subject = "akira.deliver.notification-dispatcher"
deliver_group = "notification-dispatcher"
ack_wait = "5s"

[retry]
base = "200ms"
cap = "2s"
max_deliver = {MAX_DELIVER}
jitter = 0.0

[metrics]
listen = "{metrics}"

[dispatcher.endpoints.ok]
url = "{ok}"

[dispatcher.endpoints.flaky]
url = "{flaky}"

[dispatcher.endpoints.bad]
url = "{bad}"

[dispatcher.endpoints.slow]
url = "{slow}"
timeout = "{ENDPOINT_TIMEOUT}"
"#,
        ok = receiver.url("/ok"),
        flaky = receiver.url("/flaky"),
        bad = receiver.url("/bad"),
        slow = receiver.url("/slow"),
    )
}

async fn start() -> Fixture {
    let nats = NatsServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let config_path: PathBuf = dir.path().join("notification-dispatcher.toml");
    std::fs::write(&config_path, config(&nats.url(), &receiver, &metrics)).unwrap();

    let worker = WorkerProcess::start(BINARY, &config_path, &metrics).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = jetstream::new(client);
    Fixture {
        nats,
        receiver,
        jetstream,
        worker,
        _dir: dir,
    }
}

fn notification(endpoint: &str, key: &str) -> String {
    serde_json::json!({
        "endpoint": endpoint,
        "body": {"text": format!("test notification for {endpoint}")},
        "idempotency_key": key,
    })
    .to_string()
}

async fn publish(jetstream: &jetstream::Context, subject: &str, payload: String) {
    jetstream
        .publish(subject.to_string(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Reads every message in `AKIRA_DLQ`.
async fn dead_letters(jetstream: &jetstream::Context) -> Vec<StreamMessage> {
    let mut stream = jetstream.get_stream(DLQ_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut letters = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            letters.push(message);
        }
    }
    letters
}

async fn dead_letter_count(jetstream: &jetstream::Context) -> u64 {
    match jetstream.get_stream(DLQ_STREAM).await {
        Ok(mut stream) => stream
            .info()
            .await
            .map(|info| info.state.messages)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

fn header<'a>(message: &'a StreamMessage, name: &str) -> &'a str {
    message
        .headers
        .get(name)
        .map(|value| value.as_str())
        .unwrap_or("")
}

fn letter_for<'a>(letters: &'a [StreamMessage], key: &str) -> &'a StreamMessage {
    letters
        .iter()
        .find(|letter| String::from_utf8_lossy(&letter.payload).contains(key))
        .unwrap_or_else(|| panic!("no dead letter for {key}"))
}

#[tokio::test]
async fn dispatcher_acks_retries_and_dead_letters() {
    let mut fixture = start().await;
    let receiver = &fixture.receiver;
    receiver.script("/flaky", [Reply::status(503).header("Retry-After", "1")]);
    receiver.default_reply("/bad", Reply::status(400).body("text is required"));
    receiver.default_reply("/slow", Reply::status(200).delay(Duration::from_secs(2)));
    let js = fixture.jetstream.clone();

    publish(&js, "akira.notify.ok", notification("ok", "key-ok")).await;
    publish(
        &js,
        "akira.notify.flaky",
        notification("flaky", "key-flaky"),
    )
    .await;
    publish(&js, "akira.notify.bad", notification("bad", "key-bad")).await;
    publish(&js, "akira.notify.slow", notification("slow", "key-slow")).await;
    publish(
        &js,
        "akira.notify.pager",
        notification("pager", "key-unknown"),
    )
    .await;
    publish(&js, "akira.notify.ok", "{\"endpoint\": \"ok\"".to_string()).await;

    wait_for("four dead letters", Duration::from_secs(30), || {
        let js = js.clone();
        async move { dead_letter_count(&js).await >= 4 }
    })
    .await;
    wait_for(
        "the flaky endpoint to get its second request",
        Duration::from_secs(10),
        || async { receiver.requests("/flaky").len() >= 2 },
    )
    .await;

    // 200: delivered once, with the notification's headers and body.
    let ok = receiver.requests("/ok");
    assert_eq!(
        ok.len(),
        1,
        "the invalid message must not reach the endpoint"
    );
    assert_eq!(ok[0].header("idempotency-key"), Some("key-ok"));
    assert!(ok[0]
        .header("akira-correlation-id")
        .is_some_and(|id| !id.is_empty()));
    let body: serde_json::Value = serde_json::from_slice(&ok[0].body).unwrap();
    assert_eq!(body["text"], "test notification for ok");

    // 503 with Retry-After: 1, then 200: retried once, after the delay, with the same key.
    let flaky = receiver.requests("/flaky");
    assert_eq!(flaky.len(), 2);
    let gap = flaky[1].at.duration_since(flaky[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "Retry-After not honoured: retried after {gap:?}"
    );
    assert_eq!(flaky[0].header("idempotency-key"), Some("key-flaky"));
    assert_eq!(flaky[1].header("idempotency-key"), Some("key-flaky"));

    // 400: tried once, dead-lettered as permanent with the response in the error.
    assert_eq!(receiver.requests("/bad").len(), 1);
    let letters = dead_letters(&js).await;
    assert_eq!(
        letters.len(),
        4,
        "dead letters: bad, slow, unknown endpoint, invalid JSON"
    );
    let bad = letter_for(&letters, "key-bad");
    assert_eq!(header(bad, headers::REASON), "permanent");
    assert!(
        header(bad, headers::ERROR).contains("HTTP 400"),
        "{}",
        header(bad, headers::ERROR)
    );
    assert!(header(bad, headers::ERROR).contains("text is required"));
    assert_eq!(
        bad.subject.as_str(),
        "akira.dlq.NOTIFY.notification-dispatcher"
    );
    assert_eq!(header(bad, headers::SUBJECT), "akira.notify.bad");

    // Slow: every delivery times out, so it is dead-lettered after max_deliver attempts.
    assert_eq!(receiver.requests("/slow").len(), MAX_DELIVER);
    let slow = letter_for(&letters, "key-slow");
    assert_eq!(header(slow, headers::REASON), "max_deliver");
    assert_eq!(header(slow, headers::DELIVERIES), MAX_DELIVER.to_string());
    assert!(
        header(slow, headers::ERROR).contains(ENDPOINT_TIMEOUT),
        "{}",
        header(slow, headers::ERROR)
    );

    // Unknown endpoint: permanent at once, naming it and the configured ones.
    let unknown = letter_for(&letters, "key-unknown");
    assert_eq!(header(unknown, headers::REASON), "permanent");
    assert_eq!(header(unknown, headers::DELIVERIES), "1");
    let error = header(unknown, headers::ERROR);
    assert!(error.contains("\"pager\""), "{error}");
    assert!(error.contains("bad, flaky, ok, slow"), "{error}");

    // Invalid JSON: permanent at once.
    let invalid = letters
        .iter()
        .find(|letter| letter.payload.as_ref() == b"{\"endpoint\": \"ok\"")
        .expect("no dead letter for the invalid JSON");
    assert_eq!(header(invalid, headers::REASON), "permanent");
    assert!(header(invalid, headers::ERROR).contains("invalid notification JSON"));

    // Nothing is left unacknowledged.
    let mut consumer: jetstream::consumer::PushConsumer = js
        .get_stream("NOTIFY")
        .await
        .unwrap()
        .get_consumer("notification-dispatcher")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);

    let metrics = fixture.worker.metrics().await;
    assert!(metrics.contains("akira_worker_dead_letters_total{worker=\"notification-dispatcher\",reason=\"permanent\"} 3"), "{metrics}");
    assert!(metrics.contains("akira_worker_dead_letters_total{worker=\"notification-dispatcher\",reason=\"max_deliver\"} 1"), "{metrics}");

    let status = fixture.worker.stop(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        fixture.worker.log()
    );
    drop(fixture.nats);
}

#[tokio::test]
async fn check_config_rejects_unknown_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dispatcher.toml");
    std::fs::write(
        &path,
        "[worker]\nname = \"notification-dispatcher\"\n[dispatcher.endpoints.ops]\nurl = \"file:///etc/passwd\"\n",
    )
    .unwrap();

    let output = std::process::Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dispatcher.endpoints.ops.url"), "{stderr}");
}

#[test]
fn example_config_passes_check() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../examples/config/notification-dispatcher.toml");
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("pager-token"), "Token abc\n").unwrap();

    let output = std::process::Command::new(BINARY)
        .arg("--config")
        .arg(&example)
        .arg("--check-config")
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}
