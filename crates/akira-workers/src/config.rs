//! Worker configuration: one TOML file plus `AKIRA_*` environment overrides.
//!
//! Every key has a default except `worker.name`. An environment variable
//! `AKIRA_<SECTION>__<KEY>=value` overrides `<section>.<key>`. The value is read as a TOML
//! value when it parses as one (`5`, `true`, `["a", "b"]`), as a string otherwise, and an
//! empty value removes the key.
//! Secrets are only read from files (`*_file` keys). A file path may start with
//! `$CREDENTIALS_DIRECTORY/`, and a relative path is looked up in `$CREDENTIALS_DIRECTORY`
//! when systemd sets it, so `LoadCredential=` works without writing paths twice.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "AKIRA_";

/// An invalid or missing configuration value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid configuration value `{key}` in {origin}: {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("`{key}` is {path:?}, but CREDENTIALS_DIRECTORY is not set; run the worker under systemd with LoadCredential=, or set CREDENTIALS_DIRECTORY or an absolute path")]
    CredentialsDirectoryUnset { key: String, path: PathBuf },
    #[error(
        "cannot read secret `{key}` from {path}: {source}; check the path and its permissions"
    )]
    Secret {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, origin: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: origin.to_string(),
            message: message.into(),
        }
    }
}

/// The settings every worker shares, plus the whole document for worker-specific sections.
#[derive(Debug, Clone)]
pub struct Config {
    pub worker: WorkerSettings,
    pub nats: NatsSettings,
    pub consumer: ConsumerSettings,
    pub core: CoreSettings,
    pub retry: RetryPolicy,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub job: JobSettings,
    document: toml::Table,
    origin: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonSections {
    worker: WorkerSettings,
    #[serde(default)]
    nats: NatsSettings,
    #[serde(default)]
    consumer: ConsumerSettings,
    #[serde(default)]
    core: CoreSettings,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    metrics: MetricsSettings,
    #[serde(default)]
    log: LogSettings,
    #[serde(default)]
    job: JobSettings,
}

const COMMON_SECTIONS: [&str; 8] = [
    "worker", "nats", "consumer", "core", "retry", "metrics", "log", "job",
];

/// `[worker]`: identity and lifecycle.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Name used in the `worker` metric label, logs and dead-letter headers.
    pub name: String,
    /// Time that handlers in flight get to finish after SIGTERM or SIGINT.
    #[serde(with = "crate::duration", default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// A handler running longer than this is cancelled and its message retried.
    #[serde(with = "crate::duration::option", default)]
    pub handler_timeout: Option<Duration>,
    /// Create a missing stream, consumer or `AKIRA_DLQ` at startup (development and tests).
    #[serde(default)]
    pub ensure: bool,
    /// How long startup keeps trying to reach NATS before it gives up.
    #[serde(with = "crate::duration", default = "default_startup_timeout")]
    pub startup_timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(20)
}

fn default_startup_timeout() -> Duration {
    Duration::from_secs(60)
}

/// `[nats]`: servers, authentication and TLS.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URLs; `NATS_URL` (comma-separated) is used when empty.
    #[serde(default, deserialize_with = "string_or_list")]
    pub servers: Vec<String>,
    /// Connection name shown by the server; defaults to `akira-<worker name>`.
    pub name: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub nkey_seed_file: Option<PathBuf>,
    pub creds_file: Option<PathBuf>,
    #[serde(with = "crate::duration::option", default)]
    pub connect_timeout: Option<Duration>,
    #[serde(default)]
    pub tls: TlsSettings,
}

/// `[nats.tls]`: CA bundle and client certificate files.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Require TLS even without a CA or client certificate.
    #[serde(default)]
    pub required: bool,
}

