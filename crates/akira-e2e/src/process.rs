//! Running the binaries as processes, the way systemd runs the module's units.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static STARTS: AtomicU32 = AtomicU32::new(0);

/// A process whose stdout and stderr go to files; killed on drop.
pub struct Process {
    pub child: Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    notifications: Option<Notifications>,
}

impl Process {
    /// Starts `program` with `arguments` and `environment` in `directory`, where its output
    /// files go. With `notify`, the process gets a `NOTIFY_SOCKET`, as a `Type=notify` unit
    /// does.
    pub fn start(
        program: &Path,
        arguments: &[String],
        environment: &[(&str, &str)],
        directory: &Path,
        notify: bool,
    ) -> Process {
        let name = program
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".to_string());
        let start = STARTS.fetch_add(1, Ordering::Relaxed);
        let stdout_path = directory.join(format!("{name}.{start}.stdout"));
        let stderr_path = directory.join(format!("{name}.{start}.stderr"));

        let mut command = Command::new(program);
        command
            .args(arguments)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("NATS_URL")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("create stderr file"));
        for (key, value) in environment {
            command.env(key, value);
        }
        let notifications = notify.then(|| {
            let notifications =
                Notifications::bind(&directory.join(format!("{name}.{start}.notify")));
            command.env("NOTIFY_SOCKET", &notifications.path);
            notifications
        });

        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
        Process {
            child,
            stdout_path,
            stderr_path,
            notifications,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `name` (such as `TERM` or `KILL`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Returns the exit status once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the process")
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit, as `systemctl stop`.
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_timeout(timeout).unwrap_or_else(|| {
            panic!(
                "the process did not exit within {timeout:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Waits until the process has sent `READY=1`, as systemd does before it counts a
    /// `Type=notify` unit as started; panics with the process's stderr after `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let notifications = self
            .notifications
            .as_ref()
            .expect("the process was started without a NOTIFY_SOCKET");
        if !notifications.wait_for("READY=1", timeout) {
            let status = self.exit_status();
            panic!(
                "no READY=1 within {timeout:?} (exit status {status:?}); stderr:\n{}",
                self.stderr()
            );
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiving end of `NOTIFY_SOCKET`.
pub struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
    received: std::cell::RefCell<Vec<String>>,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|err| panic!("cannot bind {}: {err}", path.display()));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        Notifications {
            socket,
            path: path.to_path_buf(),
            received: Default::default(),
        }
    }

    /// Waits up to `timeout` for a notification with the line `state`; returns whether one
    /// arrived, now or earlier.
    pub fn wait_for(&self, state: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 4096];
        loop {
            if self
                .received
                .borrow()
                .iter()
                .any(|message| message.lines().any(|line| line == state))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if let Ok(length) = self.socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
                self.received.borrow_mut().push(message);
            }
        }
    }
}
