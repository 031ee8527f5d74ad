//! `akira-workerctl status`: streams, consumers and dead-letter depth.

use std::collections::BTreeMap;
use std::io::Write;

use akira_workers::dlq;
use anyhow::Context as _;
use async_nats::jetstream;
use futures::TryStreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use crate::connect::{error_chain, NatsArgs};
use crate::output::{format_time, Table};
use crate::ExitStatus;

/// Arguments of `status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// The state of every stream and consumer.
#[derive(Debug, Serialize)]
pub struct Status {
    pub streams: Vec<StreamStatus>,
    pub consumers: Vec<ConsumerStatus>,
    /// Dead letters per source stream and consumer; empty when `AKIRA_DLQ` does not exist.
    pub dead_letters: Vec<DeadLetterDepth>,
    pub dead_letter_stream_exists: bool,
}

#[derive(Debug, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

#[derive(Debug, Serialize)]
pub struct ConsumerStatus {
    pub stream: String,
    pub name: String,
    /// Messages not yet delivered.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub awaiting_ack: usize,
    pub redelivered: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_activity: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize)]
pub struct DeadLetterDepth {
    /// The second token of the dead-letter subject: a stream, or a publisher such as
    /// `cdr-bridge`.
    pub stream: String,
    /// The rest of the subject: a consumer, or a publisher's source.
    pub consumer: String,
    pub messages: usize,
}

/// Runs `status`.
pub async fn run(nats: &NatsArgs, args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let client = nats.connect().await?;
    let jetstream = nats.jetstream(client);
    let status = read_status(&jetstream).await?;

    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &status)?;
        writeln!(stdout)?;
    } else {
        print_tables(&mut stdout, &status)?;
    }
    Ok(ExitStatus::Success)
}

/// Reads streams, consumers and dead-letter depth from the server.
pub async fn read_status(jetstream: &jetstream::Context) -> anyhow::Result<Status> {
    let mut infos: Vec<jetstream::stream::Info> = jetstream
        .streams()
        .try_collect()
        .await
        .map_err(|err| anyhow::anyhow!("cannot list streams: {}", error_chain(&err)))?;
    infos.sort_by(|a, b| a.config.name.cmp(&b.config.name));

    let mut status = Status {
        streams: Vec::new(),
        consumers: Vec::new(),
        dead_letters: Vec::new(),
        dead_letter_stream_exists: false,
    };
    for info in infos {
        let name = info.config.name.clone();
        status.streams.push(StreamStatus {
            name: name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
        });

        let stream = jetstream
            .get_stream_no_info(&name)
            .await
            .with_context(|| format!("cannot open stream {name}"))?;
        let mut consumers: Vec<jetstream::consumer::Info> =
            stream.consumers().try_collect().await.map_err(|err| {
                anyhow::anyhow!(
                    "cannot list consumers of stream {name}: {}",
                    error_chain(&err)
                )
            })?;
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        for consumer in consumers {
            let last_activity = [
                consumer.delivered.last_active,
                consumer.ack_floor.last_active,
            ]
            .into_iter()
            .flatten()
            .max();
            status.consumers.push(ConsumerStatus {
                stream: name.clone(),
                name: consumer.name,
                pending: consumer.num_pending,
                awaiting_ack: consumer.num_ack_pending,
                redelivered: consumer.num_redelivered,
                last_activity,
            });
        }

        if name == dlq::DLQ_STREAM {
            status.dead_letter_stream_exists = true;
            status.dead_letters = dead_letter_depth(&stream).await?;
        }
    }
    Ok(status)
}

async fn dead_letter_depth(
    stream: &jetstream::stream::Stream<()>,
) -> anyhow::Result<Vec<DeadLetterDepth>> {
    let info = stream
        .info_with_subjects(format!("{}.>", dlq::DLQ_SUBJECT_PREFIX))
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot read subjects of {}: {}",
                dlq::DLQ_STREAM,
                error_chain(&err)
            )
        })?;
    let counts: Vec<(String, usize)> = info.try_collect().await.map_err(|err| {
        anyhow::anyhow!(
            "cannot read subjects of {}: {}",
            dlq::DLQ_STREAM,
            error_chain(&err)
        )
    })?;

    let mut depth: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (subject, count) in counts {
        let rest = subject
            .strip_prefix(dlq::DLQ_SUBJECT_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&subject);
        let (source_stream, consumer) = rest.split_once('.').unwrap_or((rest, ""));
        *depth
            .entry((source_stream.to_string(), consumer.to_string()))
            .or_default() += count;
    }
    Ok(depth
        .into_iter()
        .map(|((stream, consumer), messages)| DeadLetterDepth {
            stream,
            consumer,
            messages,
        })
        .collect())
}

fn print_tables(out: &mut impl Write, status: &Status) -> std::io::Result<()> {
    let mut streams = Table::new(["STREAM", "MESSAGES", "BYTES", "FIRST SEQ", "LAST SEQ"]);
    for stream in &status.streams {
        streams.row([
            stream.name.clone(),
            stream.messages.to_string(),
            stream.bytes.to_string(),
            stream.first_seq.to_string(),
            stream.last_seq.to_string(),
        ]);
    }
    streams.write(out)?;
    writeln!(out)?;

    let mut consumers = Table::new([
        "CONSUMER",
        "PENDING",
        "AWAITING ACK",
        "REDELIVERED",
        "LAST ACTIVITY",
    ]);
    for consumer in &status.consumers {
        consumers.row([
            format!("{}/{}", consumer.stream, consumer.name),
            consumer.pending.to_string(),
            consumer.awaiting_ack.to_string(),
            consumer.redelivered.to_string(),
            consumer
                .last_activity
                .map(format_time)
                .unwrap_or_else(|| "never".to_string()),
        ]);
    }
    consumers.write(out)?;
    writeln!(out)?;

    if !status.dead_letter_stream_exists {
        writeln!(
            out,
            "dead letters: stream {} does not exist; `akira-workerctl apply FILE` creates it",
            dlq::DLQ_STREAM
        )?;
        return Ok(());
    }
    let mut dead_letters = Table::new(["DEAD LETTERS FROM", "MESSAGES"]);
    for depth in &status.dead_letters {
        dead_letters.row([
            format!("{}/{}", depth.stream, depth.consumer),
            depth.messages.to_string(),
        ]);
    }
    if status.dead_letters.is_empty() {
        writeln!(out, "dead letters: none in {}", dlq::DLQ_STREAM)?;
    } else {
        dead_letters.write(out)?;
    }
    Ok(())
}
