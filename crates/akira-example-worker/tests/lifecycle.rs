//! Process-level lifecycle: graceful stop, startup checks and configuration errors.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use akira_testkit::{free_port, NatsServer};
use async_nats::jetstream::{self, consumer};
use support::*;

fn push_config(url: &str, metrics_port: u16, record: &str, behaviour: &str) -> String {
    format!(
        r#"[worker]
name = "drain"
ensure = true
shutdown_timeout = "10s"
[nats]
servers = ["{url}"]
[metrics]
listen = "127.0.0.1:{metrics_port}"
[consumer]
stream = "DRAIN"
durable_name = "drain"
filter_subject = "drain.>"
deliver_subject = "akira.deliver.drain"
deliver_group = "drain"
max_in_flight = 4
ack_wait = "30s"
[example]
class = "push"
behaviour = "{behaviour}"
sleep = "2s"
record_file = "{record}"
"#
    )
}

#[tokio::test]
async fn sigterm_finishes_in_flight_and_hands_over_the_rest() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("records.txt");
    let record_text = record.display().to_string();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "DRAIN".into(),
        subjects: vec!["drain.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..20 {
        js.publish("drain.job", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let port = free_port();
    let mut first = start_worker(
        worker_binary(),
        dir.path(),
        "first",
        &push_config(&server.url(), port, &record_text, "sleep"),
        &[],
        &[],
    );
    let address = format!("127.0.0.1:{port}");
    let busy = wait_until(Duration::from_secs(15), || async {
        match http_get(&address, "/metrics").await {
            Some((200, body)) => {
                sample(&body, "akira_worker_in_flight{worker=\"drain\"}") == Some(4.0)
            }
            _ => false,
        }
    })
    .await;
    assert!(
        busy,
        "four handlers never ran at once; stderr:\n{}",
        first.log()
    );

    let stop_requested = Instant::now();
    first.signal("TERM");
    let status = first
        .wait_timeout(Duration::from_secs(12))
        .expect("the worker did not exit within the shutdown timeout");
    let took = stop_requested.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        first.log()
    );
    assert!(
        took < Duration::from_secs(10),
        "graceful stop took {took:?}"
    );
    let handled_by_first = records(&record).len();
    assert_eq!(
        handled_by_first, 4,
        "the first instance should finish exactly its 4 handlers in flight"
    );
    assert!(first.log().contains("draining"), "no draining log line");

    let mut second = start_worker(
        worker_binary(),
        dir.path(),
        "second",
        &push_config(&server.url(), free_port(), &record_text, "ok"),
        &[],
        &[],
    );
    let all_done = wait_until(Duration::from_secs(30), || async {
        records(&record).len() >= 20
    })
    .await;
    assert!(
        all_done,
        "only {} of 20 handled; stderr:\n{}",
        records(&record).len(),
        second.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in records(&record) {
        assert_eq!(line[3], "ok");
        *counts.entry(line[4].clone()).or_default() += 1;
    }
    assert_eq!(
        counts.len(),
        20,
        "some messages were never processed: {counts:?}"
    );
    assert!(
        counts.values().all(|&n| n == 1),
        "some messages were processed twice: {counts:?}"
    );
    second.signal("TERM");
    assert!(second
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .success());
}

#[tokio::test]
async fn consumer_mismatch_exits_naming_the_field() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(akira_workers::dlq::dlq_stream_config())
        .await
        .unwrap();
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "MISMATCH".into(),
            subjects: vec!["mismatch.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("mismatch".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_deliver: 7,
            filter_subject: "mismatch.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let config = format!(
        "[worker]\nname = \"mismatch\"\n[nats]\nservers = [\"{}\"]\n[metrics]\nlisten = \"\"\n\
         [consumer]\nstream = \"MISMATCH\"\nfilter_subject = \"mismatch.>\"\n[retry]\nmax_deliver = 3\n\
         [example]\nclass = \"pull\"\n",
        server.url()
    );
    let mut process = start_worker(worker_binary(), dir.path(), "mismatch", &config, &[], &[]);
    let status = process
        .wait_timeout(Duration::from_secs(15))
        .expect("the worker kept running");
    assert!(!status.success());
    let stderr = process.log();
    assert!(
        stderr.contains("max_deliver: current 7, expected 3"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("consumer `mismatch` on stream `MISMATCH`"),
        "stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn invalid_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        "[worker]\nname = \"bad\"\n[consumer]\nack_wait = \"soon\"\n[example]\nclass = \"pull\"\n";
    let mut process = start_worker(worker_binary(), dir.path(), "bad", config, &[], &[]);
    let status = process
        .wait_timeout(Duration::from_secs(10))
        .expect("the worker kept running");
    assert_eq!(status.code(), Some(1));
    let stderr = process.log();
    assert!(stderr.contains("`consumer.ack_wait`"), "stderr:\n{stderr}");
    assert!(stderr.contains("\"soon\""), "stderr:\n{stderr}");
    assert!(
        stderr.contains("30s"),
        "the error does not show the expected form:\n{stderr}"
    );
}

#[tokio::test]
async fn check_config_validates_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[worker]\nname = \"ok\"\n[nats]\nservers = [\"nats://127.0.0.1:1\"]\n[example]\nclass = \"core\"\n";
    let mut process = start_worker(
        worker_binary(),
        dir.path(),
        "ok",
        config,
        &[],
        &["--check-config"],
    );
    let status = process
        .wait_timeout(Duration::from_secs(10))
        .expect("--check-config kept running");
    assert!(status.success(), "stderr:\n{}", process.log());
}

#[tokio::test]
async fn check_config_validates_worker_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[worker]\nname = \"ok\"\n[example]\nclass = \"sideways\"\n";
    let mut process = start_worker(
        worker_binary(),
        dir.path(),
        "section",
        config,
        &[],
        &["--check-config"],
    );
    let status = process
        .wait_timeout(Duration::from_secs(10))
        .expect("--check-config kept running");
    assert_eq!(status.code(), Some(1));
    let stderr = process.log();
    assert!(stderr.contains("`example.class`"), "stderr:\n{stderr}");
}

