//! Throughput of the akira workers against the raw async-nats client, in one run.
//!
//! `cargo bench -p akira-workers --bench throughput` starts a nats-server (through the test kit),
//! then for each pair publishes the same messages and times how long it takes to receive and
//! ack all of them: raw pull consumer against `Worker::run_pull`, raw push consumer against
//! `Worker::run_push`. Each round runs in a child process, so its peak resident memory is its
//! own. Each variant runs `ROUNDS` times; the table shows the median and range.
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
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        return;
    }
    if let Some(position) = args.iter().position(|arg| arg == "--child") {
        run_child(
            &args[position + 1],
            &args[position + 2],
            &args[position + 3],
        )
        .await;
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
    println!("each round runs in a child process; peak RSS is that process's VmHWM");
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>14}",
        "variant", "median msg/s", "min msg/s", "max msg/s", "peak RSS MiB"
    );
    let variants = [
        ("raw async-nats pull (batch 100)", "raw-pull"),
        ("akira run_pull (batch 100)", "akira-pull"),
        ("raw async-nats push", "raw-push"),
        ("akira run_push (in flight 256)", "akira-push"),
    ];
    for (name, variant) in variants {
        let mut rates = Vec::new();
        let mut peak_kib = 0u64;
        for round in 0..ROUNDS {
            let stream = format!("BENCH_{}_{round}", variant.replace('-', "_").to_uppercase());
            publish(&js, &stream, messages).await;
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--bench", "--child", variant, &server.url(), &stream])
                .env("AKIRA_BENCH_MESSAGES", messages.to_string())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            let mut fields = text.split_whitespace();
            let (Some(seconds), Some(kib)) = (fields.next(), fields.next()) else {
                panic!("round failed: {}", String::from_utf8_lossy(&output.stderr));
            };
            rates.push(messages as f64 / seconds.parse::<f64>().unwrap());
            peak_kib = peak_kib.max(kib.parse().unwrap());
            js.delete_stream(&stream).await.unwrap();
        }
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name:<34} {:>12.0} {:>12.0} {:>12.0} {:>14.1}",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1],
            peak_kib as f64 / 1024.0
        );
    }
}

/// Receives and acks every message of `stream` with one variant; prints seconds and VmHWM KiB.
async fn run_child(variant: &str, url: &str, stream: &str) {
    let messages: usize = std::env::var("AKIRA_BENCH_MESSAGES")
        .unwrap()
        .parse()
        .unwrap();
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let stream_handle = js.get_stream(stream).await.unwrap();
    let started = Instant::now();
    match variant {
        "raw-pull" => raw_pull(&stream_handle, messages).await,
        "raw-push" => raw_push(&stream_handle, messages).await,
        "akira-pull" => akira(url, stream, messages, Variant::AkiraPull).await,
        "akira-push" => akira(url, stream, messages, Variant::AkiraPush).await,
        other => panic!("unknown variant {other}"),
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    println!("{seconds} {peak_kib}");
}

async fn publish(js: &jetstream::Context, stream: &str, messages: usize) {
    let prefix = stream.to_lowercase();
    js.create_stream(jetstream::stream::Config {
        name: stream.to_string(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let subject = format!("{prefix}.item");
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
}

#[derive(Clone, Copy)]
enum Variant {
    AkiraPull,
    AkiraPush,
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

async fn akira(url: &str, stream: &str, messages: usize, variant: Variant) {
    let class = match variant {
        Variant::AkiraPull => "batch_size = 100\nmax_in_flight = 256\nmax_wait = \"1s\"\n",
        _ => "max_in_flight = 256\nmax_ack_pending = 1000\n",
    };
    let text = format!(
        "[worker]\nname = \"bench\"\nensure = true\n[nats]\nservers = [\"{}\"]\n[metrics]\nlisten = \"\"\n\
         [log]\nlevel = \"warn\"\n[consumer]\nstream = \"{stream}\"\ndurable_name = \"akira\"\n\
         filter_subject = \"{}.>\"\n{class}",
        url,
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
