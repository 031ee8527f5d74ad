//! The JetStream pull worker: batches fetched from a durable pull consumer.
//!
//! A semaphore with `consumer.max_in_flight` permits bounds the messages held unacknowledged:
//! a fetch requests no more messages than there are free permits, and a batch returns its
//! permits only after every message in it is settled.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::check::{self, ConsumerKind};
use super::settle::{self, InFlight};
use super::{finish, mark_ready, Runtime, Worker, WorkerError};
use crate::delivery::Delivery;
use crate::outcome::{HandlerError, HandlerResult};
use crate::swallowed_error;

impl Worker {
    /// Fetches batches from the durable pull consumer in `[consumer]` and runs `handler` on
    /// each. The handler returns one result per message, in order. Runs until SIGTERM or SIGINT.
    pub async fn run_pull<H, Fut>(self, handler: H) -> Result<(), WorkerError>
    where
        H: Fn(Vec<Delivery>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<HandlerResult>> + Send + 'static,
    {
        run(self.runtime.clone(), Arc::new(handler)).await
    }
}

async fn run<H, Fut>(runtime: Arc<Runtime>, handler: Arc<H>) -> Result<(), WorkerError>
where
    H: Fn(Vec<Delivery>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<HandlerResult>> + Send + 'static,
{
    let expected = check::verify(&runtime, ConsumerKind::Pull).await?;
    let stream = runtime
        .jetstream
        .get_stream(&expected.stream)
        .await
        .map_err(|err| WorkerError::JetStream {
            action: format!("reading stream `{}`", expected.stream),
            message: err.to_string(),
        })?;
    let consumer: PullConsumer = stream
        .get_consumer(&expected.durable)
        .await
        .map_err(|err| WorkerError::JetStream {
            action: format!("reading consumer `{}`", expected.durable),
            message: err.to_string(),
        })?;
    mark_ready(&runtime);

    let settings = &runtime.config.consumer;
    let max_in_flight = settings.max_in_flight;
    let batch_size = settings.batch_size.min(max_in_flight);
    let max_wait = settings.max_wait;
    // The server requires the heartbeat to be under half the expiry.
    let heartbeat = max_wait / 3;
    let semaphore = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = JoinSet::new();
    let in_flight = InFlight::default();
    let mut failures = 0u32;
    // Whether the last message received reported more messages pending.
    let mut backlog = false;
    let mut ticker = tokio::time::interval(crate::systemd::tick_interval());

    'fetch: loop {
        while tasks.try_join_next().is_some() {}
        runtime.health.tick();

        let mut permits = Vec::with_capacity(batch_size);
        tokio::select! {
            biased;
            _ = runtime.shutdown.cancelled() => break 'fetch,
            _ = ticker.tick() => continue 'fetch,
            permit = semaphore.clone().acquire_owned() => permits.push(permit.expect("semaphore is never closed")),
        }
        while permits.len() < batch_size {
            match semaphore.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }

        // With a backlog, take what is there at once; otherwise wait up to max_wait to fill
        // the batch, so an idle worker does not poll.
        let request = if backlog {
            consumer
                .fetch()
                .max_messages(permits.len())
                .messages()
                .await
        } else {
            consumer
                .batch()
                .max_messages(permits.len())
                .expires(max_wait)
                .heartbeat(heartbeat)
                .messages()
                .await
        };
        let mut batch = match request {
            Ok(batch) => batch,
            Err(err) => {
                swallowed_error!(runtime, "fetching a batch failed; retrying", err);
                backoff_after_failure(&runtime, &mut failures).await;
                continue 'fetch;
            }
        };

        let mut messages = Vec::with_capacity(permits.len());
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                _ = runtime.shutdown.cancelled() => { stopping = true; break; }
                _ = ticker.tick() => runtime.health.tick(),
                item = batch.next() => match item {
                    Some(Ok(message)) => messages.push(message),
                    Some(Err(err)) => {
                        swallowed_error!(runtime, "fetching a batch failed; retrying", err);
                        failures += 1;
                        break;
                    }
                    None => break,
                },
            }
        }
        if stopping {
            // The pull request stays open on the server until it expires, so read it to the
            // end: what arrives was never started and goes back at once instead of waiting
            // out ack_wait.
            let drain_deadline = tokio::time::Instant::now() + max_wait + Duration::from_secs(1);
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout_at(drain_deadline, batch.next()).await
            {
                messages.push(message);
            }
            for message in messages {
                if let Some(reply) = message.reply.clone() {
                    settle::nak_now(&runtime, reply.to_string()).await;
                }
            }
            break 'fetch;
        }
        backlog = messages
            .last()
            .and_then(|message| message.info().ok())
            .is_some_and(|info| info.pending > 0);
        if messages.is_empty() {
            if failures > 0 {
                backoff_after_failure(&runtime, &mut failures).await;
            }
            continue 'fetch;
        }
        failures = 0;
        permits.truncate(messages.len());
        spawn_batch(
            &runtime, &handler, &mut tasks, &in_flight, messages, permits,
        );
    }

    settle::drain_tasks(&runtime, &mut tasks, &in_flight).await;
    finish(&runtime).await;
    Ok(())
}

