//! The message type handlers receive, and publishing with correlation ids.

use async_nats::header::{HeaderMap, IntoHeaderValue};
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::dlq::headers::{CORRELATION_ID, MSG_ID};
use crate::outcome::HandlerError;

/// JetStream metadata of a delivery, from the ack subject (no extra round trip).
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub stream: String,
    pub consumer: String,
    pub stream_sequence: u64,
    pub consumer_sequence: u64,
    /// How many times this message has been delivered, this delivery included.
    pub delivered: i64,
    /// Messages left in the consumer after this one.
    pub pending: u64,
}

/// A message handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    subject: String,
    payload: Bytes,
    headers: Option<HeaderMap>,
    info: Option<StreamInfo>,
    correlation_id: String,
    publisher: Publisher,
}

impl Delivery {
    pub(crate) fn new(
        subject: String,
        payload: Bytes,
        headers: Option<HeaderMap>,
        info: Option<StreamInfo>,
        publisher_base: &Publisher,
    ) -> Delivery {
        let correlation_id = correlation_id_of(headers.as_ref());
        let publisher = publisher_base.with_correlation_id(correlation_id.clone());
        Delivery {
            subject,
            payload,
            headers,
            info,
            correlation_id,
            publisher,
        }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    pub fn headers(&self) -> Option<&HeaderMap> {
        self.headers.as_ref()
    }

    /// Returns the first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name).map(|value| value.as_str())
    }

    /// JetStream metadata; `None` for core NATS messages.
    pub fn stream_info(&self) -> Option<&StreamInfo> {
        self.info.as_ref()
    }

    pub fn stream_sequence(&self) -> Option<u64> {
        self.info.as_ref().map(|info| info.stream_sequence)
    }

    /// Delivery count, this delivery included; 1 for core NATS messages.
    pub fn delivered(&self) -> i64 {
        self.info.as_ref().map_or(1, |info| info.delivered)
    }

    /// From `Akira-Correlation-Id`, else `Nats-Msg-Id`, else a new UUID.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Parses the payload as JSON; invalid JSON is a permanent error naming the problem.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.payload).map_err(|err| {
            HandlerError::permanent(format!("payload is not the expected JSON: {err}"))
        })
    }

    /// Returns a publisher that carries this message's correlation id onto what it publishes.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}

pub(crate) fn correlation_id_of(headers: Option<&HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(CORRELATION_ID).or_else(|| h.get(MSG_ID)))
        .map(|value| value.as_str().to_string())
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Errors from [`Publisher`].
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publishing to {subject} failed: {source}")]
    Core {
        subject: String,
        source: async_nats::PublishError,
    },
    #[error("publishing to {subject} failed: {source}")]
    JetStream {
        subject: String,
        source: jetstream::context::PublishError,
    },
    #[error("no PubAck for {subject}: {source}; check that a stream captures the subject")]
    PubAck {
        subject: String,
        source: jetstream::context::PublishError,
    },
}

/// Publishes core NATS and JetStream messages with an `Akira-Correlation-Id` header.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    correlation_id: Option<String>,
}

impl Publisher {
    pub(crate) fn new(client: async_nats::Client, jetstream: jetstream::Context) -> Publisher {
        Publisher {
            client,
            jetstream,
            correlation_id: None,
        }
    }

    /// Returns a copy that stamps `correlation_id` on every message.
    pub fn with_correlation_id(&self, correlation_id: String) -> Publisher {
        Publisher {
            correlation_id: Some(correlation_id),
            ..self.clone()
        }
    }

    /// Returns the correlation id stamped on messages. A publisher without one stamps a new id
    /// on each message.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    fn stamp(&self, headers: Option<HeaderMap>) -> HeaderMap {
        let mut headers = headers.unwrap_or_default();
        if headers.get(CORRELATION_ID).is_none() {
            let id = self
                .correlation_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            headers.insert(CORRELATION_ID, id.as_str().into_header_value());
        }
        headers
    }

    /// Publishes on core NATS: no acknowledgement, and lost when no subscriber listens.
    pub async fn publish(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        self.publish_with_headers(subject, payload, None).await
    }

    /// Publishes on core NATS with extra headers.
    pub async fn publish_with_headers(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<(), PublishError> {
        let subject = subject.into();
        self.client
            .publish_with_headers(subject.clone(), self.stamp(headers), payload)
            .await
            .map_err(|source| PublishError::Core { subject, source })
    }

    /// Publishes to JetStream and waits for the PubAck: the message is stored when this returns.
    pub async fn publish_durable(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<PublishAck, PublishError> {
        let subject = subject.into();
        let future = self
            .jetstream
            .publish_with_headers(subject.clone(), self.stamp(headers), payload)
            .await
            .map_err(|source| PublishError::JetStream {
                subject: subject.clone(),
                source,
            })?;
        future
            .await
            .map_err(|source| PublishError::PubAck { subject, source })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }
}
