//! The local webhook receiver the dispatcher delivers the demo's notifications to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::sync::oneshot;

#[derive(Default)]
struct Deliveries {
    /// Requests per URL path.
    requests: BTreeMap<String, u64>,
    /// Distinct `Idempotency-Key` values per URL path.
    keys: BTreeMap<String, BTreeSet<String>>,
}

/// An HTTP server on 127.0.0.1 that responds 200 to every POST and counts them by path.
pub struct WebhookReceiver {
    address: SocketAddr,
    deliveries: Arc<Mutex<Deliveries>>,
    _stop: oneshot::Sender<()>,
}

impl WebhookReceiver {
    pub async fn start() -> anyhow::Result<WebhookReceiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let recorder = deliveries.clone();
        let app =
            axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, _body: Bytes| {
                let recorder = recorder.clone();
                async move {
                    let path = uri.path().trim_start_matches('/').to_string();
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let mut deliveries = recorder.lock().expect("receiver lock");
                    *deliveries.requests.entry(path.clone()).or_default() += 1;
                    deliveries.keys.entry(path).or_default().insert(key);
                    StatusCode::OK
                }
            });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("webhook receiver failed: {err}");
            }
        });
        Ok(WebhookReceiver {
            address,
            deliveries,
            _stop: stop,
        })
    }

    /// Returns the URL of the receiver's endpoint `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.address)
    }

    /// Returns the number of requests per endpoint name.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.deliveries
            .lock()
            .expect("receiver lock")
            .requests
            .clone()
    }

    /// Returns the number of distinct idempotency keys over all endpoints.
    pub fn distinct_notifications(&self) -> u64 {
        let deliveries = self.deliveries.lock().expect("receiver lock");
        deliveries.keys.values().map(|keys| keys.len() as u64).sum()
    }
}
