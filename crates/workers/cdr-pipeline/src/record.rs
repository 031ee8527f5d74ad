//! Parses one Kamailio accounting record (acc_json style) into the columns of `cdr_events`.
//!
//! Kamailio writes two kinds of record, which only their keys distinguish:
//!
//! - transaction records (`acc`): `time`, `method`, `from_tag`, `to_tag`, `callid`,
//!   `sip_code`, `sip_reason` plus the configured `acc_extra` fields;
//! - dialog CDRs (`cdr`): `start_time`, `end_time`, `duration` plus the configured
//!   `cdr_extra` fields, which usually include `callid`, `from_tag`, `sip_code` and `sip_reason`.
//!
//! Any value may be a JSON string: acc_json writes `sip_code` as `"200"`, dialog times as
//! `"1796413784.874"` and durations as `"2.350"`. A record that lacks a required field or
//! holds a value that cannot be stored is a permanent error naming the field.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The record kind, the `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A transaction record (Kamailio's `acc` key).
    Acc,
    /// A dialog CDR (Kamailio's `cdr` key).
    Cdr,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Acc => "acc",
            Kind::Cdr => "cdr",
        }
    }
}

/// Fields with a column of their own; every other field is an extra field.
pub const CORE_FIELDS: [&str; 10] = [
    "time",
    "method",
    "from_tag",
    "to_tag",
    "callid",
    "sip_code",
    "sip_reason",
    "start_time",
    "end_time",
    "duration",
];

/// The selection of extra fields for the `extra` JSONB column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraFields {
    /// Every field that is not a core field.
    All,
    /// Only the named fields; others are not stored.
    Only(BTreeSet<String>),
}

