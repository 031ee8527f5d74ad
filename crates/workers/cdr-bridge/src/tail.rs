//! Follows a growing file line by line across rotation, with byte offsets.
//!
//! The tailer is synchronous: the bridge calls it from a blocking task. It returns complete
//! lines (ended by `\n`) with the byte offset of their start and end, so the bridge can commit
//! a position only after the PubAck of a line. A line still being written stays unread until
//! its newline arrives.
//!
//! Rotation by rename is seen when the configured path names another file than the one open:
//! the open file is read to its end, then the tailer opens the new one. Copy-truncate keeps
//! the file and is seen when the file is shorter than the read position, or when its first
//! line changed (the file was truncated and grew past the old position between two reads).
//! Each new file and each truncation starts a new generation, which the bridge puts into the
//! `Nats-Msg-Id` so that offsets reused by new content never look like duplicates.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How many bytes of the first line identify a file's content (see [`first_line_hash`]).
const HEAD_BYTES: usize = 4096;
/// Bytes read from the file per system call.
const READ_CHUNK: usize = 64 * 1024;

/// A file on one device: the identity that a rename keeps and a new file does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
}

impl FileId {
    pub fn of(metadata: &Metadata) -> FileId {
        FileId {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// One content generation of one file: what a line's byte offset is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub id: FileId,
    pub generation: u64,
}

/// One line read from the file, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub key: FileKey,
    /// Byte offset of the line's first byte.
    pub offset: u64,
    /// Byte offset just past the line's newline: where reading resumes.
    pub end: u64,
    /// The line's bytes, at most `max_line_bytes` of them.
    pub bytes: Vec<u8>,
    /// The line's full length without the newline; larger than `bytes.len()` when it was cut.
    pub length: u64,
}

impl Line {
    pub fn is_cut(&self) -> bool {
        self.length > self.bytes.len() as u64
    }
}

/// A position saved by a previous run, to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub key: FileKey,
    pub offset: u64,
    /// Hash of the file's first line when the position was saved, if it was complete then.
    pub head: Option<String>,
}

/// Something the bridge should log and, for new positions, save at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The configured path appeared and was opened.
    Opened { key: FileKey },
    /// The file was truncated in place (copy-truncate); reading restarts at 0.
    Truncated { key: FileKey, lost_offset: u64 },
    /// The file at the path was replaced (rename rotation) and the new one was opened.
    Rotated { from: FileKey, to: FileKey },
    /// The saved position refers to a file that is gone; reading starts on the current file.
    SavedFileGone { saved: FileKey, offset: u64 },
    /// The saved file was found under another name after a rotation; it is read to its end first.
    ResumedRotated { key: FileKey, path: PathBuf },
    /// The file's last bytes have no newline but the file was rotated away, so they are
    /// returned as a final line: the writer has moved on and will not finish it.
    FinalLine(Line),
}

struct OpenFile {
    file: File,
    key: FileKey,
    /// Offset of the next read.
    read_pos: u64,
    /// Offset of the first byte of the line being collected.
    line_start: u64,
    /// The collected bytes of the unfinished line, at most `max_line_bytes`.
    partial: Vec<u8>,
    /// The unfinished line's length so far, including bytes not kept.
    partial_len: u64,
    head: Option<String>,
    /// When the file last grew, for the rotate wait.
    last_growth: Instant,
    last_size: u64,
    /// Whether the last read reached the end of the file.
    at_end: bool,
}

/// Follows one path. See the module documentation.
pub struct Tailer {
    path: PathBuf,
    max_line_bytes: usize,
    rotate_wait: Duration,
    current: Option<OpenFile>,
    /// The generation the next opened or truncated file gets.
    next_generation: u64,
}

