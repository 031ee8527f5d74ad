//! The dead-letter convention shared by every worker, `akira-workerctl` and the sentinel.
//!
//! A message that fails for good is published to `akira.dlq.<stream>.<consumer>` in the
//! `AKIRA_DLQ` stream with its original payload and headers plus the `Akira-Dlq-*` headers
//! below. Its `Nats-Msg-Id` is `dlq:<stream>:<sequence>`, so the stream's duplicate window
//! stores a message dead-lettered twice (by a worker and by the sentinel, say) only once.

use std::fmt;
use std::time::Duration;

use async_nats::header::{HeaderMap, HeaderValue, IntoHeaderValue};
use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use bytes::Bytes;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Name of the dead-letter stream.
pub const DLQ_STREAM: &str = "AKIRA_DLQ";
/// Subjects of the dead-letter stream.
pub const DLQ_SUBJECTS: &str = "akira.dlq.>";
/// Prefix of every dead-letter subject.
pub const DLQ_SUBJECT_PREFIX: &str = "akira.dlq";
/// Default maximum age of a dead letter.
pub const DLQ_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Window in which the server drops a second publish with the same `Nats-Msg-Id`.
pub const DLQ_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);
/// The longest `Akira-Dlq-Error` value, in bytes.
pub const MAX_ERROR_LEN: usize = 1024;

/// Header names of the convention.
pub mod headers {
    pub const STREAM: &str = "Akira-Dlq-Stream";
    pub const CONSUMER: &str = "Akira-Dlq-Consumer";
    pub const SUBJECT: &str = "Akira-Dlq-Subject";
    pub const SEQUENCE: &str = "Akira-Dlq-Sequence";
    pub const DELIVERIES: &str = "Akira-Dlq-Deliveries";
    pub const REASON: &str = "Akira-Dlq-Reason";
    pub const ERROR: &str = "Akira-Dlq-Error";
    pub const WORKER: &str = "Akira-Dlq-Worker";
    pub const FAILED_AT: &str = "Akira-Dlq-Failed-At";
    /// Prefix shared by every header above; replay strips headers with it.
    pub const PREFIX: &str = "Akira-Dlq-";
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const CORRELATION_ID: &str = "Akira-Correlation-Id";
}

/// Reason a message was dead-lettered, the `Akira-Dlq-Reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A retryable error on the last allowed delivery.
    MaxDeliver,
    /// The handler returned a permanent error.
    Permanent,
    /// The sentinel saw JetStream's MAX_DELIVERIES advisory for a message no worker settled.
    MaxDeliverAdvisory,
    /// A publisher could not turn its input into a message (the CDR bridge's bad lines).
    InvalidRecord,
}

