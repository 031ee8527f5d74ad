//! The notification message read from `NOTIFY`.

use serde::{Deserialize, Serialize};

/// A notification: which configured endpoint receives it, what it posts, and the key that
/// lets the receiver drop a repeated delivery.
///
/// ```json
/// {"endpoint": "ops", "body": {"text": "disk full"}, "idempotency_key": "disk-full:host1"}
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Notification {
    /// Name of an endpoint in `[dispatcher.endpoints]`; never a URL.
    pub endpoint: String,
    /// Any JSON value, posted as the request body.
    pub body: serde_json::Value,
    /// Sent as the `Idempotency-Key` header.
    pub idempotency_key: String,
}

/// Reason a message is not a valid notification. Retrying cannot fix any of these.
#[derive(Debug, thiserror::Error)]
pub enum InvalidNotification {
    #[error("invalid notification JSON: {0}; expected {{\"endpoint\": \"...\", \"body\": ..., \"idempotency_key\": \"...\"}}")]
    Json(#[from] serde_json::Error),
    #[error("invalid notification: field `{0}` is empty")]
    Empty(&'static str),
    #[error("invalid notification: `idempotency_key` {0:?} contains characters an HTTP header cannot carry; use visible ASCII")]
    KeyNotHeaderSafe(String),
}

impl Notification {
    /// Parses and checks a message payload.
    pub fn parse(payload: &[u8]) -> Result<Notification, InvalidNotification> {
        let notification: Notification = serde_json::from_slice(payload)?;
        if notification.endpoint.is_empty() {
            return Err(InvalidNotification::Empty("endpoint"));
        }
        if notification.idempotency_key.is_empty() {
            return Err(InvalidNotification::Empty("idempotency_key"));
        }
        if reqwest::header::HeaderValue::from_str(&notification.idempotency_key).is_err() {
            return Err(InvalidNotification::KeyNotHeaderSafe(
                notification.idempotency_key,
            ));
        }
        Ok(notification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_valid_notification() {
        let n = Notification::parse(br#"{"endpoint":"ops","body":{"a":1},"idempotency_key":"k1"}"#)
            .unwrap();
        assert_eq!(n.endpoint, "ops");
        assert_eq!(n.body, serde_json::json!({"a": 1}));
        assert_eq!(n.idempotency_key, "k1");
    }

    #[test]
    fn missing_fields_are_named() {
        for (payload, field) in [
            (r#"{"body":{},"idempotency_key":"k"}"#, "endpoint"),
            (r#"{"endpoint":"ops","idempotency_key":"k"}"#, "body"),
            (r#"{"endpoint":"ops","body":{}}"#, "idempotency_key"),
        ] {
            let err = Notification::parse(payload.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("missing field `{field}`")), "{err}");
        }
    }

    #[test]
    fn null_body_is_accepted() {
        let n = Notification::parse(br#"{"endpoint":"ops","body":null,"idempotency_key":"k"}"#)
            .unwrap();
        assert!(n.body.is_null());
    }

    #[test]
    fn invalid_json_is_rejected() {
        let err = Notification::parse(b"not json").unwrap_err().to_string();
        assert!(err.starts_with("invalid notification JSON"), "{err}");
    }

    #[test]
    fn empty_fields_are_named() {
        let err = Notification::parse(br#"{"endpoint":"","body":1,"idempotency_key":"k"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`endpoint` is empty"), "{err}");
        let err = Notification::parse(br#"{"endpoint":"ops","body":1,"idempotency_key":""}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`idempotency_key` is empty"), "{err}");
    }

    #[test]
    fn key_with_line_break_is_rejected() {
        let err = Notification::parse(br#"{"endpoint":"ops","body":1,"idempotency_key":"a\nb"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("idempotency_key"), "{err}");
    }
}