impl Tailer {
    /// Opens `path` and positions the tailer at `resume`, or at the start of the file.
    ///
    /// When the saved file is no longer at `path` (rotated while the bridge was stopped), the
    /// directory is searched for it by device and inode so that its unread tail is not lost.
    pub fn open(
        path: &Path,
        max_line_bytes: usize,
        rotate_wait: Duration,
        resume: Option<Resume>,
    ) -> io::Result<(Tailer, Vec<Change>)> {
        let mut tailer = Tailer {
            path: path.to_path_buf(),
            max_line_bytes,
            rotate_wait,
            current: None,
            next_generation: resume.as_ref().map_or(0, |r| r.key.generation + 1),
        };
        let mut changes = Vec::new();
        let Some(resume) = resume else {
            if let Some(change) = tailer.open_path()? {
                changes.push(change);
            }
            return Ok((tailer, changes));
        };

        let at_path = stat_if_exists(path)?;
        let saved_file = match at_path {
            Some(metadata) if FileId::of(&metadata) == resume.key.id => Some(File::open(path)?),
            _ => match find_by_id(path, resume.key.id)? {
                Some((found, file)) => {
                    changes.push(Change::ResumedRotated {
                        key: resume.key,
                        path: found,
                    });
                    Some(file)
                }
                None => None,
            },
        };

        match saved_file {
            Some(file) => {
                let size = file.metadata()?.len();
                let head = first_line_hash(&file)?;
                let same_content =
                    size >= resume.offset && (resume.head.is_none() || resume.head == head);
                if same_content {
                    tailer.current = Some(OpenFile::new(file, resume.key, resume.offset, size));
                } else {
                    let key = tailer.take_key(resume.key.id);
                    changes.push(Change::Truncated {
                        key,
                        lost_offset: resume.offset,
                    });
                    tailer.current = Some(OpenFile::new(file, key, 0, size));
                }
            }
            None => {
                changes.push(Change::SavedFileGone {
                    saved: resume.key,
                    offset: resume.offset,
                });
                if let Some(change) = tailer.open_path()? {
                    changes.push(change);
                }
            }
        }
        Ok((tailer, changes))
    }

    /// Returns the file being read and the offset reading has reached, if a file is open.
    pub fn position(&self) -> Option<(FileKey, u64)> {
        self.current
            .as_ref()
            .map(|open| (open.key, open.line_start))
    }

    /// Returns the hash of the open file's first line, once that line is complete.
    pub fn head(&self) -> Option<&str> {
        self.current.as_ref().and_then(|open| open.head.as_deref())
    }

    /// Returns the open file's size and the offset reading has reached, for the lag metric.
    pub fn size_and_offset(&self) -> Option<(u64, u64)> {
        self.current
            .as_ref()
            .map(|open| (open.last_size.max(open.line_start), open.line_start))
    }

    /// Reads up to `max_lines` complete lines from the open file.
    ///
    /// After the file was read to its end, new bytes are read only if the file still has
    /// the same first line and did not shrink: bytes after a copy-truncate are not a
    /// continuation, and [`Tailer::check`] restarts them as a new generation.
    pub fn read_lines(&mut self, max_lines: usize) -> io::Result<Vec<Line>> {
        let max_line_bytes = self.max_line_bytes;
        let Some(open) = self.current.as_mut() else {
            return Ok(Vec::new());
        };
        if open.at_end && open.content_changed()? {
            return Ok(Vec::new());
        }
        let lines = open.read_lines(max_lines, max_line_bytes)?;
        if open.head.is_none() && open.line_start > 0 {
            open.head = first_line_hash(&open.file)?;
        }
        Ok(lines)
    }

    /// Moves reading back to `offset` of the open file, dropping what was read after it.
    ///
    /// The bridge calls this when a publish failed, to send the unacknowledged lines again.
    pub fn rewind(&mut self, offset: u64) {
        if let Some(open) = self.current.as_mut() {
            open.seek(offset);
        }
    }

