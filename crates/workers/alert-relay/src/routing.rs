//! Routing rules: which dispatcher endpoints an alert goes to, chosen by its labels.
//!
//! The rules work like the first level of an Alertmanager route tree: they are tried in
//! order, the first rule whose `match` fits the alert's labels wins, and a rule with
//! `continue = true` lets the next rules match as well. An alert that no rule matches goes
//! to the default endpoint.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[[relay.routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Label names and the values they must equal; every pair must match. An empty table
    /// matches every alert.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    /// Name of the dispatcher endpoint, the last token of `akira.notify.<endpoint>`.
    pub endpoint: String,
    /// Keep trying the following rules after this one matched.
    #[serde(rename = "continue", default)]
    pub continue_matching: bool,
}

impl Route {
    /// Returns whether every matcher equals the alert's label of the same name.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers
            .iter()
            .all(|(name, value)| labels.get(name) == Some(value))
    }
}

/// The routing rules and the default endpoint.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    default_endpoint: String,
}

impl Router {
    pub fn new(routes: Vec<Route>, default_endpoint: String) -> Router {
        Router {
            routes,
            default_endpoint,
        }
    }

    /// Returns the endpoints for an alert with `labels`, in rule order and without repeats.
    pub fn endpoints(&self, labels: &BTreeMap<String, String>) -> Vec<&str> {
        let mut endpoints: Vec<&str> = Vec::new();
        for route in &self.routes {
            if !route.matches(labels) {
                continue;
            }
            if !endpoints.contains(&route.endpoint.as_str()) {
                endpoints.push(&route.endpoint);
            }
            if !route.continue_matching {
                break;
            }
        }
        if endpoints.is_empty() {
            endpoints.push(&self.default_endpoint);
        }
        endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn route(matchers: &[(&str, &str)], endpoint: &str, continue_matching: bool) -> Route {
        Route {
            matchers: labels(matchers),
            endpoint: endpoint.to_string(),
            continue_matching,
        }
    }

    #[test]
    fn first_match_wins() {
        let router = Router::new(
            vec![
                route(&[("severity", "critical")], "pager", false),
                route(&[("team", "voice")], "voice", false),
            ],
            "ops".into(),
        );
        let alert = labels(&[("severity", "critical"), ("team", "voice")]);
        assert_eq!(router.endpoints(&alert), vec!["pager"]);
    }

    #[test]
    fn continue_collects_later_matches() {
        let router = Router::new(
            vec![
                route(&[("severity", "critical")], "pager", true),
                route(&[("team", "voice")], "voice", false),
                route(&[], "archive", false),
            ],
            "ops".into(),
        );
        let alert = labels(&[("severity", "critical"), ("team", "voice")]);
        assert_eq!(router.endpoints(&alert), vec!["pager", "voice"]);
    }

    #[test]
    fn all_matchers_must_match() {
        let router = Router::new(
            vec![route(
                &[("severity", "critical"), ("team", "voice")],
                "voice-pager",
                false,
            )],
            "ops".into(),
        );
        assert_eq!(
            router.endpoints(&labels(&[("severity", "critical")])),
            vec!["ops"]
        );
        assert_eq!(
            router.endpoints(&labels(&[
                ("severity", "critical"),
                ("team", "voice"),
                ("x", "y")
            ])),
            vec!["voice-pager"]
        );
    }

    #[test]
    fn matching_is_exact() {
        let router = Router::new(
            vec![route(&[("severity", "critical")], "pager", false)],
            "ops".into(),
        );
        assert_eq!(
            router.endpoints(&labels(&[("severity", "Critical")])),
            vec!["ops"]
        );
    }

    #[test]
    fn empty_match_catches_all() {
        let router = Router::new(vec![route(&[], "archive", false)], "ops".into());
        assert_eq!(router.endpoints(&labels(&[])), vec!["archive"]);
    }

    #[test]
    fn no_rules_uses_default() {
        let router = Router::new(Vec::new(), "ops".into());
        assert_eq!(router.endpoints(&labels(&[("a", "b")])), vec!["ops"]);
    }

    #[test]
    fn repeated_endpoint_is_listed_once() {
        let router = Router::new(
            vec![route(&[("a", "1")], "ops", true), route(&[], "ops", false)],
            "pager".into(),
        );
        assert_eq!(router.endpoints(&labels(&[("a", "1")])), vec!["ops"]);
    }
}