fn idle_pull_config(url: &str, metrics_port: u16, record: &str) -> String {
    format!(
        r#"[worker]
name = "idle"
ensure = true
[nats]
servers = ["{url}"]
[metrics]
listen = "127.0.0.1:{metrics_port}"
[consumer]
stream = "IDLE"
durable_name = "idle"
filter_subject = "idle.>"
ack_wait = "30s"
max_wait = "5s"
[example]
class = "pull"
record_file = "{record}"
"#
    )
}

#[tokio::test]
async fn sigterm_returns_messages_of_open_pull_request() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("records.txt");
    let record_text = record.display().to_string();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut first = start_worker(
        worker_binary(),
        dir.path(),
        "first",
        &idle_pull_config(&server.url(), port, &record_text),
        &[],
        &[],
    );
    let ready = wait_until(Duration::from_secs(15), || async {
        matches!(http_get(&address, "/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready, "log:\n{}", first.log());
    // The idle worker now has a pull request open on the server for up to max_wait (5 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.signal("TERM");
    for i in 0..5 {
        js.publish("idle.job", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let status = first
        .wait_timeout(Duration::from_secs(10))
        .expect("the worker did not stop");
    assert!(status.success(), "log:\n{}", first.log());

    // Messages the open request delivered after the stop were nakked, so a second instance
    // gets them long before ack_wait (30 s) would return them.
    let handed_over = Instant::now();
    let _second = start_worker(
        worker_binary(),
        dir.path(),
        "second",
        &idle_pull_config(&server.url(), free_port(), &record_text),
        &[],
        &[],
    );
    let all_done = wait_until(Duration::from_secs(10), || async {
        records(&record).len() >= 5
    })
    .await;
    assert!(
        all_done,
        "only {} of 5 handled within 10 s of the hand-over",
        records(&record).len()
    );
    assert!(handed_over.elapsed() < Duration::from_secs(15));
    let mut payloads: Vec<String> = records(&record)
        .into_iter()
        .map(|line| line[4].clone())
        .collect();
    payloads.sort();
    assert_eq!(
        payloads,
        vec!["0", "1", "2", "3", "4"],
        "a message was lost or handled twice"
    );
}