    /// Looks for truncation, rotation or a newly created file.
    ///
    /// Call it only when [`Tailer::read_lines`] returned nothing and every line read so far
    /// is acknowledged: a change moves reading to another file or offset.
    pub fn check(&mut self) -> io::Result<Option<Change>> {
        let at_path = stat_if_exists(&self.path)?;
        let Some(open) = self.current.as_mut() else {
            return self.open_path();
        };

        let metadata = open.file.metadata()?;
        let size = metadata.len();
        if size != open.last_size {
            open.last_size = size;
            open.last_growth = Instant::now();
        }

        let replaced = at_path
            .as_ref()
            .is_some_and(|metadata| FileId::of(metadata) != open.key.id);
        if !replaced {
            return self.check_truncation(size);
        }

        if size > open.read_pos {
            // The writer still appends to the renamed file; read that first.
            return Ok(None);
        }
        let new_file_has_data = at_path.as_ref().is_some_and(|metadata| metadata.len() > 0);
        if !new_file_has_data && open.last_growth.elapsed() < self.rotate_wait {
            return Ok(None);
        }
        if let Some(line) = open.take_partial() {
            return Ok(Some(Change::FinalLine(line)));
        }
        let from = open.key;
        match self.open_path()? {
            Some(Change::Opened { key }) => Ok(Some(Change::Rotated { from, to: key })),
            other => Ok(other),
        }
    }

    fn check_truncation(&mut self, size: u64) -> io::Result<Option<Change>> {
        let Some(open) = self.current.as_mut() else {
            return Ok(None);
        };
        if !open.content_changed_at(size)? {
            return Ok(None);
        }
        let lost_offset = open.read_pos;
        let id = open.key.id;
        let key = self.take_key(id);
        let open = self.current.as_mut().expect("checked above");
        open.key = key;
        open.head = None;
        open.seek(0);
        open.last_size = size;
        Ok(Some(Change::Truncated { key, lost_offset }))
    }

    /// Opens the configured path at offset 0 as a new generation, if it exists.
    fn open_path(&mut self) -> io::Result<Option<Change>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.current = None;
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let metadata = file.metadata()?;
        let key = self.take_key(FileId::of(&metadata));
        self.current = Some(OpenFile::new(file, key, 0, metadata.len()));
        Ok(Some(Change::Opened { key }))
    }

    fn take_key(&mut self, id: FileId) -> FileKey {
        let key = FileKey {
            id,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        key
    }
}

impl OpenFile {
    fn new(file: File, key: FileKey, offset: u64, size: u64) -> OpenFile {
        let head = if offset > 0 {
            first_line_hash(&file).ok().flatten()
        } else {
            None
        };
        OpenFile {
            file,
            key,
            read_pos: offset,
            line_start: offset,
            partial: Vec::new(),
            partial_len: 0,
            head,
            last_growth: Instant::now(),
            last_size: size,
            at_end: false,
        }
    }

    fn content_changed(&self) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        self.content_changed_at(size)
    }

    /// Reports whether the file shrank below the read position or its first line changed.
    fn content_changed_at(&self, size: u64) -> io::Result<bool> {
        if size < self.read_pos {
            return Ok(true);
        }
        match &self.head {
            Some(head) => Ok(first_line_hash(&self.file)?.as_ref() != Some(head)),
            None => Ok(false),
        }
    }

    fn seek(&mut self, offset: u64) {
        self.at_end = false;
        self.read_pos = offset;
        self.line_start = offset;
        self.partial.clear();
        self.partial_len = 0;
    }

    fn read_lines(&mut self, max_lines: usize, max_line_bytes: usize) -> io::Result<Vec<Line>> {
        let mut lines = Vec::new();
        let mut buffer = vec![0u8; READ_CHUNK];
        while lines.len() < max_lines {
            let count = self.file.read_at(&mut buffer, self.read_pos)?;
            if count == 0 {
                self.at_end = true;
                break;
            }
            self.at_end = false;
            self.last_growth = Instant::now();

            let mut start = 0;
            while start < count {
                let chunk = &buffer[start..count];
                match chunk.iter().position(|&byte| byte == b'\n') {
                    Some(newline) => {
                        self.collect(&chunk[..newline], max_line_bytes);
                        start += newline + 1;
                        let end = self.read_pos + start as u64;
                        lines.push(self.finish_line(end));
                        if lines.len() == max_lines {
                            break;
                        }
                    }
                    None => {
                        self.collect(chunk, max_line_bytes);
                        start = count;
                    }
                }
            }
            self.read_pos += start as u64;
        }
        self.last_size = self.last_size.max(self.read_pos);
        Ok(lines)
    }

    fn collect(&mut self, bytes: &[u8], max_line_bytes: usize) {
        self.partial_len += bytes.len() as u64;
        let room = max_line_bytes.saturating_sub(self.partial.len());
        let keep = room.min(bytes.len());
        self.partial.extend_from_slice(&bytes[..keep]);
    }

    fn finish_line(&mut self, end: u64) -> Line {
        let line = Line {
            key: self.key,
            offset: self.line_start,
            end,
            bytes: std::mem::take(&mut self.partial),
            length: self.partial_len,
        };
        self.line_start = end;
        self.partial_len = 0;
        line
    }

    /// Returns the unfinished last line as a line of its own, if there is one.
    fn take_partial(&mut self) -> Option<Line> {
        if self.partial_len == 0 {
            return None;
        }
        let end = self.read_pos;
        Some(self.finish_line(end))
    }
}

