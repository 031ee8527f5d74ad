//! Deleting old rows in batches, each its own short transaction.

use std::time::Duration;

use sqlx::postgres::types::PgInterval;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::settings::{QualifiedName, RetentionSettings};

/// Column types the job compares with the cutoff.
const TIME_TYPES: [&str; 3] = [
    "timestamp with time zone",
    "timestamp without time zone",
    "date",
];

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub cutoff: OffsetDateTime,
    /// Rows deleted, or with `--dry-run` the rows that would be deleted.
    pub rows: u64,
    pub batches: u64,
    /// Whether SIGTERM or SIGINT stopped the run before the last batch.
    pub interrupted: bool,
}

/// Deletes (or with `dry_run` counts) the rows older than `max_age`.
pub async fn run(
    settings: &RetentionSettings,
    database_url: &str,
    dry_run: bool,
    shutdown: &CancellationToken,
) -> Result<Summary, String> {
    let table = settings.table_name()?;
    let column = &settings.timestamp_column;
    let mut connection = connect(database_url, settings.connect_timeout).await?;
    check_column(&mut connection, &table, column).await?;

    let max_age = PgInterval::try_from(settings.max_age)
        .map_err(|err| format!("retention.max_age is out of range: {err}"))?;
    let cutoff: OffsetDateTime = sqlx::query_scalar("SELECT now() - $1::interval")
        .bind(max_age)
        .fetch_one(&mut connection)
        .await
        .map_err(|err| format!("computing the cutoff failed: {err}"))?;

    if dry_run {
        let count_sql = format!(
            "SELECT count(*) FROM {table} WHERE \"{column}\" < $1",
            table = table.quoted()
        );
        let rows: i64 = sqlx::query_scalar(&count_sql)
            .bind(cutoff)
            .fetch_one(&mut connection)
            .await
            .map_err(|err| format!("counting rows of {table} failed: {err}"))?;
        return Ok(Summary {
            cutoff,
            rows: rows as u64,
            batches: 0,
            interrupted: false,
        });
    }

    // The inner SELECT locks the rows it picks and skips rows that other sessions locked.
    // A batch so never waits for a long transaction, and a later run deletes those rows.
    let delete_sql = format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM {table} WHERE \"{column}\" < $1 LIMIT $2 FOR UPDATE SKIP LOCKED
         ))",
        table = table.quoted()
    );
    let lock_timeout = format!(
        "SET LOCAL lock_timeout = '{}ms'",
        settings.lock_timeout.as_millis()
    );
    let mut summary = Summary {
        cutoff,
        rows: 0,
        batches: 0,
        interrupted: false,
    };
    loop {
        let deleted = delete_batch(
            &mut connection,
            &lock_timeout,
            &delete_sql,
            cutoff,
            settings.batch_size,
        )
        .await
        .map_err(|err| {
            format!(
                "deleting from {table} failed after {} rows in {} batches: {err}",
                summary.rows, summary.batches
            )
        })?;
        summary.rows += deleted;
        summary.batches += 1;
        tracing::debug!(table = %table, deleted, total = summary.rows, batch = summary.batches, "deleted a batch");

        if deleted < u64::from(settings.batch_size) {
            return Ok(summary);
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.pause) => {}
            _ = shutdown.cancelled() => {
                summary.interrupted = true;
                return Ok(summary);
            }
        }
    }
}

async fn delete_batch(
    connection: &mut PgConnection,
    lock_timeout: &str,
    delete_sql: &str,
    cutoff: OffsetDateTime,
    batch_size: u32,
) -> Result<u64, sqlx::Error> {
    let mut transaction = connection.begin().await?;
    sqlx::query(lock_timeout).execute(&mut *transaction).await?;
    let result = sqlx::query(delete_sql)
        .bind(cutoff)
        .bind(i64::from(batch_size))
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(result.rows_affected())
}

async fn connect(database_url: &str, timeout: Duration) -> Result<PgConnection, String> {
    let options: PgConnectOptions = database_url
        .parse()
        .map_err(|err| format!("invalid retention database URL: {err}"))?;
    let options = options.application_name("akira-audit-retention");
    tokio::time::timeout(timeout, options.connect())
        .await
        .map_err(|_| format!("connecting to PostgreSQL timed out after {timeout:?}"))?
        .map_err(|err| format!("connecting to PostgreSQL failed: {err}"))
}

/// Checks that the table exists and that the column is a time, naming what is wrong.
async fn check_column(
    connection: &mut PgConnection,
    table: &QualifiedName,
    column: &str,
) -> Result<(), String> {
    let table_exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                        WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2)",
    )
    .bind(table.schema.as_deref())
    .bind(&table.name)
    .fetch_one(&mut *connection)
    .await
    .map_err(|err| format!("looking up table {table} failed: {err}"))?;
    if !table_exists {
        return Err(format!(
            "table {table} not found; check retention.table (names are case-sensitive and looked up in the current schema unless qualified)"
        ));
    }

    let data_type: Option<String> = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns
         WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2 AND column_name = $3",
    )
    .bind(table.schema.as_deref())
    .bind(&table.name)
    .bind(column)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|err| format!("looking up column {column} of {table} failed: {err}"))?;
    match data_type {
        None => Err(format!(
            "table {table} has no column {column}; check retention.timestamp_column"
        )),
        Some(data_type) if !TIME_TYPES.contains(&data_type.as_str()) => Err(format!(
            "column {column} of {table} is {data_type}, not a timestamp or date; check retention.timestamp_column"
        )),
        Some(_) => Ok(()),
    }
}