/// `[consumer]`: the durable consumer of a JetStream worker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    pub stream: Option<String>,
    pub durable_name: Option<String>,
    pub filter_subject: Option<String>,
    #[serde(with = "crate::duration", default = "default_ack_wait")]
    pub ack_wait: Duration,
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: i64,
    /// Per-process limit of messages received and not yet acknowledged.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Push consumers: the subject the server delivers to.
    pub deliver_subject: Option<String>,
    /// Push consumers: the queue group shared by every instance.
    pub deliver_group: Option<String>,
    #[serde(with = "crate::duration", default = "default_idle_heartbeat")]
    pub idle_heartbeat: Duration,
    /// Pull consumers: the most messages one fetch requests.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Pull consumers: how long one fetch waits to fill its batch.
    #[serde(with = "crate::duration", default = "default_max_wait")]
    pub max_wait: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            stream: None,
            durable_name: None,
            filter_subject: None,
            ack_wait: default_ack_wait(),
            max_ack_pending: default_max_ack_pending(),
            max_in_flight: default_max_in_flight(),
            deliver_subject: None,
            deliver_group: None,
            idle_heartbeat: default_idle_heartbeat(),
            batch_size: default_batch_size(),
            max_wait: default_max_wait(),
        }
    }
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ack_pending() -> i64 {
    1000
}
fn default_max_in_flight() -> usize {
    64
}
fn default_idle_heartbeat() -> Duration {
    Duration::from_secs(5)
}
fn default_batch_size() -> usize {
    100
}
fn default_max_wait() -> Duration {
    Duration::from_secs(1)
}

/// `[core]`: subjects of a core NATS worker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoreSettings {
    #[serde(default, deserialize_with = "string_or_list")]
    pub subjects: Vec<String>,
    pub queue_group: Option<String>,
    /// Handlers running at once; further messages wait in the subscription.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            subjects: Vec::new(),
            queue_group: None,
            max_in_flight: default_max_in_flight(),
        }
    }
}

/// `[metrics]`: the HTTP endpoint for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Listen address; empty disables the endpoint.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9464".to_string()
}

/// `[log]`: output format and filter.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `akira_workers=debug`; `RUST_LOG` wins.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Auto,
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald under systemd, text on a terminal, JSON lines otherwise.
    #[default]
    Auto,
    Journald,
    Json,
    Text,
}

/// `[job]`: settings of timer jobs.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// node_exporter textfile-collector directory for the job's `.prom` file.
    pub textfile_dir: Option<PathBuf>,
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::One(text) => split_list(&text),
        Raw::Many(list) => list,
    })
}

