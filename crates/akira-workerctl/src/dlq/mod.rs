//! `akira-workerctl dlq`: reads `AKIRA_DLQ` directly through the stream's get-message API and
//! deletes with its delete-message API, so no consumer is created on the server.

pub mod list;
pub mod purge;
pub mod replay;
pub mod show;

use std::time::Duration;

use akira_workers::dlq::{self, headers, Reason};
use anyhow::Context as _;
use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use bytes::Bytes;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::connect::error_chain;

/// One message of `AKIRA_DLQ` with its convention headers read out.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    /// Sequence in `AKIRA_DLQ`.
    pub dlq_sequence: u64,
    /// When `AKIRA_DLQ` stored the message.
    pub time: OffsetDateTime,
    pub dlq_subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl DeadLetterRecord {
    fn from_message(message: jetstream::message::StreamMessage) -> DeadLetterRecord {
        DeadLetterRecord {
            dlq_sequence: message.sequence,
            time: message.time,
            dlq_subject: message.subject.to_string(),
            headers: message.headers,
            payload: message.payload,
        }
    }

    /// Returns the last value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_last(name).map(|value| value.as_str())
    }

    /// Returns the source stream: `Akira-Dlq-Stream`, else the subject's second token.
    pub fn source_stream(&self) -> String {
        self.header(headers::STREAM)
            .map(str::to_string)
            .unwrap_or_else(|| self.subject_tokens().0)
    }

    /// Returns the source consumer: `Akira-Dlq-Consumer`, else the rest of the subject.
    pub fn source_consumer(&self) -> String {
        self.header(headers::CONSUMER)
            .map(str::to_string)
            .unwrap_or_else(|| self.subject_tokens().1)
    }

    fn subject_tokens(&self) -> (String, String) {
        let rest = self
            .dlq_subject
            .strip_prefix(dlq::DLQ_SUBJECT_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&self.dlq_subject);
        let (stream, consumer) = rest.split_once('.').unwrap_or((rest, ""));
        (stream.to_string(), consumer.to_string())
    }

    /// Returns the first line of `Akira-Dlq-Error`.
    pub fn error_first_line(&self) -> Option<&str> {
        self.header(headers::ERROR)
            .map(|error| error.lines().next().unwrap_or(""))
    }

    /// Returns the summary that `dlq list --json` prints.
    pub fn summary(&self) -> DeadLetterSummary {
        DeadLetterSummary {
            dlq_sequence: self.dlq_sequence,
            time: self.time,
            stream: self.source_stream(),
            consumer: self.source_consumer(),
            subject: self.header(headers::SUBJECT).map(str::to_string),
            sequence: self
                .header(headers::SEQUENCE)
                .and_then(|value| value.parse().ok()),
            deliveries: self
                .header(headers::DELIVERIES)
                .and_then(|value| value.parse().ok()),
            reason: self.header(headers::REASON).map(str::to_string),
            error: self.error_first_line().map(str::to_string),
            worker: self.header(headers::WORKER).map(str::to_string),
            failed_at: self.header(headers::FAILED_AT).map(str::to_string),
        }
    }
}

/// The convention fields of one dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterSummary {
    pub dlq_sequence: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub stream: String,
    pub consumer: String,
    /// Subject the message was originally published to.
    pub subject: Option<String>,
    /// Sequence of the message in its source stream.
    pub sequence: Option<u64>,
    pub deliveries: Option<i64>,
    pub reason: Option<String>,
    /// First line of `Akira-Dlq-Error`.
    pub error: Option<String>,
    pub worker: Option<String>,
    pub failed_at: Option<String>,
}

/// Filters that select dead letters.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only dead letters from this source stream (or publisher, such as cdr-bridge).
    #[arg(long, value_name = "STREAM")]
    pub stream: Option<String>,

    /// Only dead letters from this consumer (or publisher source).
    #[arg(long, value_name = "CONSUMER")]
    pub consumer: Option<String>,

    /// Only dead letters with this reason: max_deliver, permanent, max_deliver_advisory or invalid_record.
    #[arg(long, value_name = "REASON", value_parser = parse_reason)]
    pub reason: Option<Reason>,

    /// Only dead letters stored at or after this time: an RFC 3339 time or an age such as 1h.
    #[arg(long, value_name = "TIME", value_parser = parse_time_or_age)]
    pub since: Option<OffsetDateTime>,
}

impl FilterArgs {
    /// Returns true when any filter is set.
    pub fn is_set(&self) -> bool {
        self.stream.is_some()
            || self.consumer.is_some()
            || self.reason.is_some()
            || self.since.is_some()
    }
}

/// Every criterion of a scan of `AKIRA_DLQ`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub filter: FilterArgs,
    /// Only dead letters stored before this time (`--older-than`).
    pub before: Option<OffsetDateTime>,
}

impl Selection {
    /// Returns the subject filter the server applies: `akira.dlq.<stream|*>.<consumer|*>`, or
    /// `akira.dlq.>` when neither is given.
    pub fn subject_filter(&self) -> String {
        match (&self.filter.stream, &self.filter.consumer) {
            (None, None) => dlq::DLQ_SUBJECTS.to_string(),
            (Some(stream), None) => format!("{}.{stream}.>", dlq::DLQ_SUBJECT_PREFIX),
            (None, Some(consumer)) => format!("{}.*.{consumer}", dlq::DLQ_SUBJECT_PREFIX),
            (Some(stream), Some(consumer)) => dlq::dlq_subject(stream, consumer),
        }
    }

