//! Writes parsed records to `cdr_events` in PostgreSQL.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::record::Record;

/// The migrations under `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// One row of `cdr_events`.
#[derive(Debug, Clone)]
pub struct Row {
    pub source: String,
    pub record_sha256: Vec<u8>,
    pub stream_sequence: Option<i64>,
    pub record: Record,
}

impl Row {
    pub fn new(source: &str, payload: &[u8], stream_sequence: Option<u64>, record: Record) -> Row {
        Row {
            source: source.to_string(),
            record_sha256: Sha256::digest(payload).to_vec(),
            stream_sequence: stream_sequence.and_then(|sequence| i64::try_from(sequence).ok()),
            record,
        }
    }
}

/// Returns the source token of a subject `akira.cdr.<source>`.
pub fn source_of(subject: &str) -> &str {
    subject.strip_prefix("akira.cdr.").unwrap_or(subject)
}

/// Connects lazily: the pool opens connections when a batch needs them.
pub fn connect(
    url: &str,
    pool_size: u32,
    connect_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name("akira-cdr-pipeline");
    Ok(PgPoolOptions::new()
        .max_connections(pool_size)
        .acquire_timeout(connect_timeout)
        .connect_lazy_with(options))
}

const INSERT: &str = "
INSERT INTO cdr_events (
    source, record_sha256, kind, method, callid, from_tag, to_tag, sip_code, sip_reason,
    event_time, end_time, duration, extra, stream_sequence
)
SELECT * FROM UNNEST(
    $1::text[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::smallint[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::interval[],
    $13::jsonb[], $14::bigint[]
)
ON CONFLICT ON CONSTRAINT cdr_events_record_key DO NOTHING";

/// Inserts rows in one statement; rows already stored are skipped. Returns the rows added.
pub async fn insert<'c, E>(executor: E, rows: &[&Row]) -> Result<u64, sqlx::Error>
where
    E: sqlx::PgExecutor<'c>,
{
    let mut source = Vec::with_capacity(rows.len());
    let mut sha256 = Vec::with_capacity(rows.len());
    let mut kind = Vec::with_capacity(rows.len());
    let mut method = Vec::with_capacity(rows.len());
    let mut callid = Vec::with_capacity(rows.len());
    let mut from_tag = Vec::with_capacity(rows.len());
    let mut to_tag = Vec::with_capacity(rows.len());
    let mut sip_code = Vec::with_capacity(rows.len());
    let mut sip_reason = Vec::with_capacity(rows.len());
    let mut event_time: Vec<OffsetDateTime> = Vec::with_capacity(rows.len());
    let mut end_time: Vec<Option<OffsetDateTime>> = Vec::with_capacity(rows.len());
    let mut duration: Vec<Option<PgInterval>> = Vec::with_capacity(rows.len());
    let mut extra = Vec::with_capacity(rows.len());
    let mut stream_sequence = Vec::with_capacity(rows.len());
    for row in rows {
        let record = &row.record;
        source.push(row.source.as_str());
        sha256.push(row.record_sha256.as_slice());
        kind.push(record.kind.as_str());
        method.push(record.method.as_deref());
        callid.push(record.callid.as_str());
        from_tag.push(record.from_tag.as_deref());
        to_tag.push(record.to_tag.as_deref());
        sip_code.push(record.sip_code);
        sip_reason.push(record.sip_reason.as_deref());
        event_time.push(record.event_time);
        end_time.push(record.end_time);
        duration.push(record.duration_micros.map(|microseconds| PgInterval {
            months: 0,
            days: 0,
            microseconds,
        }));
        extra.push(Json(&record.extra));
        stream_sequence.push(row.stream_sequence);
    }

    let result = sqlx::query(INSERT)
        .bind(source)
        .bind(sha256)
        .bind(kind)
        .bind(method)
        .bind(callid)
        .bind(from_tag)
        .bind(to_tag)
        .bind(sip_code)
        .bind(sip_reason)
        .bind(event_time)
        .bind(end_time)
        .bind(duration)
        .bind(extra)
        .bind(stream_sequence)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}

/// Reports whether PostgreSQL rejected the data itself (SQLSTATE class 22, data exception, or 23,
/// integrity constraint violation), so that retrying the same row cannot succeed.
pub fn is_data_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Applies the embedded migrations, retrying while PostgreSQL is unreachable for up to
/// `timeout` (or until `shutdown`). A migration that fails in the database is not retried.
pub async fn migrate(
    pool: &PgPool,
    timeout: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), sqlx::migrate::MigrateError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(250);
    loop {
        let error = match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let unreachable = matches!(
            &error,
            sqlx::migrate::MigrateError::Execute(inner) if !matches!(inner, sqlx::Error::Database(_))
        );
        if !unreachable || tokio::time::Instant::now() + delay > deadline || shutdown.is_cancelled()
        {
            return Err(error);
        }
        tracing::warn!(error = %error, retry_in = ?delay, "PostgreSQL is unreachable; retrying the schema migration");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
