//! `akira-workerctl dlq replay`: publishes dead letters back to their original subject.
//!
//! Each message is republished with its original payload and headers, minus the
//! `Akira-Dlq-*` headers, and with `Nats-Msg-Id: replay:<dlq sequence>`, so a replay that is
//! repeated within the target stream's duplicate window is stored once. The dead letter is
//! deleted only after the PubAck arrives.

use std::io::Write;

use akira_workers::dlq::{self, headers};
use async_nats::header::HeaderMap;
use async_nats::jetstream;

use crate::connect::{error_chain, NatsArgs};
use crate::dlq::{open_dlq, select, DeadLetterRecord, FilterArgs, Selection};
use crate::output::count;
use crate::ExitStatus;

/// Arguments of `dlq replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Sequences of the dead letters in AKIRA_DLQ.
    #[arg(value_name = "SEQ", conflicts_with = "all")]
    pub sequences: Vec<u64>,

    /// Replay every dead letter that the filters select.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Publish to this subject instead of the original one (Akira-Dlq-Subject).
    #[arg(long, value_name = "SUBJECT")]
    pub to: Option<String>,

    /// Print what would be replayed without publishing or deleting anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Returns the headers of a replayed message: the original ones without the convention's and
/// with the replay's `Nats-Msg-Id`.
pub fn replay_headers(original: &HeaderMap, dlq_sequence: u64) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in original.iter() {
        let name_text: &str = name.as_ref();
        if name_text.starts_with(headers::PREFIX) || name_text.eq_ignore_ascii_case(headers::MSG_ID)
        {
            continue;
        }
        for value in values {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(headers::MSG_ID, format!("replay:{dlq_sequence}").as_str());
    out
}

/// Runs `dlq replay`.
pub async fn run(nats: &NatsArgs, args: &ReplayArgs) -> anyhow::Result<ExitStatus> {
    if args.sequences.is_empty() && !args.all {
        anyhow::bail!("name the dead letters to replay: sequences, or --all with optional filters");
    }
    if !args.all && args.filter.is_set() {
        anyhow::bail!(
            "filters select dead letters only together with --all; add --all or remove the filters"
        );
    }
    let client = nats.connect().await?;
    let jetstream = nats.jetstream(client);
    let mut stream = open_dlq(&jetstream).await?;
    let selection = Selection {
        filter: args.filter.clone(),
        before: None,
    };
    let records = select(&mut stream, &args.sequences, &selection).await?;

    let mut stdout = std::io::stdout().lock();
    if records.is_empty() {
        writeln!(stdout, "no dead letters match; nothing to replay")?;
        return Ok(ExitStatus::Success);
    }

    let mut replayed = Vec::new();
    let mut failed = Vec::new();
    for record in &records {
        let Some(subject) = args
            .to
            .clone()
            .or_else(|| record.header(headers::SUBJECT).map(str::to_string))
        else {
            writeln!(
                stdout,
                "not replayed {}: it has no {} header; pass --to SUBJECT",
                record.dlq_sequence,
                headers::SUBJECT
            )?;
            failed.push(record.dlq_sequence);
            continue;
        };
        if args.dry_run {
            writeln!(stdout, "would replay {} to {subject}", record.dlq_sequence)?;
            continue;
        }
        match replay_one(&jetstream, &stream, record, &subject).await {
            Ok(line) => {
                writeln!(stdout, "{line}")?;
                replayed.push(record.dlq_sequence);
            }
            Err(line) => {
                writeln!(stdout, "{line}")?;
                failed.push(record.dlq_sequence);
            }
        }
    }

    if args.dry_run {
        writeln!(
            stdout,
            "dry run: would replay {}, nothing was changed",
            count(records.len() - failed.len(), "dead letter")
        )?;
    } else {
        writeln!(
            stdout,
            "replayed {} of {}",
            replayed.len(),
            count(records.len(), "dead letter")
        )?;
    }
    if failed.is_empty() {
        return Ok(ExitStatus::Success);
    }
    let failed: Vec<String> = failed.iter().map(u64::to_string).collect();
    stdout.flush()?;
    anyhow::bail!(
        "not replayed, still in {}: {} ({})",
        dlq::DLQ_STREAM,
        count(failed.len(), "dead letter"),
        failed.join(", ")
    )
}

/// Republishes one dead letter, awaits its PubAck and deletes it; returns the line to print.
async fn replay_one(
    jetstream: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    record: &DeadLetterRecord,
    subject: &str,
) -> Result<String, String> {
    let sequence = record.dlq_sequence;
    let headers = replay_headers(&record.headers, sequence);
    let ack = jetstream
        .publish_with_headers(subject.to_string(), headers, record.payload.clone())
        .await
        .map_err(|err| {
            format!(
                "not replayed {sequence}: publish to {subject} failed: {}",
                error_chain(&err)
            )
        })?
        .await
        .map_err(|err| {
            format!(
                "not replayed {sequence}: no PubAck from {subject}: {}",
                error_chain(&err)
            )
        })?;

    let stored = if ack.duplicate {
        format!(
            "already stored by an earlier replay as {} sequence {}",
            ack.stream, ack.sequence
        )
    } else {
        format!("stream {} sequence {}", ack.stream, ack.sequence)
    };
    match stream.delete_message(sequence).await {
        Ok(_) => Ok(format!("replayed {sequence} to {subject} ({stored})")),
        Err(err) => Err(format!(
            "replayed {sequence} to {subject} ({stored}) but could not delete it from {}: {}; delete it with `akira-workerctl dlq purge {sequence} --yes`",
            dlq::DLQ_STREAM,
            error_chain(&err)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_headers_drop_convention_and_set_msg_id() {
        let mut original = HeaderMap::new();
        original.insert("Akira-Dlq-Reason", "permanent");
        original.insert("Akira-Dlq-Error", "boom");
        original.insert("Nats-Msg-Id", "dlq:CDR:4");
        original.insert("Akira-Correlation-Id", "c-1");
        original.insert("X-Source", "edge1");
        let out = replay_headers(&original, 17);
        assert!(out.get("Akira-Dlq-Reason").is_none());
        assert!(out.get("Akira-Dlq-Error").is_none());
        assert_eq!(out.get("Nats-Msg-Id").unwrap().as_str(), "replay:17");
        assert_eq!(out.get("Akira-Correlation-Id").unwrap().as_str(), "c-1");
        assert_eq!(out.get("X-Source").unwrap().as_str(), "edge1");
    }
}
