//! A throwaway PostgreSQL cluster on a free loopback port.

use std::env;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use tempfile::TempDir;

use crate::ports::free_ports;
use crate::subprocess::{self, POLL_INTERVAL, READY_TIMEOUT, STOP_TIMEOUT};
use crate::Error;

const INSTALL_HINT: &str = "install PostgreSQL (on Debian: `apt-get install postgresql`, \
     scripts/test does this) or set PG_BIN to the directory that contains initdb and postgres";

/// Role and database that every cluster gets. The role is the bootstrap superuser.
const ROLE: &str = "akira";
const DATABASE: &str = "akira";

/// Operating system user that runs the cluster when the tests run as root,
/// because PostgreSQL refuses to run as root. Debian's postgresql package creates it.
const SYSTEM_USER: &str = "postgres";

const START_ATTEMPTS: usize = 3;

/// Finds the directory with the PostgreSQL server programs (`initdb`,
/// `postgres`, `createdb`): `PG_BIN` when it is set and not empty, else the
/// directory of the first `initdb` on `PATH` (after resolving symlinks), else
/// the newest `/usr/lib/postgresql/<major>/bin`.
pub fn postgres_bin_dir() -> Result<PathBuf, Error> {
    if let Some(value) = env::var_os("PG_BIN").filter(|value| !value.is_empty()) {
        let dir = PathBuf::from(value);
        if subprocess::is_executable_file(&dir.join("initdb")) {
            return Ok(dir);
        }
        return Err(Error::ProgramNotFound {
            program: "initdb".to_string(),
            hint: format!(
                "PG_BIN is {} but it contains no executable initdb; point PG_BIN at the bin \
                 directory of a PostgreSQL installation, such as /usr/lib/postgresql/15/bin",
                dir.display()
            ),
        });
    }

    if let Some(initdb) = subprocess::find_in_path("initdb") {
        let resolved = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = resolved.parent() {
            return Ok(dir.to_path_buf());
        }
    }

    newest_debian_bin_dir().ok_or_else(|| Error::ProgramNotFound {
        program: "initdb".to_string(),
        hint: format!(
            "PG_BIN is not set, PATH has no initdb and no /usr/lib/postgresql/<major>/bin \
             contains one; {INSTALL_HINT}"
        ),
    })
}