impl ExtraFields {
    fn keeps(&self, name: &str) -> bool {
        match self {
            ExtraFields::All => true,
            ExtraFields::Only(names) => names.contains(name),
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: Kind,
    pub method: Option<String>,
    pub callid: String,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    pub sip_code: Option<i16>,
    pub sip_reason: Option<String>,
    /// `time` of a transaction record (when its final reply was sent, with Kamailio's default
    /// `acc_time_mode`), or `start_time` of a dialog CDR.
    pub event_time: OffsetDateTime,
    /// `end_time` of a dialog CDR.
    pub end_time: Option<OffsetDateTime>,
    /// `duration` of a dialog CDR in microseconds, the resolution of PostgreSQL's `interval`.
    pub duration_micros: Option<i64>,
    pub extra: Map<String, Value>,
}

/// The reason a record cannot be stored. Every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    NotJson(String),
    NotObject,
    UnknownKind,
    Missing(&'static str),
    Empty(&'static str),
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    /// PostgreSQL's `text` and `jsonb` cannot hold U+0000.
    NulCharacter(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotJson(message) => write!(f, "record is not valid JSON: {message}"),
            RecordError::NotObject => write!(f, "record is JSON but not an object"),
            RecordError::UnknownKind => write!(
                f,
                "missing required field `method`: a transaction record needs `method` and `time`, a dialog CDR needs `start_time`"
            ),
            RecordError::Missing(field) => write!(f, "missing required field `{field}`"),
            RecordError::Empty(field) => write!(f, "required field `{field}` is empty"),
            RecordError::Invalid {
                field,
                value,
                expected,
            } => write!(f, "invalid value {value} in field `{field}`: expected {expected}"),
            RecordError::NulCharacter(field) => write!(
                f,
                "field `{field}` contains the character U+0000, which PostgreSQL cannot store"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

const TIME_FORMS: &str = "Unix seconds (1796413782 or \"1796413784.874\"), RFC 3339, or \"YYYY-MM-DD HH:MM:SS\" in UTC, between 1970 and 9999";

/// Parses a record published by the bridge.
pub fn parse(payload: &[u8], extra_fields: &ExtraFields) -> Result<Record, RecordError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|err| RecordError::NotJson(err.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(RecordError::NotObject);
    };
    check_no_nul(&object)?;

    let kind = if object.contains_key("method") || object.contains_key("time") {
        Kind::Acc
    } else if object.contains_key("start_time") {
        Kind::Cdr
    } else {
        return Err(RecordError::UnknownKind);
    };

    let record = match kind {
        Kind::Acc => parse_acc(&object)?,
        Kind::Cdr => parse_cdr(&object)?,
    };
    object.retain(|name, _| !CORE_FIELDS.contains(&name.as_str()) && extra_fields.keeps(name));
    Ok(Record {
        extra: object,
        ..record
    })
}

fn parse_acc(object: &Map<String, Value>) -> Result<Record, RecordError> {
    let method = required_text(object, "method")?;
    let event_time = required_time(object, "time")?;
    let callid = required_text(object, "callid")?;
    let sip_code = match sip_code(object)? {
        Some(code) => code,
        None if object.contains_key("sip_code") => return Err(RecordError::Empty("sip_code")),
        None => return Err(RecordError::Missing("sip_code")),
    };
    Ok(Record {
        kind: Kind::Acc,
        method: Some(method),
        callid,
        from_tag: text(object, "from_tag")?,
        to_tag: text(object, "to_tag")?,
        sip_code: Some(sip_code),
        sip_reason: text(object, "sip_reason")?,
        event_time,
        end_time: None,
        duration_micros: None,
        extra: Map::new(),
    })
}

fn parse_cdr(object: &Map<String, Value>) -> Result<Record, RecordError> {
    let event_time = required_time(object, "start_time")?;
    let end_time = required_time(object, "end_time")?;
    let duration = object.get("duration").filter(|value| !value.is_null());
    let duration_micros = match duration {
        Some(value) => parse_duration_micros(value).ok_or_else(|| RecordError::Invalid {
            field: "duration",
            value: value.to_string(),
            expected: "seconds such as \"2.350\" or \"0\"",
        })?,
        None => return Err(RecordError::Missing("duration")),
    };
    Ok(Record {
        kind: Kind::Cdr,
        method: None,
        callid: required_text(object, "callid")?,
        from_tag: text(object, "from_tag")?,
        to_tag: text(object, "to_tag")?,
        // The dialog's code is empty when Kamailio itself ended the call (a local 408).
        sip_code: sip_code(object)?,
        sip_reason: text(object, "sip_reason")?,
        event_time,
        end_time: Some(end_time),
        duration_micros: Some(duration_micros),
        extra: Map::new(),
    })
}

/// Returns a field as text: strings as they are, numbers and booleans in JSON notation.
fn text(object: &Map<String, Value>, field: &'static str) -> Result<Option<String>, RecordError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
        Some(other) => Err(RecordError::Invalid {
            field,
            value: shorten(&other.to_string()),
            expected: "a string",
        }),
    }
}

fn required_text(object: &Map<String, Value>, field: &'static str) -> Result<String, RecordError> {
    match text(object, field)? {
        None => Err(RecordError::Missing(field)),
        Some(text) if text.trim().is_empty() => Err(RecordError::Empty(field)),
        Some(text) => Ok(text),
    }
}

fn required_time(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<OffsetDateTime, RecordError> {
    let value = match object.get(field) {
        None | Some(Value::Null) => return Err(RecordError::Missing(field)),
        Some(value) => value,
    };
    parse_time(value).ok_or_else(|| RecordError::Invalid {
        field,
        value: shorten(&value.to_string()),
        expected: TIME_FORMS,
    })
}

/// Returns the SIP code, or `None` when the field is absent or an empty string.
fn sip_code(object: &Map<String, Value>) -> Result<Option<i16>, RecordError> {
    let Some(text) = text(object, "sip_code")? else {
        return Ok(None);
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match trimmed.parse::<i16>() {
        Ok(code) if (100..=699).contains(&code) => Ok(Some(code)),
        _ => Err(RecordError::Invalid {
            field: "sip_code",
            value: shorten(&format!("{text:?}")),
            expected: "a SIP status code from 100 to 699",
        }),
    }
}

/// Parses the time forms acc writes for its `acc_time_mode` settings: Unix seconds as an
/// integer (mode 0), as a number with a fraction (mode 2) or as a string with one (dialog
/// CDRs), and formatted times (modes 3 and 4).
///
/// NOTE: a formatted time without an offset is read as UTC, which is right for mode 4 only;
/// mode 3 writes local time.
pub fn parse_time(value: &Value) -> Option<OffsetDateTime> {
    let time = match value {
        Value::Number(number) => match number.as_i64() {
            Some(seconds) => OffsetDateTime::from_unix_timestamp(seconds).ok()?,
            None => {
                let seconds = number.as_f64()?;
                if !seconds.is_finite() {
                    return None;
                }
                let nanos = (seconds * 1e9).round() as i128;
                OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?
            }
        },
        Value::String(text) => parse_time_text(text.trim())?,
        _ => return None,
    };
    // PostgreSQL stores years up to 294276, but times before 1970 or after 9999 in an
    // accounting record are corrupt values, not calls.
    let in_range = time.unix_timestamp() >= 0 && time.year() <= 9999;
    in_range.then_some(time)
}

fn parse_time_text(text: &str) -> Option<OffsetDateTime> {
    if let Some(micros) = decimal_micros(text) {
        return OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok();
    }
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(time);
    }
    let plain = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let with_fraction =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    PrimitiveDateTime::parse(text, plain)
        .or_else(|_| PrimitiveDateTime::parse(text, with_fraction))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn parse_duration_micros(value: &Value) -> Option<i64> {
    let micros = match value {
        Value::Number(number) => match number.as_i64() {
            Some(seconds) => seconds.checked_mul(1_000_000)?,
            None => {
                let seconds = number.as_f64()?;
                if !seconds.is_finite() || seconds > (i64::MAX / 1_000_000) as f64 {
                    return None;
                }
                (seconds * 1e6).round() as i64
            }
        },
        Value::String(text) => decimal_micros(text.trim())?,
        _ => return None,
    };
    (micros >= 0).then_some(micros)
}

/// Parses `<digits>[.<digits>]` as seconds into microseconds, dropping digits past the sixth
/// decimal (PostgreSQL keeps microseconds).
fn decimal_micros(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    if text.ends_with('.') {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let mut fraction_micros: i64 = 0;
    for position in 0..6 {
        let digit = fraction
            .as_bytes()
            .get(position)
            .map_or(0, |byte| byte - b'0');
        fraction_micros = fraction_micros * 10 + i64::from(digit);
    }
    seconds.checked_mul(1_000_000)?.checked_add(fraction_micros)
}

/// Rejects U+0000 anywhere in the record, naming the top-level field that holds it.
fn check_no_nul(object: &Map<String, Value>) -> Result<(), RecordError> {
    fn holds_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(holds_nul),
            Value::Object(fields) => fields
                .iter()
                .any(|(name, value)| name.contains('\0') || holds_nul(value)),
            _ => false,
        }
    }
    for (name, value) in object {
        if name.contains('\0') || holds_nul(value) {
            return Err(RecordError::NulCharacter(shorten(
                &name.replace('\0', "\\u0000"),
            )));
        }
    }
    Ok(())
}

/// Cuts a value quoted in an error message to 80 characters.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const ANSWERED_INVITE: &str = r#"{"time": 1796413788, "method": "INVITE", "from_tag": "15596SIPpTag0019", "to_tag": "15590SIPpTag0119", "callid": "19-15596@127.0.0.1", "sip_code": "200", "sip_reason": "OK", "src_user": "+390200000010", "src_domain": "127.0.0.1", "src_name": "\"Anna \uD83D\uDCDE Conti\"", "src_ip": "127.0.0.1", "dst_ouser": "+390600000038", "dst_user": "+390600000038", "dst_domain": "127.0.0.1", "ua": "SIPp-UAC/3.6.1 (kamdata sample)"}"#;
    const ANSWERED_CDR: &str = r#"{"start_time": "1796413784.874", "end_time": "1796413787.224", "duration": "2.350", "callid": "11-15596@127.0.0.1", "from_tag": "15596SIPpTag0011", "src_user": "+390200000013", "src_domain": "127.0.0.1", "src_name": "\"Centralino\"", "src_ip": "127.0.0.1", "dst_ouser": "+390600000035", "dst_user": "+390600000035", "dst_domain": "127.0.0.1", "ua": "SIPp-UAC/3.6.1 (kamdata sample)", "sip_code": "200", "sip_reason": "OK"}"#;

    fn parse_all(text: &str) -> Result<Record, RecordError> {
        parse(text.as_bytes(), &ExtraFields::All)
    }

    fn with_field(record: &str, field: &str, value: Value) -> String {
        let mut object: Map<String, Value> = serde_json::from_str(record).unwrap();
        object.insert(field.to_string(), value);
        serde_json::to_string(&object).unwrap()
    }

    fn without_field(record: &str, field: &str) -> String {
        let mut object: Map<String, Value> = serde_json::from_str(record).unwrap();
        object.remove(field);
        serde_json::to_string(&object).unwrap()
    }

    #[test]
    fn transaction_record_parses() {
        let record = parse_all(ANSWERED_INVITE).unwrap();
        assert_eq!(record.kind, Kind::Acc);
        assert_eq!(record.method.as_deref(), Some("INVITE"));
        assert_eq!(record.callid, "19-15596@127.0.0.1");
        assert_eq!(record.sip_code, Some(200));
        assert_eq!(record.to_tag.as_deref(), Some("15590SIPpTag0119"));
        assert_eq!(record.event_time, datetime!(2026-12-04 19:49:48 UTC));
        assert_eq!(record.extra["src_name"], "\"Anna \u{1F4DE} Conti\"");
        assert!(!record.extra.contains_key("callid"));
        assert_eq!(record.extra.len(), 8);
    }

    #[test]
    fn dialog_cdr_parses_string_times() {
        let record = parse_all(ANSWERED_CDR).unwrap();
        assert_eq!(record.kind, Kind::Cdr);
        assert_eq!(record.method, None);
        assert_eq!(record.event_time, datetime!(2026-12-04 19:49:44.874 UTC));
        assert_eq!(
            record.end_time,
            Some(datetime!(2026-12-04 19:49:47.224 UTC))
        );
        assert_eq!(record.duration_micros, Some(2_350_000));
        assert_eq!(record.sip_code, Some(200));
    }

    #[test]
    fn dialog_cdr_with_empty_code_parses() {
        let record = with_field(ANSWERED_CDR, "sip_code", "".into());
        let record = with_field(&record, "duration", "0".into());
        let record = parse_all(&record).unwrap();
        assert_eq!(record.sip_code, None);
        assert_eq!(record.duration_micros, Some(0));
    }

    #[test]
    fn missing_callid_names_field() {
        let err = parse_all(&without_field(ANSWERED_INVITE, "callid")).unwrap_err();
        assert_eq!(err, RecordError::Missing("callid"));
        assert_eq!(err.to_string(), "missing required field `callid`");
        let err = parse_all(&without_field(ANSWERED_CDR, "callid")).unwrap_err();
        assert_eq!(err, RecordError::Missing("callid"));
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["time", "callid", "sip_code"] {
            let err = parse_all(&without_field(ANSWERED_INVITE, field)).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{field}`")),
                "{field}: {err}"
            );
        }
        for field in ["end_time", "duration", "callid"] {
            let err = parse_all(&without_field(ANSWERED_CDR, field)).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{field}`")),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn record_of_unknown_kind_names_method() {
        let err = parse_all(r#"{"agent": "Yealink SIP-T27G"}"#).unwrap_err();
        assert_eq!(err, RecordError::UnknownKind);
        assert!(err.to_string().contains("`method`"));
    }

    #[test]
    fn unparseable_time_names_field() {
        let err = parse_all(&with_field(ANSWERED_INVITE, "time", "yesterday".into())).unwrap_err();
        assert!(
            matches!(err, RecordError::Invalid { field: "time", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"yesterday\""), "{err}");
    }

    #[test]
    fn time_forms_of_acc_time_mode() {
        let expected = datetime!(2026-12-04 19:49:42 UTC);
        for value in [
            serde_json::json!(1796413782),
            serde_json::json!(1796413782.0),
            serde_json::json!("1796413782"),
            serde_json::json!("1796413782.000000"),
            serde_json::json!("2026-12-04 19:49:42"),
            serde_json::json!("2026-12-04T19:49:42Z"),
            serde_json::json!("2026-12-04T20:49:42+01:00"),
        ] {
            assert_eq!(parse_time(&value), Some(expected), "{value}");
        }
        assert_eq!(
            parse_time(&serde_json::json!(1796413782.5)),
            Some(datetime!(2026-12-04 19:49:42.5 UTC))
        );
    }

    #[test]
    fn out_of_range_times_are_rejected() {
        for value in [
            serde_json::json!(-1),
            serde_json::json!(i64::MAX),
            serde_json::json!("99999999999999"),
            serde_json::json!("1e9"),
            serde_json::json!(""),
            serde_json::json!("12."),
            serde_json::json!(true),
        ] {
            assert_eq!(parse_time(&value), None, "{value}");
        }
    }

    #[test]
    fn sip_code_as_number_or_string() {
        let record = parse_all(&with_field(ANSWERED_INVITE, "sip_code", 486.into())).unwrap();
        assert_eq!(record.sip_code, Some(486));
        let err = parse_all(&with_field(ANSWERED_INVITE, "sip_code", "OK".into())).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::Invalid {
                    field: "sip_code",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse_all(&with_field(ANSWERED_INVITE, "sip_code", "99".into())).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::Invalid {
                    field: "sip_code",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse_all(&with_field(ANSWERED_INVITE, "sip_code", "".into())).unwrap_err();
        assert_eq!(err, RecordError::Empty("sip_code"));
    }

    #[test]
    fn object_in_core_field_is_invalid() {
        let err = parse_all(&with_field(
            ANSWERED_INVITE,
            "callid",
            serde_json::json!({"a": 1}),
        ))
        .unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::Invalid {
                    field: "callid",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn nul_character_is_rejected_with_field() {
        let err = parse_all(&with_field(ANSWERED_INVITE, "ua", "bad\u{0}ua".into())).unwrap_err();
        assert_eq!(err, RecordError::NulCharacter("ua".to_string()));
    }

    #[test]
    fn padded_user_agent_is_kept_verbatim() {
        let agent = format!("Yealink SIP-T27G 69.81.0.25 {}\u{7}", "\u{FF}".repeat(23));
        let record = parse_all(&with_field(ANSWERED_INVITE, "ua", agent.clone().into())).unwrap();
        assert_eq!(record.extra["ua"], Value::String(agent));
    }

    #[test]
    fn extra_fields_list_limits_extra() {
        let only = ExtraFields::Only(["src_user".to_string(), "ua".to_string()].into());
        let record = parse(ANSWERED_INVITE.as_bytes(), &only).unwrap();
        let names: Vec<&str> = record.extra.keys().map(String::as_str).collect();
        assert_eq!(names, ["src_user", "ua"]);
    }

    #[test]
    fn non_object_is_rejected() {
        assert_eq!(parse_all("[1]").unwrap_err(), RecordError::NotObject);
        assert!(matches!(
            parse_all("{").unwrap_err(),
            RecordError::NotJson(_)
        ));
    }

    #[test]
    fn decimal_seconds_keep_microseconds() {
        assert_eq!(decimal_micros("2.350"), Some(2_350_000));
        assert_eq!(decimal_micros("0"), Some(0));
        assert_eq!(decimal_micros("1.1234567"), Some(1_123_456));
        assert_eq!(decimal_micros("-1"), None);
        assert_eq!(decimal_micros(".5"), None);
    }
}
