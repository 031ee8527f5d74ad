//! Command-line options every worker binary shares, and turning a result into an exit code.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;

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
    ///
    /// Use [`WorkerArgs::load_with_section`] when the worker has a table of its own, so that
    /// `--check-config` validates it too.
    pub fn load(&self) -> Result<Option<Config>, ConfigError> {
        let config = Config::load(&self.config)?;
        if self.check_config {
            config.check_secret_files()?;
            println!("configuration ok: {}", self.config.display());
            return Ok(None);
        }
        Ok(Some(config))
    }

    /// Loads the configuration and the worker-specific table `[section]`; returns `None`
    /// after `--check-config` validated both and printed its result.
    pub fn load_with_section<T: DeserializeOwned>(
        &self,
        section: &str,
    ) -> Result<Option<(Config, T)>, ConfigError> {
        let config = Config::load(&self.config)?;
        let settings = config.section::<T>(section)?;
        if self.check_config {
            config.check_secret_files()?;
            println!("configuration ok: {}", self.config.display());
            return Ok(None);
        }
        Ok(Some((config, settings)))
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