/// Returns the `/usr/lib/postgresql/<major>/bin` with the highest major
/// version that contains `initdb`, the layout of Debian's packages.
fn newest_debian_bin_dir() -> Option<PathBuf> {
    let entries = fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            subprocess::is_executable_file(&bin.join("initdb")).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

/// The user and group ids that the cluster's processes switch to.
#[derive(Debug, Clone, Copy)]
struct SystemUser {
    uid: u32,
    gid: u32,
}

impl SystemUser {
    fn look_up(name: &str) -> Result<SystemUser, Error> {
        Ok(SystemUser {
            uid: id_of(name, "-u")?,
            gid: id_of(name, "-g")?,
        })
    }
}

/// Runs `id FLAG NAME` so that users from any NSS source are found.
fn id_of(name: &str, flag: &str) -> Result<u32, Error> {
    let output = Command::new("id")
        .args([flag, name])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("run `id {flag} {name}`"), e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse() {
        Ok(id) if output.status.success() => Ok(id),
        _ => Err(Error::ProgramNotFound {
            program: format!("system user `{name}`"),
            hint: format!(
                "the tests run as root, and PostgreSQL must run as an unprivileged user, but \
                 `id {flag} {name}` failed ({}); install Debian's postgresql package, which \
                 creates the user, or run the tests as a normal user",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
    }
}

/// A PostgreSQL server for one test, with its data directory in a temp dir.
///
/// The cluster is created by `initdb` with trust authentication, listens on
/// `127.0.0.1` only, keeps its Unix socket in the temp dir, and runs with
/// `fsync=off` for speed, so a machine crash can corrupt it (a process kill
/// cannot). The bootstrap superuser is `akira` and owns the database `akira`.
///
/// When the tests run as root, `initdb` and `postgres` run as the `postgres`
/// system user through `setpriv`, which owns the temp dir. The server is a
/// direct child of the test process, so it ends with the test's process group.
///
/// Dropping the value stops the server with an immediate shutdown and
/// removes the temp dir.
///
/// ```no_run
/// let mut postgres = akira_testkit::Postgres::start();
/// let url = postgres.url(); // postgres://akira@127.0.0.1:<port>/akira
/// postgres.stop();
/// postgres.start_again(); // same port, same data
/// ```
#[derive(Debug)]
pub struct Postgres {
    bin_dir: PathBuf,
    run_as: Option<SystemUser>,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    // Declared last so the directory is removed after the server is gone.
    dir: TempDir,
}

impl Postgres {
    /// Creates and starts a cluster with the database `akira`.
    ///
    /// # Panics
    ///
    /// Panics with the [`Error`] text if the cluster cannot be created or
    /// started, for example when PostgreSQL is not installed.
    pub fn start() -> Postgres {
        Postgres::try_start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"))
    }

    /// Creates and starts a cluster with the database `akira`.
    ///
    /// When another process takes the chosen port first, it retries on fresh
    /// ports, up to three attempts in all.
    pub fn try_start() -> Result<Postgres, Error> {
        let bin_dir = postgres_bin_dir()?;
        let run_as = if subprocess::is_root() {
            if subprocess::find_in_path("setpriv").is_none() {
                return Err(Error::ProgramNotFound {
                    program: "setpriv".to_string(),
                    hint: "the tests run as root, so PostgreSQL is started as the `postgres` \
                           user through setpriv; install util-linux, which provides it"
                        .to_string(),
                });
            }
            Some(SystemUser::look_up(SYSTEM_USER)?)
        } else {
            None
        };

        let dir = create_temp_dir(run_as)?;
        let mut postgres = Postgres {
            bin_dir,
            run_as,
            port: 0,
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("postgres.log"),
            child: None,
            dir,
        };
        postgres.init_cluster()?;

        let mut attempt = 1;
        loop {
            [postgres.port] = free_ports::<1>();
            match postgres.spawn_and_wait() {
                Ok(()) => break,
                Err(error) if error.is_address_in_use() && attempt < START_ATTEMPTS => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }

        postgres.create_database()?;
        Ok(postgres)
    }

    /// Returns the connection URL, `postgres://akira@127.0.0.1:PORT/akira`.
    /// No password is needed.
    pub fn url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Returns the TCP port. It stays the same across [`start_again`](Self::start_again).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Returns the path of the server log (its stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops the server with a fast shutdown (SIGINT), which ends open
    /// sessions and keeps committed data, and waits for it to exit. After
    /// 15 s the server is killed. Does nothing when the server is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            subprocess::stop_child(&mut child, libc::SIGINT, STOP_TIMEOUT);
        }
    }

    /// Starts a stopped server again with the same data directory and port,
    /// and waits until it accepts connections. Does nothing when it runs.
    ///
    /// # Panics
    ///
    /// Panics with the [`Error`] text if the server cannot be started, for
    /// example when another process took the port while it was down.
    pub fn start_again(&mut self) {
        self.try_start_again()
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL again: {e}"));
    }

    /// Like [`start_again`](Self::start_again), but returns the error instead of panicking.
    pub fn try_start_again(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn_and_wait()
    }

    /// Reports whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Returns a command for one of the PostgreSQL programs that runs as the
    /// cluster's owner.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={}", user.uid))
                    .arg(format!("--regid={}", user.gid))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(path);
                command
            }
            None => Command::new(path),
        };
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    fn init_cluster(&self) -> Result<(), Error> {
        let mut command = self.server_command("initdb");
        command
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg(format!("--username={ROLE}"))
            .arg("--auth=trust")
            .arg("--encoding=UTF8")
            .arg("--locale=C")
            .arg("--no-sync");
        subprocess::run_command(&mut command)
    }

    fn spawn_and_wait(&mut self) -> Result<(), Error> {
        let (stdout, stderr) = subprocess::open_log(&self.log_path)?;
        let mut command = self.server_command("postgres");
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
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
            self.stop_immediately();
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
                    program: "postgres".to_string(),
                    status,
                    log: self.log_path.clone(),
                    log_tail: subprocess::log_tail(&self.log_path),
                });
            }
            let pid = child.id();
            if self.reports_ready(pid) && self.accepts_tcp() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    program: "postgres".to_string(),
                    port: self.port,
                    timeout: READY_TIMEOUT,
                    log: self.log_path.clone(),
                    log_tail: subprocess::log_tail(&self.log_path),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Checks `postmaster.pid`, as `pg_ctl start --wait` does. Since
    /// PostgreSQL 10 its first line is the pid, the fourth the port and the
    /// eighth the status, which becomes `ready` once the server accepts
    /// connections. Matching the pid rules out a stale file.
    fn reports_ready(&self, pid: u32) -> bool {
        let Ok(text) = fs::read_to_string(self.data_dir.join("postmaster.pid")) else {
            return false;
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let pid_matches = lines.first() == Some(&pid.to_string().as_str());
        let port_matches = lines.get(3) == Some(&self.port.to_string().as_str());
        let ready = lines.get(7) == Some(&"ready");
        pid_matches && port_matches && ready
    }

    fn accepts_tcp(&self) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1)).is_ok()
    }

    fn create_database(&self) -> Result<(), Error> {
        let mut command = Command::new(self.bin_dir.join("createdb"));
        command
            .arg("--host=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg(format!("--username={ROLE}"))
            .arg(format!("--owner={ROLE}"))
            .arg(DATABASE)
            .env_remove("PGPASSWORD")
            .env_remove("PGSSLMODE")
            .env_remove("PGSERVICE");
        subprocess::run_command(&mut command)
    }

    /// Stops the server with an immediate shutdown (SIGQUIT), which skips the
    /// shutdown checkpoint; the next start recovers from the WAL.
    fn stop_immediately(&mut self) {
        if let Some(mut child) = self.child.take() {
            subprocess::stop_child(&mut child, libc::SIGQUIT, STOP_TIMEOUT);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

/// Creates the temp dir for a cluster. When the cluster runs as another
/// user, the dir is created under `/tmp` (which that user can traverse, unlike
/// a `TMPDIR` under `/root`) and handed to that user.
fn create_temp_dir(run_as: Option<SystemUser>) -> Result<TempDir, Error> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("akira-pg-");
    let Some(user) = run_as else {
        return builder
            .tempdir()
            .map_err(|e| Error::io("create a temp dir for PostgreSQL", e));
    };

    let dir = builder
        .tempdir_in("/tmp")
        .map_err(|e| Error::io("create a temp dir for PostgreSQL under /tmp", e))?;
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).map_err(|e| {
        Error::io(
            format!("hand {} to the `{SYSTEM_USER}` user", dir.path().display()),
            e,
        )
    })?;
    Ok(dir)
}
