//! Command-line options every worker binary shares, and turning a result into an exit code.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};

/// Options shared by every worker binary; flatten them into the binary's own `clap` parser.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Path of the worker's TOML configuration file.
    #[arg(long, short = 'c', env = "AKIRA_CONFIG", value_name = "PATH")]
    pub config: PathBuf,

    /// Validate the configuration (file and AKIRA_* overrides), print the result and exit.
    #[arg(long)]
    pub check_config: bool,
}

impl WorkerArgs {
    /// Loads the configuration; returns `None` after `--check-config` printed its result.
    pub fn load(&self) -> Result<Option<Config>, ConfigError> {
        let config = Config::load(&self.config)?;
        if self.check_config {
            println!("configuration ok: {}", self.config.display());
            return Ok(None);
        }
        Ok(Some(config))
    }
}

/// Returns success for `Ok`, or prints the error on one line to stderr and logs it, then
/// returns failure.
pub fn exit_code<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let text = err.to_string();
            tracing::error!(error = %text, "exiting with an error");
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}