async fn backoff_after_failure(runtime: &Runtime, failures: &mut u32) {
    *failures = failures.saturating_add(1);
    let delay = Duration::from_millis(100u64 << (*failures).min(5)).min(Duration::from_secs(3));
    tokio::select! {
        _ = runtime.shutdown.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

fn spawn_batch<H, Fut>(
    runtime: &Arc<Runtime>,
    handler: &Arc<H>,
    tasks: &mut JoinSet<()>,
    in_flight: &InFlight,
    messages: Vec<jetstream::Message>,
    permits: Vec<OwnedSemaphorePermit>,
) where
    H: Fn(Vec<Delivery>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<HandlerResult>> + Send + 'static,
{
    let mut deliveries = Vec::with_capacity(messages.len());
    let mut infos = Vec::with_capacity(messages.len());
    let mut ids = Vec::with_capacity(messages.len());
    let mut replies = Vec::with_capacity(messages.len());
    for message in &messages {
        let (delivery, info) = settle::delivery_of(runtime, message);
        let reply = message.reply.as_ref().map(|r| r.to_string());
        ids.push(in_flight.insert(reply.as_deref(), info.stream_sequence));
        replies.extend(reply);
        deliveries.push(delivery);
        infos.push(info);
    }
    let spans: Vec<tracing::Span> = deliveries
        .iter()
        .map(|delivery| settle::message_span(runtime, delivery))
        .collect();
    let batch_span = tracing::info_span!(
        "batch",
        worker = %runtime.config.worker.name,
        stream = infos.first().map(|i| i.stream.as_str()).unwrap_or(""),
        consumer = infos.first().map(|i| i.consumer.as_str()).unwrap_or(""),
        size = messages.len(),
    );
    let count = messages.len();
    runtime.metrics.add_in_flight(count as i64);
    let runtime = runtime.clone();
    let handler = handler.clone();
    let in_flight = in_flight.clone();

    let task = async move {
        let results = match settle::run_guarded(&runtime, replies, handler(deliveries)).await {
            Ok(results) if results.len() == count => results,
            Ok(results) => {
                let text = format!(
                    "batch handler returned {} results for {count} messages; every message is retried",
                    results.len()
                );
                runtime.metrics.record_swallowed_error();
                tracing::error!("{text}");
                (0..count)
                    .map(|_| Err(HandlerError::retry(text.clone())))
                    .collect()
            }
            Err(err) => {
                let text = err.message();
                (0..count)
                    .map(|_| Err(HandlerError::retry(text.clone())))
                    .collect()
            }
        };
        for (((message, info), result), span) in messages.iter().zip(&infos).zip(results).zip(spans)
        {
            settle::settle(&runtime, message, info, result)
                .instrument(span)
                .await;
        }
        for id in ids {
            in_flight.remove(id);
        }
        runtime.metrics.add_in_flight(-(count as i64));
        drop(permits);
    };
    tasks.spawn(task.instrument(batch_span));
}
