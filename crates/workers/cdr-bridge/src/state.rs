//! The bridge's position, saved in a small JSON file after the PubAcks that cover it.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tail::{FileId, FileKey, Resume};

/// The content of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPosition {
    /// The configured path when the position was saved; another path starts from scratch.
    pub path: PathBuf,
    pub device: u64,
    pub inode: u64,
    /// Content generation of the file (see the `tail` module).
    pub generation: u64,
    /// Offset just past the last line whose PubAck arrived, with every line before it.
    pub offset: u64,
    /// Hash of the file's first line, to recognise a truncated and rewritten file.
    #[serde(default)]
    pub head: Option<String>,
}

impl SavedPosition {
    pub fn resume(&self) -> Resume {
        Resume {
            key: FileKey {
                id: FileId {
                    device: self.device,
                    inode: self.inode,
                },
                generation: self.generation,
            },
            offset: self.offset,
            head: self.head.clone(),
        }
    }
}

/// A state file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state file {path} is not a saved position ({message}); delete it to read the file again from the start (the stream drops repeats within its duplicate window)")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "cannot write state file {path}: {source}; check that its directory exists and is writable"
    )]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the saved position; a missing file means the bridge has not saved one yet.
pub fn load(path: &Path) -> Result<Option<SavedPosition>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| StateError::Invalid {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
}

/// Replaces the state file atomically: write a temporary file, sync it, rename it over the
/// old one and sync the directory, so a crash leaves either the old or the new position.
pub fn save(path: &Path, position: &SavedPosition) -> Result<(), StateError> {
    write_atomically(path, position).map_err(|source| StateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_atomically(path: &Path, position: &SavedPosition) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
    temporary_name.push(".tmp");
    let temporary = directory.join(temporary_name);

    let mut text = serde_json::to_vec_pretty(position).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut file = File::create(&temporary)?;
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);

    std::fs::rename(&temporary, path)?;
    File::open(directory)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> SavedPosition {
        SavedPosition {
            path: PathBuf::from("/var/log/kamailio/acc.jsonl"),
            device: 2049,
            inode: 1234,
            generation: 3,
            offset: 4096,
            head: Some("ab".repeat(32)),
        }
    }

    #[test]
    fn saved_position_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &position()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(position()));
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn missing_state_file_is_no_position() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("state.json")).unwrap(), None);
    }

    #[test]
    fn invalid_state_file_names_path_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"offset\": ").unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("state.json"), "{message}");
        assert!(message.contains("delete it"), "{message}");
    }

    #[test]
    fn missing_directory_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("state.json");
        let message = save(&path, &position()).unwrap_err().to_string();
        assert!(message.contains("absent"), "{message}");
    }
}
