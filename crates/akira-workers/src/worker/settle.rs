//! Running a handler and settling its messages: ack, nak with delay, or dead letter then term.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use time::OffsetDateTime;
use tokio::task::JoinSet;

use super::Runtime;
use crate::delivery::{Delivery, StreamInfo};
use crate::dlq::{DeadLetter, Reason};
use crate::metrics::Outcome;
use crate::outcome::{HandlerError, HandlerResult};
use crate::swallowed_error;

/// Maximum wait for a dead letter's PubAck before the original is nakked instead.
const DLQ_PUBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the JetStream metadata from a message's ack subject.
pub(crate) fn stream_info(message: &jetstream::Message) -> Option<StreamInfo> {
    let info = message.info().ok()?;
    Some(StreamInfo {
        stream: info.stream.to_string(),
        consumer: info.consumer.to_string(),
        stream_sequence: info.stream_sequence,
        consumer_sequence: info.consumer_sequence,
        delivered: info.delivered,
        pending: info.pending,
    })
}

/// Builds the handler's view of a JetStream message and records its delivery metrics.
pub(crate) fn delivery_of(
    runtime: &Runtime,
    message: &jetstream::Message,
) -> (Delivery, StreamInfo) {
    let info = stream_info(message).unwrap_or_else(|| StreamInfo {
        stream: runtime.config.consumer.stream.clone().unwrap_or_default(),
        consumer: runtime.config.durable_name().to_string(),
        stream_sequence: 0,
        consumer_sequence: 0,
        delivered: 1,
        pending: 0,
    });
    runtime
        .metrics
        .record_delivery(info.delivered, info.pending);
    let delivery = Delivery::new(
        message.subject.to_string(),
        message.payload.clone(),
        message.headers.clone(),
        Some(info.clone()),
        &runtime.publisher,
    );
    (delivery, info)
}

/// Creates the span every message is handled in.
pub(crate) fn message_span(runtime: &Runtime, delivery: &Delivery) -> tracing::Span {
    let info = delivery.stream_info();
    tracing::info_span!(
        "message",
        worker = %runtime.config.worker.name,
        stream = info.map(|i| i.stream.as_str()).unwrap_or(""),
        consumer = info.map(|i| i.consumer.as_str()).unwrap_or(""),
        subject = %delivery.subject(),
        stream_sequence = info.map(|i| i.stream_sequence).unwrap_or(0),
        delivery_count = delivery.delivered(),
        correlation_id = %delivery.correlation_id(),
    )
}

/// Reply subjects of messages received and not yet settled, so that the shutdown deadline
/// can nak the messages of handlers it cancels.
#[derive(Clone, Default)]
pub(crate) struct InFlight {
    next_id: Arc<AtomicU64>,
    replies: Arc<Mutex<HashMap<u64, (String, u64)>>>,
}

impl InFlight {
    pub fn insert(&self, reply: Option<&str>, sequence: u64) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(reply) = reply {
            self.replies
                .lock()
                .expect("in-flight lock")
                .insert(id, (reply.to_string(), sequence));
        }
        id
    }

    pub fn remove(&self, id: u64) {
        self.replies.lock().expect("in-flight lock").remove(&id);
    }

    pub fn take_all(&self) -> Vec<(String, u64)> {
        self.replies
            .lock()
            .expect("in-flight lock")
            .drain()
            .map(|(_, v)| v)
            .collect()
    }
}

/// Runs `work` while sending in-progress acks for `replies` every
/// `ack_wait / 3`. A panic becomes a retryable error, and so does running past
/// `worker.handler_timeout`.
pub(crate) async fn run_guarded<T, Fut>(
    runtime: &Runtime,
    replies: Vec<String>,
    work: Fut,
) -> Result<T, HandlerError>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let started = Instant::now();
    // Polled in this task rather than spawned: a panic is caught here, and dropping the
    // future on timeout cancels the handler.
    let task = AssertUnwindSafe(work).catch_unwind();
    tokio::pin!(task);
    let progress_every = (runtime.config.consumer.ack_wait / 3).max(Duration::from_millis(100));
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + progress_every, progress_every);
    let timeout = runtime.config.worker.handler_timeout;
    let deadline = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);

    let outcome = loop {
        tokio::select! {
            joined = &mut task => break match joined {
                Ok(value) => Ok(value),
                Err(payload) => {
                    let text = panic_text(payload);
                    Err(HandlerError::retry(format!("handler panicked: {text}")))
                }
            },
            _ = progress.tick(), if !replies.is_empty() => {
                for reply in &replies {
                    if let Err(err) = runtime.client.publish(reply.clone(), Bytes::from_static(b"+WPI")).await {
                        swallowed_error!(runtime, "sending in-progress ack failed", err);
                    }
                }
            }
            _ = &mut deadline => {
                let limit = crate::duration::format(timeout.unwrap_or_default());
                break Err(HandlerError::retry(format!(
                    "handler timed out after {limit}; raise worker.handler_timeout if such runs are expected"
                )));
            }
        }
    };
    runtime.metrics.observe_handler(started.elapsed());
    outcome
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return (*text).to_string();
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return text.clone();
    }
    "non-text panic payload".to_string()
}

