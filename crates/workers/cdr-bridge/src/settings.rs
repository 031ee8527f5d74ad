//! The `[bridge]` table of the configuration file.

use std::path::PathBuf;
use std::time::Duration;

use akira_workers::ConfigError;
use serde::Deserialize;

/// `[bridge]`: the file to tail and where to keep the position.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSettings {
    /// The accounting file Kamailio appends to.
    pub path: PathBuf,
    /// The last token of the subject `akira.cdr.<source>`, usually the proxy's name.
    pub source: String,
    /// Path of the saved position; defaults to `$STATE_DIRECTORY/cdr-bridge-<source>.json`.
    pub state_file: Option<PathBuf>,
    /// Longer lines are dead-lettered with their first `max_line_bytes` bytes.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How often the file is checked for new lines, truncation and rotation when idle.
    #[serde(with = "akira_workers::duration", default = "default_poll_interval")]
    pub poll_interval: Duration,
    /// After a rename rotation, how long the old file may stay idle before the bridge stops
    /// reading it while the new file is still empty.
    #[serde(with = "akira_workers::duration", default = "default_rotate_wait")]
    pub rotate_wait: Duration,
    /// Lines published whose PubAck has not arrived yet, at most.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_max_line_bytes() -> usize {
    64 * 1024
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(250)
}

fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_max_in_flight() -> usize {
    256
}

impl BridgeSettings {
    /// Checks the values serde cannot and fills in the state file from `state_directory`
    /// (systemd's `$STATE_DIRECTORY`).
    pub fn validate(
        mut self,
        origin: &str,
        state_directory: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("bridge.{key}"),
            origin: origin.to_string(),
            message,
        };

        if let Some(problem) = source_problem(&self.source) {
            return Err(invalid(
                "source",
                format!(
                    "{:?} {problem}; use letters, digits, '-' and '_', such as \"edge1\"",
                    self.source
                ),
            ));
        }
        if self.path.as_os_str().is_empty() {
            return Err(invalid(
                "path",
                "must name the accounting file to tail".to_string(),
            ));
        }
        if self.max_line_bytes < 64 {
            return Err(invalid(
                "max_line_bytes",
                format!(
                    "{} is too small; use at least 64 (the default is 65536)",
                    self.max_line_bytes
                ),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("max_in_flight", "must be at least 1".to_string()));
        }
        if self.poll_interval.is_zero() {
            return Err(invalid(
                "poll_interval",
                "must be greater than 0, such as \"250ms\"".to_string(),
            ));
        }

        if self.state_file.is_none() {
            // systemd joins several StateDirectory= entries with ':'; the first is ours.
            let directory = state_directory
                .and_then(|dirs| dirs.split(':').next())
                .filter(|dir| !dir.is_empty());
            match directory {
                Some(dir) => {
                    self.state_file =
                        Some(PathBuf::from(dir).join(format!("cdr-bridge-{}.json", self.source)))
                }
                None => {
                    return Err(invalid(
                        "state_file",
                        "missing; set it, or run under systemd with StateDirectory= so the default $STATE_DIRECTORY/cdr-bridge-<source>.json applies".to_string(),
                    ))
                }
            }
        }
        Ok(self)
    }

    /// Returns the state file path; set after [`BridgeSettings::validate`].
    pub fn state_file(&self) -> &std::path::Path {
        self.state_file
            .as_deref()
            .expect("validate fills in the state file")
    }

    pub fn subject(&self) -> String {
        format!("akira.cdr.{}", self.source)
    }

    pub fn dlq_subject(&self) -> String {
        format!(
            "{}.cdr-bridge.{}",
            akira_workers::dlq::DLQ_SUBJECT_PREFIX,
            self.source
        )
    }
}

/// Describes what makes `source` unusable as one subject token, if anything.
fn source_problem(source: &str) -> Option<&'static str> {
    if source.is_empty() {
        return Some("is empty");
    }
    if source.contains('.') {
        return Some("contains '.', which would split the subject token");
    }
    if source.contains(['*', '>']) {
        return Some("contains a wildcard ('*' or '>')");
    }
    if !source
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Some("contains a character other than letters, digits, '-' and '_'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, state_directory: Option<&str>) -> Result<BridgeSettings, ConfigError> {
        let config = akira_workers::Config::from_toml(
            &format!("[worker]\nname = \"cdr-bridge\"\n{text}"),
            "bridge.toml",
            Vec::new(),
        )?;
        config
            .section::<BridgeSettings>("bridge")?
            .validate(config.origin(), state_directory)
    }

    #[test]
    fn defaults_apply() {
        let settings = parse(
            "[bridge]\npath = \"/var/log/acc.jsonl\"\nsource = \"edge1\"\nstate_file = \"/tmp/s.json\"\n",
            None,
        )
        .unwrap();
        assert_eq!(settings.max_line_bytes, 65536);
        assert_eq!(settings.poll_interval, Duration::from_millis(250));
        assert_eq!(settings.subject(), "akira.cdr.edge1");
        assert_eq!(settings.dlq_subject(), "akira.dlq.cdr-bridge.edge1");
    }

    #[test]
    fn state_file_defaults_to_state_directory() {
        let settings = parse(
            "[bridge]\npath = \"/var/log/acc.jsonl\"\nsource = \"edge1\"\n",
            Some("/var/lib/akira-cdr-bridge:/var/lib/other"),
        )
        .unwrap();
        assert_eq!(
            settings.state_file(),
            std::path::Path::new("/var/lib/akira-cdr-bridge/cdr-bridge-edge1.json")
        );
    }

    #[test]
    fn missing_state_file_names_key() {
        let err = parse("[bridge]\npath = \"/a\"\nsource = \"edge1\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bridge.state_file"), "{err}");
        assert!(err.contains("STATE_DIRECTORY"), "{err}");
    }

    #[test]
    fn source_must_be_one_token() {
        for source in ["edge.1", "edge*", ">", "edge 1", ""] {
            let err = parse(
                &format!("[bridge]\npath = \"/a\"\nsource = {source:?}\nstate_file = \"/s\"\n"),
                None,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("bridge.source"), "{source:?}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = parse(
            "[bridge]\npath = \"/a\"\nsource = \"e\"\nstate_file = \"/s\"\nextra_fields = []\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("extra_fields"), "{err}");
    }
}
