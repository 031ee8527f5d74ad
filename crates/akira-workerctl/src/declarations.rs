//! The declarations file that `akira-workerctl apply` reads: streams and consumers in TOML
//! (or JSON), with NATS's own field names and durations written as `30s`, `5m` or `30d`.
//!
//! A field left out of a declaration is not managed: `apply` keeps the server's value when the
//! object exists and lets the server choose its default when it creates the object. The one
//! exception is `deliver_subject`: a consumer declared without it is a pull consumer.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use akira_workers::dlq;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use serde::Deserialize;

/// Every stream and consumer of one declarations file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declarations {
    pub streams: Vec<StreamDeclaration>,
    pub consumers: Vec<ConsumerDeclaration>,
}

/// One `[[streams]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDeclaration {
    pub name: String,
    pub subjects: Option<Vec<String>>,
    pub storage: Option<StorageType>,
    pub retention: Option<RetentionPolicy>,
    #[serde(default, deserialize_with = "duration_text")]
    pub max_age: Option<Duration>,
    /// `-1` (or `0`) is unlimited.
    pub max_msgs: Option<i64>,
    /// `-1` (or `0`) is unlimited.
    pub max_bytes: Option<i64>,
    /// `-1` (or `0`) is unlimited.
    pub max_msg_size: Option<i32>,
    pub discard: Option<DiscardPolicy>,
    pub num_replicas: Option<usize>,
    #[serde(default, deserialize_with = "duration_text")]
    pub duplicate_window: Option<Duration>,
    /// An empty string removes the server's description.
    pub description: Option<String>,
    /// Set when `apply` added the stream itself (the dead-letter stream), not the file.
    #[serde(skip)]
    pub implicit: bool,
}

/// One `[[consumers]]` entry: a durable consumer on `stream`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerDeclaration {
    pub durable_name: String,
    pub stream: String,
    pub filter_subject: Option<String>,
    pub filter_subjects: Option<Vec<String>>,
    pub ack_policy: Option<AckPolicy>,
    #[serde(default, deserialize_with = "duration_text")]
    pub ack_wait: Option<Duration>,
    /// `-1` (or `0`) is unlimited.
    pub max_deliver: Option<i64>,
    /// Redelivery delays after each ack timeout; left unmanaged when absent.
    #[serde(default, deserialize_with = "duration_list_text")]
    pub backoff: Option<Vec<Duration>>,
    pub max_ack_pending: Option<i64>,
    pub deliver_policy: Option<DeliverPolicy>,
    /// Push consumers only; a consumer without it is a pull consumer.
    pub deliver_subject: Option<String>,
    pub deliver_group: Option<String>,
    pub flow_control: Option<bool>,
    #[serde(default, deserialize_with = "duration_text")]
    pub idle_heartbeat: Option<Duration>,
    /// Pull consumers only: the maximum number of waiting pull requests.
    pub max_waiting: Option<i64>,
    /// An empty string removes the server's description.
    pub description: Option<String>,
}

/// Start position of a consumer in its stream. The start-sequence and start-time policies are not
/// supported in declarations because they need a value that only makes sense once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    All,
    Last,
    New,
    LastPerSubject,
}

impl DeliverPolicy {
    pub fn to_nats(self) -> async_nats::jetstream::consumer::DeliverPolicy {
        use async_nats::jetstream::consumer::DeliverPolicy as Nats;
        match self {
            DeliverPolicy::All => Nats::All,
            DeliverPolicy::Last => Nats::Last,
            DeliverPolicy::New => Nats::New,
            DeliverPolicy::LastPerSubject => Nats::LastPerSubject,
        }
    }
}

impl StreamDeclaration {
    /// Returns the conventional declaration of `AKIRA_DLQ`, used when the file has none.
    pub fn dead_letter_stream() -> StreamDeclaration {
        let config = dlq::dlq_stream_config();
        StreamDeclaration {
            name: config.name,
            subjects: Some(config.subjects),
            storage: Some(config.storage),
            retention: Some(config.retention),
            max_age: Some(config.max_age),
            duplicate_window: Some(config.duplicate_window),
            implicit: true,
            ..StreamDeclaration::default()
        }
    }
}

impl ConsumerDeclaration {
    /// Returns the declared filter subjects, if any form of filter is declared.
    pub fn filters(&self) -> Option<Vec<String>> {
        match (&self.filter_subject, &self.filter_subjects) {
            (Some(one), _) => Some(vec![one.clone()]),
            (None, Some(many)) => Some(many.clone()),
            (None, None) => None,
        }
    }
}

