//! The HTTP side: accepts Alertmanager webhook POSTs and publishes each valid payload,
//! unchanged, to `akira.alerts.<receiver>` on core NATS.
//!
//! | status | when |
//! |---|---|
//! | 200 | the payload was handed to the NATS client |
//! | 400 | invalid JSON, a missing field, version other than `"4"`, no alerts; the body gives the reason |
//! | 413 | the body is larger than the NATS server's `max_payload` |
//! | 503 | NATS is disconnected or the publish failed; the sender may retry |

use std::sync::Arc;

use akira_workers::Publisher;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;

use crate::alertmanager::Webhook;
use crate::metrics::{RelayMetrics, WebhookOutcome};
use crate::notify::alerts_subject;

/// Largest request body read at all; bodies up to the server's `max_payload` are published.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Shared state of the request handler.
#[derive(Clone)]
pub struct WebhookState {
    pub publisher: Publisher,
    pub metrics: RelayMetrics,
}

/// Returns the axum app that serves POST requests on `path`.
pub fn app(path: &str, state: WebhookState) -> axum::Router {
    axum::Router::new()
        .route(path, post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(state))
}

async fn receive(State(state): State<Arc<WebhookState>>, body: Bytes) -> Response {
    let webhook = match Webhook::parse(&body) {
        Ok(webhook) => webhook,
        Err(err) => {
            tracing::warn!(error = %err, bytes = body.len(), "rejected webhook with 400");
            state.metrics.record_webhook(WebhookOutcome::invalid);
            return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response();
        }
    };

    let client = state.publisher.client();
    let max_payload = client.server_info().max_payload;
    // The client reports 0 before it has the server's INFO; the server then enforces the limit.
    if max_payload > 0 && body.len() > max_payload {
        let message = format!(
            "payload of {} bytes is larger than the NATS server's max_payload of {max_payload} bytes; \
             set max_alerts in Alertmanager's webhook_config or raise max_payload",
            body.len()
        );
        tracing::warn!(receiver = %webhook.receiver, "rejected webhook with 413: {message}");
        state.metrics.record_webhook(WebhookOutcome::too_large);
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("{message}\n")).into_response();
    }

    // A core publish while disconnected is buffered by the client and may be lost, so ask
    // the sender to retry instead of accepting it.
    if client.connection_state() != async_nats::connection::State::Connected {
        tracing::warn!(receiver = %webhook.receiver, "rejected webhook with 503: NATS is disconnected");
        state.metrics.record_webhook(WebhookOutcome::not_connected);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "NATS is disconnected; retry later\n",
        )
            .into_response();
    }

    let subject = alerts_subject(&webhook.receiver);
    if let Err(err) = state.publisher.publish(subject.clone(), body).await {
        tracing::error!(error = %err, subject = %subject, "rejected webhook with 503: publishing failed");
        state.metrics.record_webhook(WebhookOutcome::publish_failed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{err}; retry later\n"),
        )
            .into_response();
    }

    tracing::debug!(subject = %subject, alerts = webhook.alerts.len(), status = %webhook.status, "accepted webhook");
    state.metrics.record_webhook(WebhookOutcome::accepted);
    let answer = serde_json::json!({
        "status": "accepted",
        "subject": subject,
        "alerts": webhook.alerts.len(),
    });
    (StatusCode::OK, Json(answer)).into_response()
}