/// Acks, naks with a delay, or dead-letters `message` according to `result`.
pub(crate) async fn settle(
    runtime: &Runtime,
    message: &jetstream::Message,
    info: &StreamInfo,
    result: HandlerResult,
) {
    let policy = &runtime.config.retry;
    match result {
        Ok(()) => {
            match message.ack().await {
                Ok(()) => runtime.metrics.record_outcome(Outcome::ack, 1),
                Err(err) => {
                    swallowed_error!(runtime, "ack failed; the message will be redelivered", err)
                }
            }
            tracing::debug!("acked");
        }
        Err(HandlerError::Retry { error, delay }) if !policy.is_last_delivery(info.delivered) => {
            let delay = delay.unwrap_or_else(|| policy.jittered_delay(info.delivered));
            let text = crate::outcome::error_chain(error.as_ref());
            tracing::warn!(error = %text, delay_ms = delay.as_millis() as u64, max_deliver = policy.max_deliver, "handler failed; retrying");
            nak(runtime, message, delay).await;
            runtime.metrics.record_outcome(Outcome::retry, 1);
        }
        Err(err) => {
            let reason = if err.is_retryable() {
                Reason::MaxDeliver
            } else {
                Reason::Permanent
            };
            dead_letter(runtime, message, info, reason, err.message()).await;
        }
    }
}

/// Naks with a delay, so the server waits before redelivering.
pub(crate) async fn nak(runtime: &Runtime, message: &jetstream::Message, delay: Duration) {
    if let Err(err) = message.ack_with(AckKind::Nak(Some(delay))).await {
        swallowed_error!(
            runtime,
            "nak failed; the message will be redelivered after ack_wait",
            err
        );
    }
}

/// Naks without delay a message that was received but whose handler never ran or was cut off.
pub(crate) async fn nak_now(runtime: &Runtime, reply: String) {
    if let Err(err) = runtime
        .client
        .publish(reply, Bytes::from_static(b"-NAK"))
        .await
    {
        swallowed_error!(
            runtime,
            "nak failed; the message will be redelivered after ack_wait",
            err
        );
    }
}

async fn dead_letter(
    runtime: &Runtime,
    message: &jetstream::Message,
    info: &StreamInfo,
    reason: Reason,
    error: String,
) {
    let letter = DeadLetter {
        stream: info.stream.clone(),
        consumer: info.consumer.clone(),
        subject: message.subject.to_string(),
        sequence: info.stream_sequence,
        deliveries: info.delivered,
        reason,
        error: error.clone(),
        worker: runtime.identity.clone(),
        failed_at: OffsetDateTime::now_utc(),
    };
    let stored = async {
        let ack = letter
            .publish(
                &runtime.jetstream,
                message.headers.as_ref(),
                message.payload.clone(),
            )
            .await
            .map_err(|err| err.to_string())?;
        match tokio::time::timeout(DLQ_PUBACK_TIMEOUT, ack).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no PubAck within {DLQ_PUBACK_TIMEOUT:?}")),
        }
    }
    .await;

    match stored {
        Ok(()) => {
            tracing::error!(error = %error, reason = reason.as_str(), dlq_subject = %letter.subject(), "dead-lettered");
            runtime.metrics.record_dead_letter(reason.as_str());
            runtime.metrics.record_outcome(Outcome::dead_letter, 1);
            terminate(runtime, message, reason).await;
        }
        Err(publish_error) => {
            // Never term a message that is not stored somewhere: nak it so it comes back.
            let delay = runtime.config.retry.jittered_delay(info.delivered);
            runtime.metrics.record_swallowed_error();
            tracing::error!(
                error = %error,
                dlq_error = %publish_error,
                delay_ms = delay.as_millis() as u64,
                "dead-lettering failed; nakked the message instead (after max_deliver the dead-letter sentinel must pick it up)"
            );
            nak(runtime, message, delay).await;
            runtime.metrics.record_outcome(Outcome::retry, 1);
        }
    }
}

/// Sends `+TERM <reason>` so the server stops redelivering and records why.
async fn terminate(runtime: &Runtime, message: &jetstream::Message, reason: Reason) {
    let Some(reply) = message.reply.clone() else {
        return;
    };
    let body = format!("+TERM {}", reason.as_str());
    if let Err(err) = runtime.client.publish(reply, Bytes::from(body)).await {
        swallowed_error!(
            runtime,
            "term failed; the message is dead-lettered but may be redelivered",
            err
        );
    }
}

/// Waits up to `worker.shutdown_timeout` for handlers in flight, then cancels the rest and
/// naks their messages so another instance gets them.
pub(crate) async fn drain_tasks(runtime: &Runtime, tasks: &mut JoinSet<()>, in_flight: &InFlight) {
    let count = tasks.len();
    if count > 0 {
        crate::systemd::notify(&format!("STATUS=draining {count} in flight"));
        tracing::info!(
            in_flight = count,
            "draining: waiting for handlers in flight"
        );
    }
    let budget = runtime.config.worker.shutdown_timeout;
    let finished =
        tokio::time::timeout(budget, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for (reply, sequence) in in_flight.take_all() {
            tracing::warn!(
                stream_sequence = sequence,
                "handler cancelled at the shutdown deadline; nakked its message"
            );
            nak_now(runtime, reply).await;
        }
    }
}