fn stat_if_exists(path: &Path) -> io::Result<Option<Metadata>> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Searches the directory of `path` for the file with identity `id` (a rotated file).
fn find_by_id(path: &Path, id: FileId) -> io::Result<Option<(PathBuf, File)>> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_file() && FileId::of(&metadata) == id {
            let file = File::open(entry.path())?;
            // The name could have been reused between the listing and the open.
            if FileId::of(&file.metadata()?) == id {
                return Ok(Some((entry.path(), file)));
            }
        }
    }
    Ok(None)
}

/// Returns a SHA-256 hash (hex) of the file's first line, at most [`HEAD_BYTES`] of it, or
/// `None` while the first line is shorter than that and has no newline yet.
///
/// Lines of accounting records start with a time stamp or a call id, so the first line
/// distinguishes two contents of the same file after a copy-truncate.
pub fn first_line_hash(file: &File) -> io::Result<Option<String>> {
    let mut buffer = vec![0u8; HEAD_BYTES];
    let mut filled = 0;
    while filled < HEAD_BYTES {
        let count = file.read_at(&mut buffer[filled..], filled as u64)?;
        if count == 0 {
            break;
        }
        filled += count;
    }
    let head = match buffer[..filled].iter().position(|&byte| byte == b'\n') {
        Some(newline) => &buffer[..newline],
        None if filled == HEAD_BYTES => &buffer[..],
        None => return Ok(None),
    };
    Ok(Some(hex(&Sha256::digest(head))))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const MAX: usize = 64;
    const NO_WAIT: Duration = Duration::ZERO;

    fn append(path: &Path, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(bytes).unwrap();
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|line| String::from_utf8(line.bytes.clone()).unwrap())
            .collect()
    }

    fn open(path: &Path, resume: Option<Resume>) -> (Tailer, Vec<Change>) {
        Tailer::open(path, MAX, NO_WAIT, resume).unwrap()
    }

    #[test]
    fn lines_have_offsets_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"{\"a\":1}\n{\"b\":2}\n");
        let (mut tailer, changes) = open(&path, None);
        assert!(matches!(changes[..], [Change::Opened { .. }]));

        let lines = tailer.read_lines(100).unwrap();
        assert_eq!(texts(&lines), ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!((lines[0].offset, lines[0].end), (0, 8));
        assert_eq!((lines[1].offset, lines[1].end), (8, 16));
        assert_eq!(tailer.position().unwrap().1, 16);
    }

    #[test]
    fn partial_line_waits_for_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"one\ntw");
        let (mut tailer, _) = open(&path, None);
        assert_eq!(texts(&tailer.read_lines(100).unwrap()), ["one"]);
        assert!(tailer.read_lines(100).unwrap().is_empty());
        assert_eq!(tailer.check().unwrap(), None);

        append(&path, b"o\n");
        let lines = tailer.read_lines(100).unwrap();
        assert_eq!(texts(&lines), ["two"]);
        assert_eq!((lines[0].offset, lines[0].end), (4, 8));
    }

    #[test]
    fn read_stops_at_max_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"1\n2\n3\n");
        let (mut tailer, _) = open(&path, None);
        assert_eq!(texts(&tailer.read_lines(2).unwrap()), ["1", "2"]);
        assert_eq!(texts(&tailer.read_lines(2).unwrap()), ["3"]);
    }

    #[test]
    fn long_line_is_cut_and_next_line_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        let long = vec![b'x'; MAX * 3];
        append(&path, &long);
        append(&path, b"\nnext\n");
        let (mut tailer, _) = open(&path, None);
        let lines = tailer.read_lines(100).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].is_cut());
        assert_eq!(lines[0].bytes.len(), MAX);
        assert_eq!(lines[0].length, (MAX * 3) as u64);
        assert_eq!(lines[1].offset, (MAX * 3 + 1) as u64);
        assert_eq!(texts(&lines[1..]), ["next"]);
    }

    #[test]
    fn rewind_reads_lines_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"1\n2\n3\n");
        let (mut tailer, _) = open(&path, None);
        assert_eq!(tailer.read_lines(100).unwrap().len(), 3);
        tailer.rewind(2);
        assert_eq!(texts(&tailer.read_lines(100).unwrap()), ["2", "3"]);
    }

    #[test]
    fn resume_continues_at_saved_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"first\nsecond\n");
        let (mut tailer, _) = open(&path, None);
        let lines = tailer.read_lines(1).unwrap();
        let key = lines[0].key;
        let resume = Resume {
            key,
            offset: lines[0].end,
            head: tailer.head().map(str::to_string),
        };
        assert!(resume.head.is_some());

        let (mut again, changes) = open(&path, Some(resume));
        assert!(changes.is_empty(), "{changes:?}");
        let lines = again.read_lines(100).unwrap();
        assert_eq!(texts(&lines), ["second"]);
        assert_eq!(lines[0].key, key);
    }

    #[test]
    fn resume_after_truncation_starts_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"first\nsecond\n");
        let (mut tailer, _) = open(&path, None);
        let lines = tailer.read_lines(100).unwrap();
        let resume = Resume {
            key: lines[0].key,
            offset: 13,
            head: tailer.head().map(str::to_string),
        };

        // Copy-truncate while stopped, then more than the old offset was written.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, b"another first line\nmore\n");

        let (mut again, changes) = open(&path, Some(resume.clone()));
        assert!(
            matches!(
                changes[..],
                [Change::Truncated {
                    lost_offset: 13,
                    ..
                }]
            ),
            "{changes:?}"
        );
        let lines = again.read_lines(100).unwrap();
        assert_eq!(texts(&lines), ["another first line", "more"]);
        assert_eq!(lines[0].key.id, resume.key.id);
        assert_eq!(lines[0].key.generation, resume.key.generation + 1);
    }

    #[test]
    fn truncation_restarts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"first line\nsecond line\n");
        let (mut tailer, _) = open(&path, None);
        let before = tailer.read_lines(100).unwrap();

        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, b"new\n");
        assert!(tailer.read_lines(100).unwrap().is_empty());
        let change = tailer.check().unwrap();
        assert!(
            matches!(
                change,
                Some(Change::Truncated {
                    lost_offset: 23,
                    ..
                })
            ),
            "{change:?}"
        );
        let after = tailer.read_lines(100).unwrap();
        assert_eq!(texts(&after), ["new"]);
        assert_eq!(after[0].offset, 0);
        assert_eq!(after[0].key.generation, before[0].key.generation + 1);
    }

    #[test]
    fn rewritten_first_line_counts_as_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"aaaa\n");
        let (mut tailer, _) = open(&path, None);
        assert_eq!(tailer.read_lines(100).unwrap().len(), 1);

        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, b"bbbbbbbbbb\n");
        let change = tailer.check().unwrap();
        assert!(
            matches!(change, Some(Change::Truncated { .. })),
            "{change:?}"
        );
        assert_eq!(texts(&tailer.read_lines(100).unwrap()), ["bbbbbbbbbb"]);
    }

    #[test]
    fn refilled_file_is_not_read_as_continuation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"first line\n");
        let (mut tailer, _) = open(&path, None);
        assert_eq!(tailer.read_lines(100).unwrap().len(), 1);
        assert!(tailer.read_lines(100).unwrap().is_empty());

        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, b"a much longer replacement line\nsecond\n");
        assert!(tailer.read_lines(100).unwrap().is_empty());
        let change = tailer.check().unwrap();
        assert!(
            matches!(change, Some(Change::Truncated { .. })),
            "{change:?}"
        );
        let lines = tailer.read_lines(100).unwrap();
        assert_eq!(texts(&lines), ["a much longer replacement line", "second"]);
    }

    #[test]
    fn rename_rotation_finishes_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        let rotated = dir.path().join("acc.jsonl.1");
        append(&path, b"old 1\n");
        let (mut tailer, _) = open(&path, None);
        assert_eq!(tailer.read_lines(100).unwrap().len(), 1);

        std::fs::rename(&path, &rotated).unwrap();
        append(&rotated, b"old 2\nold 3 without newline");
        append(&path, b"new 1\n");

        assert_eq!(texts(&tailer.read_lines(100).unwrap()), ["old 2"]);
        let change = tailer.check().unwrap();
        let Some(Change::FinalLine(last)) = change else {
            panic!("expected the unfinished last line, got {change:?}");
        };
        assert_eq!(last.bytes, b"old 3 without newline");
        let change = tailer.check().unwrap();
        assert!(matches!(change, Some(Change::Rotated { .. })), "{change:?}");
        let lines = tailer.read_lines(100).unwrap();
        assert_eq!(texts(&lines), ["new 1"]);
        assert_eq!(lines[0].offset, 0);
        assert_ne!(lines[0].key, last.key);
    }

    #[test]
    fn rename_waits_while_new_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"old\n");
        let (mut tailer, _) = Tailer::open(&path, MAX, Duration::from_secs(60), None).unwrap();
        assert_eq!(tailer.read_lines(100).unwrap().len(), 1);

        std::fs::rename(&path, dir.path().join("acc.jsonl.1")).unwrap();
        append(&path, b"");
        assert_eq!(tailer.check().unwrap(), None);

        append(&path, b"new\n");
        let change = tailer.check().unwrap();
        assert!(matches!(change, Some(Change::Rotated { .. })), "{change:?}");
    }

    #[test]
    fn resume_finds_rotated_file_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        let rotated = dir.path().join("acc.jsonl.1");
        append(&path, b"old 1\nold 2\n");
        let (mut tailer, _) = open(&path, None);
        let first = tailer.read_lines(1).unwrap().remove(0);
        let resume = Resume {
            key: first.key,
            offset: first.end,
            head: tailer.head().map(str::to_string),
        };

        std::fs::rename(&path, &rotated).unwrap();
        append(&path, b"new 1\n");

        let (mut again, changes) = open(&path, Some(resume));
        assert!(
            matches!(&changes[..], [Change::ResumedRotated { path, .. }] if *path == rotated),
            "{changes:?}"
        );
        assert_eq!(texts(&again.read_lines(100).unwrap()), ["old 2"]);
        assert!(again.read_lines(100).unwrap().is_empty());
        let change = again.check().unwrap();
        assert!(matches!(change, Some(Change::Rotated { .. })), "{change:?}");
        assert_eq!(texts(&again.read_lines(100).unwrap()), ["new 1"]);
    }

    #[test]
    fn missing_saved_file_starts_on_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        append(&path, b"current\n");
        let resume = Resume {
            key: FileKey {
                id: FileId {
                    device: 0,
                    inode: 1,
                },
                generation: 4,
            },
            offset: 100,
            head: None,
        };
        let (mut tailer, changes) = open(&path, Some(resume));
        assert!(
            matches!(changes[..], [Change::SavedFileGone { .. }, Change::Opened { key }] if key.generation == 5),
            "{changes:?}"
        );
        assert_eq!(texts(&tailer.read_lines(100).unwrap()), ["current"]);
    }

    #[test]
    fn file_created_later_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acc.jsonl");
        let (mut tailer, changes) = open(&path, None);
        assert!(changes.is_empty());
        assert!(tailer.read_lines(100).unwrap().is_empty());
        assert_eq!(tailer.check().unwrap(), None);

        append(&path, b"late\n");
        assert!(matches!(
            tailer.check().unwrap(),
            Some(Change::Opened { .. })
        ));
        assert_eq!(texts(&tailer.read_lines(100).unwrap()), ["late"]);
    }
}
