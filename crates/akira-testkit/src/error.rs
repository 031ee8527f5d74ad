use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Errors from finding, starting and stopping the test servers.
///
/// Every message names the program or path involved and, where there is one,
/// the fix. Startup failures carry the last lines of the server's log file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required program is not installed or not where an environment variable points.
    #[error("{program} not found: {hint}")]
    ProgramNotFound {
        /// Program name, such as `nats-server` or `initdb`.
        program: String,
        /// The places searched and the way to install the program.
        hint: String,
    },

    /// A file system or process operation failed.
    #[error("failed to {action}: {source}")]
    Io {
        /// The operation, for example "create the temp dir".
        action: String,
        #[source]
        source: io::Error,
    },

    /// A helper command such as `initdb` or `createdb` exited with an error.
    #[error("`{command}` failed with {status}:\n{output}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        /// Combined standard output and standard error of the command.
        output: String,
    },

    /// The server process exited before it was ready.
    #[error(
        "{program} exited with {status} before it was ready; last lines of {log} (kept for inspection):\n{log_tail}"
    )]
    ExitedEarly {
        program: String,
        status: ExitStatus,
        log: PathBuf,
        log_tail: String,
    },

    /// The server process kept running but was not ready before the deadline.
    #[error("{program} was not ready on 127.0.0.1:{port} within {timeout:?}; last lines of {log} (kept for inspection):\n{log_tail}")]
    NotReady {
        program: String,
        port: u16,
        timeout: Duration,
        log: PathBuf,
        log_tail: String,
    },
}

impl Error {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    /// Reports whether the server failed because its port was taken, so a
    /// start on a fresh port may succeed.
    pub(crate) fn is_address_in_use(&self) -> bool {
        match self {
            Error::ExitedEarly { log_tail, .. } => {
                let tail = log_tail.to_ascii_lowercase();
                tail.contains("address already in use")
            }
            _ => false,
        }
    }
}
