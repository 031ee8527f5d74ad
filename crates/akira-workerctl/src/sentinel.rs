//! `akira-workerctl dlq sentinel`: dead-letters messages that no worker settled.
//!
//! When a consumer delivers a message `max_deliver` times without an ack, nak or term, the
//! server stops delivering it and publishes a MAX_DELIVERIES advisory. A worker that crashes on
//! every delivery never gets to dead-letter such a message itself, so the sentinel does it.
//! It fetches the message by stream sequence and publishes it to `AKIRA_DLQ` with reason
//! `max_deliver_advisory` and the same `Nats-Msg-Id` the library uses. A message dead-lettered
//! by both a worker and the sentinel within the duplicate window is stored once.
//!
//! Advisories are core NATS messages: one published while no sentinel listens is lost, so this
//! backstop holds only while a sentinel runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use akira_workers::dlq::{self, DeadLetter, Reason};
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use futures::StreamExt;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::connect::{error_chain, NatsArgs};
use crate::ExitStatus;

/// Subject prefix of JetStream's MAX_DELIVERIES advisories; `<stream>.<consumer>` follows.
pub const ADVISORY_PREFIX: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES";

/// Advisories handled at once.
const MAX_CONCURRENT: usize = 16;

/// Attempts to read the original and publish the dead letter before giving up.
const ATTEMPTS: u32 = 5;

/// Arguments of `dlq sentinel`.
#[derive(Debug, Clone, clap::Args)]
pub struct SentinelArgs {
    /// Only handle advisories of this stream; repeatable. All streams when absent.
    #[arg(long = "stream", value_name = "STREAM")]
    pub streams: Vec<String>,

    /// Queue group shared by every sentinel, so each advisory is handled by one of them.
    #[arg(long, value_name = "NAME", default_value = "akira-workerctl-sentinel")]
    pub queue_group: String,

    /// Name written to Akira-Dlq-Worker as NAME@HOST.
    #[arg(long, value_name = "NAME", default_value = "sentinel")]
    pub name: String,

    /// How long to wait for NATS JetStream at startup, such as 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::connect::parse_duration)]
    pub wait: Duration,

    /// How long advisories in progress may take to finish after SIGTERM or SIGINT.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::connect::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// The fields of a MAX_DELIVERIES advisory that the sentinel reads.
#[derive(Debug, Clone, Deserialize)]
pub struct MaxDeliveriesAdvisory {
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    pub deliveries: u64,
}

/// Result of handling one advisory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    DeadLettered,
    /// `AKIRA_DLQ` already held it (the worker dead-lettered it, or another sentinel did).
    Duplicate,
    /// The message was no longer in its stream.
    Gone,
    Skipped,
    Failed,
}

#[derive(Debug, Default)]
struct Counters {
    dead_lettered: AtomicU64,
    duplicates: AtomicU64,
    gone: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Duplicate => &self.duplicates,
            Outcome::Gone => &self.gone,
            Outcome::Skipped => &self.skipped,
            Outcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the sentinel until SIGTERM or SIGINT.
pub async fn run(nats: &NatsArgs, args: &SentinelArgs) -> anyhow::Result<ExitStatus> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    let (client, jetstream) = nats.connect_jetstream_waiting(args.wait).await?;
    let subjects: Vec<String> = if args.streams.is_empty() {
        vec![format!("{ADVISORY_PREFIX}.>")]
    } else {
        args.streams
            .iter()
            .map(|stream| format!("{ADVISORY_PREFIX}.{stream}.*"))
            .collect()
    };
    let mut subscriptions = Vec::new();
    for subject in &subjects {
        let subscription = client
            .queue_subscribe(subject.clone(), args.queue_group.clone())
            .await
            .map_err(|err| {
                anyhow::anyhow!("cannot subscribe to {subject}: {}", error_chain(&err))
            })?;
        subscriptions.push(subscription);
    }
    // A round trip makes sure the server has registered the subscriptions before READY.
    client
        .flush()
        .await
        .map_err(|err| anyhow::anyhow!("cannot reach NATS: {}", error_chain(&err)))?;
    let mut advisories = futures::stream::select_all(subscriptions);

    let worker = dlq::worker_identity(&args.name);
    tracing::info!(
        subjects = %subjects.join(", "),
        queue_group = %args.queue_group,
        worker = %worker,
        "sentinel ready"
    );
    crate::systemd::notify("READY=1");