/// Input format of a declarations file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// Returns JSON for a `.json` file and TOML otherwise.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// A declarations file that cannot be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum DeclarationError {
    #[error("cannot read declarations file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: invalid TOML at line {line}, column {column}: {message}")]
    Toml {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: invalid JSON: {message}")]
    Json { origin: String, message: String },
    #[error("{origin}: {object}: {message}")]
    Invalid {
        origin: String,
        object: String,
        message: String,
    },
}

impl Declarations {
    /// Reads and validates a declarations file; `.json` files are JSON, others TOML.
    pub fn load(path: &Path) -> Result<Declarations, DeclarationError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeclarationError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Declarations::parse(&text, Format::from_path(path), &path.display().to_string())
    }

    /// Parses and validates declarations; `origin` names the source in errors.
    pub fn parse(
        text: &str,
        format: Format,
        origin: &str,
    ) -> Result<Declarations, DeclarationError> {
        let document = parse_document(text, format, origin)?;
        let invalid = |object: &str, message: String| DeclarationError::Invalid {
            origin: origin.to_string(),
            object: object.to_string(),
            message,
        };

        let serde_json::Value::Object(mut top) = document else {
            return Err(invalid(
                "top level",
                "expected a table with `streams` and `consumers` arrays".to_string(),
            ));
        };
        for key in top.keys() {
            if key != "streams" && key != "consumers" {
                return Err(invalid(
                    "top level",
                    format!("unknown key `{key}`; expected `streams` or `consumers`"),
                ));
            }
        }

        let mut declarations = Declarations::default();
        for (index, item) in array_items(&mut top, "streams", origin)?
            .into_iter()
            .enumerate()
        {
            let object = describe_stream(&item, index);
            let stream: StreamDeclaration =
                deserialize_item(item).map_err(|message| invalid(&object, message))?;
            declarations.streams.push(stream);
        }
        for (index, item) in array_items(&mut top, "consumers", origin)?
            .into_iter()
            .enumerate()
        {
            let object = describe_consumer(&item, index);
            let consumer: ConsumerDeclaration =
                deserialize_item(item).map_err(|message| invalid(&object, message))?;
            declarations.consumers.push(consumer);
        }

        declarations.validate(origin)?;
        Ok(declarations)
    }

    /// Adds the conventional `AKIRA_DLQ` declaration unless the file declares that stream.
    pub fn with_dead_letter_stream(mut self) -> Declarations {
        if !self
            .streams
            .iter()
            .any(|stream| stream.name == dlq::DLQ_STREAM)
        {
            self.streams.push(StreamDeclaration::dead_letter_stream());
        }
        self
    }

    /// Returns the declared stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamDeclaration> {
        self.streams.iter().find(|stream| stream.name == name)
    }

    fn validate(&mut self, origin: &str) -> Result<(), DeclarationError> {
        let invalid = |object: String, message: String| DeclarationError::Invalid {
            origin: origin.to_string(),
            object,
            message,
        };

        let mut stream_names = BTreeSet::new();
        for stream in &mut self.streams {
            let object = format!("stream `{}`", stream.name);
            validate_stream(stream).map_err(|message| invalid(object.clone(), message))?;
            if !stream_names.insert(stream.name.clone()) {
                return Err(invalid(object, "declared twice".to_string()));
            }
        }

        let mut consumer_names = BTreeSet::new();
        for consumer in &mut self.consumers {
            let object = format!(
                "consumer `{}` on stream `{}`",
                consumer.durable_name, consumer.stream
            );
            validate_consumer(consumer).map_err(|message| invalid(object.clone(), message))?;
            if !consumer_names.insert((consumer.stream.clone(), consumer.durable_name.clone())) {
                return Err(invalid(object, "declared twice".to_string()));
            }
        }
        Ok(())
    }
}

fn parse_document(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<serde_json::Value, DeclarationError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|err| DeclarationError::Json {
            origin: origin.to_string(),
            message: err.to_string(),
        }),
        Format::Toml => {
            let table: toml::Table = toml::from_str(text).map_err(|err| {
                let (line, column) = err
                    .span()
                    .map(|span| line_and_column(text, span.start))
                    .unwrap_or((0, 0));
                DeclarationError::Toml {
                    origin: origin.to_string(),
                    line,
                    column,
                    message: err.message().trim().replace('\n', " "),
                }
            })?;
            serde_json::to_value(table).map_err(|err| DeclarationError::Invalid {
                origin: origin.to_string(),
                object: "top level".to_string(),
                message: err.to_string(),
            })
        }
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|at| at + 1).unwrap_or(0) + 1;
    (line, column)
}

