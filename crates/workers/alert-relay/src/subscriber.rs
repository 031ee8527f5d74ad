//! The core NATS side: turns each webhook payload on `akira.alerts.>` into notifications on
//! `akira.notify.<endpoint>`.
//!
//! Core NATS has no redelivery, so a notification whose publish fails is lost. It is logged
//! and counted in `akira_relay_notifications_total{outcome="failed"}`, and the handler's
//! error counts the payload in `akira_worker_messages_total{outcome="error"}`.

use akira_workers::dlq::{header_value, headers::MSG_ID};
use akira_workers::{Delivery, HandlerError, HandlerResult};
use async_nats::HeaderMap;

use crate::alertmanager::Webhook;
use crate::metrics::{NotificationOutcome, RelayMetrics};
use crate::notify::notifications;
use crate::routing::Router;

/// Publishes the notifications for one webhook payload, waiting for each PubAck.
///
/// Every notification is attempted even when an earlier one failed.
pub async fn handle(router: &Router, metrics: &RelayMetrics, delivery: Delivery) -> HandlerResult {
    let webhook = Webhook::parse(delivery.payload()).map_err(HandlerError::permanent)?;
    let outgoing = notifications(&webhook, router);
    let total = outgoing.len();

    let mut failed = 0;
    let mut first_error = None;
    for notification in outgoing {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, header_value(&notification.msg_id));
        let published = delivery
            .publisher()
            .publish_durable(
                notification.subject.clone(),
                notification.payload.into(),
                Some(headers),
            )
            .await;
        match published {
            Ok(ack) => {
                let outcome = if ack.duplicate {
                    NotificationOutcome::duplicate
                } else {
                    NotificationOutcome::published
                };
                metrics.record_notification(outcome);
                tracing::debug!(
                    subject = %notification.subject,
                    idempotency_key = %notification.idempotency_key,
                    sequence = ack.sequence,
                    duplicate = ack.duplicate,
                    "published notification"
                );
            }
            Err(err) => {
                metrics.record_notification(NotificationOutcome::failed);
                tracing::error!(
                    error = %err,
                    subject = %notification.subject,
                    idempotency_key = %notification.idempotency_key,
                    "notification lost: publishing to NOTIFY failed"
                );
                failed += 1;
                first_error.get_or_insert(err.to_string());
            }
        }
    }

    match first_error {
        None => Ok(()),
        Some(error) => Err(HandlerError::retry(format!(
            "{failed} of {total} notifications not published to NOTIFY, so their alerts are lost; first error: {error}"
        ))),
    }
}
