//! Running `akira-workerctl` and the test worker as processes against a test kit nats-server.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use akira_testkit::{NatsServer, WorkerProcess};
use async_nats::jetstream;

pub const CTL: &str = env!("CARGO_BIN_EXE_akira-workerctl");

/// Default deadline of `akira_testkit::wait_for` in these tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The result of one `akira-workerctl` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout_bytes: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Returns the stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Returns the last stdout line, or "" when there is none.
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    /// Returns the stdout line that starts with `prefix`, failing the test when there is none.
    pub fn line_starting(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no line starting with {prefix:?} in stdout:\n{}",
                    self.stdout
                )
            })
    }

    /// Returns the stderr lines that start with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.starts_with("error:"))
            .collect()
    }
}

/// A nats-server, a temporary directory and the helpers that run commands against them.
pub struct Env {
    pub server: NatsServer,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn start() -> Env {
        Env {
            server: NatsServer::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Writes `text` to `<dir>/<name>` and returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `akira-workerctl ARGS` with `NATS_URL` pointing at the test server.
    pub fn ctl(&self, args: &[&str]) -> Run {
        ctl_with_env(args, &[("NATS_URL", &self.url())], None)
    }

    /// Runs `akira-workerctl ARGS` with `stdin` as standard input.
    pub fn ctl_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        ctl_with_env(args, &[("NATS_URL", &self.url())], Some(stdin))
    }

    /// Runs `akira-workerctl apply FILE ARGS`, after writing `text` to FILE.
    pub fn apply(&self, name: &str, text: &str, args: &[&str]) -> Run {
        let path = self.write(name, text);
        let mut all = vec!["apply", path.to_str().unwrap()];
        all.extend_from_slice(args);
        self.ctl(&all)
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url()).await.unwrap();
        jetstream::new(client)
    }

    /// Starts the test worker with `behaviour` on consumer `durable` of `stream`.
    pub fn start_worker(
        &self,
        stream: &str,
        durable: &str,
        filter: &str,
        behaviour: &str,
    ) -> TestWorker {
        let record_file = self.dir.path().join(format!("{durable}.record"));
        let config = format!(
            r#"
[worker]
name = "{durable}"
shutdown_timeout = "2s"

[nats]
servers = ["{url}"]

[consumer]
stream = "{stream}"
durable_name = "{durable}"
filter_subject = "{filter}"
ack_wait = "1s"
max_ack_pending = 100
batch_size = 1
max_wait = "500ms"

[retry]
base = "100ms"
cap = "1s"
max_deliver = 3
jitter = 0.0

[metrics]
listen = ""

[log]
format = "text"
level = "info"

[test_worker]
behaviour = "{behaviour}"
record_file = "{record}"
"#,
            url = self.url(),
            record = record_file.display(),
        );
        TestWorker::start(self.dir.path(), durable, &config, record_file)
    }
}

/// Runs `akira-workerctl ARGS` with only the given environment variables added.
pub fn ctl_with_env(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = Command::new(CTL);
    command
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("NATS_CREDS")
        .env_remove("NATS_USER")
        .env_remove("NOTIFY_SOCKET")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn akira-workerctl");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stdout_bytes: stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Returns the number of messages in `stream` on `subject`.
pub async fn subject_count(jetstream: &jetstream::Context, stream: &str, subject: &str) -> usize {
    use futures::TryStreamExt;
    let Ok(stream) = jetstream.get_stream(stream).await else {
        return 0;
    };
    let counts: Vec<(String, usize)> = stream
        .info_with_subjects(subject)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    counts.iter().map(|(_, count)| count).sum()
}

/// Returns the path of the `dlq_test_worker` example next to the binary under test.
///
/// NOTE: `cargo test` and `cargo nextest run` build examples, except when a `--test NAME`
/// filter selects targets: then a missing or stale example is used as it is.
pub fn test_worker_binary() -> PathBuf {
    let path = Path::new(CTL)
        .parent()
        .unwrap()
        .join("examples")
        .join("dlq_test_worker");
    assert!(
        path.is_file(),
        "{} is missing; build it with `cargo build -p akira-workerctl --examples`",
        path.display()
    );
    path
}

/// The `dlq_test_worker` example as a process, with the file its `ok` behaviour records
/// to; killed on drop.
pub struct TestWorker {
    process: WorkerProcess,
    pub record_file: PathBuf,
}

impl TestWorker {
    /// Starts the test worker with the configuration `config`, written to `<dir>/<name>.toml`.
    /// Its stderr is appended to `<dir>/<name>.log`, so the log of a worker restarted under
    /// the same name keeps the lines of the earlier runs.
    fn start(dir: &Path, name: &str, config: &str, record_file: PathBuf) -> TestWorker {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let process = WorkerProcess::command(
            test_worker_binary(),
            &config_path,
            dir.join(format!("{name}.log")),
        )
        .env_remove("RUST_LOG")
        .append_log()
        .spawn();
        TestWorker {
            process,
            record_file,
        }
    }

    /// Returns the exit code once the process has exited, or None while it runs.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.process
            .try_wait()
            .map(|status| status.code().unwrap_or(-1))
    }

    /// Returns the lines the `ok` behaviour recorded.
    pub fn records(&self) -> Vec<String> {
        std::fs::read_to_string(&self.record_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.process.log()
    }
}

/// Sends `signal` (such as `TERM`) to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}