impl Reason {
    /// Returns the value written to `Akira-Dlq-Reason` and used as the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MaxDeliver => "max_deliver",
            Reason::Permanent => "permanent",
            Reason::MaxDeliverAdvisory => "max_deliver_advisory",
            Reason::InvalidRecord => "invalid_record",
        }
    }

    /// Parses a header value written by [`Reason::as_str`].
    pub fn parse(value: &str) -> Option<Reason> {
        match value {
            "max_deliver" => Some(Reason::MaxDeliver),
            "permanent" => Some(Reason::Permanent),
            "max_deliver_advisory" => Some(Reason::MaxDeliverAdvisory),
            "invalid_record" => Some(Reason::InvalidRecord),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns `akira.dlq.<stream>.<consumer>`.
pub fn dlq_subject(stream: &str, consumer: &str) -> String {
    format!("{DLQ_SUBJECT_PREFIX}.{stream}.{consumer}")
}

/// Returns the `Nats-Msg-Id` of a dead letter: `dlq:<stream>:<sequence>`.
pub fn dlq_msg_id(stream: &str, sequence: u64) -> String {
    format!("dlq:{stream}:{sequence}")
}

/// Returns the stream configuration of `AKIRA_DLQ`: limits retention, file storage, 30 days.
pub fn dlq_stream_config() -> stream::Config {
    stream::Config {
        name: DLQ_STREAM.to_string(),
        subjects: vec![DLQ_SUBJECTS.to_string()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: DLQ_MAX_AGE,
        duplicate_window: DLQ_DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Everything the convention records about a message that failed for good.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Stream the message came from.
    pub stream: String,
    /// Durable consumer that gave up on it.
    pub consumer: String,
    /// Subject the message was originally published to.
    pub subject: String,
    /// Sequence of the message in its stream.
    pub sequence: u64,
    /// How many times the message was delivered.
    pub deliveries: i64,
    pub reason: Reason,
    /// The last error text; cut to [`MAX_ERROR_LEN`] bytes on a character boundary.
    pub error: String,
    /// `<worker name>@<host>`.
    pub worker: String,
    pub failed_at: OffsetDateTime,
}

impl DeadLetter {
    /// Returns the subject the dead letter is published to.
    pub fn subject(&self) -> String {
        dlq_subject(&self.stream, &self.consumer)
    }

    /// Returns the original headers with the convention's headers added.
    ///
    /// A previous `Akira-Dlq-*` header (from a replayed message that failed again) and the
    /// original `Nats-Msg-Id` are replaced, so the new values are the only ones.
    pub fn headers(&self, original: Option<&HeaderMap>) -> HeaderMap {
        let mut out = HeaderMap::new();
        if let Some(original) = original {
            for (name, values) in original.iter() {
                let name_str: &str = name.as_ref();
                if name_str.starts_with(headers::PREFIX)
                    || name_str.eq_ignore_ascii_case(headers::MSG_ID)
                {
                    continue;
                }
                for value in values {
                    out.append(name.clone(), value.clone());
                }
            }
        }
        let failed_at = self
            .failed_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.failed_at.unix_timestamp().to_string());
        out.insert(headers::STREAM, header_value(&self.stream));
        out.insert(headers::CONSUMER, header_value(&self.consumer));
        out.insert(headers::SUBJECT, header_value(&self.subject));
        out.insert(headers::SEQUENCE, header_value(&self.sequence.to_string()));
        out.insert(
            headers::DELIVERIES,
            header_value(&self.deliveries.to_string()),
        );
        out.insert(headers::REASON, header_value(self.reason.as_str()));
        out.insert(headers::ERROR, header_value(&truncate_error(&self.error)));
        out.insert(headers::WORKER, header_value(&self.worker));
        out.insert(headers::FAILED_AT, header_value(&failed_at));
        out.insert(
            headers::MSG_ID,
            header_value(&dlq_msg_id(&self.stream, self.sequence)),
        );
        out
    }

    /// Publishes the dead letter and returns the future of its PubAck.
    ///
    /// The caller must await the PubAck before it terminates or acknowledges the original:
    /// until then the dead letter is not stored.
    pub async fn publish(
        &self,
        jetstream: &jetstream::Context,
        original_headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<PublishAckFuture, jetstream::context::PublishError> {
        jetstream
            .publish_with_headers(self.subject(), self.headers(original_headers), payload)
            .await
    }
}

/// Cuts an error text to [`MAX_ERROR_LEN`] bytes on a character boundary and puts it on one
/// line, since NATS header values cannot hold line breaks.
pub fn truncate_error(error: &str) -> String {
    let one_line: String = error
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    if one_line.len() <= MAX_ERROR_LEN {
        return one_line;
    }
    let mut end = MAX_ERROR_LEN;
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    one_line[..end].to_string()
}

/// Builds a header value, replacing line breaks that NATS headers cannot carry.
pub fn header_value(value: &str) -> HeaderValue {
    let cleaned: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    cleaned.as_str().into_header_value()
}

/// Returns `<name>@<host>` for the `Akira-Dlq-Worker` header.
pub fn worker_identity(name: &str) -> String {
    format!("{name}@{}", crate::host_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_cut_on_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = truncate_error(&long);
        assert!(cut.len() <= MAX_ERROR_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn error_line_breaks_become_spaces() {
        assert_eq!(truncate_error("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn headers_replace_previous_dead_letter_headers() {
        let mut original = HeaderMap::new();
        original.insert("Akira-Dlq-Reason", "permanent");
        original.insert("Nats-Msg-Id", "replay:7");
        original.insert("X-Trace", "abc");
        let letter = DeadLetter {
            stream: "CDR".into(),
            consumer: "cdr-pipeline".into(),
            subject: "akira.cdr.edge1".into(),
            sequence: 42,
            deliveries: 3,
            reason: Reason::MaxDeliver,
            error: "boom".into(),
            worker: "cdr-pipeline@host".into(),
            failed_at: OffsetDateTime::UNIX_EPOCH,
        };
        let out = letter.headers(Some(&original));
        assert_eq!(out.get_all(headers::REASON).count(), 1);
        assert_eq!(out.get(headers::REASON).unwrap().as_str(), "max_deliver");
        assert_eq!(out.get(headers::MSG_ID).unwrap().as_str(), "dlq:CDR:42");
        assert_eq!(out.get("X-Trace").unwrap().as_str(), "abc");
        assert_eq!(
            out.get(headers::FAILED_AT).unwrap().as_str(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(letter.subject(), "akira.dlq.CDR.cdr-pipeline");
    }
}
