//! The `[retention]` table of the configuration file.

use std::path::PathBuf;
use std::time::Duration;

use akira_workers::ConfigError;
use serde::Deserialize;

/// `[retention]`: which rows to delete and how fast.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// A PostgreSQL URL without a password, such as `postgres:///akira?host=/run/postgresql`.
    pub database_url: Option<String>,
    /// A file holding the PostgreSQL URL, for URLs with a password.
    pub database_url_file: Option<PathBuf>,
    /// The table, `name` or `schema.name`, used as written (case-sensitive).
    pub table: String,
    /// The `timestamptz`, `timestamp` or `date` column that dates each row.
    pub timestamp_column: String,
    /// Rows whose timestamp is older than this are deleted.
    #[serde(with = "akira_workers::duration")]
    pub max_age: Duration,
    /// Rows deleted per statement (and per transaction).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Wait between two batches, so other sessions get the table's locks and I/O.
    #[serde(with = "akira_workers::duration", default = "default_pause")]
    pub pause: Duration,
    /// How long one batch may wait for a lock before the run fails.
    #[serde(with = "akira_workers::duration", default = "default_lock_timeout")]
    pub lock_timeout: Duration,
    #[serde(with = "akira_workers::duration", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
}

fn default_batch_size() -> u32 {
    5000
}

fn default_pause() -> Duration {
    Duration::from_millis(500)
}

fn default_lock_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A table or column name checked to be a plain SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: Option<String>,
    pub name: String,
}

impl QualifiedName {
    /// Returns the name quoted for SQL, such as `"public"."cdr_events"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Reports whether `name` is a plain identifier: a letter or `_`, then letters, digits or `_`,
/// at most 63 bytes (PostgreSQL's `NAMEDATALEN` - 1).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    starts_well && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && name.len() <= 63
}

impl RetentionSettings {
    /// Checks the values serde cannot.
    pub fn validate(self, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("retention.{key}"),
            origin: origin.to_string(),
            message,
        };
        akira_workers::config::check_value_or_file(
            "retention",
            "database_url",
            self.database_url.as_deref(),
            self.database_url_file.as_deref(),
            origin,
            "the PostgreSQL URL",
        )?;
        self.table_name()
            .map_err(|message| invalid("table", message))?;
        if !is_identifier(&self.timestamp_column) {
            return Err(invalid(
                "timestamp_column",
                format!(
                    "{:?} is not a plain SQL identifier; use letters, digits and '_', such as \"event_time\"",
                    self.timestamp_column
                ),
            ));
        }
        if self.max_age.is_zero() {
            return Err(invalid(
                "max_age",
                "must be greater than 0, such as \"90d\"; 0 would delete every row".to_string(),
            ));
        }
        if self.batch_size == 0 {
            return Err(invalid(
                "batch_size",
                "must be at least 1, such as 5000".to_string(),
            ));
        }
        if self.lock_timeout.is_zero() {
            return Err(invalid(
                "lock_timeout",
                "must be greater than 0; PostgreSQL reads 0 as no timeout".to_string(),
            ));
        }
        Ok(self)
    }

    /// Returns the table as a checked, quotable name.
    pub fn table_name(&self) -> Result<QualifiedName, String> {
        let parts: Vec<&str> = self.table.split('.').collect();
        let problem = || {
            format!(
                "{:?} is not a table name; write `name` or `schema.name` with letters, digits and '_', such as \"cdr_events\"",
                self.table
            )
        };
        if parts.len() > 2 || !parts.iter().all(|part| is_identifier(part)) {
            return Err(problem());
        }
        Ok(match parts.as_slice() {
            [schema, name] => QualifiedName {
                schema: Some(schema.to_string()),
                name: name.to_string(),
            },
            [name] => QualifiedName {
                schema: None,
                name: name.to_string(),
            },
            _ => return Err(problem()),
        })
    }

    /// Returns the database URL, reading it from `database_url_file` when set.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        akira_workers::config::value_or_file(
            "retention",
            "database_url",
            self.database_url.as_deref(),
            self.database_url_file.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RetentionSettings, ConfigError> {
        let config = akira_workers::Config::from_toml(
            &format!("[worker]\nname = \"audit-retention\"\n[retention]\ndatabase_url = \"postgres:///akira\"\n{text}"),
            "retention.toml",
            Vec::new(),
        )?;
        config
            .section::<RetentionSettings>("retention")?
            .validate(config.origin())
    }

    #[test]
    fn defaults_apply() {
        let settings =
            parse("table = \"cdr_events\"\ntimestamp_column = \"event_time\"\nmax_age = \"90d\"\n")
                .unwrap();
        assert_eq!(settings.batch_size, 5000);
        assert_eq!(settings.pause, Duration::from_millis(500));
        assert_eq!(settings.max_age, Duration::from_secs(90 * 86400));
        assert_eq!(settings.table_name().unwrap().quoted(), "\"cdr_events\"");
    }

    #[test]
    fn schema_qualified_table_is_quoted_per_part() {
        let settings =
            parse("table = \"audit.log_2024\"\ntimestamp_column = \"at\"\nmax_age = \"1d\"\n")
                .unwrap();
        assert_eq!(
            settings.table_name().unwrap().quoted(),
            "\"audit\".\"log_2024\""
        );
    }

    #[test]
    fn table_that_is_not_an_identifier_is_rejected() {
        for table in [
            "cdr_events; DROP TABLE x",
            "a.b.c",
            "\"quoted\"",
            "1abc",
            "",
            "a..b",
        ] {
            let err = parse(&format!(
                "table = {table:?}\ntimestamp_column = \"at\"\nmax_age = \"1d\"\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("retention.table"), "{table:?}: {err}");
        }
    }

    #[test]
    fn column_that_is_not_an_identifier_is_rejected() {
        let err = parse("table = \"t\"\ntimestamp_column = \"at desc\"\nmax_age = \"1d\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.timestamp_column"), "{err}");
    }

    #[test]
    fn zero_max_age_is_rejected() {
        let err = parse("table = \"t\"\ntimestamp_column = \"at\"\nmax_age = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.max_age"), "{err}");
    }

    #[test]
    fn missing_max_age_names_key() {
        let err = parse("table = \"t\"\ntimestamp_column = \"at\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.max_age"), "{err}");
    }
}
