//! The `[dispatcher]` table: the HTTP endpoints that notifications may name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use akira_workers::config::read_secret;
use akira_workers::ConfigError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;

/// `[dispatcher]` as written in the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherSettings {
    /// `[dispatcher.endpoints.<name>]`: every endpoint a notification may name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSettings>,
}

/// `[dispatcher.endpoints.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    /// `http://` or `https://` URL that receives the POST.
    pub url: String,
    /// Extra request headers, stored in plain text in this file. Put a secret in `secret_file`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Name of the header that carries the secret read from `secret_file`.
    pub secret_header: Option<String>,
    /// File whose content (without the trailing newline) is the `secret_header` value.
    pub secret_file: Option<PathBuf>,
    /// Time allowed for the whole request, from connecting to reading the status.
    #[serde(with = "akira_workers::duration", default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// An endpoint whose URL, headers and secret were checked and loaded at startup.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: Url,
    /// Configured headers plus the secret header, ready to send.
    pub headers: HeaderMap,
    pub timeout: Duration,
}

impl fmt::Debug for Endpoint {
    // The URL and headers may carry credentials, so only the name and timeout are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DispatcherSettings {
    /// Checks every endpoint and reads its secret file; errors name the full key and `origin`.
    pub fn endpoints(&self, origin: &str) -> Result<BTreeMap<String, Endpoint>, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(invalid(
                "dispatcher.endpoints",
                origin,
                "no endpoint is configured; add a table such as [dispatcher.endpoints.ops] with url = \"https://...\"",
            ));
        }
        let mut endpoints = BTreeMap::new();
        for (name, settings) in &self.endpoints {
            let endpoint = settings.load(name, origin)?;
            endpoints.insert(name.clone(), endpoint);
        }
        Ok(endpoints)
    }
}

impl EndpointSettings {
    fn load(&self, name: &str, origin: &str) -> Result<Endpoint, ConfigError> {
        let key = format!("dispatcher.endpoints.{name}");
        // Publishers address an endpoint as the last token of `akira.notify.<endpoint>`.
        if name.is_empty() || !name.chars().all(is_name_char) {
            return Err(invalid(
                &key,
                origin,
                format!(
                    "{name:?} is not a valid endpoint name; use letters, digits, '-' and '_' only"
                ),
            ));
        }

        let url = Url::parse(&self.url).map_err(|err| {
            invalid(
                &format!("{key}.url"),
                origin,
                format!("{:?} is not a URL: {err}", self.url),
            )
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(
                &format!("{key}.url"),
                origin,
                format!(
                    "scheme {:?} is not supported; use http:// or https://",
                    url.scheme()
                ),
            ));
        }

        if self.timeout.is_zero() {
            return Err(invalid(
                &format!("{key}.timeout"),
                origin,
                "must be greater than 0, such as \"10s\"",
            ));
        }

        let mut headers = HeaderMap::new();
        for (header, value) in &self.headers {
            let header_key = format!("{key}.headers.{header}");
            let (header_name, header_value) = parse_header(header, value)
                .map_err(|message| invalid(&header_key, origin, message))?;
            headers.insert(header_name, header_value);
        }

        match (&self.secret_header, &self.secret_file) {
            (Some(header), Some(path)) => {
                let secret = read_secret(&format!("{key}.secret_file"), path)?;
                let (header_name, mut header_value) = parse_header(header, &secret).map_err(|_| {
                    invalid(
                        &format!("{key}.secret_file"),
                        origin,
                        format!(
                            "the content of {} is not a valid value for header {header:?}; \
                             it must be one line of visible ASCII",
                            path.display()
                        ),
                    )
                })?;
                header_value.set_sensitive(true);
                headers.insert(header_name, header_value);
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(invalid(
                    &format!("{key}.secret_file"),
                    origin,
                    "missing; secret_header needs secret_file, the file that contains the header value",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    &format!("{key}.secret_header"),
                    origin,
                    "missing; secret_file needs secret_header, the header name such as \"Authorization\"",
                ))
            }
        }

        Ok(Endpoint {
            name: name.to_string(),
            url,
            headers,
            timeout: self.timeout,
        })
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid HTTP header name"))?;
    let header_value = HeaderValue::from_str(value).map_err(|_| {
        format!("the value of header {name:?} contains characters an HTTP header cannot carry")
    })?;
    Ok((header_name, header_value))
}

fn invalid(key: &str, origin: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        origin: origin.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> DispatcherSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn endpoint_defaults() {
        let endpoints = settings("[endpoints.ops]\nurl = \"http://127.0.0.1:8080/hook\"\n")
            .endpoints("test.toml")
            .unwrap();
        let ops = &endpoints["ops"];
        assert_eq!(ops.timeout, Duration::from_secs(10));
        assert_eq!(ops.url.as_str(), "http://127.0.0.1:8080/hook");
        assert!(ops.headers.is_empty());
    }

    #[test]
    fn empty_endpoint_list_is_rejected() {
        let err = settings("").endpoints("test.toml").unwrap_err().to_string();
        assert!(err.contains("dispatcher.endpoints"), "{err}");
    }

    #[test]
    fn non_http_url_is_rejected() {
        let err = settings("[endpoints.ops]\nurl = \"ftp://example.invalid/\"\n")
            .endpoints("test.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dispatcher.endpoints.ops.url"), "{err}");
        assert!(err.contains("\"ftp\""), "{err}");
    }

    #[test]
    fn invalid_header_names_key() {
        let err = settings(
            "[endpoints.ops]\nurl = \"http://127.0.0.1/\"\nheaders = { \"Bad Name\" = \"x\" }\n",
        )
        .endpoints("test.toml")
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("dispatcher.endpoints.ops.headers.Bad Name"),
            "{err}"
        );
    }

    #[test]
    fn secret_header_is_read_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "Bearer s3cret\n").unwrap();
        let text = format!(
            "[endpoints.ops]\nurl = \"http://127.0.0.1/\"\nsecret_header = \"Authorization\"\nsecret_file = {:?}\n",
            path.display().to_string()
        );
        let endpoints = settings(&text).endpoints("test.toml").unwrap();
        let value = endpoints["ops"].headers.get("authorization").unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer s3cret");
        assert!(value.is_sensitive());
        assert!(!format!("{:?}", endpoints["ops"]).contains("s3cret"));
    }

    #[test]
    fn secret_header_without_file_is_rejected() {
        let err = settings(
            "[endpoints.ops]\nurl = \"http://127.0.0.1/\"\nsecret_header = \"Authorization\"\n",
        )
        .endpoints("test.toml")
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("dispatcher.endpoints.ops.secret_file"),
            "{err}"
        );
    }

    #[test]
    fn missing_secret_file_names_key() {
        let err = settings(
            "[endpoints.ops]\nurl = \"http://127.0.0.1/\"\nsecret_header = \"Authorization\"\nsecret_file = \"/nonexistent/token\"\n",
        )
        .endpoints("test.toml")
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("dispatcher.endpoints.ops.secret_file"),
            "{err}"
        );
        assert!(err.contains("/nonexistent/token"), "{err}");
    }

    #[test]
    fn endpoint_name_must_be_a_token() {
        let err = settings("[endpoints.\"ops.team\"]\nurl = \"http://127.0.0.1/\"\n")
            .endpoints("test.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"ops.team\""), "{err}");
    }
}