/// Splits a comma-separated list, dropping empty items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    /// Reads the file at `path` and applies the process's `AKIRA_*` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses configuration text and applies `env` overrides; `origin` names the source in errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut document: toml::Table =
            toml::from_str(text).map_err(|err| ConfigError::Syntax {
                path: origin.to_string(),
                message: err.to_string(),
            })?;
        apply_env_overrides(&mut document, env)?;

        let mut common_table = toml::Table::new();
        for section in COMMON_SECTIONS {
            if let Some(value) = document.get(section) {
                common_table.insert(section.to_string(), value.clone());
            }
        }
        let common: CommonSections = deserialize_with_path(common_table, origin)?;

        let config = Config {
            worker: common.worker,
            nats: common.nats,
            consumer: common.consumer,
            core: common.core,
            retry: common.retry,
            metrics: common.metrics,
            log: common.log,
            job: common.job,
            document,
            origin: origin.to_string(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Deserializes the worker-specific table `[key]`; errors name the full key.
    ///
    /// A missing table deserializes from an empty one, so a section whose fields all have
    /// defaults may be left out.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        let value = self
            .document
            .get(key)
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        deserialize_at(value, Some(key), &self.origin)
    }

    /// Checks that every NATS secret and TLS file the configuration names can be read, so
    /// `--check-config` finds a missing credential before startup does.
    pub fn check_secret_files(&self) -> Result<(), ConfigError> {
        let nats = &self.nats;
        let files = [
            ("nats.password_file", &nats.password_file),
            ("nats.token_file", &nats.token_file),
            ("nats.nkey_seed_file", &nats.nkey_seed_file),
            ("nats.creds_file", &nats.creds_file),
            ("nats.tls.ca_file", &nats.tls.ca_file),
            ("nats.tls.cert_file", &nats.tls.cert_file),
            ("nats.tls.key_file", &nats.tls.key_file),
        ];
        for (key, path) in files {
            let Some(path) = path else {
                continue;
            };
            let resolved = resolve_secret_path_checked(key, path)?;
            std::fs::File::open(&resolved).map_err(|source| ConfigError::Secret {
                key: key.to_string(),
                path: resolved.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Names the file (or other source) the configuration came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Returns the NATS server URLs: `nats.servers`, else `NATS_URL`, else the local default.
    pub fn nats_servers(&self) -> Vec<String> {
        if !self.nats.servers.is_empty() {
            return self.nats.servers.clone();
        }
        if let Ok(url) = std::env::var("NATS_URL") {
            let servers = split_list(&url);
            if !servers.is_empty() {
                return servers;
            }
        }
        vec!["nats://127.0.0.1:4222".to_string()]
    }

    /// Returns the stream name, or an error naming `consumer.stream`.
    pub fn stream_name(&self) -> Result<&str, ConfigError> {
        self.consumer
            .stream
            .as_deref()
            .ok_or_else(|| self.missing("consumer.stream", "a stream name such as \"CDR\""))
    }

    /// Returns the durable consumer name: `consumer.durable_name`, else the worker name.
    pub fn durable_name(&self) -> &str {
        self.consumer
            .durable_name
            .as_deref()
            .unwrap_or(&self.worker.name)
    }

    pub(crate) fn missing(&self, key: &str, expected: &str) -> ConfigError {
        ConfigError::invalid(key, &self.origin, format!("missing; expected {expected}"))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let origin = &self.origin;
        let name = &self.worker.name;
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(ConfigError::invalid(
                "worker.name",
                origin,
                format!("{name:?} is not a valid name; use letters, digits, '-' and '_' only"),
            ));
        }
        if self.worker.shutdown_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "worker.shutdown_timeout",
                origin,
                "must be greater than 0, such as \"20s\"",
            ));
        }
        if self.worker.handler_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::invalid(
                "worker.handler_timeout",
                origin,
                "must be greater than 0; leave it out for no timeout",
            ));
        }
        self.retry.validate(origin)?;
        for server in &self.nats.servers {
            if !(server.starts_with("nats://")
                || server.starts_with("tls://")
                || server.starts_with("ws://")
                || server.starts_with("wss://")
                || !server.contains("://"))
            {
                return Err(ConfigError::invalid(
                    "nats.servers",
                    origin,
                    format!(
                        "{server:?} is not a NATS URL; write nats://host:4222 or tls://host:4222"
                    ),
                ));
            }
        }
        let consumer = &self.consumer;
        if consumer.ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "consumer.ack_wait",
                origin,
                format!(
                    "{} is too short; use at least 1s",
                    crate::duration::format(consumer.ack_wait)
                ),
            ));
        }
        for (key, value) in [
            ("consumer.max_in_flight", consumer.max_in_flight),
            ("consumer.batch_size", consumer.batch_size),
            ("core.max_in_flight", self.core.max_in_flight),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, origin, "must be at least 1"));
            }
        }
        if consumer.max_ack_pending < 1 {
            return Err(ConfigError::invalid(
                "consumer.max_ack_pending",
                origin,
                format!("{} must be at least 1", consumer.max_ack_pending),
            ));
        }
        if consumer.max_wait < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                "consumer.max_wait",
                origin,
                "must be at least 100ms",
            ));
        }
        if self.log.level.trim().is_empty() {
            return Err(ConfigError::invalid(
                "log.level",
                origin,
                "must not be empty; use info",
            ));
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::invalid(
                "metrics.listen",
                origin,
                format!(
                    "{:?} is not a socket address; write 127.0.0.1:9464, or \"\" to disable",
                    self.metrics.listen
                ),
            ));
        }
        Ok(())
    }
}

fn deserialize_with_path<T: DeserializeOwned>(
    table: toml::Table,
    origin: &str,
) -> Result<T, ConfigError> {
    deserialize_at(toml::Value::Table(table), None, origin)
}

/// Deserializes `value`; errors carry the full dotted key, with `prefix` for a section.
fn deserialize_at<T: DeserializeOwned>(
    value: toml::Value,
    prefix: Option<&str>,
    origin: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let message = err.inner().to_string();
        let mut parts: Vec<String> = prefix.map(str::to_string).into_iter().collect();
        let path = err.path().to_string();
        if path != "." {
            parts.push(path);
        }
        // serde reports a missing field at its parent; the field name is in the message.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            parts.push(field.to_string());
        }
        let key = if parts.is_empty() {
            "(document)".to_string()
        } else {
            parts.join(".")
        };
        ConfigError::Invalid {
            key,
            origin: origin.to_string(),
            message,
        }
    })
}

