//! `akira-alert-relay`: receives Prometheus Alertmanager webhooks over HTTP and turns each
//! alert into a notification for `akira-notification-dispatcher`.
//!
//! The process has two sides. The HTTP side ([`http`]) checks each payload and publishes it
//! to `akira.alerts.<receiver>` on core NATS. The core worker side ([`subscriber`]) reads
//! `akira.alerts.>` in queue group `alert-relay`, routes each alert by its labels
//! ([`routing`]) and publishes one notification per endpoint to `akira.notify.<endpoint>`
//! in the `NOTIFY` stream. Core NATS has no acks, so a payload published while no relay
//! subscriber is connected is lost. The HTTP side returns 503 while its own connection is
//! down, so that the sender retries instead.

pub mod alertmanager;
pub mod config;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod routing;
pub mod subscriber;
