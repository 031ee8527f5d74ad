//! The JetStream push worker: a durable push consumer read through a queue subscription.
//!
//! The subscription is handled here rather than through async-nats' push `Messages`
//! stream so that a graceful stop can drain it and nak what arrived but never started.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::StatusCode;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::check::{self, ConsumerKind};
use super::settle::{self, InFlight};
use super::{finish, mark_ready, Runtime, Worker, WorkerError};
use crate::delivery::Delivery;
use crate::outcome::HandlerResult;
use crate::swallowed_error;

impl Worker {
    /// Receives messages from the durable push consumer in `[consumer]` and runs `handler`
    /// for each, at most `consumer.max_in_flight` at once, until SIGTERM or SIGINT.
    pub async fn run_push<H, Fut>(self, handler: H) -> Result<(), WorkerError>
    where
        H: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        run(self.runtime.clone(), Arc::new(handler)).await
    }
}

async fn run<H, Fut>(runtime: Arc<Runtime>, handler: Arc<H>) -> Result<(), WorkerError>
where
    H: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let expected = check::verify(&runtime, ConsumerKind::Push).await?;
    let subject = expected.deliver_subject.clone().unwrap_or_default();
    let subscribe = match expected.deliver_group.clone() {
        Some(group) => runtime.client.queue_subscribe(subject.clone(), group).await,
        None => runtime.client.subscribe(subject.clone()).await,
    };
    let mut subscriber = subscribe.map_err(|err| WorkerError::Subscribe {
        subject: subject.clone(),
        message: err.to_string(),
    })?;
    mark_ready(&runtime);

    let semaphore = Arc::new(Semaphore::new(runtime.config.consumer.max_in_flight));
    let mut tasks = JoinSet::new();
    let in_flight = InFlight::default();
    let mut ticker = tokio::time::interval(crate::systemd::tick_interval());
    let heartbeat_limit = runtime.config.consumer.idle_heartbeat * 3;
    let mut last_seen = Instant::now();

    'receive: loop {
        while tasks.try_join_next().is_some() {}

        // Handlers may hold every permit for a while; the loop still turns for the watchdog.
        let permit = loop {
            tokio::select! {
                biased;
                _ = runtime.shutdown.cancelled() => break 'receive,
                permit = semaphore.clone().acquire_owned() => break permit.expect("semaphore is never closed"),
                _ = ticker.tick() => runtime.health.tick(),
            }
        };

        let message = loop {
            tokio::select! {
                biased;
                _ = runtime.shutdown.cancelled() => break 'receive,
                _ = ticker.tick() => {
                    runtime.health.tick();
                    if last_seen.elapsed() > heartbeat_limit {
                        swallowed_error!(runtime, "no message or idle heartbeat from the push consumer; check that the consumer exists", crate::duration::format(last_seen.elapsed()));
                        last_seen = Instant::now();
                    }
                    continue;
                }
                message = subscriber.next() => match message {
                    Some(message) => break message,
                    None => break 'receive,
                },
            }
        };
        last_seen = Instant::now();

        if message.status == Some(StatusCode::IDLE_HEARTBEAT) {
            answer_control_message(&runtime, message).await;
            continue;
        }
        let message = jetstream::Message {
            message,
            context: runtime.jetstream.clone(),
        };
        spawn_one(&runtime, &handler, &mut tasks, &in_flight, message, permit);
    }

    // Stop receiving: unsubscribe, then nak what the client buffered but never started.
    if let Err(err) = subscriber.drain().await {
        swallowed_error!(runtime, "draining the push subscription failed", err);
    }
    let mut returned = 0u64;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(1), subscriber.next()).await
    {
        if message.status.is_some() {
            continue;
        }
        if let Some(reply) = message.reply.clone() {
            settle::nak_now(&runtime, reply.to_string()).await;
            returned += 1;
        }
    }
    if returned > 0 {
        tracing::info!(
            count = returned,
            "nakked messages that were received but not started"
        );
    }
    settle::drain_tasks(&runtime, &mut tasks, &in_flight).await;
    finish(&runtime).await;
    Ok(())
}

/// Replies to a flow-control request and to a heartbeat that reports a stalled consumer.
async fn answer_control_message(runtime: &Runtime, message: async_nats::Message) {
    let mut replies = Vec::new();
    if let Some(reply) = message.reply {
        replies.push(reply.to_string());
    }
    if let Some(stalled) = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Nats-Consumer-Stalled"))
    {
        replies.push(stalled.as_str().to_string());
    }
    for reply in replies {
        if let Err(err) = runtime.client.publish(reply, Bytes::new()).await {
            swallowed_error!(
                runtime,
                "replying to push consumer flow control failed",
                err
            );
        }
    }
}

fn spawn_one<H, Fut>(
    runtime: &Arc<Runtime>,
    handler: &Arc<H>,
    tasks: &mut JoinSet<()>,
    in_flight: &InFlight,
    message: jetstream::Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    H: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let (delivery, info) = settle::delivery_of(runtime, &message);
    let span = settle::message_span(runtime, &delivery);
    let reply = message.reply.as_ref().map(|r| r.to_string());
    let id = in_flight.insert(reply.as_deref(), info.stream_sequence);
    let runtime = runtime.clone();
    let handler = handler.clone();
    let in_flight = in_flight.clone();
    runtime.metrics.add_in_flight(1);
    let task = async move {
        let replies: Vec<String> = reply.into_iter().collect();
        let result = settle::run_guarded(&runtime, replies, handler(delivery))
            .await
            .and_then(|result| result);
        settle::settle(&runtime, &message, &info, result).await;
        in_flight.remove(id);
        runtime.metrics.add_in_flight(-1);
        drop(permit);
    };
    tasks.spawn(task.instrument(span));
}
