//! `akira-notification-dispatcher`: a JetStream push worker on `NOTIFY` (`akira.notify.>`)
//! that posts each notification to an HTTP endpoint named in its configuration.
//!
//! A message names an endpoint, never a URL, so a publisher cannot make the dispatcher
//! send requests anywhere the operator did not configure. See [`dispatch`] for how each
//! HTTP outcome maps to ack, retry or dead letter.

pub mod config;
pub mod dispatch;
pub mod notification;

pub use config::{DispatcherSettings, Endpoint};
pub use dispatch::{DeliveryError, Dispatcher};
pub use notification::Notification;
