//! Prometheus series every worker exports, all labelled with `worker`.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::dlq::Reason;

/// Final state of a message: the `outcome` label of `akira_worker_messages_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    ack,
    retry,
    dead_letter,
    /// A core NATS handler failed; core messages are never retried.
    error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// Histogram buckets for handler durations: 1 ms to about 1 h, doubling.
fn duration_buckets() -> impl Iterator<Item = f64> {
    // 0.001 * 2^22 is about 4194 s, so the last finite bucket is past one hour.
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 23)
}

/// The worker series, cheap to clone. Clones share their values with the `/metrics` registry.
#[derive(Clone)]
pub struct WorkerMetrics {
    messages: Family<OutcomeLabels, Counter>,
    handler_duration: Histogram,
    in_flight: Gauge,
    redeliveries: Counter,
    dead_letters: Family<ReasonLabels, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    nats_connected: Gauge,
    nats_reconnects: Counter,
    consumer_pending: Gauge,
    errors_swallowed: Counter,
    registry: Arc<Mutex<Registry>>,
}

impl WorkerMetrics {
    /// Creates the series for `worker` in a new registry.
    pub fn new(worker: &str) -> WorkerMetrics {
        let labels = [(Cow::Borrowed("worker"), Cow::Owned(worker.to_string()))];
        let mut registry = Registry::with_labels(labels.into_iter());
        let metrics = WorkerMetrics {
            messages: Family::default(),
            handler_duration: Histogram::new(duration_buckets()),
            in_flight: Gauge::default(),
            redeliveries: Counter::default(),
            dead_letters: Family::default(),
            last_success: Gauge::default(),
            nats_connected: Gauge::default(),
            nats_reconnects: Counter::default(),
            consumer_pending: Gauge::default(),
            errors_swallowed: Counter::default(),
            registry: Arc::new(Mutex::new(Registry::default())),
        };
        registry.register(
            "akira_worker_messages",
            "Messages handled, by outcome: ack, retry, dead_letter, or error for core NATS failures",
            metrics.messages.clone(),
        );
        registry.register(
            "akira_worker_handler_duration_seconds",
            "Time a handler took for one message or one batch",
            metrics.handler_duration.clone(),
        );
        registry.register(
            "akira_worker_in_flight",
            "Messages received and not yet settled",
            metrics.in_flight.clone(),
        );
        registry.register(
            "akira_worker_redeliveries",
            "Messages received with a delivery count above 1",
            metrics.redeliveries.clone(),
        );
        registry.register(
            "akira_worker_dead_letters",
            "Messages published to AKIRA_DLQ, by reason",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "akira_worker_last_success_timestamp_seconds",
            "Unix time of the last successfully handled message",
            metrics.last_success.clone(),
        );
        registry.register(
            "akira_worker_nats_connected",
            "1 while connected to NATS, else 0",
            metrics.nats_connected.clone(),
        );
        registry.register(
            "akira_worker_nats_reconnects",
            "Reconnections to NATS after a lost connection",
            metrics.nats_reconnects.clone(),
        );
        registry.register(
            "akira_worker_consumer_pending_messages",
            "Messages in the consumer not yet delivered, from the last message's metadata",
            metrics.consumer_pending.clone(),
        );
        registry.register(
            "akira_worker_errors",
            "Errors the worker logged and carried on from (failed acks, fetches, publishes)",
            metrics.errors_swallowed.clone(),
        );
        let build_info: Family<VersionLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register(
            "akira_worker_build_info",
            "Always 1; the version label is the akira-workers library version",
            build_info,
        );
        // Series that exist from the start at 0 let rate() and increase() see their first event.
        for outcome in [
            Outcome::ack,
            Outcome::retry,
            Outcome::dead_letter,
            Outcome::error,
        ] {
            drop(metrics.messages.get_or_create(&OutcomeLabels { outcome }));
        }
        for reason in [
            Reason::MaxDeliver,
            Reason::Permanent,
            Reason::MaxDeliverAdvisory,
            Reason::InvalidRecord,
        ] {
            drop(metrics.dead_letters.get_or_create(&ReasonLabels {
                reason: reason.as_str().to_string(),
            }));
        }
        *metrics.registry.lock().expect("metrics registry lock") = registry;
        metrics
    }

    /// Adds a worker-specific metric; it carries the `worker` label like the others.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .expect("metrics registry lock")
            .register(name, help, metric);
    }

    /// Renders every series in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn record_outcome(&self, outcome: Outcome, count: u64) {
        self.messages
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(count);
        if outcome == Outcome::ack && count > 0 {
            self.last_success.set(unix_now());
        }
    }

    pub fn record_dead_letter(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn observe_handler(&self, elapsed: Duration) {
        self.handler_duration.observe(elapsed.as_secs_f64());
    }

    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    pub fn record_delivery(&self, delivered: i64, pending: u64) {
        if delivered > 1 {
            self.redeliveries.inc();
        }
        self.consumer_pending
            .set(pending.min(i64::MAX as u64) as i64);
    }

    pub fn set_connected(&self, connected: bool) {
        self.nats_connected.set(i64::from(connected));
    }

    pub fn record_reconnect(&self) {
        self.nats_reconnects.inc();
    }

    /// Counts an error that was logged and not passed on.
    pub fn record_swallowed_error(&self) {
        self.errors_swallowed.inc();
    }

    /// Returns the count for one outcome (for summaries and tests).
    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        self.messages
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_required_series_with_worker_label() {
        let metrics = WorkerMetrics::new("w1");
        metrics.record_outcome(Outcome::ack, 2);
        metrics.record_dead_letter("permanent");
        let text = metrics.encode();
        assert!(
            text.contains("akira_worker_messages_total{worker=\"w1\",outcome=\"ack\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("akira_worker_dead_letters_total{worker=\"w1\",reason=\"permanent\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("akira_worker_build_info{worker=\"w1\",version="),
            "{text}"
        );
        assert!(
            text.contains("akira_worker_handler_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
