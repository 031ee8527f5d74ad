//! What the NixOS module generates for one host, as committed under `fixtures/module/`.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The declarations, worker settings, worker binaries and `akira-workerctl` arguments of one
/// host, as `tests/nix/suite.nix` summarises them.
#[derive(Debug, Clone)]
pub struct ModuleFixture {
    name: String,
    value: Value,
}

/// Where the provisioning unit finds its declarations on a NixOS host.
const DECLARATIONS_ETC_PATH: &str = "/etc/akira-workers/declarations.toml";

impl ModuleFixture {
    /// Loads `fixtures/module/<name>.json`.
    pub fn load(name: &str) -> ModuleFixture {
        let path = Self::directory().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!(
                "cannot read {}: {err}; run `tests/nix/run --write-fixtures` to write it",
                path.display()
            )
        });
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("invalid JSON in {}: {err}", path.display()));
        ModuleFixture {
            name: name.to_string(),
            value,
        }
    }

    /// Returns the directory of the committed fixtures.
    pub fn directory() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/module")
    }

    /// Returns the names of the committed fixtures.
    pub fn names() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(Self::directory())
            .expect("the fixture directory exists")
            .map(|entry| entry.expect("readable directory entry").path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Returns the names of the host's specialisations, sorted.
    pub fn specialisations(&self) -> Vec<String> {
        sorted_keys(&self.value["specialisations"])
    }

    /// Returns the fixture of the host after switching to specialisation `name`.
    pub fn specialisation(&self, name: &str) -> ModuleFixture {
        let value = self.value["specialisations"][name].clone();
        assert!(
            value.is_object(),
            "fixture {} has no specialisation {name}",
            self.name
        );
        ModuleFixture {
            name: format!("{}/{name}", self.name),
            value,
        }
    }

    /// Returns the `akira-workerctl apply` declarations: `streams` and `consumers`.
    pub fn declarations(&self) -> &Value {
        &self.value["declarations"]
    }

    /// Returns the declarations as the TOML file the module installs.
    pub fn declarations_toml(&self) -> String {
        to_toml(self.declarations())
    }

    /// Returns the worker units that have settings, sorted.
    pub fn worker_units(&self) -> Vec<String> {
        sorted_keys(&self.value["workers"])
    }

    /// Returns the units that run `akira-workerctl`, sorted.
    pub fn workerctl_units(&self) -> Vec<String> {
        sorted_keys(&self.value["workerctl"])
    }

    /// Returns the settings the module writes to the TOML file of worker unit `unit`.
    pub fn worker_settings(&self, unit: &str) -> Value {
        let settings = self.value["workers"][unit].clone();
        assert!(
            settings.is_object(),
            "fixture {} has no worker unit {unit}; it has {:?}",
            self.name,
            self.worker_units()
        );
        settings
    }

    /// Returns the name of the binary that worker unit `unit` starts.
    pub fn program(&self, unit: &str) -> String {
        self.value["programs"][unit]
            .as_str()
            .unwrap_or_else(|| panic!("fixture {} has no program for {unit}", self.name))
            .to_string()
    }

    /// Returns the `akira-workerctl` arguments of unit `unit` (`akira-nats-provision` or
    /// `akira-dlq-sentinel`), with the declarations path replaced by `declarations`.
    pub fn workerctl_arguments(&self, unit: &str, declarations: &Path) -> Vec<String> {
        let arguments = self.value["workerctl"][unit]
            .as_array()
            .unwrap_or_else(|| panic!("fixture {} has no akira-workerctl unit {unit}", self.name));
        arguments
            .iter()
            .map(|argument| {
                let argument = argument.as_str().expect("arguments are strings");
                if argument == DECLARATIONS_ETC_PATH {
                    declarations.display().to_string()
                } else {
                    argument.to_string()
                }
            })
            .collect()
    }
}

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Renders a JSON object as TOML, as `pkgs.formats.toml` renders the module's settings.
pub fn to_toml(value: &Value) -> String {
    let table: toml::Table = toml::Table::try_from(value)
        .unwrap_or_else(|err| panic!("cannot render as TOML: {err}; value: {value}"));
    toml::to_string(&table).expect("a TOML table renders")
}
