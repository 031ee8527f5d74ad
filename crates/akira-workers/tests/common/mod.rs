//! Helpers shared by the library's integration tests.

#![allow(dead_code)]

use std::time::Duration;

pub use akira_testkit::wait_until;
use akira_workers::Config;
use async_nats::jetstream;

/// Builds a worker configuration for a server at `url`, with `ensure` on and the metrics
/// endpoint on a free port; `extra` is appended TOML.
pub fn config(url: &str, name: &str, extra: &str) -> Config {
    let text = format!(
        "[worker]\nname = \"{name}\"\nensure = true\nshutdown_timeout = \"10s\"\n\
         [nats]\nservers = [\"{url}\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n{extra}"
    );
    Config::from_toml(&text, "test", std::iter::empty()).expect("test configuration is valid")
}

pub async fn connect(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(url)
        .await
        .expect("connect to the test server");
    let context = jetstream::new(client.clone());
    (client, context)
}

pub async fn create_stream(js: &jetstream::Context, name: &str, subject: &str) {
    js.create_stream(jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Publishes `count` messages with payloads `0`..`count` and waits for every PubAck.
pub async fn publish_numbers(
    js: &jetstream::Context,
    subject: &str,
    range: std::ops::Range<usize>,
) {
    let mut acks = Vec::new();
    for i in range {
        acks.push(
            js.publish(subject.to_string(), i.to_string().into())
                .await
                .expect("publish"),
        );
        if acks.len() >= 500 {
            for ack in acks.drain(..) {
                ack.await.expect("PubAck");
            }
        }
    }
    for ack in acks {
        ack.await.expect("PubAck");
    }
}

/// Returns (pending, awaiting ack, redelivered) of a consumer, waiting up to 5 s for the
/// worker to create it.
pub async fn consumer_state(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> (u64, usize, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(stream) = js.get_stream(stream).await {
            if let Ok(info) = stream.consumer_info(consumer).await {
                return (info.num_pending, info.num_ack_pending, info.num_redelivered);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumer {consumer} on {stream} not found"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("stream");
    stream.info().await.expect("stream info").state.messages
}
