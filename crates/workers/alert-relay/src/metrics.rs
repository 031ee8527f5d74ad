//! The relay's own series, served on `/metrics` next to the `akira_worker_*` ones.

use akira_workers::WorkerMetrics;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Outcome of one webhook request on the HTTP side.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum WebhookOutcome {
    /// Published to `akira.alerts.<receiver>`.
    accepted,
    /// Rejected with 400.
    invalid,
    /// Rejected with 413: larger than the NATS server's `max_payload`.
    too_large,
    /// Rejected with 503 because the NATS connection was down.
    not_connected,
    /// Rejected with 503 because the publish failed.
    publish_failed,
}

/// Outcome of publishing one notification to `NOTIFY`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum NotificationOutcome {
    /// Stored: the PubAck arrived.
    published,
    /// Dropped by `NOTIFY` because a notification with the same `Nats-Msg-Id` was stored
    /// within the stream's duplicate window, as the PubAck reports.
    duplicate,
    /// Lost: no PubAck; the core subscriber cannot retry it.
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    outcome: WebhookOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    outcome: NotificationOutcome,
}

/// `akira_relay_webhooks_total{outcome}` and `akira_relay_notifications_total{outcome}`.
#[derive(Debug, Clone, Default)]
pub struct RelayMetrics {
    webhooks: Family<WebhookLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
}

impl RelayMetrics {
    /// Creates the series and adds them to the worker's registry.
    pub fn register(worker_metrics: &WorkerMetrics) -> RelayMetrics {
        let metrics = RelayMetrics::default();
        worker_metrics.register(
            "akira_relay_webhooks",
            "Alertmanager webhook requests, by outcome: accepted, invalid, too_large, not_connected, publish_failed",
            metrics.webhooks.clone(),
        );
        worker_metrics.register(
            "akira_relay_notifications",
            "Notifications published to NOTIFY, by outcome: published, duplicate (dropped by the stream's duplicate window), or failed (the alert is lost)",
            metrics.notifications.clone(),
        );
        metrics
    }

    pub fn record_webhook(&self, outcome: WebhookOutcome) {
        self.webhooks
            .get_or_create(&WebhookLabels { outcome })
            .inc();
    }

    pub fn record_notification(&self, outcome: NotificationOutcome) {
        self.notifications
            .get_or_create(&NotificationLabels { outcome })
            .inc();
    }

    /// Returns the count of webhook requests with `outcome`.
    pub fn webhook_count(&self, outcome: WebhookOutcome) -> u64 {
        self.webhooks
            .get_or_create(&WebhookLabels { outcome })
            .get()
    }
}
