//! Throughput of the akira workers against the raw async-nats client, in one run.
//!
//! `cargo bench -p akira-workers --bench throughput` starts a nats-server (through the test kit),
//! then for each pair publishes the same messages and times how long it takes to receive and
//! ack all of them: raw pull consumer against `Worker::run_pull`, raw push consumer against
//! `Worker::run_push`. Each variant runs `ROUNDS` times; the table shows the median and range.
//! Set `AKIRA_BENCH_MESSAGES` to change the message count (default 20,000).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akira_testkit::NatsServer;
use akira_workers::{Config, Delivery, HandlerResult, Worker};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

const ROUNDS: usize = 5;
const PAYLOAD: &[u8] = &[b'x'; 256];

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; test runners that list targets (cargo nextest with
    // --all-targets) run this binary without it, and must find no tests.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let messages: usize = std::env::var("AKIRA_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(akira_workers::dlq::dlq_stream_config())
        .await
        .unwrap();

    println!(
        "messages per round: {messages}, payload: {} bytes, rounds: {ROUNDS}",
        PAYLOAD.len()
    );
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "variant", "median msg/s", "min msg/s", "max msg/s"
    );
    let variants: [(&str, Variant); 4] = [
        ("raw async-nats pull (batch 100)", Variant::RawPull),
        ("akira run_pull (batch 100)", Variant::AkiraPull),
        ("raw async-nats push", Variant::RawPush),
        ("akira run_push (in flight 256)", Variant::AkiraPush),
    ];
    for (name, variant) in variants {
        let mut rates = Vec::new();
        for round in 0..ROUNDS {
            let stream = format!("BENCH{}{round}", variant as u8);
            let elapsed = run_round(&server, &js, &stream, messages, variant).await;
            rates.push(messages as f64 / elapsed.as_secs_f64());
        }
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name:<34} {:>12.0} {:>12.0} {:>12.0}",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
}

#[derive(Clone, Copy)]
enum Variant {
    RawPull,
    AkiraPull,
    RawPush,
    AkiraPush,
}

async fn run_round(
    server: &NatsServer,
    js: &jetstream::Context,
    stream: &str,
    messages: usize,
    variant: Variant,
) -> Duration {
    let subject = format!("{}.item", stream.to_lowercase());
    let stream_handle = js
        .create_stream(jetstream::stream::Config {
            name: stream.to_string(),
            subjects: vec![format!("{}.>", stream.to_lowercase())],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut acks = Vec::with_capacity(1000);
    for _ in 0..messages {
        acks.push(js.publish(subject.clone(), PAYLOAD.into()).await.unwrap());
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }

    let started = Instant::now();
    match variant {
        Variant::RawPull => raw_pull(&stream_handle, messages).await,
        Variant::RawPush => raw_push(&stream_handle, messages).await,
        Variant::AkiraPull | Variant::AkiraPush => akira(server, stream, messages, variant).await,
    }
    let elapsed = started.elapsed();
    js.delete_stream(stream).await.unwrap();
    elapsed
}

async fn raw_pull(stream: &jetstream::stream::Stream, messages: usize) {
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut done = 0;
    while done < messages {
        let mut batch = consumer
            .batch()
            .max_messages(100)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(message)) = batch.next().await {
            message.ack().await.unwrap();
            done += 1;
        }
    }
}

async fn raw_push(stream: &jetstream::stream::Stream, messages: usize) {
    let consumer: consumer::PushConsumer = stream
        .create_consumer(consumer::push::Config {
            durable_name: Some("raw".into()),
            deliver_subject: "bench.raw.deliver".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut incoming = consumer.messages().await.unwrap();
    let mut done = 0;
    while done < messages {
        let message = incoming.next().await.unwrap().unwrap();
        message.ack().await.unwrap();
        done += 1;
    }
}

async fn akira(server: &NatsServer, stream: &str, messages: usize, variant: Variant) {
    let class = match variant {
        Variant::AkiraPull => "batch_size = 100\nmax_in_flight = 256\nmax_wait = \"1s\"\n",
        _ => "max_in_flight = 256\nmax_ack_pending = 1000\n",
    };
    let text = format!(
        "[worker]\nname = \"bench\"\nensure = true\n[nats]\nservers = [\"{}\"]\n[metrics]\nlisten = \"\"\n\
         [log]\nlevel = \"warn\"\n[consumer]\nstream = \"{stream}\"\ndurable_name = \"akira\"\n\
         filter_subject = \"{}.>\"\n{class}",
        server.url(),
        stream.to_lowercase()
    );
    let config = Config::from_toml(&text, "bench", std::iter::empty()).unwrap();
    let worker = Worker::start(config).await.unwrap();
    let shutdown = worker.shutdown_token();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let running = match variant {
        Variant::AkiraPull => tokio::spawn(worker.run_pull(move |batch: Vec<Delivery>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(batch.len(), Ordering::Relaxed);
                batch.iter().map(|_| HandlerResult::Ok(())).collect()
            }
        })),
        _ => tokio::spawn(worker.run_push(move |_delivery| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })),
    };
    while count.load(Ordering::Relaxed) < messages {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
