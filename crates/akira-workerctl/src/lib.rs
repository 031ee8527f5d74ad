//! `akira-workerctl`: the operator tool of akira-workers.
//!
//! - `apply FILE` declares JetStream streams and consumers, which nats-server's own
//!   configuration cannot, and always includes the dead-letter stream `AKIRA_DLQ`.
//! - `status` shows streams, consumers and dead-letter depth.
//! - `dlq list|show|replay|purge` inspect and act on dead letters, and `dlq sentinel`
//!   dead-letters messages that reached `max_deliver` without any worker settling them.
//!
//! The declaration logic ([`declarations`] and [`plan`]) does no I/O, so tests and other
//! tools can parse a declarations file and compute a plan without a server.

pub mod apply;
pub mod cli;
pub mod connect;
pub mod declarations;
pub mod dlq;
pub mod output;
pub mod plan;
pub mod sentinel;
pub mod status;
pub mod systemd;

/// Exit status of a command that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit code 0.
    Success,
    /// Exit code 2: `apply --dry-run` found changes to make.
    ChangesPending,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::ChangesPending => 2,
        }
    }
}
