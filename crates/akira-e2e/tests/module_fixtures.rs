//! Checks of what the NixOS module generates (`fixtures/module/`) against the library and
//! `akira-workerctl` themselves, for every fixture host including the sample host.

use std::time::Duration;

use akira_e2e::{binary, to_toml, ModuleFixture};
use akira_workers::Config;
use serde_json::Value;

/// Every fixture host, and each of its specialisations.
fn hosts() -> Vec<(String, ModuleFixture)> {
    let mut hosts = Vec::new();
    for name in ModuleFixture::names() {
        let fixture = ModuleFixture::load(&name);
        for specialisation in fixture.specialisations() {
            hosts.push((
                format!("{name}/{specialisation}"),
                fixture.specialisation(&specialisation),
            ));
        }
        hosts.push((name, fixture));
    }
    assert!(
        hosts.iter().any(|(name, _)| name == "sample-host"),
        "the sample host fixture is missing; run `tests/nix/run --write-fixtures`"
    );
    hosts
}

fn parse_duration(text: &Value) -> Duration {
    let text = text.as_str().expect("durations are strings");
    akira_workers::duration::parse(text).unwrap()
}

#[test]
fn generated_settings_load_and_backoff_matches() {
    let mut consumers_checked = 0;
    for (host, fixture) in hosts() {
        for unit in fixture.worker_units() {
            let settings = fixture.worker_settings(&unit);
            let origin = format!("{host} {unit}");
            let config = Config::from_toml(&to_toml(&settings), &origin, Vec::new())
                .unwrap_or_else(|err| {
                    panic!("{origin}: the library rejects the generated settings: {err}")
                });
            if settings.get("consumer").is_none() {
                continue;
            }

            let durable = config.durable_name().to_string();
            let declared = fixture.declarations()["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|consumer| consumer["durable_name"] == durable.as_str())
                .unwrap_or_else(|| panic!("{origin}: no consumer declaration for {durable}"));
            let declared_backoff: Vec<Duration> = declared["backoff"]
                .as_array()
                .unwrap_or_else(|| panic!("{origin}: the declaration has no backoff list"))
                .iter()
                .map(parse_duration)
                .collect();
            let ack_wait = parse_duration(&declared["ack_wait"]);

            assert_eq!(
                declared_backoff,
                config.retry.server_backoff(config.consumer.ack_wait),
                "{origin}: declared backoff differs from the library's"
            );
            assert_eq!(
                declared["max_deliver"].as_i64(),
                Some(config.retry.max_deliver),
                "{origin}: max_deliver"
            );
            assert_eq!(ack_wait, config.consumer.ack_wait, "{origin}: ack_wait");
            // nats-server takes the first backoff delay as the consumer's ack_wait.
            if let Some(first) = declared_backoff.first() {
                assert_eq!(
                    *first, ack_wait,
                    "{origin}: first backoff delay and ack_wait"
                );
            }
            consumers_checked += 1;
        }
    }
    assert!(
        consumers_checked >= 7,
        "only {consumers_checked} consumers checked"
    );
}

/// `--help` after the generated arguments makes akira-workerctl parse them all (an unknown
/// option or a missing value fails) and print help instead of connecting.
#[test]
fn generated_workerctl_arguments_parse() {
    let workerctl = binary("akira-workerctl");
    let mut command_lines = 0;
    for (host, fixture) in hosts() {
        for unit in fixture.workerctl_units() {
            let arguments =
                fixture.workerctl_arguments(&unit, std::path::Path::new("declarations.toml"));
            let output = std::process::Command::new(&workerctl)
                .args(&arguments)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{host} {unit}: akira-workerctl {} --help failed:\n{}",
                arguments.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
            command_lines += 1;
        }
    }
    assert!(
        command_lines >= 10,
        "only {command_lines} command lines checked"
    );
}

/// Every generated worker configuration passes the worker binary's own `--check-config`, which
/// also validates its worker-specific table. Credentials are dummy files in a
/// `$CREDENTIALS_DIRECTORY`, as `LoadCredential=` provides them.
#[test]
fn generated_settings_pass_check_config() {
    let directory = tempfile::tempdir().unwrap();
    let credentials = directory.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let mut configurations_checked = 0;
    for (host, fixture) in hosts() {
        for unit in fixture.worker_units() {
            let settings = to_toml(&fixture.worker_settings(&unit));
            for name in credential_names(&settings) {
                std::fs::write(credentials.join(name), "placeholder\n").unwrap();
            }
            let config = directory.path().join(format!("{}.toml", unit));
            std::fs::write(&config, &settings).unwrap();
            let program = binary(&fixture.program(&unit));
            let output = std::process::Command::new(&program)
                .arg("--config")
                .arg(&config)
                .arg("--check-config")
                .env("CREDENTIALS_DIRECTORY", &credentials)
                .env("STATE_DIRECTORY", directory.path())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{host} {unit}: {} --check-config failed:\n{}\nconfiguration:\n{settings}",
                program.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            configurations_checked += 1;
        }
    }
    assert!(
        configurations_checked >= 12,
        "only {configurations_checked} configurations checked"
    );
}

/// Returns the names `<name>` of every `$CREDENTIALS_DIRECTORY/<name>` in `text`.
fn credential_names(text: &str) -> Vec<String> {
    text.split("$CREDENTIALS_DIRECTORY/")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
                .collect()
        })
        .collect()
}
