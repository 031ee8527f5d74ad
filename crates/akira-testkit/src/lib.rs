//! Real servers for tests: a nats-server with JetStream and a throwaway
//! PostgreSQL cluster, each on a free port on 127.0.0.1 with its own temp dir.
//!
//! The server API is synchronous (`std::process`), so it works in plain
//! `#[test]` functions and in `#[tokio::test]` alike. Each server is stopped and its
//! temp dir removed when the value is dropped. The servers are child
//! processes in the test's process group, so a test runner that kills the
//! group on a timeout also ends them.
//!
//! For running the workspace's own worker binaries, [`WorkerProcess`] starts
//! one as `BINARY --config PATH` with its log in a file, [`wait_until`] and
//! [`wait_for`] poll an async condition with a deadline, and [`fetch_metrics`]
//! and [`sample`] read its metrics endpoint.
//!
//! Programs are found through environment variables first:
//!
//! - `NATS_SERVER_BIN`: the nats-server binary, else `nats-server` on `PATH`.
//! - `PG_BIN`: the directory with `initdb`, `postgres` and `createdb`, else
//!   the directory of `initdb` on `PATH`, else the newest
//!   `/usr/lib/postgresql/<major>/bin`.
//!
//! ```no_run
//! use akira_testkit::{NatsServer, Postgres};
//!
//! let nats = NatsServer::start();
//! let postgres = Postgres::start();
//! println!("{} {}", nats.url(), postgres.url());
//! ```

mod error;
mod metrics;
mod nats;
mod ports;
mod postgres;
mod process;
mod subprocess;
mod wait;

pub use error::Error;
pub use metrics::{fetch_metrics, sample};
pub use nats::{nats_server_bin, NatsServer, NatsServerBuilder};
pub use ports::free_port;
pub use postgres::{postgres_bin_dir, Postgres};
pub use process::{WorkerCommand, WorkerProcess};
pub use wait::{wait_for, wait_until, wait_until_every};