fn apply_env_overrides(
    document: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            // AKIRA_CONFIG and similar single-word variables are not overrides.
            continue;
        }
        let path: Vec<String> = rest
            .split("__")
            .map(|part| part.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                &name,
                "the environment",
                "empty key part; write AKIRA_SECTION__KEY=value",
            ));
        }
        // An empty value removes the key, so an optional setting can be turned off.
        let value = if raw.is_empty() {
            None
        } else {
            Some(parse_env_value(&raw))
        };
        let mut table = &mut *document;
        for part in &path[..path.len() - 1] {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(inner) => inner,
                _ => {
                    return Err(ConfigError::invalid(
                        &path.join("."),
                        &format!("environment variable {name}"),
                        format!("`{part}` is not a table in the configuration file"),
                    ))
                }
            };
        }
        let last = path[path.len() - 1].clone();
        match value {
            Some(value) => table.insert(last, value),
            None => table.remove(&last),
        };
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let wrapped = format!("value = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut table) => table
            .remove("value")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Resolves a `*_file` path: expands `$CREDENTIALS_DIRECTORY`, and reads a relative path from
/// that directory when systemd sets it.
pub fn resolve_secret_path(path: &Path) -> PathBuf {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let text = path.to_string_lossy();
    for prefix in ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let base = credentials.clone().unwrap_or_default();
            return base.join(rest);
        }
    }
    match credentials {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// Checks that exactly one of `<section>.<name>` and `<section>.<name>_file` is set, for a value
/// that may carry a secret (a database URL with a password, say). `what` names the value in the
/// error, such as "the PostgreSQL URL".
pub fn check_value_or_file(
    section: &str,
    name: &str,
    value: Option<&str>,
    file: Option<&Path>,
    origin: &str,
    what: &str,
) -> Result<(), ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            &format!("{section}.{name}"),
            origin,
            format!("set either {name} or {name}_file, not both"),
        )),
        (None, None) => Err(ConfigError::invalid(
            &format!("{section}.{name}_file"),
            origin,
            format!(
                "missing; set {name}_file to a file holding {what}, or {name} for a value without a secret"
            ),
        )),
        _ => Ok(()),
    }
}

