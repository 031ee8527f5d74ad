//! HTTP delivery of one notification and the classification of its outcome.
//!
//! | outcome | handler result |
//! |---|---|
//! | 2xx | ack |
//! | 5xx, 429, 408 | retry, after `Retry-After` when the response has one |
//! | timeout, connection error, other request failure | retry |
//! | other 4xx, 3xx (redirects are not followed), 1xx | permanent |
//! | unknown endpoint, invalid message | permanent |

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use akira_workers::HandlerError;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use crate::config::Endpoint;
use crate::notification::{InvalidNotification, Notification};

/// Header that carries the notification's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Header that carries the message's correlation id.
pub const CORRELATION_ID: &str = "Akira-Correlation-Id";

/// Maximum number of response body bytes quoted in an error.
const MAX_DETAIL_BYTES: usize = 256;

/// Reason a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Invalid(#[from] InvalidNotification),
    #[error("unknown endpoint {name:?}; configured endpoints: {}; add [dispatcher.endpoints.{name}] or fix the publisher", configured.join(", "))]
    UnknownEndpoint {
        name: String,
        configured: Vec<String>,
    },
    #[error(
        "endpoint {endpoint:?} rejected the notification with HTTP {status}{}",
        detail_suffix(detail)
    )]
    Rejected {
        endpoint: String,
        status: StatusCode,
        detail: String,
    },
    #[error(
        "endpoint {endpoint:?} answered HTTP {status}{}",
        detail_suffix(detail)
    )]
    Unavailable {
        endpoint: String,
        status: StatusCode,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("endpoint {endpoint:?} did not answer within {}", akira_workers::duration::format(*timeout))]
    TimedOut { endpoint: String, timeout: Duration },
    #[error("cannot connect to endpoint {endpoint:?}")]
    Connect {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("request to endpoint {endpoint:?} failed")]
    Request {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl DeliveryError {
    /// Returns whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DeliveryError::Unavailable { .. }
                | DeliveryError::TimedOut { .. }
                | DeliveryError::Connect { .. }
                | DeliveryError::Request { .. }
        )
    }

    /// Converts to the handler result, with a `Retry-After` delay cut to `max_delay`.
    pub fn into_handler_error(self, max_delay: Duration) -> HandlerError {
        if !self.is_retryable() {
            return HandlerError::permanent(self);
        }
        let retry_after = match &self {
            DeliveryError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        };
        match retry_after {
            Some(delay) => HandlerError::retry_after(self, delay.min(max_delay)),
            None => HandlerError::retry(self),
        }
    }
}

/// Posts notifications to the configured endpoints.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    client: reqwest::Client,
    endpoints: BTreeMap<String, Endpoint>,
}

impl Dispatcher {
    /// Builds the HTTP client. Redirects are not followed, because a redirected POST may turn
    /// into a GET and the notification would be lost.
    pub fn new(endpoints: BTreeMap<String, Endpoint>) -> Result<Dispatcher, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "akira-notification-dispatcher/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Dispatcher { client, endpoints })
    }

    /// Parses a message payload and posts it to its endpoint.
    pub async fn dispatch(
        &self,
        payload: &[u8],
        correlation_id: Option<&str>,
    ) -> Result<StatusCode, DeliveryError> {
        let notification = Notification::parse(payload)?;
        self.deliver(&notification, correlation_id).await
    }

    /// Posts one notification to its endpoint and classifies the response.
    pub async fn deliver(
        &self,
        notification: &Notification,
        correlation_id: Option<&str>,
    ) -> Result<StatusCode, DeliveryError> {
        let endpoint = self.endpoint(&notification.endpoint)?;
        let headers = request_headers(endpoint, notification, correlation_id);

        let sent = self
            .client
            .post(endpoint.url.clone())
            .headers(headers)
            .timeout(endpoint.timeout)
            .body(notification.body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return Err(request_error(endpoint, err)),
        };

        let status = response.status();
        if status.is_success() {
            return Ok(status);
        }
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let detail = read_detail(response).await;
        let name = endpoint.name.clone();
        if is_retryable_status(status) {
            Err(DeliveryError::Unavailable {
                endpoint: name,
                status,
                detail,
                retry_after,
            })
        } else {
            Err(DeliveryError::Rejected {
                endpoint: name,
                status,
                detail,
            })
        }
    }

    fn endpoint(&self, name: &str) -> Result<&Endpoint, DeliveryError> {
        self.endpoints
            .get(name)
            .ok_or_else(|| DeliveryError::UnknownEndpoint {
                name: name.to_string(),
                configured: self.endpoints.keys().cloned().collect(),
            })
    }
}

