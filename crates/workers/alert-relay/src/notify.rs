//! Subjects, and the notifications the relay publishes for each alert.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::alertmanager::{Alert, Webhook};
use crate::routing::Router;

/// Prefix of the core NATS subjects that carry webhook payloads.
pub const ALERTS_SUBJECT_PREFIX: &str = "akira.alerts";
/// Prefix of the `NOTIFY` subjects; the dispatcher endpoint is the last token.
pub const NOTIFY_SUBJECT_PREFIX: &str = "akira.notify";

/// Returns `akira.alerts.<receiver>` with the receiver made into one subject token: every
/// character other than ASCII letters, digits, `-` and `_` becomes `_`.
pub fn alerts_subject(receiver: &str) -> String {
    let token: String = receiver
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let token = if token.is_empty() {
        "_".to_string()
    } else {
        token
    };
    format!("{ALERTS_SUBJECT_PREFIX}.{token}")
}

/// One notification ready to publish to `NOTIFY`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub endpoint: String,
    /// `akira.notify.<endpoint>`.
    pub subject: String,
    /// `Nats-Msg-Id`: `<endpoint>:<idempotency key>`, so `NOTIFY` stores a webhook that
    /// Alertmanager sends again within the stream's duplicate window only once.
    pub msg_id: String,
    pub idempotency_key: String,
    /// The notification JSON the dispatcher reads.
    pub payload: Vec<u8>,
}

/// The notification message: the shape the dispatcher parses.
#[derive(Debug, Serialize)]
struct NotificationMessage<'a> {
    endpoint: &'a str,
    body: AlertBody<'a>,
    idempotency_key: &'a str,
}

/// The body posted to the endpoint. Field names follow the Alertmanager payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertBody<'a> {
    status: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: &'a str,
    /// `null` while the alert fires.
    ends_at: Option<&'a str>,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
    receiver: &'a str,
    group_key: &'a str,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
}

/// Returns the idempotency key of an alert: `<fingerprint>:<status>:<startsAt>`.
///
/// The same alert firing again after it resolved has a new `startsAt`, so it gets a new key,
/// while a repeat of the same firing keeps its key.
pub fn idempotency_key(alert: &Alert) -> String {
    format!(
        "{}:{}:{}",
        alert.fingerprint(),
        alert.status,
        alert.starts_at
    )
}

