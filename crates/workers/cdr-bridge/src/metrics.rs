//! Series the bridge exports in addition to the worker series.

use akira_workers::metrics::WorkerMetrics;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// The fate of a line, the `outcome` label of `akira_cdr_bridge_lines_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LineOutcome {
    /// Stored in the CDR stream.
    published,
    /// Stored in AKIRA_DLQ with reason `invalid_record`.
    invalid,
    /// Empty or white space only; skipped.
    blank,
}

/// The kind of rotation, the `kind` label of `akira_cdr_bridge_rotations_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RotationKind {
    rename,
    truncate,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LineLabels {
    outcome: LineOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    kind: RotationKind,
}

#[derive(Clone)]
pub struct BridgeMetrics {
    lines: Family<LineLabels, Counter>,
    rotations: Family<RotationLabels, Counter>,
    lag: Gauge,
}

impl BridgeMetrics {
    /// Creates the series and adds them to the worker's `/metrics` registry.
    pub fn register(worker: &WorkerMetrics) -> BridgeMetrics {
        let metrics = BridgeMetrics {
            lines: Family::default(),
            rotations: Family::default(),
            lag: Gauge::default(),
        };
        worker.register(
            "akira_cdr_bridge_lines",
            "Lines read from the accounting file and acknowledged, by outcome: published, invalid (dead-lettered) or blank (skipped)",
            metrics.lines.clone(),
        );
        worker.register(
            "akira_cdr_bridge_rotations",
            "Rotations of the accounting file seen, by kind: rename or truncate",
            metrics.rotations.clone(),
        );
        worker.register(
            "akira_cdr_bridge_lag_bytes",
            "Bytes of the current file after the committed position, measured when the bridge is idle",
            metrics.lag.clone(),
        );
        metrics
    }

    pub fn count_line(&self, outcome: LineOutcome) {
        self.lines.get_or_create(&LineLabels { outcome }).inc();
    }

    pub fn count_rotation(&self, kind: RotationKind) {
        self.rotations.get_or_create(&RotationLabels { kind }).inc();
    }

    pub fn set_lag(&self, bytes: u64) {
        self.lag.set(bytes.min(i64::MAX as u64) as i64);
    }
}
