//! Child-process helpers shared by the nats-server and PostgreSQL launchers.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;

/// Time a server gets to become ready after it is spawned. Generous because
/// the machines that run the tests are often busy compiling.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a server gets to exit after a graceful stop signal before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Interval between readiness and exit checks.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

const LOG_TAIL_BYTES: u64 = 4096;

/// Sends `signal` to the child unless it has already been reaped.
pub(crate) fn send_signal(child: &mut Child, signal: libc::c_int) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions. The child has not
    // been reaped (checked above), so the pid still belongs to it.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits until the child exits or `timeout` passes; returns its status if it exited.
pub(crate) fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Sends `signal`, waits up to `timeout` for the exit, and kills the child
/// with SIGKILL if it is still running then.
pub(crate) fn stop_child(child: &mut Child, signal: libc::c_int, timeout: Duration) {
    send_signal(child, signal);
    if wait_with_timeout(child, timeout).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Returns the last few KiB of a log file, starting at a line boundary, or a
/// note saying why the file could not be read.
pub(crate) fn log_tail(path: &Path) -> String {
    match read_tail(path) {
        Ok(text) if text.trim().is_empty() => "(log file is empty)".to_string(),
        Ok(text) => text,
        Err(error) => format!("(cannot read the log file: {error})"),
    }
}

fn read_tail(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let length = file.metadata()?.len();
    let start = length.saturating_sub(LOG_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;

    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);

    // A tail cut in the middle of a line starts after the first line break.
    if start > 0 {
        if let Some(newline) = text.find('\n') {
            return Ok(text[newline + 1..].to_string());
        }
    }
    Ok(text.into_owned())
}

/// Opens (or creates) a log file for appending, for use as a child's stdout and stderr.
pub(crate) fn open_log(path: &Path) -> Result<(Stdio, Stdio), Error> {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("open the log file {}", path.display()), e))
    };
    Ok((Stdio::from(open()?), Stdio::from(open()?)))
}

/// Finds an executable file named `program` in the directories of `PATH`.
pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
}

pub(crate) fn is_executable_file(path: &Path) -> bool {
    match fs::metadata(path) {
        Ok(metadata) => metadata.is_file() && metadata.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Runs a helper command to completion and fails with its output when it
/// exits with an error.
pub(crate) fn run_command(command: &mut Command) -> Result<(), Error> {
    let description = describe(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("run `{description}`"), e))?;
    if output.status.success() {
        return Ok(());
    }

    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(Error::CommandFailed {
        command: description,
        status: output.status,
        output: text,
    })
}

/// Formats a command as a shell-like line for error messages.
pub(crate) fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(quote));
    words.join(" ")
}

fn quote(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Reports whether this process runs with effective user id 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}
