//! `akira-notification-dispatcher`: a JetStream push worker on `NOTIFY` (`akira.notify.>`)
//! that posts each notification to an HTTP endpoint named in its configuration.
//!
//! A message names an endpoint, never a URL, so a publisher cannot make the dispatcher
//! send requests anywhere the operator did not configure. See [`dispatch`] for how each
//! HTTP outcome maps to ack, retry or dead letter.

pub mod config;
pub mod dispatch;
pub mod notification;

pub use config::{DispatcherSettings, Endpoint};
pub use dispatch::{DeliveryError, Dispatcher};
pub use notification::Notification;

use std::time::Duration;

use akira_workers::{Delivery, HandlerResult};

/// Delivers one message from `NOTIFY`; a `Retry-After` longer than `max_delay` is cut to it.
pub async fn handle(
    dispatcher: &Dispatcher,
    max_delay: Duration,
    delivery: Delivery,
) -> HandlerResult {
    let outcome = dispatcher
        .dispatch(delivery.payload(), Some(delivery.correlation_id()))
        .await;
    match outcome {
        Ok(status) => {
            tracing::debug!(status = status.as_u16(), "notification delivered");
            Ok(())
        }
        Err(err) => Err(err.into_handler_error(max_delay)),
    }
}