fn array_items(
    top: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    origin: &str,
) -> Result<Vec<serde_json::Value>, DeclarationError> {
    match top.remove(key) {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => Ok(items),
        Some(_) => Err(DeclarationError::Invalid {
            origin: origin.to_string(),
            object: format!("`{key}`"),
            message: format!("expected an array of tables, written [[{key}]] in TOML"),
        }),
    }
}

fn describe_stream(item: &serde_json::Value, index: usize) -> String {
    match item.get("name").and_then(|name| name.as_str()) {
        Some(name) => format!("stream `{name}`"),
        None => format!("streams[{index}]"),
    }
}

fn describe_consumer(item: &serde_json::Value, index: usize) -> String {
    let name = item.get("durable_name").and_then(|name| name.as_str());
    let stream = item.get("stream").and_then(|stream| stream.as_str());
    match (name, stream) {
        (Some(name), Some(stream)) => format!("consumer `{name}` on stream `{stream}`"),
        (Some(name), None) => format!("consumer `{name}`"),
        _ => format!("consumers[{index}]"),
    }
}

/// Deserializes one array item. The error names the field path when serde reports one.
fn deserialize_item<T: serde::de::DeserializeOwned>(item: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(item).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        if path == "."
            || message.starts_with("unknown field")
            || message.starts_with("missing field")
        {
            message
        } else {
            format!("{path}: {message}")
        }
    })
}

fn validate_stream(stream: &mut StreamDeclaration) -> Result<(), String> {
    validate_name("name", &stream.name)?;
    if let Some(subjects) = &stream.subjects {
        if subjects.is_empty() {
            return Err(
                "`subjects` is empty; list at least one subject or leave the field out".to_string(),
            );
        }
        for subject in subjects {
            validate_subject("subjects", subject)?;
        }
    }
    stream.max_msgs = stream
        .max_msgs
        .map(normalize_unlimited)
        .transpose()
        .map_err(|value| {
            format!("`max_msgs` is {value}; write -1 for unlimited or a positive number")
        })?;
    stream.max_bytes = stream
        .max_bytes
        .map(normalize_unlimited)
        .transpose()
        .map_err(|value| {
            format!("`max_bytes` is {value}; write -1 for unlimited or a positive number")
        })?;
    stream.max_msg_size = stream
        .max_msg_size
        .map(|value| normalize_unlimited(i64::from(value)).map(|value| value as i32))
        .transpose()
        .map_err(|value| {
            format!("`max_msg_size` is {value}; write -1 for unlimited or a positive number")
        })?;
    if stream.num_replicas == Some(0) {
        return Err("`num_replicas` is 0; write 1 for a single copy".to_string());
    }
    if stream.duplicate_window == Some(Duration::ZERO) {
        return Err(
            "`duplicate_window` is 0; write a positive duration such as \"2m\"".to_string(),
        );
    }
    Ok(())
}

