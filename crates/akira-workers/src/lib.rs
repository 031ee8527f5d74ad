//! NATS-native background workers with one lifecycle and three ways to receive messages.
//!
//! - Core NATS workers subscribe to subjects, optionally in a queue group, without acks: for
//!   low-value events where loss on disconnect is acceptable. Failures are logged and counted.
//! - JetStream push workers read a durable push consumer with explicit ack and nak.
//! - JetStream pull workers fetch batches from a durable pull consumer, with backpressure.
//!
//! A worker author writes a handler and a configuration file. The library connects, verifies
//! the consumer, retries with backoff, dead-letters to `AKIRA_DLQ`, serves metrics, talks to
//! systemd and stops gracefully.

pub mod config;
pub mod dlq;
pub mod duration;
pub mod outcome;
pub mod retry;

pub use config::{Config, ConfigError};
pub use outcome::{BoxError, HandlerError, HandlerResult};
pub use retry::RetryPolicy;

/// Returns this machine's host name, or `unknown` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

pub mod cli;
pub mod connect;
pub mod delivery;
pub mod health;
pub mod http;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod systemd;
pub(crate) mod worker;

pub use cli::{exit_code, WorkerArgs};
pub use delivery::{Delivery, Publisher, StreamInfo};
pub use metrics::WorkerMetrics;
pub use worker::{ConsumerMismatch, ServiceContext, Worker, WorkerError};
