//! Shared health state behind `/readyz`, `/healthz` and the systemd watchdog.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connection, readiness and main-loop liveness of one worker process.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    connected: AtomicBool,
    ready: AtomicBool,
    /// Milliseconds since `started` when the main loop last turned.
    last_tick_ms: AtomicU64,
    /// Milliseconds since `started` when the connection was lost; 0 while connected.
    disconnected_at_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            inner: Arc::new(Inner {
                started: Instant::now(),
                connected: AtomicBool::new(false),
                ready: AtomicBool::new(false),
                last_tick_ms: AtomicU64::new(0),
                disconnected_at_ms: AtomicU64::new(0),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    /// Records that the main loop turned.
    pub fn tick(&self) {
        self.inner
            .last_tick_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
    }

    pub fn set_connected(&self, connected: bool) {
        self.inner.connected.store(connected, Ordering::Relaxed);
        let mark = if connected { 0 } else { self.now_ms().max(1) };
        self.inner.disconnected_at_ms.store(mark, Ordering::Relaxed);
    }

    /// Marks the consumer verified (or the service started): `/readyz` passes while connected.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Returns whether `/readyz` passes: connected to NATS and the consumer verified.
    pub fn is_ready(&self) -> bool {
        self.is_connected() && self.inner.ready.load(Ordering::Relaxed)
    }

    /// Whether the watchdog may ping: the main loop turned within `grace`, and NATS is
    /// connected or was lost less than `grace` ago (a reconnect is under way).
    pub fn is_healthy(&self, grace: Duration) -> bool {
        let now = self.now_ms();
        let grace_ms = grace.as_millis() as u64;
        let last_tick = self.inner.last_tick_ms.load(Ordering::Relaxed);
        let loop_alive = last_tick != 0 && now.saturating_sub(last_tick) <= grace_ms;
        let disconnected_at = self.inner.disconnected_at_ms.load(Ordering::Relaxed);
        let nats_ok = self.is_connected()
            || (disconnected_at != 0 && now.saturating_sub(disconnected_at) <= grace_ms);
        loop_alive && nats_ok
    }
}