fn validate_consumer(consumer: &mut ConsumerDeclaration) -> Result<(), String> {
    validate_name("durable_name", &consumer.durable_name)?;
    validate_name("stream", &consumer.stream)?;
    if consumer.filter_subject.is_some() && consumer.filter_subjects.is_some() {
        return Err("both `filter_subject` and `filter_subjects` are set; keep one".to_string());
    }
    if let Some(filters) = consumer.filters() {
        if filters.is_empty() {
            return Err(
                "`filter_subjects` is empty; list at least one subject or leave the field out"
                    .to_string(),
            );
        }
        for filter in &filters {
            validate_subject("filter_subject", filter)?;
        }
    }
    if consumer.ack_wait == Some(Duration::ZERO) {
        return Err("`ack_wait` is 0; write a positive duration such as \"30s\"".to_string());
    }
    consumer.max_deliver = consumer
        .max_deliver
        .map(normalize_unlimited)
        .transpose()
        .map_err(|value| {
            format!("`max_deliver` is {value}; write -1 for unlimited or a positive number")
        })?;
    if let Some(backoff) = &consumer.backoff {
        if backoff.iter().any(|delay| delay.is_zero()) {
            return Err(
                "`backoff` contains a zero delay; every delay must be positive".to_string(),
            );
        }
        if let Some(max_deliver) = consumer.max_deliver.filter(|max| *max > 0) {
            if backoff.len() as i64 > max_deliver {
                return Err(format!(
                    "`backoff` has {} delays but `max_deliver` is {max_deliver}; the server allows at most max_deliver delays (the library writes max_deliver - 1)",
                    backoff.len()
                ));
            }
        }
    }
    if let Some(max_ack_pending) = consumer.max_ack_pending {
        if max_ack_pending == 0 || max_ack_pending < -1 {
            return Err(format!(
                "`max_ack_pending` is {max_ack_pending}; write -1 for unlimited or a positive number"
            ));
        }
    }
    if let Some(max_waiting) = consumer.max_waiting {
        if max_waiting <= 0 {
            return Err(format!(
                "`max_waiting` is {max_waiting}; write a positive number"
            ));
        }
    }

    match &consumer.deliver_subject {
        Some(subject) => {
            validate_subject("deliver_subject", subject)?;
            if subject.contains(['*', '>']) {
                return Err(format!(
                    "`deliver_subject` {subject:?} contains a wildcard; write a literal subject"
                ));
            }
            if consumer.max_waiting.is_some() {
                return Err("`max_waiting` applies to pull consumers only, but `deliver_subject` makes this a push consumer".to_string());
            }
            if consumer.flow_control == Some(true)
                && consumer.idle_heartbeat.is_none_or(|beat| beat.is_zero())
            {
                return Err(
                    "`flow_control` needs `idle_heartbeat`; set idle_heartbeat = \"5s\" or similar"
                        .to_string(),
                );
            }
        }
        None => {
            for (field, set) in [
                ("deliver_group", consumer.deliver_group.is_some()),
                ("flow_control", consumer.flow_control == Some(true)),
                (
                    "idle_heartbeat",
                    consumer.idle_heartbeat.is_some_and(|beat| !beat.is_zero()),
                ),
            ] {
                if set {
                    return Err(format!(
                        "`{field}` applies to push consumers only; set `deliver_subject` or remove `{field}`"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Maps `0` to `-1` (both mean unlimited to the server); returns the value back when it is
/// below `-1`.
fn normalize_unlimited(value: i64) -> Result<i64, i64> {
    match value {
        0 | -1 => Ok(-1),
        value if value > 0 => Ok(value),
        value => Err(value),
    }
}

fn validate_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "`{field}` {name:?} contains {bad:?}; names cannot contain whitespace, '.', '*', '>', '/' or '\\'"
        ));
    }
    Ok(())
}

fn validate_subject(field: &str, subject: &str) -> Result<(), String> {
    let valid = !subject.is_empty()
        && !subject.chars().any(char::is_whitespace)
        && subject.split('.').all(|token| !token.is_empty());
    if valid {
        Ok(())
    } else {
        Err(format!("`{field}` {subject:?} is not a valid subject"))
    }
}

/// Reads an optional duration written as text. Integers are rejected because `nats ... -j`
/// prints durations as nanoseconds while the worker configuration reads them as seconds.
fn duration_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    parse_duration_value(&value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn duration_list_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Duration>>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let serde_json::Value::Array(items) = value else {
        return Err(serde::de::Error::custom(format!(
            "expected a list of durations such as [\"1s\", \"5s\"], found {value}"
        )));
    };
    items
        .iter()
        .map(parse_duration_value)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn parse_duration_value(value: &serde_json::Value) -> Result<Duration, String> {
    match value {
        serde_json::Value::String(text) => akira_workers::duration::parse(text),
        other => Err(format!(
            "expected a duration string such as \"30s\", \"5m\" or \"30d\", found {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_toml(text: &str) -> Result<Declarations, DeclarationError> {
        Declarations::parse(text, Format::Toml, "streams.toml")
    }

    #[test]
    fn parses_streams_and_consumers() {
        let declarations = parse_toml(
            r#"
            [[streams]]
            name = "CDR"
            subjects = ["akira.cdr.>"]
            storage = "file"
            retention = "limits"
            max_age = "30d"
            duplicate_window = "2m"

            [[consumers]]
            durable_name = "cdr-pipeline"
            stream = "CDR"
            filter_subject = "akira.cdr.>"
            ack_policy = "explicit"
            ack_wait = "30s"
            max_deliver = 5
            backoff = ["30s", "30s", "30s", "30s"]
            deliver_policy = "all"
            "#,
        )
        .unwrap();
        let stream = &declarations.streams[0];
        assert_eq!(stream.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(stream.storage, Some(StorageType::File));
        let consumer = &declarations.consumers[0];
        assert_eq!(consumer.backoff.as_ref().unwrap().len(), 4);
        assert_eq!(consumer.deliver_policy, Some(DeliverPolicy::All));
        assert_eq!(consumer.filters(), Some(vec!["akira.cdr.>".to_string()]));
    }

    #[test]
    fn unknown_field_names_field_and_object() {
        let err = parse_toml("[[streams]]\nname = \"CDR\"\nmax_agee = \"1d\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_agee"), "{err}");
        assert!(err.contains("stream `CDR`"), "{err}");
        assert!(err.contains("streams.toml"), "{err}");
    }

    #[test]
    fn unknown_consumer_field_names_consumer() {
        let err =
            parse_toml("[[consumers]]\ndurable_name = \"a\"\nstream = \"S\"\nack = \"none\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("consumer `a` on stream `S`"), "{err}");
        assert!(err.contains("`ack`"), "{err}");
    }

    #[test]
    fn integer_duration_is_rejected() {
        let err = parse_toml("[[streams]]\nname = \"CDR\"\nmax_age = 3600\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_age"), "{err}");
        assert!(err.contains("3600"), "{err}");
    }

    #[test]
    fn invalid_duration_names_value() {
        let err = parse_toml("[[streams]]\nname = \"CDR\"\nmax_age = \"30x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_age"), "{err}");
        assert!(err.contains("\"30x\""), "{err}");
    }

    #[test]
    fn toml_syntax_error_is_one_line_with_position() {
        let err = parse_toml("[[streams]]\nname = \n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn json_is_accepted() {
        let declarations = Declarations::parse(
            r#"{"streams": [{"name": "NOTIFY", "subjects": ["akira.notify.>"], "max_age": "7d"}]}"#,
            Format::Json,
            "streams.json",
        )
        .unwrap();
        assert_eq!(declarations.streams[0].name, "NOTIFY");
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let err = parse_toml("[[stream]]\nname = \"CDR\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`stream`"), "{err}");
    }

    #[test]
    fn unknown_enum_value_lists_choices() {
        let err = parse_toml("[[streams]]\nname = \"CDR\"\nstorage = \"ssd\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ssd"), "{err}");
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn zero_limits_mean_unlimited() {
        let declarations =
            parse_toml("[[streams]]\nname = \"CDR\"\nmax_msgs = 0\nmax_bytes = -1\n").unwrap();
        assert_eq!(declarations.streams[0].max_msgs, Some(-1));
        assert_eq!(declarations.streams[0].max_bytes, Some(-1));
    }

    #[test]
    fn duplicate_stream_is_rejected() {
        let err = parse_toml("[[streams]]\nname = \"CDR\"\n[[streams]]\nname = \"CDR\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("declared twice"), "{err}");
    }

    #[test]
    fn backoff_longer_than_max_deliver_is_rejected() {
        let err = parse_toml(
            "[[consumers]]\ndurable_name = \"a\"\nstream = \"S\"\nmax_deliver = 2\nbackoff = [\"1s\", \"2s\", \"3s\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_deliver"), "{err}");
    }

    #[test]
    fn push_fields_need_deliver_subject() {
        let err = parse_toml(
            "[[consumers]]\ndurable_name = \"a\"\nstream = \"S\"\ndeliver_group = \"g\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("deliver_subject"), "{err}");
    }

    #[test]
    fn dead_letter_stream_is_added_once() {
        let declarations = parse_toml("[[streams]]\nname = \"CDR\"\n")
            .unwrap()
            .with_dead_letter_stream();
        assert_eq!(declarations.streams.len(), 2);
        let dlq_stream = declarations.stream(dlq::DLQ_STREAM).unwrap();
        assert!(dlq_stream.implicit);
        assert_eq!(dlq_stream.duplicate_window, Some(dlq::DLQ_DUPLICATE_WINDOW));

        let explicit = parse_toml("[[streams]]\nname = \"AKIRA_DLQ\"\nmax_age = \"60d\"\n")
            .unwrap()
            .with_dead_letter_stream();
        assert_eq!(explicit.streams.len(), 1);
        assert!(!explicit.streams[0].implicit);
    }
}
