//! The sd_notify protocol: readiness, status, stopping and watchdog pings.
//!
//! Messages go as datagrams to the unix socket in `NOTIFY_SOCKET`; an `@` prefix names an
//! abstract socket. Every function is a no-op when the variable is unset.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// Sends one notification such as `READY=1` or `STATUS=draining`; errors are logged once.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().to_string();
    if let Err(err) = send(&path, state) {
        tracing::warn!(socket = %path, error = %err, "sd_notify failed");
    }
}

fn send(path: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        let address = SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &address)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// Returns the watchdog interval systemd expects pings within, when this process is the one
/// it watches (`WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Sends `WATCHDOG=1` every half interval while `health` reports the worker healthy.
///
/// A worker whose main loop stopped turning, or that has been cut off from NATS for longer
/// than the interval, stops pinging, so systemd restarts it.
pub fn spawn_watchdog(health: Health, shutdown: CancellationToken) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let period = interval / 2;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        let mut was_healthy = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let healthy = health.is_healthy(interval);
            if healthy {
                notify("WATCHDOG=1");
            } else if was_healthy {
                tracing::error!(
                    interval_ms = interval.as_millis() as u64,
                    "worker unhealthy: main loop stalled or NATS unreachable; withholding watchdog pings"
                );
            }
            was_healthy = healthy;
        }
    });
}

/// How often a main loop should record that it turns: often enough for the watchdog
/// (a quarter of its interval), and at least once a second.
pub fn tick_interval() -> Duration {
    let second = Duration::from_secs(1);
    match watchdog_interval() {
        Some(interval) => (interval / 4).clamp(Duration::from_millis(10), second),
        None => second,
    }
}
