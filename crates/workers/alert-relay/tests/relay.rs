//! The relay binary against a real nats-server: Alertmanager payloads in, notifications out.

mod common;

use std::time::Duration;

use akira_testkit::wait_for;
use akira_testkit::{free_port, NatsServer};
use async_nats::jetstream::{self, message::StreamMessage, stream};
use common::process::WorkerProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_akira-alert-relay");
const FIRING: &str =
    include_str!("../../../../examples/data/alertmanager/firing-alertmanager-0.21.json");
const RESOLVED: &str =
    include_str!("../../../../examples/data/alertmanager/resolved-with-fingerprint.json");
const NO_FINGERPRINT: &str =
    include_str!("../../../../examples/data/alertmanager/firing-three-alerts-no-fingerprint.json");

struct Fixture {
    nats: NatsServer,
    jetstream: jetstream::Context,
    relay: WorkerProcess,
    webhook_url: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = jetstream::new(client);
    jetstream
        .create_stream(stream::Config {
            name: "NOTIFY".to_string(),
            subjects: vec!["akira.notify.>".to_string()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let config = format!(
        r#"
[worker]
name = "alert-relay"
shutdown_timeout = "5s"

[nats]
servers = ["{nats_url}"]

[metrics]
listen = "{metrics}"

[relay]
listen = "{listen}"
default_endpoint = "ops"

[[relay.routes]]
match = {{ severity = "critical" }}
endpoint = "pager"
continue = true

[[relay.routes]]
match = {{ job = "blackbox-icmp" }}
endpoint = "network"

[[relay.routes]]
match = {{ severity = "critical" }}
endpoint = "ops"
"#,
        nats_url = nats.url(),
    );
    let config_path = dir.path().join("alert-relay.toml");
    std::fs::write(&config_path, config).unwrap();
    let relay = WorkerProcess::start(BINARY, &config_path, &metrics).await;

    Fixture {
        nats,
        jetstream,
        relay,
        webhook_url: format!("http://{listen}/alertmanager"),
        _dir: dir,
    }
}

async fn post(url: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn notify_count(jetstream: &jetstream::Context) -> u64 {
    let mut stream = jetstream.get_stream("NOTIFY").await.unwrap();
    stream.info().await.unwrap().state.messages
}

async fn notify_messages(jetstream: &jetstream::Context) -> Vec<StreamMessage> {
    let mut stream = jetstream.get_stream("NOTIFY").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        messages.push(stream.get_raw_message(sequence).await.unwrap());
    }
    messages
}

fn json(message: &StreamMessage) -> serde_json::Value {
    serde_json::from_slice(&message.payload).unwrap()
}

#[tokio::test]
async fn relay_turns_alerts_into_notifications() {
    let mut fixture = start().await;
    let js = fixture.jetstream.clone();

    let (status, body) = post(&fixture.webhook_url, FIRING).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("akira.alerts.web__hook"), "{body}");
    let (status, body) = post(&fixture.webhook_url, RESOLVED).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&fixture.webhook_url, NO_FINGERPRINT).await;
    assert_eq!(status, 200, "{body}");

    // Firing DemoAlert (critical): pager, then ops through the third rule (continue on the
    // first). Resolved Deployment (Warning): no rule, so the default ops. Three ICMP alerts
    // (major, job blackbox-icmp): network.
    wait_for(
        "six notifications in NOTIFY",
        Duration::from_secs(10),
        || {
            let js = js.clone();
            async move { notify_count(&js).await >= 6 }
        },
    )
    .await;
    let messages = notify_messages(&js).await;
    assert_eq!(messages.len(), 6);

    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == "akira.notify.pager")
            .count(),
        1,
        "{subjects:?}"
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == "akira.notify.ops")
            .count(),
        2,
        "{subjects:?}"
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == "akira.notify.network")
            .count(),
        3,
        "{subjects:?}"
    );

    let pager = messages
        .iter()
        .find(|m| m.subject.as_str() == "akira.notify.pager")
        .unwrap();
    let pager_json = json(pager);
    assert_eq!(pager_json["endpoint"], "pager");
    assert_eq!(
        pager_json["idempotency_key"],
        "8a07086b74f3ba78:firing:2021-01-07T08:38:00.032813093Z"
    );
    assert_eq!(pager_json["body"]["labels"]["alertname"], "DemoAlert");
    assert_eq!(pager_json["body"]["status"], "firing");
    assert!(pager_json["body"]["endsAt"].is_null());
    assert_eq!(
        pager.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("pager:8a07086b74f3ba78:firing:2021-01-07T08:38:00.032813093Z")
    );
    assert!(pager.headers.get("Akira-Correlation-Id").is_some());

    let resolved = messages
        .iter()
        .map(json)
        .find(|m| m["body"]["status"] == "resolved")
        .expect("no notification for the resolved alert");
    assert_eq!(resolved["endpoint"], "ops");
    assert_eq!(resolved["body"]["endsAt"], "2022-07-29T11:17:27.3Z");
    assert_eq!(
        resolved["body"]["annotations"]["summary"],
        "Kubernetes Deployment Replicas Mismatch"
    );

    let mut instances: Vec<String> = messages
        .iter()
        .map(json)
        .filter(|m| m["endpoint"] == "network")
        .map(|m| {
            m["body"]["labels"]["instance"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    instances.sort();
    assert_eq!(
        instances,
        vec!["172.29.254.30", "172.29.254.50", "172.29.254.66"]
    );

    // Alertmanager sending the same group again within the duplicate window adds nothing.
    let (status, _) = post(&fixture.webhook_url, FIRING).await;
    assert_eq!(status, 200);
    wait_for(
        "the repeated webhook to be handled",
        Duration::from_secs(10),
        || async {
            fixture.relay.metrics().await.contains(
                "akira_relay_notifications_total{worker=\"alert-relay\",outcome=\"duplicate\"} 2",
            )
        },
    )
    .await;
    assert_eq!(notify_count(&js).await, 6);

    let metrics = fixture.relay.metrics().await;
    assert!(
        metrics
            .contains("akira_relay_webhooks_total{worker=\"alert-relay\",outcome=\"accepted\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "akira_relay_notifications_total{worker=\"alert-relay\",outcome=\"published\"} 6"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("akira_worker_messages_total{worker=\"alert-relay\",outcome=\"ack\"} 4"),
        "{metrics}"
    );

    let status = fixture.relay.stop(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        fixture.relay.log()
    );
}

#[tokio::test]
async fn relay_rejects_invalid_payloads() {
    let fixture = start().await;
    let cases = [
        (
            "not JSON",
            "{\"version\": \"4\",".to_string(),
            "invalid Alertmanager payload",
        ),
        (
            "wrong version",
            FIRING.replace("\"version\":\"4\"", "\"version\":\"3\""),
            "version \"3\"",
        ),
        (
            "missing alerts",
            r#"{"version":"4","receiver":"r","status":"firing"}"#.to_string(),
            "missing field `alerts`",
        ),
        (
            "bad alert status",
            FIRING.replace(
                "\"status\":\"firing\",\"labels\"",
                "\"status\":\"on\",\"labels\"",
            ),
            "alerts[0].status",
        ),
    ];

    for (case, body, reason) in &cases {
        let (status, text) = post(&fixture.webhook_url, body).await;
        assert_eq!(status, 400, "{case}: {text}");
        assert!(text.contains(reason), "{case}: {text}");
    }

    let metrics = fixture.relay.metrics().await;
    assert!(
        metrics
            .contains("akira_relay_webhooks_total{worker=\"alert-relay\",outcome=\"invalid\"} 4"),
        "{metrics}"
    );
    assert_eq!(notify_count(&fixture.jetstream).await, 0);
}

#[tokio::test]
async fn relay_rejects_get_and_other_paths() {
    let fixture = start().await;
    let client = reqwest::Client::new();

    let get = client.get(&fixture.webhook_url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let other = fixture.webhook_url.replace("/alertmanager", "/other");
    let (status, _) = post(&other, FIRING).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn relay_answers_503_while_disconnected() {
    let mut fixture = start().await;
    let url = fixture.webhook_url.clone();

    fixture.nats.stop();
    wait_for(
        "the relay to see the disconnect",
        Duration::from_secs(10),
        || async {
            fixture
                .relay
                .metrics()
                .await
                .contains("akira_worker_nats_connected{worker=\"alert-relay\"} 0")
        },
    )
    .await;
    let (status, text) = post(&url, FIRING).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("NATS is disconnected"), "{text}");
    let metrics = fixture.relay.metrics().await;
    assert!(
        metrics.contains(
            "akira_relay_webhooks_total{worker=\"alert-relay\",outcome=\"not_connected\"} 1"
        ),
        "{metrics}"
    );

    // The sender's retry succeeds once the relay has reconnected.
    fixture.nats.restart();
    wait_for(
        "the relay to accept webhooks again",
        Duration::from_secs(20),
        || {
            let url = url.clone();
            async move { post(&url, FIRING).await.0 == 200 }
        },
    )
    .await;
    let js = fixture.jetstream.clone();
    wait_for(
        "the notifications of the retried webhook",
        Duration::from_secs(10),
        || {
            let js = js.clone();
            async move { notify_count(&js).await >= 2 }
        },
    )
    .await;
}

#[test]
fn example_config_passes_check() {
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/config");

    let output = std::process::Command::new(BINARY)
        .arg("--config")
        .arg(examples.join("alert-relay.toml"))
        .arg("--check-config")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn example_routes_name_dispatcher_endpoints() {
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/config");
    let read = |name: &str| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(examples.join(name)).unwrap()).unwrap()
    };
    let relay = read("alert-relay.toml");
    let dispatcher = read("notification-dispatcher.toml");
    let endpoints = dispatcher["dispatcher"]["endpoints"].as_table().unwrap();

    let mut named = vec![relay["relay"]["default_endpoint"].as_str().unwrap()];
    for route in relay["relay"]["routes"].as_array().unwrap() {
        named.push(route["endpoint"].as_str().unwrap());
    }
    for endpoint in named {
        assert!(endpoints.contains_key(endpoint), "the relay example routes to {endpoint:?}, which the dispatcher example does not define");
    }
}
