//! The dispatcher's HTTP side against a local receiver, without NATS.

mod common;

use std::time::Duration;

use akira_notification_dispatcher::{DeliveryError, Dispatcher, DispatcherSettings, Notification};
use common::receiver::{Receiver, Reply};

fn dispatcher(receiver: &Receiver, extra: &str) -> Dispatcher {
    let text = format!(
        r#"
[endpoints.ok]
url = "{ok}"
headers = {{ "X-Team" = "ops" }}

[endpoints.flaky]
url = "{flaky}"

[endpoints.bad]
url = "{bad}"

[endpoints.slow]
url = "{slow}"
timeout = "300ms"

[endpoints.moved]
url = "{moved}"
{extra}
"#,
        ok = receiver.url("/ok"),
        flaky = receiver.url("/flaky"),
        bad = receiver.url("/bad"),
        slow = receiver.url("/slow"),
        moved = receiver.url("/moved"),
    );
    let settings: DispatcherSettings = toml::from_str(&text).unwrap();
    Dispatcher::new(settings.endpoints("test.toml").unwrap()).unwrap()
}

fn notification(endpoint: &str) -> Notification {
    Notification {
        endpoint: endpoint.to_string(),
        body: serde_json::json!({"text": "disk full", "host": "edge1"}),
        idempotency_key: format!("key-{endpoint}"),
    }
}

#[tokio::test]
async fn success_sends_body_and_headers() {
    let receiver = Receiver::start().await;
    let dispatcher = dispatcher(&receiver, "");

    let status = dispatcher
        .deliver(&notification("ok"), Some("corr-1"))
        .await
        .unwrap();

    assert_eq!(status.as_u16(), 200);
    let requests = receiver.requests("/ok");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.header("idempotency-key"), Some("key-ok"));
    assert_eq!(request.header("akira-correlation-id"), Some("corr-1"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-team"), Some("ops"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"text": "disk full", "host": "edge1"})
    );
}

#[tokio::test]
async fn unavailable_is_retryable_with_retry_after() {
    let receiver = Receiver::start().await;
    receiver.script(
        "/flaky",
        [Reply::status(503)
            .header("Retry-After", "7")
            .body("maintenance")],
    );
    let dispatcher = dispatcher(&receiver, "");

    let err = dispatcher
        .deliver(&notification("flaky"), None)
        .await
        .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    match &err {
        DeliveryError::Unavailable {
            status,
            retry_after,
            detail,
            ..
        } => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(*retry_after, Some(Duration::from_secs(7)));
            assert_eq!(detail, "maintenance");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn too_many_requests_is_retryable() {
    let receiver = Receiver::start().await;
    receiver.script("/flaky", [Reply::status(429)]);
    let dispatcher = dispatcher(&receiver, "");

    let err = dispatcher
        .deliver(&notification("flaky"), None)
        .await
        .unwrap_err();

    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn bad_request_is_permanent_with_detail() {
    let receiver = Receiver::start().await;
    receiver.default_reply("/bad", Reply::status(400).body("field text is required\n"));
    let dispatcher = dispatcher(&receiver, "");

    let err = dispatcher
        .deliver(&notification("bad"), None)
        .await
        .unwrap_err();

    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("HTTP 400 Bad Request"), "{text}");
    assert!(text.contains("field text is required"), "{text}");
}

#[tokio::test]
async fn slow_endpoint_times_out() {
    let receiver = Receiver::start().await;
    receiver.default_reply("/slow", Reply::status(200).delay(Duration::from_secs(3)));
    let dispatcher = dispatcher(&receiver, "");

    let err = dispatcher
        .deliver(&notification("slow"), None)
        .await
        .unwrap_err();

    assert!(matches!(err, DeliveryError::TimedOut { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("300ms"), "{err}");
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let receiver = Receiver::start().await;
    receiver.default_reply("/moved", Reply::status(302).header("Location", "/ok"));
    let dispatcher = dispatcher(&receiver, "");

    let err = dispatcher
        .deliver(&notification("moved"), None)
        .await
        .unwrap_err();

    assert!(!err.is_retryable(), "{err}");
    assert!(receiver.requests("/ok").is_empty());
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let receiver = Receiver::start().await;
    let extra = format!("[endpoints.down]\nurl = \"http://127.0.0.1:{port}/hook?token=abc\"\n");
    let dispatcher = dispatcher(&receiver, &extra);

    let err = dispatcher
        .deliver(&notification("down"), None)
        .await
        .unwrap_err();

    assert!(matches!(err, DeliveryError::Connect { .. }), "{err:?}");
    let chain = akira_workers::outcome::error_chain(&err);
    assert!(
        !chain.contains("token=abc"),
        "the URL leaked into the error: {chain}"
    );
}

#[tokio::test]
async fn unknown_endpoint_is_permanent() {
    let receiver = Receiver::start().await;
    let dispatcher = dispatcher(&receiver, "");

    let err = dispatcher
        .deliver(&notification("pager"), None)
        .await
        .unwrap_err();

    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("\"pager\""), "{text}");
    assert!(text.contains("bad, flaky, moved, ok, slow"), "{text}");
}

#[tokio::test]
async fn invalid_payload_is_permanent() {
    let receiver = Receiver::start().await;
    let dispatcher = dispatcher(&receiver, "");

    let err = dispatcher
        .dispatch(br#"{"endpoint":"ok","body":{}}"#, None)
        .await
        .unwrap_err();

    assert!(!err.is_retryable());
    assert!(err.to_string().contains("idempotency_key"), "{err}");
    assert!(receiver.requests("/ok").is_empty());
}
