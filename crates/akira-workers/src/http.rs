//! The HTTP endpoint for Prometheus and health probes.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::WorkerMetrics;

#[derive(Clone)]
struct AppState {
    metrics: WorkerMetrics,
    health: Health,
}

/// Binds `listen` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown`.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    listen: &str,
    metrics: WorkerMetrics,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health });
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "metrics endpoint stopped");
        }
    });
    Ok(address)
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready_handler(State(state): State<AppState>) -> impl IntoResponse {
    if !state.health.is_connected() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: NATS is not connected\n",
        );
    }
    if !state.health.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the consumer is not verified yet\n",
        );
    }
    (StatusCode::OK, "ready\n")
}
