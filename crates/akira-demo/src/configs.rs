//! The configuration files the demo writes for each worker.
//!
//! Consumer names and subjects match `deploy/streams.toml`, because a worker refuses to
//! start when its consumer on the server differs from its configuration.

use std::path::Path;

/// Stream and durable consumer of the CDR pipeline.
pub const CDR_STREAM: &str = "CDR";
pub const CDR_CONSUMER: &str = "cdr-pipeline";
/// Stream and durable consumer of the notification dispatcher.
pub const NOTIFY_STREAM: &str = "NOTIFY";
pub const NOTIFY_CONSUMER: &str = "notification-dispatcher";
/// The bridge publishes to `akira.cdr.<source>`.
pub const BRIDGE_SOURCE: &str = "demo";
/// Dispatcher endpoints; the relay's routes below name them.
pub const ENDPOINTS: [&str; 3] = ["ops", "pager", "network"];

/// Returns `text` as a TOML basic string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn quoted_path(path: &Path) -> String {
    quoted(&path.display().to_string())
}

/// Returns the `[worker]`, `[nats]`, `[metrics]` and `[log]` tables every worker shares.
fn common(name: &str, nats_url: &str, metrics_address: &str) -> String {
    let servers: Vec<String> = nats_url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(quoted)
        .collect();
    format!(
        r#"[worker]
name = {name}
shutdown_timeout = "10s"

[nats]
servers = [{servers}]

[metrics]
listen = {metrics}

[log]
format = "text"
level = "info"
"#,
        name = quoted(name),
        servers = servers.join(", "),
        metrics = quoted(metrics_address),
    )
}

pub fn bridge(
    nats_url: &str,
    metrics_address: &str,
    accounting_file: &Path,
    state_file: &Path,
) -> String {
    format!(
        r#"{common}
[bridge]
path = {path}
source = {source}
state_file = {state}
"#,
        common = common("cdr-bridge", nats_url, metrics_address),
        path = quoted_path(accounting_file),
        source = quoted(BRIDGE_SOURCE),
        state = quoted_path(state_file),
    )
}

pub fn pipeline(nats_url: &str, metrics_address: &str, database_url: &str) -> String {
    format!(
        r#"{common}
[consumer]
stream = {stream}
durable_name = {consumer}
filter_subject = "akira.cdr.>"

[pipeline]
database_url = {database_url}
"#,
        common = common("cdr-pipeline", nats_url, metrics_address),
        stream = quoted(CDR_STREAM),
        consumer = quoted(CDR_CONSUMER),
        database_url = quoted(database_url),
    )
}

/// Returns the dispatcher's configuration, with every endpoint of [`ENDPOINTS`] at
/// `receiver_url(name)`.
pub fn dispatcher(
    nats_url: &str,
    metrics_address: &str,
    receiver_url: impl Fn(&str) -> String,
) -> String {
    let mut text = format!(
        r#"{common}
[consumer]
stream = {stream}
durable_name = {consumer}
filter_subject = "akira.notify.>"
deliver_subject = "akira.deliver.notification-dispatcher"
deliver_group = "notification-dispatcher"
"#,
        common = common("notification-dispatcher", nats_url, metrics_address),
        stream = quoted(NOTIFY_STREAM),
        consumer = quoted(NOTIFY_CONSUMER),
    );
    for endpoint in ENDPOINTS {
        text.push_str(&format!(
            "\n[dispatcher.endpoints.{endpoint}]\nurl = {url}\ntimeout = \"5s\"\n",
            url = quoted(&receiver_url(endpoint)),
        ));
    }
    text
}

/// Returns the relay's configuration. Critical alerts go to `pager` and on to the next
/// rules, ICMP probe alerts go to `network`, everything else to `ops`.
pub fn relay(nats_url: &str, metrics_address: &str, listen: &str) -> String {
    format!(
        r#"{common}
[relay]
listen = {listen}
path = "/alertmanager"
default_endpoint = "ops"

[[relay.routes]]
match = {{ severity = "critical" }}
endpoint = "pager"
continue = true

[[relay.routes]]
match = {{ job = "blackbox-icmp" }}
endpoint = "network"
"#,
        common = common("alert-relay", nats_url, metrics_address),
        listen = quoted(listen),
    )
}

/// Returns the retention job's configuration for `cdr_events`; the demo runs it with
/// `--dry-run`.
pub fn retention(nats_url: &str, database_url: &str, textfile_dir: &Path) -> String {
    format!(
        r#"{common}
[job]
textfile_dir = {textfile_dir}

[retention]
database_url = {database_url}
table = "cdr_events"
timestamp_column = "event_time"
max_age = "90d"
"#,
        common = common("audit-retention", nats_url, ""),
        textfile_dir = quoted_path(textfile_dir),
        database_url = quoted(database_url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> akira_workers::Config {
        akira_workers::Config::from_toml(text, "demo.toml", Vec::new()).unwrap()
    }

    #[test]
    fn configs_are_valid_worker_configs() {
        let dir = Path::new("/tmp/demo \"dir\"");
        let bridge = parse(&bridge(
            "nats://127.0.0.1:4222",
            "127.0.0.1:1",
            &dir.join("acc.log"),
            &dir.join("state.json"),
        ));
        assert_eq!(bridge.worker.name, "cdr-bridge");
        let pipeline = parse(&pipeline(
            "nats://a:1, nats://b:2",
            "127.0.0.1:2",
            "postgres://akira@127.0.0.1:5/akira",
        ));
        assert_eq!(pipeline.nats.servers, vec!["nats://a:1", "nats://b:2"]);
        assert_eq!(pipeline.durable_name(), CDR_CONSUMER);
        let dispatcher = parse(&dispatcher(
            "nats://127.0.0.1:4222",
            "127.0.0.1:3",
            |name| format!("http://127.0.0.1:9/{name}"),
        ));
        assert_eq!(
            dispatcher.consumer.deliver_group.as_deref(),
            Some("notification-dispatcher")
        );
        parse(&relay(
            "nats://127.0.0.1:4222",
            "127.0.0.1:4",
            "127.0.0.1:5",
        ));
        let retention = parse(&retention("nats://127.0.0.1:4222", "postgres://x", dir));
        assert_eq!(retention.metrics.listen, "");
    }

    #[test]
    fn dispatcher_lists_every_endpoint() {
        let text = dispatcher("nats://127.0.0.1:4222", "127.0.0.1:3", |name| {
            format!("http://h/{name}")
        });
        let table: toml::Table = toml::from_str(&text).unwrap();
        let endpoints = table["dispatcher"]["endpoints"].as_table().unwrap();
        for name in ENDPOINTS {
            assert_eq!(
                endpoints[name]["url"].as_str(),
                Some(format!("http://h/{name}").as_str())
            );
        }
    }
}