fn request_headers(
    endpoint: &Endpoint,
    notification: &Notification,
    correlation_id: Option<&str>,
) -> HeaderMap {
    let mut headers = endpoint.headers.clone();
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    // Notification::parse checked that the key is a valid header value.
    if let Ok(key) = HeaderValue::from_str(&notification.idempotency_key) {
        headers.insert(IDEMPOTENCY_KEY, key);
    }
    if let Some(id) = correlation_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert(CORRELATION_ID, id);
    }
    headers
}

/// Returns true for 5xx, 429 Too Many Requests and 408 Request Timeout, which ask the client to retry later.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn request_error(endpoint: &Endpoint, err: reqwest::Error) -> DeliveryError {
    let name = endpoint.name.clone();
    // The URL may carry a token in its query, so it stays out of the error.
    let err = err.without_url();
    if err.is_timeout() {
        DeliveryError::TimedOut {
            endpoint: name,
            timeout: endpoint.timeout,
        }
    } else if err.is_connect() {
        DeliveryError::Connect {
            endpoint: name,
            source: err,
        }
    } else {
        DeliveryError::Request {
            endpoint: name,
            source: err,
        }
    }
}

/// Reads the start of an error response's body, on one line, for the error text.
async fn read_detail(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_DETAIL_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let truncated = bytes.len() > MAX_DETAIL_BYTES;
    bytes.truncate(MAX_DETAIL_BYTES);
    let mut text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text = text.trim().to_string();
    if truncated {
        text.push('…');
    }
    text
}

/// Reads `Retry-After` as delay seconds or an HTTP date; a date in the past gives zero.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            retry_after(&headers_with_retry_after("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers_with_retry_after(" 0 "), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let later = headers_with_retry_after("Sun, 06 Nov 1994 08:50:07 GMT");
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = headers_with_retry_after("Sun, 06 Nov 1994 08:00:00 GMT");
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_invalid_or_missing() {
        let now = SystemTime::now();
        assert_eq!(retry_after(&headers_with_retry_after("soon"), now), None);
        assert_eq!(retry_after(&headers_with_retry_after("-5"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn status_classification() {
        for code in [500, 502, 503, 504, 429, 408] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 410, 422, 301, 302, 307] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let error = DeliveryError::Unavailable {
            endpoint: "ops".into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: String::new(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        match error.into_handler_error(Duration::from_secs(300)) {
            HandlerError::Retry { delay, .. } => assert_eq!(delay, Some(Duration::from_secs(300))),
            other => panic!("expected a retry, got {other}"),
        }
    }

    #[test]
    fn rejected_is_permanent() {
        let error = DeliveryError::Rejected {
            endpoint: "ops".into(),
            status: StatusCode::BAD_REQUEST,
            detail: "missing text".into(),
        };
        let handler_error = error.into_handler_error(Duration::from_secs(300));
        assert!(!handler_error.is_retryable());
        assert!(
            handler_error
                .message()
                .contains("HTTP 400 Bad Request: missing text"),
            "{handler_error}"
        );
    }

    #[test]
    fn unknown_endpoint_lists_configured() {
        let dispatcher = Dispatcher::new(BTreeMap::new()).unwrap();
        let err = dispatcher.endpoint("pager").unwrap_err().to_string();
        assert!(err.contains("\"pager\""), "{err}");
    }
}
