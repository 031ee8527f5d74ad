//! The Prometheus Alertmanager webhook payload, version 4.
//!
//! Alertmanager POSTs one JSON document per alert group to each `webhook_configs` URL.
//! Fields this relay does not use (`truncatedAlerts`, fields added by later Alertmanager
//! versions) are accepted and ignored, and the HTTP side forwards the body unchanged.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The only payload version this relay accepts.
pub const SUPPORTED_VERSION: &str = "4";

/// `endsAt` of an alert that is still firing: Go's zero `time.Time`.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One webhook request body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub version: String,
    /// Name of the Alertmanager receiver that sent the group.
    pub receiver: String,
    pub status: Status,
    pub alerts: Vec<Alert>,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
}

/// One alert of the group.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 time the alert started firing.
    pub starts_at: String,
    /// RFC 3339 time the alert resolved, or [`GO_ZERO_TIME`] while it fires.
    #[serde(default)]
    pub ends_at: String,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// Hex hash of the labels; payloads from Alertmanager before 0.19 have none.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// `firing` or `resolved`, for a group and for each alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reason a request body is not a usable webhook payload; the HTTP side sends it with 400.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPayload {
    #[error("invalid Alertmanager payload: {0}")]
    Json(String),
    #[error("unsupported Alertmanager payload version {0:?}; this relay accepts version \"4\"")]
    Version(String),
    #[error("invalid Alertmanager payload: `alerts` is empty")]
    NoAlerts,
    #[error("invalid Alertmanager payload: `receiver` is empty")]
    NoReceiver,
}

impl Webhook {
    /// Parses and checks a request body. JSON errors name the field, such as `alerts[0].status`.
    pub fn parse(body: &[u8]) -> Result<Webhook, InvalidPayload> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let webhook: Webhook =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                let path = err.path().to_string();
                let inner = err.into_inner();
                if path == "." {
                    InvalidPayload::Json(inner.to_string())
                } else {
                    InvalidPayload::Json(format!("{path}: {inner}"))
                }
            })?;
        deserializer
            .end()
            .map_err(|err| InvalidPayload::Json(err.to_string()))?;

        if webhook.version != SUPPORTED_VERSION {
            return Err(InvalidPayload::Version(webhook.version));
        }
        if webhook.receiver.is_empty() {
            return Err(InvalidPayload::NoReceiver);
        }
        if webhook.alerts.is_empty() {
            return Err(InvalidPayload::NoAlerts);
        }
        Ok(webhook)
    }
}

impl Alert {
    /// Returns the payload's fingerprint, or the one Alertmanager would compute from the labels.
    pub fn fingerprint(&self) -> String {
        match &self.fingerprint {
            Some(fingerprint) if !fingerprint.is_empty() => fingerprint.clone(),
            _ => label_fingerprint(&self.labels),
        }
    }

    /// Returns `endsAt`, or `None` while the alert fires (Alertmanager sends Go's zero time).
    pub fn ends_at(&self) -> Option<&str> {
        if self.ends_at.is_empty() || self.ends_at == GO_ZERO_TIME {
            None
        } else {
            Some(&self.ends_at)
        }
    }
}

/// Computes the label-set fingerprint as Prometheus's `model.LabelSet.Fingerprint` does:
/// 64-bit FNV-1a over the labels sorted by name, each name and value followed by byte 0xff,
/// written as 16 hex digits. The tests check it against fingerprints Alertmanager sent.
pub fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const SEPARATOR: u8 = 0xff;

    let mut hash = OFFSET_BASIS;
    let mut add = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    };
    // BTreeMap iterates in byte order of the names, the order Prometheus sorts them in.
    for (name, value) in labels {
        name.bytes().for_each(&mut add);
        add(SEPARATOR);
        value.bytes().for_each(&mut add);
        add(SEPARATOR);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRING: &str =
        include_str!("../../../../examples/data/alertmanager/firing-alertmanager-0.21.json");
    const RESOLVED: &str =
        include_str!("../../../../examples/data/alertmanager/resolved-with-fingerprint.json");
    const NO_FINGERPRINT: &str = include_str!(
        "../../../../examples/data/alertmanager/firing-three-alerts-no-fingerprint.json"
    );

    #[test]
    fn parse_firing_sample() {
        let webhook = Webhook::parse(FIRING.as_bytes()).unwrap();
        assert_eq!(webhook.receiver, "web\\.hook");
        assert_eq!(webhook.status, Status::Firing);
        assert_eq!(webhook.alerts.len(), 1);
        let alert = &webhook.alerts[0];
        assert_eq!(alert.labels["alertname"], "DemoAlert");
        assert_eq!(alert.ends_at(), None);
        assert!(
            alert.generator_url.contains("&g0.tab=1"),
            "{}",
            alert.generator_url
        );
    }

    #[test]
    fn parse_resolved_sample() {
        let webhook = Webhook::parse(RESOLVED.as_bytes()).unwrap();
        let alert = &webhook.alerts[0];
        assert_eq!(alert.status, Status::Resolved);
        assert_eq!(alert.ends_at(), Some("2022-07-29T11:17:27.3Z"));
        assert_eq!(webhook.external_url, "http://localhost:9093");
    }

    #[test]
    fn parse_sample_without_fingerprint() {
        let webhook = Webhook::parse(NO_FINGERPRINT.as_bytes()).unwrap();
        assert_eq!(webhook.alerts.len(), 3);
        assert!(webhook
            .alerts
            .iter()
            .all(|alert| alert.fingerprint.is_none()));
        assert!(webhook.common_annotations.is_empty());
    }

    #[test]
    fn fingerprint_matches_alertmanager() {
        for sample in [FIRING, RESOLVED] {
            let webhook = Webhook::parse(sample.as_bytes()).unwrap();
            let alert = &webhook.alerts[0];
            let sent = alert.fingerprint.clone().unwrap();
            assert_eq!(label_fingerprint(&alert.labels), sent);
        }
    }

    #[test]
    fn fingerprint_computed_when_absent() {
        let webhook = Webhook::parse(NO_FINGERPRINT.as_bytes()).unwrap();
        let fingerprints: Vec<String> = webhook.alerts.iter().map(Alert::fingerprint).collect();
        assert_eq!(fingerprints[0].len(), 16);
        assert_ne!(fingerprints[0], fingerprints[1]);
        assert_ne!(fingerprints[1], fingerprints[2]);
    }

    #[test]
    fn wrong_version_is_rejected() {
        let body = FIRING.replace("\"version\":\"4\"", "\"version\":\"3\"");
        let err = Webhook::parse(body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("version \"3\""), "{err}");
    }

    #[test]
    fn missing_alerts_is_rejected() {
        let err = Webhook::parse(br#"{"version":"4","receiver":"r","status":"firing"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `alerts`"), "{err}");
    }

    #[test]
    fn empty_alerts_is_rejected() {
        let err =
            Webhook::parse(br#"{"version":"4","receiver":"r","status":"firing","alerts":[]}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("`alerts` is empty"), "{err}");
    }

    #[test]
    fn bad_alert_status_names_path() {
        let body = FIRING.replace(
            "\"status\":\"firing\",\"labels\"",
            "\"status\":\"burning\",\"labels\"",
        );
        let err = Webhook::parse(body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("alerts[0].status"), "{err}");
        assert!(err.contains("burning"), "{err}");
    }

    #[test]
    fn bad_json_is_rejected() {
        let err = Webhook::parse(b"{\"version\": \"4\",")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid Alertmanager payload"), "{err}");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let body = format!("{}{{}}", FIRING.trim_end());
        assert!(Webhook::parse(body.as_bytes()).is_err());
    }
}