    let counters = Arc::new(Counters::default());
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            message = advisories.next() => {
                let Some(message) = message else {
                    tracing::error!("advisory subscription closed by the client; stopping");
                    break;
                };
                let permit = limit.clone().acquire_owned().await?;
                let jetstream = jetstream.clone();
                let counters = counters.clone();
                let worker = worker.clone();
                tasks.spawn(async move {
                    let outcome = handle(&jetstream, &message.subject, &message.payload, &worker).await;
                    counters.count(outcome);
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }

    crate::systemd::notify("STOPPING=1");
    tracing::info!(in_progress = tasks.len(), "sentinel stopping");
    drop(advisories);
    let drained = tokio::time::timeout(args.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::error!(
            abandoned = tasks.len(),
            timeout = %akira_workers::duration::format(args.shutdown_timeout),
            "advisories still in progress at the shutdown timeout were abandoned; their messages are not dead-lettered"
        );
        tasks.abort_all();
    }
    if let Err(err) = client.flush().await {
        tracing::warn!(error = %error_chain(&err), "cannot flush the NATS connection at shutdown");
    }
    tracing::info!(
        dead_lettered = counters.dead_lettered.load(Ordering::Relaxed),
        duplicates = counters.duplicates.load(Ordering::Relaxed),
        gone = counters.gone.load(Ordering::Relaxed),
        skipped = counters.skipped.load(Ordering::Relaxed),
        failed = counters.failed.load(Ordering::Relaxed),
        "sentinel stopped"
    );
    Ok(ExitStatus::Success)
}

async fn handle(
    jetstream: &jetstream::Context,
    subject: &str,
    payload: &[u8],
    worker: &str,
) -> Outcome {
    let advisory: MaxDeliveriesAdvisory = match serde_json::from_slice(payload) {
        Ok(advisory) => advisory,
        Err(err) => {
            tracing::error!(subject, error = %err, "invalid MAX_DELIVERIES advisory; skipped");
            return Outcome::Skipped;
        }
    };
    let span = tracing::info_span!(
        "advisory",
        stream = %advisory.stream,
        consumer = %advisory.consumer,
        stream_seq = advisory.stream_seq,
        deliveries = advisory.deliveries,
    );
    handle_advisory(jetstream, &advisory, worker)
        .instrument(span)
        .await
}

async fn handle_advisory(
    jetstream: &jetstream::Context,
    advisory: &MaxDeliveriesAdvisory,
    worker: &str,
) -> Outcome {
    if advisory.stream == dlq::DLQ_STREAM {
        tracing::warn!(
            "advisory for a consumer of the dead-letter stream itself; not dead-lettered again"
        );
        return Outcome::Skipped;
    }

    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match dead_letter(jetstream, advisory, worker).await {
            Ok(outcome) => return outcome,
            Err(err) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %err, retry_in = ?delay, "cannot dead-letter the message; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(err) => {
                tracing::error!(attempts = ATTEMPTS, error = %err, "cannot dead-letter the message; giving up, it stays undelivered in its stream");
            }
        }
    }
    Outcome::Failed
}

async fn dead_letter(
    jetstream: &jetstream::Context,
    advisory: &MaxDeliveriesAdvisory,
    worker: &str,
) -> Result<Outcome, String> {
    let stream = jetstream
        .get_stream_no_info(&advisory.stream)
        .await
        .map_err(|err| {
            format!(
                "cannot open stream {}: {}",
                advisory.stream,
                error_chain(&err)
            )
        })?;
    let original = match stream.get_raw_message(advisory.stream_seq).await {
        Ok(message) => message,
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {
            tracing::warn!("message is no longer in its stream (acknowledged, deleted or expired); nothing to dead-letter");
            return Ok(Outcome::Gone);
        }
        Err(err) => {
            return Err(format!(
                "cannot read message {} of stream {}: {}",
                advisory.stream_seq,
                advisory.stream,
                error_chain(&err)
            ))
        }
    };

    let letter = DeadLetter {
        stream: advisory.stream.clone(),
        consumer: advisory.consumer.clone(),
        subject: original.subject.to_string(),
        sequence: advisory.stream_seq,
        deliveries: i64::try_from(advisory.deliveries).unwrap_or(i64::MAX),
        reason: Reason::MaxDeliverAdvisory,
        error: format!(
            "delivered {} times without an ack, nak or term; the worker never settled it (crashed, hung or lost its connection)",
            advisory.deliveries
        ),
        worker: worker.to_string(),
        failed_at: OffsetDateTime::now_utc(),
    };
    let ack = letter
        .publish(jetstream, Some(&original.headers), original.payload.clone())
        .await
        .map_err(|err| {
            format!(
                "cannot publish to {}: {}",
                letter.subject(),
                error_chain(&err)
            )
        })?
        .await
        .map_err(|err| format!("no PubAck from {}: {}", dlq::DLQ_STREAM, error_chain(&err)))?;

    if ack.duplicate {
        tracing::info!(
            dlq_seq = ack.sequence,
            "message was already dead-lettered; stored once"
        );
        return Ok(Outcome::Duplicate);
    }
    tracing::error!(
        dlq_seq = ack.sequence,
        subject = %original.subject,
        reason = Reason::MaxDeliverAdvisory.as_str(),
        "dead-lettered a message that reached max_deliver without being settled"
    );
    Ok(Outcome::DeadLettered)
}
