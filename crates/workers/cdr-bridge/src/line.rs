//! Decides whether a line is an accounting record the bridge may publish.
//!
//! The bridge publishes record lines byte for byte; it checks only that a line is one JSON
//! object, which is what Kamailio's `acc_json` writes. Field checks belong to the consumers.

use std::fmt;

use crate::tail::Line;

/// The bridge's decision for one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One JSON object: publish it to `akira.cdr.<source>`.
    Record,
    /// Empty or only white space: nothing to publish, the position moves past it.
    Blank,
    /// Anything else: dead-letter it with reason `invalid_record`.
    Invalid(Invalid),
}

/// The reason a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    TooLong { length: u64, max: usize },
    NotUtf8 { valid_up_to: usize },
    NotJson { message: String },
    NotObject { found: &'static str },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::TooLong { length, max } => write!(
                f,
                "line is {length} bytes long, more than bridge.max_line_bytes = {max}; the payload holds its first {max} bytes"
            ),
            Invalid::NotUtf8 { valid_up_to } => {
                write!(f, "line is not valid UTF-8 (invalid byte at index {valid_up_to})")
            }
            Invalid::NotJson { message } => write!(f, "line is not valid JSON: {message}"),
            Invalid::NotObject { found } => {
                write!(f, "line is JSON but not an object: found {found}")
            }
        }
    }
}

/// Classifies one line read by the tailer.
pub fn classify(line: &Line, max_line_bytes: usize) -> Verdict {
    if line.is_cut() || line.length > max_line_bytes as u64 {
        return Verdict::Invalid(Invalid::TooLong {
            length: line.length,
            max: max_line_bytes,
        });
    }
    let text = match std::str::from_utf8(&line.bytes) {
        Ok(text) => text,
        Err(err) => {
            return Verdict::Invalid(Invalid::NotUtf8 {
                valid_up_to: err.valid_up_to(),
            })
        }
    };
    let trimmed = text.trim_start_matches([' ', '\t', '\r']);
    if trimmed.trim_end_matches([' ', '\t', '\r']).is_empty() {
        return Verdict::Blank;
    }
    if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Verdict::Invalid(Invalid::NotJson {
            message: err.to_string(),
        });
    }
    match trimmed.as_bytes()[0] {
        b'{' => Verdict::Record,
        b'[' => Verdict::Invalid(Invalid::NotObject { found: "an array" }),
        b'"' => Verdict::Invalid(Invalid::NotObject { found: "a string" }),
        b't' | b'f' => Verdict::Invalid(Invalid::NotObject { found: "a boolean" }),
        b'n' => Verdict::Invalid(Invalid::NotObject { found: "null" }),
        _ => Verdict::Invalid(Invalid::NotObject { found: "a number" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::{FileId, FileKey};

    const MAX: usize = 1024;

    fn line(bytes: &[u8]) -> Line {
        Line {
            key: FileKey {
                id: FileId {
                    device: 1,
                    inode: 2,
                },
                generation: 0,
            },
            offset: 0,
            end: bytes.len() as u64 + 1,
            bytes: bytes.to_vec(),
            length: bytes.len() as u64,
        }
    }

    fn verdict(bytes: &[u8]) -> Verdict {
        classify(&line(bytes), MAX)
    }

    #[test]
    fn kamailio_record_is_record() {
        let record = br#"{"time": 1796413782, "method": "INVITE", "callid": "2-15596@127.0.0.1", "src_name": "\"Niccol\u00F2 Bianchi\""}"#;
        assert_eq!(verdict(record), Verdict::Record);
    }

    #[test]
    fn carriage_return_before_newline_is_accepted() {
        assert_eq!(verdict(b"{\"a\": 1}\r"), Verdict::Record);
    }

    #[test]
    fn blank_lines_are_blank() {
        assert_eq!(verdict(b""), Verdict::Blank);
        assert_eq!(verdict(b" \t\r"), Verdict::Blank);
    }

    #[test]
    fn flatstore_line_is_not_json() {
        let flatstore = b"1442923048|1442923184|136298900000.000000";
        assert!(matches!(
            verdict(flatstore),
            Verdict::Invalid(Invalid::NotJson { .. })
        ));
    }

    #[test]
    fn latin1_byte_is_not_utf8() {
        let latin1 = b"{\"src_name\": \"J\xfcrgen\"}";
        assert_eq!(
            verdict(latin1),
            Verdict::Invalid(Invalid::NotUtf8 { valid_up_to: 15 })
        );
    }

    #[test]
    fn json_other_than_object_is_invalid() {
        assert_eq!(
            verdict(b"[1, 2]"),
            Verdict::Invalid(Invalid::NotObject { found: "an array" })
        );
        assert_eq!(
            verdict(b"42"),
            Verdict::Invalid(Invalid::NotObject { found: "a number" })
        );
        assert_eq!(
            verdict(b"null"),
            Verdict::Invalid(Invalid::NotObject { found: "null" })
        );
    }

    #[test]
    fn two_objects_on_one_line_are_invalid() {
        assert!(matches!(
            verdict(b"{\"a\": 1}{\"b\": 2}"),
            Verdict::Invalid(Invalid::NotJson { .. })
        ));
    }

    #[test]
    fn cut_line_is_too_long() {
        let mut cut = line(&[b'x'; MAX]);
        cut.length = MAX as u64 + 10;
        let verdict = classify(&cut, MAX);
        assert!(matches!(verdict, Verdict::Invalid(Invalid::TooLong { .. })));
        let Verdict::Invalid(reason) = verdict else {
            unreachable!()
        };
        assert!(reason.to_string().contains("bridge.max_line_bytes"));
    }
}