/// Builds one notification per alert and routed endpoint, in alert order.
pub fn notifications(webhook: &Webhook, router: &Router) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for alert in &webhook.alerts {
        let key = idempotency_key(alert);
        let fingerprint = alert.fingerprint();
        for endpoint in router.endpoints(&alert.labels) {
            let message = NotificationMessage {
                endpoint,
                idempotency_key: &key,
                body: AlertBody {
                    status: alert.status.as_str(),
                    labels: &alert.labels,
                    annotations: &alert.annotations,
                    starts_at: &alert.starts_at,
                    ends_at: alert.ends_at(),
                    generator_url: &alert.generator_url,
                    fingerprint: &fingerprint,
                    receiver: &webhook.receiver,
                    group_key: &webhook.group_key,
                    external_url: &webhook.external_url,
                },
            };
            let payload = serde_json::to_vec(&message)
                .expect("a struct of strings and string maps serializes");
            out.push(Outgoing {
                endpoint: endpoint.to_string(),
                subject: format!("{NOTIFY_SUBJECT_PREFIX}.{endpoint}"),
                msg_id: format!("{endpoint}:{key}"),
                idempotency_key: key.clone(),
                payload,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Route;

    const FIRING: &str =
        include_str!("../../../../examples/data/alertmanager/firing-alertmanager-0.21.json");
    const RESOLVED: &str =
        include_str!("../../../../examples/data/alertmanager/resolved-with-fingerprint.json");
    const NO_FINGERPRINT: &str = include_str!(
        "../../../../examples/data/alertmanager/firing-three-alerts-no-fingerprint.json"
    );

    fn router() -> Router {
        let critical = Route {
            matchers: [("severity".to_string(), "critical".to_string())].into(),
            endpoint: "pager".to_string(),
            continue_matching: true,
        };
        let everything = Route {
            matchers: BTreeMap::new(),
            endpoint: "ops".to_string(),
            continue_matching: false,
        };
        Router::new(vec![critical, everything], "unused".into())
    }

    fn parse(payload: &[u8]) -> serde_json::Value {
        serde_json::from_slice(payload).unwrap()
    }

    #[test]
    fn receiver_becomes_one_token() {
        assert_eq!(alerts_subject("web\\.hook"), "akira.alerts.web__hook");
        assert_eq!(
            alerts_subject("alertmonitor_swarm"),
            "akira.alerts.alertmonitor_swarm"
        );
        assert_eq!(alerts_subject("team a > b"), "akira.alerts.team_a___b");
        assert_eq!(alerts_subject(""), "akira.alerts._");
    }

    #[test]
    fn firing_alert_routes_to_two_endpoints() {
        let webhook = Webhook::parse(FIRING.as_bytes()).unwrap();
        let out = notifications(&webhook, &router());

        let endpoints: Vec<&str> = out.iter().map(|n| n.endpoint.as_str()).collect();
        assert_eq!(endpoints, vec!["pager", "ops"]);
        assert_eq!(out[0].subject, "akira.notify.pager");
        assert_eq!(
            out[0].idempotency_key,
            "8a07086b74f3ba78:firing:2021-01-07T08:38:00.032813093Z"
        );
        assert_eq!(
            out[0].msg_id,
            "pager:8a07086b74f3ba78:firing:2021-01-07T08:38:00.032813093Z"
        );
        assert_eq!(out[0].idempotency_key, out[1].idempotency_key);
    }

    #[test]
    fn notification_has_dispatcher_shape() {
        let webhook = Webhook::parse(FIRING.as_bytes()).unwrap();
        let message = parse(&notifications(&webhook, &router())[0].payload);

        assert_eq!(message["endpoint"], "pager");
        assert_eq!(
            message["idempotency_key"],
            "8a07086b74f3ba78:firing:2021-01-07T08:38:00.032813093Z"
        );
        let body = &message["body"];
        assert_eq!(body["status"], "firing");
        assert_eq!(body["labels"]["alertname"], "DemoAlert");
        assert_eq!(body["annotations"]["summary"], "This is a demo");
        assert_eq!(body["startsAt"], "2021-01-07T08:38:00.032813093Z");
        assert!(body["endsAt"].is_null());
        assert_eq!(body["fingerprint"], "8a07086b74f3ba78");
        assert_eq!(body["receiver"], "web\\.hook");
        assert_eq!(body["externalURL"], "http://n3:9093");
    }

    #[test]
    fn resolved_alert_carries_end_time() {
        let webhook = Webhook::parse(RESOLVED.as_bytes()).unwrap();
        let out = notifications(&webhook, &router());

        assert_eq!(
            out.len(),
            1,
            "severity Warning is not critical, so only ops"
        );
        let body = &parse(&out[0].payload)["body"];
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["endsAt"], "2022-07-29T11:17:27.3Z");
        assert_eq!(
            out[0].idempotency_key,
            "fbab788ec4c1018b:resolved:2022-07-29T11:13:27.3Z"
        );
    }

    #[test]
    fn alerts_without_fingerprint_get_distinct_keys() {
        let webhook = Webhook::parse(NO_FINGERPRINT.as_bytes()).unwrap();
        let out = notifications(&webhook, &router());

        assert_eq!(out.len(), 3);
        let mut keys: Vec<&str> = out.iter().map(|n| n.idempotency_key.as_str()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 3);
        let body = &parse(&out[0].payload)["body"];
        assert_eq!(body["fingerprint"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn key_changes_with_status() {
        let webhook = Webhook::parse(FIRING.as_bytes()).unwrap();
        let mut alert = webhook.alerts[0].clone();
        let firing = idempotency_key(&alert);
        alert.status = crate::alertmanager::Status::Resolved;
        assert_ne!(firing, idempotency_key(&alert));
    }
}
