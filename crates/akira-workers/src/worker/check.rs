//! Startup checks: the stream, the durable consumer and `AKIRA_DLQ` exist and the consumer
//! matches the worker's settings.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, ErrorCode};

use super::{Runtime, WorkerError};
use crate::dlq;
use crate::duration;

/// Kind of consumer a worker reads: push or pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerKind {
    Push,
    Pull,
}

/// The fields in which the server's consumer differs from the worker's settings.
#[derive(Debug, Clone)]
pub struct ConsumerMismatch {
    pub stream: String,
    pub consumer: String,
    /// One entry per field: name, current value on the server, expected value.
    pub fields: Vec<(String, String, String)>,
}

impl fmt::Display for ConsumerMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "consumer `{}` on stream `{}` does not match the worker's settings:",
            self.consumer, self.stream
        )?;
        for (field, current, expected) in &self.fields {
            writeln!(f, "  {field}: current {current}, expected {expected}")?;
        }
        write!(
            f,
            "change the worker's [consumer] and [retry] settings, or update the consumer's declaration and run `akira-workerctl apply`"
        )
    }
}

/// The consumer settings the worker expects, derived from its configuration.
pub(crate) struct Expected {
    pub stream: String,
    pub durable: String,
    pub kind: ConsumerKind,
    pub filter_subject: Option<String>,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    pub backoff: Vec<Duration>,
    pub max_ack_pending: i64,
    pub deliver_subject: Option<String>,
    pub deliver_group: Option<String>,
}

impl Expected {
    pub fn from_runtime(runtime: &Runtime, kind: ConsumerKind) -> Result<Expected, WorkerError> {
        let config = &runtime.config;
        let consumer = &config.consumer;
        let stream = config.stream_name()?.to_string();
        let durable = config.durable_name().to_string();
        let (deliver_subject, deliver_group) = match kind {
            ConsumerKind::Push => {
                let subject = consumer
                    .deliver_subject
                    .clone()
                    .unwrap_or_else(|| format!("akira.deliver.{durable}"));
                let group = consumer
                    .deliver_group
                    .clone()
                    .or_else(|| Some(durable.clone()));
                (Some(subject), group)
            }
            ConsumerKind::Pull => (None, None),
        };
        Ok(Expected {
            stream,
            durable,
            kind,
            filter_subject: consumer.filter_subject.clone(),
            ack_wait: consumer.ack_wait,
            max_deliver: config.retry.max_deliver,
            backoff: config.retry.server_backoff(consumer.ack_wait),
            max_ack_pending: consumer.max_ack_pending,
            deliver_subject,
            deliver_group,
        })
    }

    fn mismatches(&self, current: &consumer::Config) -> Vec<(String, String, String)> {
        let mut fields = Vec::new();
        let mut compare = |name: &str, current: String, expected: String| {
            if current != expected {
                fields.push((name.to_string(), current, expected));
            }
        };
        let is_push = current
            .deliver_subject
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        let kind = |push: bool| if push { "push" } else { "pull" }.to_string();
        compare("kind", kind(is_push), kind(self.kind == ConsumerKind::Push));
        compare(
            "ack_policy",
            format!("{:?}", current.ack_policy).to_lowercase(),
            "explicit".to_string(),
        );
        compare(
            "max_deliver",
            current.max_deliver.to_string(),
            self.max_deliver.to_string(),
        );
        compare(
            "ack_wait",
            duration::format(current.ack_wait),
            duration::format(self.ack_wait),
        );
        compare(
            "backoff",
            format_list(&current.backoff),
            format_list(&self.backoff),
        );
        if let Some(filter) = &self.filter_subject {
            compare(
                "filter_subject",
                quoted(&current.filter_subject),
                quoted(filter),
            );
        }
        if self.kind == ConsumerKind::Push && is_push {
            compare(
                "deliver_subject",
                quoted(current.deliver_subject.as_deref().unwrap_or("")),
                quoted(self.deliver_subject.as_deref().unwrap_or("")),
            );
            compare(
                "deliver_group",
                quoted(current.deliver_group.as_deref().unwrap_or("")),
                quoted(self.deliver_group.as_deref().unwrap_or("")),
            );
        }
        fields
    }

    fn pull_config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            backoff: self.backoff.clone(),
            filter_subject: self.filter_subject.clone().unwrap_or_default(),
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }

    fn push_config(&self, idle_heartbeat: Duration) -> consumer::push::Config {
        consumer::push::Config {
            durable_name: Some(self.durable.clone()),
            deliver_subject: self.deliver_subject.clone().unwrap_or_default(),
            deliver_group: self.deliver_group.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            backoff: self.backoff.clone(),
            filter_subject: self.filter_subject.clone().unwrap_or_default(),
            max_ack_pending: self.max_ack_pending,
            flow_control: true,
            idle_heartbeat,
            ..Default::default()
        }
    }
}

