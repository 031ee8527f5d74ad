//! The `[relay]` table.

use std::net::SocketAddr;

use akira_workers::ConfigError;
use serde::Deserialize;

use crate::routing::{Route, Router};

/// `[relay]` as written in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Address of the HTTP server that receives webhooks.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// URL path that accepts the POSTs; Alertmanager's `webhook_configs.url` ends with it.
    #[serde(default = "default_path")]
    pub path: String,
    /// Endpoint for alerts that no rule in `routes` matches.
    pub default_endpoint: String,
    #[serde(default)]
    pub routes: Vec<Route>,
}

fn default_listen() -> String {
    "127.0.0.1:9095".to_string()
}

fn default_path() -> String {
    "/alertmanager".to_string()
}

impl RelaySettings {
    /// Returns the parsed listen address, or an error naming `relay.listen`.
    pub fn listen_address(&self, origin: &str) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            invalid(
                "relay.listen",
                origin,
                format!(
                    "{:?} is not a socket address; write 127.0.0.1:9095",
                    self.listen
                ),
            )
        })
    }

    /// Checks the path and the endpoint names and builds the router.
    pub fn router(&self, origin: &str) -> Result<Router, ConfigError> {
        if !self.path.starts_with('/') {
            return Err(invalid(
                "relay.path",
                origin,
                format!(
                    "{:?} must start with '/', such as \"/alertmanager\"",
                    self.path
                ),
            ));
        }
        check_endpoint_name("relay.default_endpoint", &self.default_endpoint, origin)?;
        for (index, route) in self.routes.iter().enumerate() {
            check_endpoint_name(
                &format!("relay.routes[{index}].endpoint"),
                &route.endpoint,
                origin,
            )?;
        }
        Ok(Router::new(
            self.routes.clone(),
            self.default_endpoint.clone(),
        ))
    }
}

/// Endpoint names become the last token of `akira.notify.<endpoint>`, so they must be
/// valid subject tokens; the dispatcher applies the same rule to its endpoint names.
fn check_endpoint_name(key: &str, name: &str, origin: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            key,
            origin,
            format!("{name:?} is not a valid endpoint name; use letters, digits, '-' and '_' only"),
        ))
    }
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

    fn settings(text: &str) -> RelaySettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults() {
        let relay = settings("default_endpoint = \"ops\"\n");
        assert_eq!(relay.listen, "127.0.0.1:9095");
        assert_eq!(relay.path, "/alertmanager");
        assert!(relay.routes.is_empty());
        relay.router("test.toml").unwrap();
    }

    #[test]
    fn routes_are_read() {
        let relay = settings(
            "default_endpoint = \"ops\"\n\
             [[routes]]\nmatch = { severity = \"critical\" }\nendpoint = \"pager\"\ncontinue = true\n\
             [[routes]]\nendpoint = \"archive\"\n",
        );
        assert_eq!(relay.routes.len(), 2);
        assert!(relay.routes[0].continue_matching);
        assert_eq!(relay.routes[0].matchers["severity"], "critical");
        assert!(relay.routes[1].matchers.is_empty());
    }

    #[test]
    fn invalid_route_endpoint_names_key() {
        let relay = settings("default_endpoint = \"ops\"\n[[routes]]\nendpoint = \"a.b\"\n");
        let err = relay.router("test.toml").unwrap_err().to_string();
        assert!(err.contains("relay.routes[0].endpoint"), "{err}");
    }

    #[test]
    fn path_must_be_absolute() {
        let relay = settings("default_endpoint = \"ops\"\npath = \"alertmanager\"\n");
        let err = relay.router("test.toml").unwrap_err().to_string();
        assert!(err.contains("relay.path"), "{err}");
    }

    #[test]
    fn invalid_listen_names_key() {
        let relay = settings("default_endpoint = \"ops\"\nlisten = \"localhost\"\n");
        let err = relay.listen_address("test.toml").unwrap_err().to_string();
        assert!(err.contains("relay.listen"), "{err}");
    }
}