/// Returns `<section>.<name>` when set, else the secret read from `<section>.<name>_file`.
/// Call [`check_value_or_file`] first: with neither set this returns a missing-value error.
pub fn value_or_file(
    section: &str,
    name: &str,
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<String, ConfigError> {
    match (value, file) {
        (Some(value), _) => Ok(value.to_string()),
        (None, Some(path)) => read_secret(&format!("{section}.{name}_file"), path),
        (None, None) => Err(ConfigError::invalid(
            &format!("{section}.{name}_file"),
            "the configuration",
            format!("missing; set {name}_file or {name}"),
        )),
    }
}

/// Resolves a `*_file` path like [`resolve_secret_path`], but fails when the path names
/// `$CREDENTIALS_DIRECTORY` and the variable is not set.
pub fn resolve_secret_path_checked(key: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    let text = path.to_string_lossy();
    let names_directory = text.starts_with("$CREDENTIALS_DIRECTORY/")
        || text.starts_with("${CREDENTIALS_DIRECTORY}/");
    if names_directory && std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
        return Err(ConfigError::CredentialsDirectoryUnset {
            key: key.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(resolve_secret_path(path))
}

/// Reads a secret from a file named by `key`, trimming the trailing newline.
pub fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let resolved = resolve_secret_path_checked(key, path)?;
    let text = std::fs::read_to_string(&resolved).map_err(|source| ConfigError::Secret {
        key: key.to_string(),
        path: resolved.clone(),
        source,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LogFormat::Auto => "auto",
            LogFormat::Journald => "journald",
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(text, "test.toml", env)
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let config = parse("[worker]\nname = \"w\"\n", &[]).unwrap();
        assert_eq!(config.worker.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(config.retry.max_deliver, 5);
        assert_eq!(config.consumer.ack_wait, Duration::from_secs(30));
        assert_eq!(config.durable_name(), "w");
    }

    #[test]
    fn invalid_duration_names_key() {
        let err = parse(
            "[worker]\nname = \"w\"\n[consumer]\nack_wait = \"30x\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`consumer.ack_wait`"), "{err}");
        assert!(err.contains("\"30x\""), "{err}");
    }

    #[test]
    fn missing_name_names_key() {
        let err = parse("[worker]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("name"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = parse(
            "[worker]\nname = \"w\"\n[retry]\nbase_delay = \"1s\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("base_delay"), "{err}");
    }

    #[test]
    fn env_overrides_nested_keys() {
        let config = parse(
            "[worker]\nname = \"w\"\n",
            &[
                ("AKIRA_RETRY__MAX_DELIVER", "3"),
                ("AKIRA_NATS__SERVERS", "nats://a:4222,nats://b:4222"),
                ("AKIRA_CONFIG", "/ignored"),
            ],
        )
        .unwrap();
        assert_eq!(config.retry.max_deliver, 3);
        assert_eq!(config.nats.servers, vec!["nats://a:4222", "nats://b:4222"]);
    }

    #[test]
    fn value_or_file_needs_exactly_one() {
        let file = Path::new("/run/keys/db-url");
        let both = check_value_or_file(
            "db",
            "url",
            Some("postgres:///a"),
            Some(file),
            "t",
            "the URL",
        );
        assert!(both.unwrap_err().to_string().contains("not both"));
        let neither = check_value_or_file("db", "url", None, None, "t", "the URL")
            .unwrap_err()
            .to_string();
        assert!(neither.contains("`db.url_file`"), "{neither}");
        assert!(neither.contains("the URL"), "{neither}");
        assert!(
            check_value_or_file("db", "url", Some("postgres:///a"), None, "t", "the URL").is_ok()
        );
        assert_eq!(
            value_or_file("db", "url", Some("postgres:///a"), None).unwrap(),
            "postgres:///a"
        );
    }

    #[test]
    fn value_or_file_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "postgres://u:p@h/db\n").unwrap();
        let value = value_or_file("db", "url", None, Some(&path)).unwrap();
        assert_eq!(value, "postgres://u:p@h/db");
    }

    #[test]
    fn empty_env_override_removes_key() {
        let config = parse(
            "[worker]\nname = \"w\"\n[nats]\ncreds_file = \"/etc/akira/nats.creds\"\n",
            &[("AKIRA_NATS__CREDS_FILE", "")],
        )
        .unwrap();
        assert_eq!(config.nats.creds_file, None);
    }

    #[test]
    fn missing_secret_file_fails_check() {
        let config = parse(
            "[worker]\nname = \"w\"\n[nats]\ntoken_file = \"/nonexistent/akira-token\"\n",
            &[],
        )
        .unwrap();
        let err = config.check_secret_files().unwrap_err().to_string();
        assert!(err.contains("`nats.token_file`"), "{err}");
        assert!(err.contains("/nonexistent/akira-token"), "{err}");
    }

    #[test]
    fn env_override_with_bad_value_names_key() {
        let err = parse(
            "[worker]\nname = \"w\"\n",
            &[("AKIRA_RETRY__MAX_DELIVER", "many")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("retry.max_deliver"), "{err}");
    }

    #[test]
    fn worker_section_is_read_with_full_key() {
        #[derive(Deserialize, Debug)]
        struct Bridge {
            #[allow(dead_code)]
            max_line_bytes: usize,
        }
        let config = parse(
            "[worker]\nname = \"w\"\n[bridge]\nmax_line_bytes = -1\n",
            &[],
        )
        .unwrap();
        let err = config.section::<Bridge>("bridge").unwrap_err().to_string();
        assert!(err.contains("bridge.max_line_bytes"), "{err}");
    }

    #[test]
    fn secret_path_expands_credentials_directory() {
        // Only the literal-prefix form is checked: it does not depend on the process environment.
        let resolved = resolve_secret_path(Path::new("/etc/akira/nats.creds"));
        assert_eq!(resolved, PathBuf::from("/etc/akira/nats.creds"));
    }
}