    /// Returns true when `record` passes the filters the subject cannot express.
    pub fn matches(&self, record: &DeadLetterRecord) -> bool {
        if let Some(reason) = self.filter.reason {
            if record.header(headers::REASON) != Some(reason.as_str()) {
                return false;
            }
        }
        if let Some(since) = self.filter.since {
            if record.time < since {
                return false;
            }
        }
        if let Some(before) = self.before {
            if record.time >= before {
                return false;
            }
        }
        true
    }
}

fn parse_reason(text: &str) -> Result<Reason, String> {
    Reason::parse(text).ok_or_else(|| {
        format!("unknown reason {text:?}; use max_deliver, permanent, max_deliver_advisory or invalid_record")
    })
}

/// Parses an RFC 3339 time, or an age such as `1h` counted back from now.
pub fn parse_time_or_age(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time);
    }
    let age = akira_workers::duration::parse(text)
        .map_err(|_| format!("invalid time {text:?}: write an RFC 3339 time such as 2030-01-31T12:00:00Z or an age such as 1h"))?;
    Ok(time_ago(age))
}

/// Returns the time `age` before now.
pub fn time_ago(age: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() - age
}

/// Opens `AKIRA_DLQ`; the error explains how to create it.
pub async fn open_dlq(jetstream: &jetstream::Context) -> anyhow::Result<jetstream::stream::Stream> {
    jetstream.get_stream(dlq::DLQ_STREAM).await.map_err(|err| {
        anyhow::anyhow!(
            "cannot open stream {}: {}; `akira-workerctl apply FILE` creates it",
            dlq::DLQ_STREAM,
            error_chain(&err)
        )
    })
}

/// Reads every dead letter that `selection` selects, oldest first.
///
/// NOTE: one get-message request per dead letter; fine for thousands of messages, slow for
/// millions.
pub async fn scan(
    stream: &mut jetstream::stream::Stream,
    selection: &Selection,
) -> anyhow::Result<Vec<DeadLetterRecord>> {
    let info = stream.info().await.map_err(|err| {
        anyhow::anyhow!(
            "cannot read stream {}: {}",
            dlq::DLQ_STREAM,
            error_chain(&err)
        )
    })?;
    let last = info.state.last_sequence;
    let mut next = info.state.first_sequence.max(1);
    let subject = selection.subject_filter();

    let mut records = Vec::new();
    while next <= last {
        let result = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(subject.clone())
            .send()
            .await;
        let message = match result {
            Ok(message) => message,
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => break,
            Err(err) => {
                return Err(anyhow::anyhow!(
                    "cannot read {} from sequence {next}: {}",
                    dlq::DLQ_STREAM,
                    error_chain(&err)
                ))
            }
        };
        if message.sequence > last {
            break;
        }
        next = message.sequence + 1;
        let record = DeadLetterRecord::from_message(message);
        if selection.matches(&record) {
            records.push(record);
        }
    }
    Ok(records)
}

/// Reads the dead letter with sequence `sequence`.
pub async fn get(
    stream: &jetstream::stream::Stream,
    sequence: u64,
) -> anyhow::Result<DeadLetterRecord> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(DeadLetterRecord::from_message(message)),
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Err(anyhow::anyhow!(
            "dead letter {sequence} not found in {}; `akira-workerctl dlq list` shows the sequences",
            dlq::DLQ_STREAM
        )),
        Err(err) => Err(err).with_context(|| format!("cannot read dead letter {sequence} from {}", dlq::DLQ_STREAM)),
    }
}

/// Reads the dead letters named by `sequences`, or those `selection` selects when there are none.
pub async fn select(
    stream: &mut jetstream::stream::Stream,
    sequences: &[u64],
    selection: &Selection,
) -> anyhow::Result<Vec<DeadLetterRecord>> {
    if sequences.is_empty() {
        return scan(stream, selection).await;
    }
    let mut records = Vec::new();
    for sequence in sequences {
        records.push(get(stream, *sequence).await?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_filter_uses_wildcards() {
        let mut selection = Selection::default();
        assert_eq!(selection.subject_filter(), "akira.dlq.>");
        selection.filter.stream = Some("CDR".into());
        assert_eq!(selection.subject_filter(), "akira.dlq.CDR.>");
        selection.filter.consumer = Some("cdr-pipeline".into());
        assert_eq!(selection.subject_filter(), "akira.dlq.CDR.cdr-pipeline");
        selection.filter.stream = None;
        assert_eq!(selection.subject_filter(), "akira.dlq.*.cdr-pipeline");
    }

    #[test]
    fn age_is_counted_back_from_now() {
        let time = parse_time_or_age("1h").unwrap();
        let age = OffsetDateTime::now_utc() - time;
        assert!(
            age >= time::Duration::minutes(59) && age <= time::Duration::minutes(61),
            "{age}"
        );
        assert!(parse_time_or_age("2030-01-31T12:00:00Z").is_ok());
        let err = parse_time_or_age("yesterday").unwrap_err();
        assert!(err.contains("\"yesterday\""), "{err}");
    }
}
