//! The core NATS worker: plain subscriptions, optional queue group, no acks.
//!
//! A failed handler is logged and counted with outcome `error`; the message is not retried.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::select_all;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::settle::{self, InFlight};
use super::{finish, mark_ready, Runtime, Worker, WorkerError};
use crate::delivery::Delivery;
use crate::metrics::Outcome;
use crate::outcome::HandlerResult;

impl Worker {
    /// Subscribes to `core.subjects` (in `core.queue_group` when set) and runs `handler` for
    /// each message, at most `core.max_in_flight` at once, until SIGTERM or SIGINT.
    pub async fn run_core<H, Fut>(self, handler: H) -> Result<(), WorkerError>
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
    let settings = runtime.config.core.clone();
    if settings.subjects.is_empty() {
        return Err(runtime
            .config
            .missing(
                "core.subjects",
                "a list of subjects such as [\"akira.alerts.>\"]",
            )
            .into());
    }
    let mut subscribers = Vec::with_capacity(settings.subjects.len());
    for subject in &settings.subjects {
        let subscribed = match &settings.queue_group {
            Some(group) => {
                runtime
                    .client
                    .queue_subscribe(subject.clone(), group.clone())
                    .await
            }
            None => runtime.client.subscribe(subject.clone()).await,
        };
        let subscriber = subscribed.map_err(|err| WorkerError::Subscribe {
            subject: subject.clone(),
            message: err.to_string(),
        })?;
        subscribers.push(subscriber);
    }
    tracing::info!(subjects = %settings.subjects.join(","), queue_group = settings.queue_group.as_deref().unwrap_or(""), "subscribed");
    mark_ready(&runtime);

    let semaphore = Arc::new(Semaphore::new(settings.max_in_flight));
    let mut tasks = JoinSet::new();
    let mut ticker = tokio::time::interval(crate::systemd::tick_interval());

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
            let mut merged = select_all(subscribers.iter_mut());
            tokio::select! {
                biased;
                _ = runtime.shutdown.cancelled() => break 'receive,
                _ = ticker.tick() => { runtime.health.tick(); continue; }
                message = merged.next() => match message {
                    Some(message) => break message,
                    None => break 'receive,
                },
            }
        };
        spawn_one(&runtime, &handler, &mut tasks, message, permit);
    }

    // Unsubscribe, then handle what the client had already buffered: it was received.
    for subscriber in &mut subscribers {
        if let Err(err) = subscriber.drain().await {
            crate::swallowed_error!(runtime, "draining a subscription failed", err);
        }
    }
    let mut merged = select_all(subscribers.iter_mut());
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(1), merged.next()).await
    {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        spawn_one(&runtime, &handler, &mut tasks, message, permit);
    }
    settle::drain_tasks(&runtime, &mut tasks, &InFlight::default()).await;
    finish(&runtime).await;
    Ok(())
}

fn spawn_one<H, Fut>(
    runtime: &Arc<Runtime>,
    handler: &Arc<H>,
    tasks: &mut JoinSet<()>,
    message: async_nats::Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    H: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let delivery = Delivery::new(
        message.subject.to_string(),
        message.payload,
        message.headers,
        None,
        &runtime.publisher,
    );
    let span = settle::message_span(runtime, &delivery);
    let runtime = runtime.clone();
    let handler = handler.clone();
    runtime.metrics.add_in_flight(1);
    let task = async move {
        let result = settle::run_guarded(&runtime, Vec::new(), handler(delivery))
            .await
            .and_then(|result| result);
        match result {
            Ok(()) => runtime.metrics.record_outcome(Outcome::ack, 1),
            Err(err) => {
                runtime.metrics.record_outcome(Outcome::error, 1);
                tracing::error!(error = %err.message(), "handler failed; core NATS messages are not retried");
            }
        }
        runtime.metrics.add_in_flight(-1);
        drop(permit);
    };
    tasks.spawn(task.instrument(span));
}