fn format_list(durations: &[Duration]) -> String {
    let items: Vec<String> = durations.iter().map(|d| duration::format(*d)).collect();
    format!("[{}]", items.join(", "))
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// Checks (or, with `worker.ensure`, creates) the stream, `AKIRA_DLQ` and the consumer.
///
/// Returns the settings the worker expects; the consumer on the server matches them.
pub(crate) async fn verify(runtime: &Runtime, kind: ConsumerKind) -> Result<Expected, WorkerError> {
    let expected = Expected::from_runtime(runtime, kind)?;
    let ensure = runtime.config.worker.ensure;
    let jetstream = &runtime.jetstream;

    ensure_dlq(jetstream, ensure).await?;
    let stream = get_or_create_stream(runtime, &expected, ensure).await?;

    let info = match stream.consumer_info(&expected.durable).await {
        Ok(info) => Some(info),
        Err(err) if is_consumer_missing(&err) => None,
        Err(err) => {
            return Err(WorkerError::JetStream {
                action: format!("reading consumer `{}`", expected.durable),
                message: err.to_string(),
            })
        }
    };
    match info {
        Some(info) => {
            let fields = expected.mismatches(&info.config);
            if !fields.is_empty() {
                return Err(WorkerError::Mismatch(ConsumerMismatch {
                    stream: expected.stream.clone(),
                    consumer: expected.durable.clone(),
                    fields,
                }));
            }
        }
        None if ensure => {
            let result = match kind {
                ConsumerKind::Pull => stream
                    .create_consumer(expected.pull_config())
                    .await
                    .map(|_| ()),
                ConsumerKind::Push => stream
                    .create_consumer(expected.push_config(runtime.config.consumer.idle_heartbeat))
                    .await
                    .map(|_| ()),
            };
            result.map_err(|err| WorkerError::JetStream {
                action: format!("creating consumer `{}`", expected.durable),
                message: err.to_string(),
            })?;
            tracing::info!(stream = %expected.stream, consumer = %expected.durable, "created consumer (worker.ensure)");
        }
        None => {
            return Err(WorkerError::ConsumerNotFound {
                stream: expected.stream.clone(),
                consumer: expected.durable.clone(),
            })
        }
    }
    tracing::info!(stream = %expected.stream, consumer = %expected.durable, "consumer verified");
    Ok(expected)
}

fn is_consumer_missing(err: &async_nats::jetstream::context::ConsumerInfoError) -> bool {
    match err.kind() {
        ConsumerInfoErrorKind::NotFound => true,
        ConsumerInfoErrorKind::JetStream(inner) => {
            inner.error_code() == ErrorCode::CONSUMER_NOT_FOUND
        }
        _ => false,
    }
}

fn is_stream_missing(err: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(err.kind(), GetStreamErrorKind::JetStream(inner) if inner.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

async fn ensure_dlq(jetstream: &jetstream::Context, ensure: bool) -> Result<(), WorkerError> {
    match jetstream.get_stream(dlq::DLQ_STREAM).await {
        Ok(_) => Ok(()),
        Err(err) if is_stream_missing(&err) && ensure => {
            jetstream
                .create_stream(dlq::dlq_stream_config())
                .await
                .map_err(|err| WorkerError::JetStream {
                    action: format!("creating stream `{}`", dlq::DLQ_STREAM),
                    message: err.to_string(),
                })?;
            tracing::info!(
                stream = dlq::DLQ_STREAM,
                "created dead-letter stream (worker.ensure)"
            );
            Ok(())
        }
        Err(err) if is_stream_missing(&err) => Err(WorkerError::StreamNotFound {
            stream: dlq::DLQ_STREAM.to_string(),
        }),
        Err(err) => Err(WorkerError::JetStream {
            action: format!("reading stream `{}`", dlq::DLQ_STREAM),
            message: err.to_string(),
        }),
    }
}

async fn get_or_create_stream(
    runtime: &Runtime,
    expected: &Expected,
    ensure: bool,
) -> Result<Stream, WorkerError> {
    let jetstream = &runtime.jetstream;
    match jetstream.get_stream(&expected.stream).await {
        Ok(stream) => Ok(stream),
        Err(err) if is_stream_missing(&err) && ensure => {
            let subject = expected.filter_subject.clone().ok_or_else(|| {
                runtime.config.missing(
                    "consumer.filter_subject",
                    "a subject, so worker.ensure can create the stream with it",
                )
            })?;
            let stream = jetstream
                .create_stream(async_nats::jetstream::stream::Config {
                    name: expected.stream.clone(),
                    subjects: vec![subject],
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|err| WorkerError::JetStream {
                    action: format!("creating stream `{}`", expected.stream),
                    message: err.to_string(),
                })?;
            tracing::info!(stream = %expected.stream, "created stream (worker.ensure)");
            Ok(stream)
        }
        Err(err) if is_stream_missing(&err) => Err(WorkerError::StreamNotFound {
            stream: expected.stream.clone(),
        }),
        Err(err) => Err(WorkerError::JetStream {
            action: format!("reading stream `{}`", expected.stream),
            message: err.to_string(),
        }),
    }
}
