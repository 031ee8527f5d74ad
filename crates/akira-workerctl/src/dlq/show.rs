//! `akira-workerctl dlq show`.

use std::io::Write;

use serde_json::json;

use crate::connect::NatsArgs;
use crate::dlq::{get, open_dlq, DeadLetterRecord};
use crate::output::{format_time, hex_dump};
use crate::ExitStatus;

/// Arguments of `dlq show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Sequence of the dead letter in AKIRA_DLQ, as `dlq list` prints it.
    #[arg(value_name = "SEQ")]
    pub sequence: u64,

    /// Write only the payload bytes, unchanged.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,

    /// Print JSON: headers, and the payload as JSON, text or hex.
    #[arg(long)]
    pub json: bool,
}

/// Display form of a payload.
enum Payload {
    Json(serde_json::Value),
    Text(String),
    Binary,
}

fn classify(payload: &[u8]) -> Payload {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) {
        return Payload::Json(value);
    }
    match std::str::from_utf8(payload) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            Payload::Text(text.to_string())
        }
        _ => Payload::Binary,
    }
}

/// Runs `dlq show`.
pub async fn run(nats: &NatsArgs, args: &ShowArgs) -> anyhow::Result<ExitStatus> {
    let client = nats.connect().await?;
    let jetstream = nats.jetstream(client);
    let stream = open_dlq(&jetstream).await?;
    let record = get(&stream, args.sequence).await?;

    let mut stdout = std::io::stdout().lock();
    if args.raw {
        stdout.write_all(&record.payload)?;
        stdout.flush()?;
    } else if args.json {
        serde_json::to_writer_pretty(&mut stdout, &to_json(&record))?;
        writeln!(stdout)?;
    } else {
        write_text(&mut stdout, &record)?;
    }
    Ok(ExitStatus::Success)
}

fn header_pairs(record: &DeadLetterRecord) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (name, values) in record.headers.iter() {
        for value in values {
            pairs.push((name.to_string(), value.to_string()));
        }
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

fn write_text(out: &mut impl Write, record: &DeadLetterRecord) -> std::io::Result<()> {
    writeln!(out, "sequence: {}", record.dlq_sequence)?;
    writeln!(out, "time: {}", format_time(record.time))?;
    writeln!(out, "subject: {}", record.dlq_subject)?;
    writeln!(out, "headers:")?;
    for (name, value) in header_pairs(record) {
        writeln!(out, "  {name}: {value}")?;
    }
    let size = record.payload.len();
    match classify(&record.payload) {
        Payload::Json(value) => {
            writeln!(out, "payload (JSON, {size} bytes):")?;
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
            writeln!(out, "{pretty}")?;
        }
        Payload::Text(text) => {
            writeln!(out, "payload (text, {size} bytes):")?;
            writeln!(out, "{text}")?;
        }
        Payload::Binary => {
            writeln!(out, "payload (binary, {size} bytes):")?;
            write!(out, "{}", hex_dump(&record.payload))?;
        }
    }
    Ok(())
}

fn to_json(record: &DeadLetterRecord) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in header_pairs(record) {
        let entry = headers.entry(name).or_insert_with(|| json!([]));
        if let serde_json::Value::Array(values) = entry {
            values.push(json!(value));
        }
    }
    let mut object = json!({
        "sequence": record.dlq_sequence,
        "time": format_time(record.time),
        "subject": record.dlq_subject,
        "headers": headers,
        "payload_size": record.payload.len(),
    });
    let payload = match classify(&record.payload) {
        Payload::Json(value) => ("payload_json", value),
        Payload::Text(text) => ("payload_text", json!(text)),
        Payload::Binary => {
            let hex: String = record
                .payload
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            ("payload_hex", json!(hex))
        }
    };
    object[payload.0] = payload.1;
    object
}
