//! The stand-in for a VM test node: a nats-server, a directory, and the units of a module
//! fixture started as processes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use akira_testkit::{free_port, postgres_bin_dir, NatsServer, Postgres};
use async_nats::jetstream;
use serde_json::Value;

use crate::binary;
use crate::fixture::{to_toml, ModuleFixture};
use crate::process::Process;

/// How long a started unit gets to send `READY=1`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A nats-server with JetStream, a PostgreSQL cluster when the scenario needs one, and a
/// temporary directory for configuration files, record files, textfiles and process output.
pub struct Machine {
    pub nats: NatsServer,
    /// The database `akira`, owned by the role `akira`, as on the VM test node.
    pub postgres: Option<Postgres>,
    pub directory: tempfile::TempDir,
}

/// A worker unit started from a fixture.
pub struct Worker {
    pub process: Process,
    /// `host:port` of its metrics server, when it has one.
    pub metrics_address: Option<String>,
}

impl Machine {
    pub fn start() -> Machine {
        Machine {
            nats: NatsServer::start(),
            postgres: None,
            directory: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    pub fn start_with_postgres() -> Machine {
        Machine {
            postgres: Some(Postgres::start()),
            ..Machine::start()
        }
    }

    /// Runs `query` with psql as the role `akira` and returns its unaligned output.
    pub fn sql(&self, query: &str) -> String {
        let postgres = self
            .postgres
            .as_ref()
            .expect("the machine was started without PostgreSQL");
        let psql = postgres_bin_dir()
            .unwrap_or_else(|err| panic!("cannot find psql: {err}"))
            .join("psql");
        let output = std::process::Command::new(&psql)
            .arg(format!("--dbname={}", postgres.url()))
            .args([
                "--tuples-only",
                "--no-align",
                "--no-psqlrc",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg(format!("--command={query}"))
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", psql.display()));
        assert!(
            output.status.success(),
            "psql failed on {query:?}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    /// The example worker's record file, in place of the one in its StateDirectory.
    pub fn record_file(&self) -> PathBuf {
        self.path().join("records.txt")
    }

    /// The node exporter's textfile directory.
    pub fn textfile_directory(&self) -> PathBuf {
        self.path().join("textfiles")
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.nats.url())
            .await
            .expect("connect to the test nats-server");
        jetstream::new(client)
    }

    /// Runs `akira-workerctl` with `arguments` and the server in `NATS_URL`, as the module's
    /// units do.
    pub fn workerctl(&self, arguments: &[String]) -> Output {
        std::process::Command::new(binary("akira-workerctl"))
            .args(arguments)
            .env("NATS_URL", self.nats.url())
            .env_remove("NATS_CREDS")
            .env_remove("NATS_USER")
            .output()
            .expect("run akira-workerctl")
    }

    /// Writes the fixture's declarations where the provisioning unit reads them and runs its
    /// `akira-workerctl` command line; `extra` is appended, such as `--dry-run`. Returns the
    /// output and fails the test when the command fails.
    pub fn provision(&self, fixture: &ModuleFixture, extra: &[&str]) -> Output {
        let declarations = self.path().join("declarations.toml");
        std::fs::write(&declarations, fixture.declarations_toml()).expect("write the declarations");
        let mut arguments = fixture.workerctl_arguments("akira-nats-provision", &declarations);
        arguments.extend(extra.iter().map(|argument| argument.to_string()));
        let output = self.workerctl(&arguments);
        assert!(
            output.status.success(),
            "akira-workerctl {} failed with {}:\nstdout:\n{}\nstderr:\n{}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts the fixture's dead-letter sentinel and waits for its `READY=1`.
    pub fn start_sentinel(&self, fixture: &ModuleFixture) -> Process {
        let arguments = fixture.workerctl_arguments("akira-dlq-sentinel", Path::new(""));
        let url = self.nats.url();
        let mut process = Process::start(
            &binary("akira-workerctl"),
            &arguments,
            &[("NATS_URL", url.as_str())],
            self.path(),
            true,
        );
        process.wait_ready(READY_TIMEOUT);
        process
    }

    /// Starts worker unit `unit` of the fixture with the settings the module generates,
    /// pointed at this machine's server, files and a free metrics port. A long-running
    /// worker gets a `NOTIFY_SOCKET` and is returned once it sent `READY=1`; a timer job is
    /// returned at once.
    pub fn start_worker(&self, fixture: &ModuleFixture, unit: &str) -> Worker {
        let (settings, metrics_address) = self.local_settings(fixture.worker_settings(unit));
        let config = self.path().join(format!("{unit}.toml"));
        std::fs::write(&config, to_toml(&settings)).expect("write the worker configuration");

        let long_running = settings.get("job").is_none();
        let arguments = vec!["--config".to_string(), config.display().to_string()];
        let mut process = Process::start(
            &binary(&fixture.program(unit)),
            &arguments,
            &[],
            self.path(),
            long_running,
        );
        if long_running {
            process.wait_ready(READY_TIMEOUT);
        }
        Worker {
            process,
            metrics_address,
        }
    }

    /// Replaces the host-specific values of generated worker settings: the NATS server, the
    /// metrics port, the record file, the textfile directory and the database URL.
    fn local_settings(&self, mut settings: Value) -> (Value, Option<String>) {
        settings["nats"]["servers"] = Value::from(vec![self.nats.url()]);

        let mut metrics_address = None;
        if settings["metrics"]["listen"]
            .as_str()
            .is_some_and(|listen| !listen.is_empty())
        {
            let address = format!("127.0.0.1:{}", free_port());
            settings["metrics"]["listen"] = Value::from(address.clone());
            metrics_address = Some(address);
        }
        if settings["example"]["record_file"].is_string() {
            settings["example"]["record_file"] =
                Value::from(self.record_file().display().to_string());
        }
        if settings["job"]["textfile_dir"].is_string() {
            std::fs::create_dir_all(self.textfile_directory())
                .expect("create the textfile directory");
            settings["job"]["textfile_dir"] =
                Value::from(self.textfile_directory().display().to_string());
        }
        if let Some(postgres) = &self.postgres {
            for section in ["retention", "pipeline"] {
                if settings[section]["database_url"].is_string() {
                    settings[section]["database_url"] = Value::from(postgres.url());
                }
            }
        }
        (settings, metrics_address)
    }
}
