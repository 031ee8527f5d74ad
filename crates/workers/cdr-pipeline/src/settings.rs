//! The `[pipeline]` table of the configuration file.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use akira_workers::ConfigError;
use serde::Deserialize;

use crate::record::{ExtraFields, CORE_FIELDS};

/// `[pipeline]`: the database and which extra fields to keep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// A PostgreSQL URL without a password, such as `postgres:///akira?host=/run/postgresql`.
    pub database_url: Option<String>,
    /// A file holding the PostgreSQL URL, for URLs with a password.
    pub database_url_file: Option<PathBuf>,
    /// Extra fields stored in the `extra` column; every non-core field when absent.
    pub extra_fields: Option<Vec<String>>,
    /// Connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// How long a batch waits for a connection before it counts as a database outage.
    #[serde(with = "akira_workers::duration", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
}

fn default_pool_size() -> u32 {
    4
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl PipelineSettings {
    /// Checks the values serde cannot.
    pub fn validate(self, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("pipeline.{key}"),
            origin: origin.to_string(),
            message,
        };
        akira_workers::config::check_value_or_file(
            "pipeline",
            "database_url",
            self.database_url.as_deref(),
            self.database_url_file.as_deref(),
            origin,
            "the PostgreSQL URL",
        )?;
        if self.pool_size == 0 {
            return Err(invalid("pool_size", "must be at least 1".to_string()));
        }
        if let Some(fields) = &self.extra_fields {
            if let Some(core) = fields
                .iter()
                .find(|name| CORE_FIELDS.contains(&name.as_str()))
            {
                return Err(invalid(
                    "extra_fields",
                    format!("{core:?} has a column of its own; list only extra fields such as \"src_user\""),
                ));
            }
        }
        Ok(self)
    }

    /// Returns the database URL, reading it from `database_url_file` when set.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        akira_workers::config::value_or_file(
            "pipeline",
            "database_url",
            self.database_url.as_deref(),
            self.database_url_file.as_deref(),
        )
    }

    pub fn extra_fields(&self) -> ExtraFields {
        match &self.extra_fields {
            None => ExtraFields::All,
            Some(names) => ExtraFields::Only(names.iter().cloned().collect::<BTreeSet<_>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineSettings, ConfigError> {
        let config = akira_workers::Config::from_toml(
            &format!("[worker]\nname = \"cdr-pipeline\"\n{text}"),
            "pipeline.toml",
            Vec::new(),
        )?;
        config
            .section::<PipelineSettings>("pipeline")?
            .validate(config.origin())
    }

    #[test]
    fn defaults_keep_every_extra_field() {
        let settings = parse("[pipeline]\ndatabase_url = \"postgres:///akira\"\n").unwrap();
        assert_eq!(settings.extra_fields(), ExtraFields::All);
        assert_eq!(settings.pool_size, 4);
    }

    #[test]
    fn database_url_is_required() {
        let err = parse("[pipeline]\n").unwrap_err().to_string();
        assert!(err.contains("pipeline.database_url_file"), "{err}");
    }

    #[test]
    fn url_and_url_file_exclude_each_other() {
        let err = parse("[pipeline]\ndatabase_url = \"a\"\ndatabase_url_file = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn core_field_in_extra_fields_is_rejected() {
        let err =
            parse("[pipeline]\ndatabase_url = \"a\"\nextra_fields = [\"src_user\", \"callid\"]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("\"callid\""), "{err}");
    }

    #[test]
    fn url_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "postgres://cdr:secret@127.0.0.1/akira\n").unwrap();
        let settings = parse(&format!("[pipeline]\ndatabase_url_file = {:?}\n", path)).unwrap();
        assert_eq!(
            settings.database_url().unwrap(),
            "postgres://cdr:secret@127.0.0.1/akira"
        );
    }
}
