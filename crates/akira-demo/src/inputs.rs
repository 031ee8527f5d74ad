//! The demo's inputs: the binaries it runs and the sample files it feeds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::Args;

/// Binaries the demo runs, all from `--bin-dir`.
pub const WORKERCTL: &str = "akira-workerctl";
pub const BRIDGE: &str = "akira-cdr-bridge";
pub const PIPELINE: &str = "akira-cdr-pipeline";
pub const DISPATCHER: &str = "akira-notification-dispatcher";
pub const RELAY: &str = "akira-alert-relay";
pub const RETENTION: &str = "akira-audit-retention";
pub const BINARIES: [&str; 6] = [WORKERCTL, BRIDGE, PIPELINE, DISPATCHER, RELAY, RETENTION];

/// Paths of the inputs in the repository.
pub struct Inputs {
    pub bin_dir: PathBuf,
    pub streams: PathBuf,
    /// The Kamailio sample, then the edge cases: lines the workers dead-letter.
    pub accounting_samples: Vec<PathBuf>,
    pub alert_samples: Vec<PathBuf>,
}

impl Inputs {
    pub fn locate(args: &Args) -> anyhow::Result<Inputs> {
        let bin_dir = match &args.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .context("cannot find the demo's own binary")?
                .parent()
                .context("the demo's binary has no parent directory")?
                .to_path_buf(),
        };
        for binary in BINARIES {
            if !bin_dir.join(binary).is_file() {
                bail!(
                    "{binary} not found in {}; build the workspace first (cargo build --workspace --bins, \
                     which scripts/demo runs) or point --bin-dir at the binaries",
                    bin_dir.display()
                );
            }
        }

        let root = &args.root;
        let streams = root.join("deploy/streams.toml");
        let accounting_sample = root.join("examples/data/kamailio-acc.jsonl");
        let alerts_dir = root.join("examples/data/alertmanager");
        for path in [&streams, &accounting_sample, &alerts_dir] {
            if !path.exists() {
                bail!(
                    "{} not found; run the demo from the repository root or pass --root",
                    path.display()
                );
            }
        }
        let mut accounting_samples = vec![accounting_sample];
        let edge_cases = root.join("examples/data/edge-cases");
        if edge_cases.is_dir() {
            accounting_samples.extend(files_in(&edge_cases, &["txt", "jsonl"])?);
        }
        let alert_samples = files_in(&alerts_dir, &["json"])?;
        Ok(Inputs {
            bin_dir,
            streams,
            accounting_samples,
            alert_samples,
        })
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Returns the files in `dir` with one of `extensions`, sorted by name.
fn files_in(dir: &Path, extensions: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| extensions.contains(&ext))
        })
        .collect();
    files.sort();
    Ok(files)
}
