//! A worker binary run as a child process the way a systemd unit runs it:
//! `BINARY --config PATH [ARGS]`, with its log in a file and killed on drop.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Variables that systemd sets for a unit. The test runner may itself run
/// under systemd, and a worker that inherited them would notify or log to
/// the runner's unit instead of behaving as a plain child process.
const SYSTEMD_VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"];

/// Interval between exit checks of the synchronous waits.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Interval between exit and readiness checks of the asynchronous waits.
const ASYNC_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Options for starting a [`WorkerProcess`], created by [`WorkerProcess::command`].
#[derive(Debug)]
pub struct WorkerCommand {
    command: Command,
    log_path: PathBuf,
    log_stdout: bool,
    append_log: bool,
}

impl WorkerCommand {
    /// Adds arguments after `--config PATH`.
    pub fn args<I, S>(mut self, args: I) -> WorkerCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable of the worker.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> WorkerCommand {
        self.command.env(key, value);
        self
    }

    /// Sets environment variables of the worker.
    pub fn envs<I, K, V>(mut self, variables: I) -> WorkerCommand
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(variables);
        self
    }

    /// Removes an inherited environment variable, such as `RUST_LOG`, from the worker.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> WorkerCommand {
        self.command.env_remove(key);
        self
    }

    /// Sends standard output to the log file too; by default it is discarded.
    pub fn log_stdout(mut self) -> WorkerCommand {
        self.log_stdout = true;
        self
    }

    /// Appends to an existing log file instead of truncating it, so the log of
    /// a restarted worker keeps the lines of the earlier runs.
    pub fn append_log(mut self) -> WorkerCommand {
        self.append_log = true;
        self
    }

    /// Starts the worker.
    ///
    /// # Panics
    ///
    /// Panics when the log file cannot be opened or the binary cannot be started.
    pub fn spawn(mut self) -> WorkerProcess {
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append_log)
            .truncate(!self.append_log)
            .open(&self.log_path)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", self.log_path.display()));
        let stdout = if self.log_stdout {
            Stdio::from(clone_file(&log, &self.log_path))
        } else {
            Stdio::null()
        };
        let child = self
            .command
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {}: {err}",
                    self.command.get_program().to_string_lossy()
                )
            });
        WorkerProcess {
            child,
            log_path: self.log_path,
        }
    }
}

fn clone_file(file: &File, path: &Path) -> File {
    file.try_clone()
        .unwrap_or_else(|err| panic!("cannot duplicate the handle of {}: {err}", path.display()))
}

/// A running worker binary whose standard error goes to a log file.
///
/// The process is killed with SIGKILL and reaped when the value is dropped,
/// so a failing test leaves no worker behind.
///
/// ```no_run
/// use std::time::Duration;
/// use akira_testkit::WorkerProcess;
///
/// let mut worker = WorkerProcess::command("akira-cdr-bridge", "bridge.toml".as_ref(), "bridge.log")
///     .env_remove("RUST_LOG")
///     .spawn();
/// let status = worker.terminate(Duration::from_secs(15));
/// assert!(status.is_some_and(|status| status.success()), "{}", worker.log());
/// ```
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    log_path: PathBuf,
}

impl WorkerProcess {
    /// Prepares `binary --config config` with its standard error in `log_path`.
    ///
    /// The worker does not inherit systemd's `NOTIFY_SOCKET`, `WATCHDOG_USEC`
    /// and `JOURNAL_STREAM`, but a test can still set them with
    /// [`WorkerCommand::env`]. It inherits every other variable of the test
    /// unless [`WorkerCommand::env_remove`] removes it.
    pub fn command(
        binary: impl AsRef<OsStr>,
        config: &Path,
        log_path: impl Into<PathBuf>,
    ) -> WorkerCommand {
        let mut command = Command::new(binary);
        command.arg("--config").arg(config);
        for key in SYSTEMD_VARIABLES {
            command.env_remove(key);
        }
        WorkerCommand {
            command,
            log_path: log_path.into(),
            log_stdout: false,
            append_log: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Returns the log file's text, or "" when it cannot be read.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends the signal `name` (such as `TERM`, `HUP` or `KILL`) with kill(1).
    ///
    /// # Panics
    ///
    /// Panics when kill(1) cannot be run or fails, for example because the
    /// process has already been reaped.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Returns the exit status once the process has exited, or `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .expect("check the worker's exit status")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit, blocking the thread.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(EXIT_POLL_INTERVAL);
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit, blocking the
    /// thread; returns `None` when the process still runs then. A process
    /// that has already exited gets no signal.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        self.signal("TERM");
        self.wait_timeout(timeout)
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit without blocking
    /// the async runtime, so servers in the same test keep serving the
    /// worker while it drains.
    ///
    /// # Panics
    ///
    /// Kills the process and panics with its log when it is still running
    /// after `timeout`.
    pub async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "worker did not stop within {timeout:?} after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(ASYNC_POLL_INTERVAL).await;
        }
    }

    /// Kills the process with SIGKILL, as in a crash, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the worker");
        self.child.wait().expect("reap the worker");
    }

    /// Polls `probe` every 50 ms until it returns true, for example until the
    /// worker's `/readyz` returns 200.
    ///
    /// # Panics
    ///
    /// Panics with the log when the process exits first or `timeout` passes.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                panic!(
                    "worker exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            if probe().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "worker not ready within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(ASYNC_POLL_INTERVAL).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
