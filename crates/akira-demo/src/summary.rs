//! The demo's counts: their sources and how they are printed.

use std::collections::BTreeMap;

use akira_workers::dlq::{headers, DLQ_STREAM};
use anyhow::Context;
use async_nats::jetstream;
use serde::Serialize;

use crate::fleet::{metric_sum, WorkerProcess};
use crate::progress::worker_metrics;
use crate::receiver::WebhookReceiver;

/// Everything the summary shows; also written as JSON with `--summary-json`.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Lines the demo appended to the bridge's accounting file.
    pub lines_fed: u64,
    /// Lines the bridge read: published + invalid + blank.
    pub lines_read: u64,
    pub lines_published: u64,
    /// Lines the bridge dead-lettered as `invalid_record`.
    pub lines_invalid: u64,
    pub lines_blank: u64,
    /// New rows in `cdr_events`.
    pub records_stored: i64,
    /// New rows in the `cdr_calls` view: calls whose records were paired by call id.
    pub calls: i64,
    /// Calls with a 2xx INVITE.
    pub calls_answered: i64,
    /// Answered calls whose BYE was paired with the INVITE.
    pub calls_with_bye: i64,
    /// New messages in `AKIRA_DLQ`, by reason and origin.
    pub dead_letters: Vec<DeadLetterGroup>,
    pub dead_letter_total: u64,
    pub alert_payloads: u64,
    pub alerts: u64,
    /// Notifications the relay stored in `NOTIFY`.
    pub notifications_published: u64,
    /// Notifications `NOTIFY` dropped as repeats of one stored within its duplicate window,
    /// as when the demo runs twice within two minutes against the same `NATS_URL`.
    pub notifications_duplicate: u64,
    /// Distinct notifications (idempotency keys) each endpoint received.
    pub notifications_delivered: u64,
    /// HTTP requests the receiver got, by endpoint, retries included.
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// The report line of the retention dry run.
    pub retention: String,
    /// `/metrics` URL of each long-running worker.
    pub metrics_endpoints: BTreeMap<String, String>,
    /// Set after the workers were stopped: whether each exited 0 after SIGTERM.
    pub workers_stopped_cleanly: Option<bool>,
}

/// Dead letters that share a reason and an origin subject.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterGroup {
    pub reason: String,
    /// `akira.dlq.<stream>.<consumer>` or `akira.dlq.cdr-bridge.<source>`.
    pub subject: String,
    pub count: u64,
    /// The `Akira-Dlq-Error` of the first one.
    pub first_error: String,
}

/// Returns the last sequence in `AKIRA_DLQ`, or 0 when the stream does not exist.
pub async fn dead_letter_position(jetstream: &jetstream::Context) -> anyhow::Result<u64> {
    match jetstream.get_stream(DLQ_STREAM).await {
        Ok(mut stream) => Ok(stream.info().await?.state.last_sequence),
        Err(_) => Ok(0),
    }
}

/// Reads the dead letters after sequence `after` and groups them.
pub async fn dead_letters_since(
    jetstream: &jetstream::Context,
    after: u64,
) -> anyhow::Result<(u64, Vec<DeadLetterGroup>)> {
    let Ok(mut stream) = jetstream.get_stream(DLQ_STREAM).await else {
        return Ok((0, Vec::new()));
    };
    let last = stream.info().await?.state.last_sequence;
    let mut groups: BTreeMap<(String, String), DeadLetterGroup> = BTreeMap::new();
    let mut total = 0;
    for sequence in after + 1..=last {
        // A sequence can be missing when the stream dropped a message; skip it.
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        total += 1;
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_string())
                .unwrap_or_default()
        };
        let reason = header(headers::REASON);
        let subject = message.subject.to_string();
        let group = groups
            .entry((reason.clone(), subject.clone()))
            .or_insert_with(|| DeadLetterGroup {
                reason,
                subject,
                count: 0,
                first_error: header(headers::ERROR),
            });
        group.count += 1;
    }
    Ok((total, groups.into_values().collect()))
}

/// Row counts of the CDR tables.
#[derive(Debug, Default, Clone, Copy)]
pub struct DatabaseCounts {
    pub records: i64,
    pub calls: i64,
    pub answered: i64,
    pub with_bye: i64,
}

impl DatabaseCounts {
    /// Counts rows; tables that do not exist yet count as empty.
    pub async fn read(pool: &sqlx::PgPool) -> anyhow::Result<DatabaseCounts> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('cdr_calls') IS NOT NULL")
            .fetch_one(pool)
            .await
            .context("querying PostgreSQL failed")?;
        if !exists {
            return Ok(DatabaseCounts::default());
        }
        let records: i64 = sqlx::query_scalar("SELECT count(*) FROM cdr_events")
            .fetch_one(pool)
            .await?;
        let (calls, answered, with_bye): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE answer_time IS NOT NULL),
                    count(*) FILTER (WHERE answer_time IS NOT NULL AND end_time IS NOT NULL)
             FROM cdr_calls",
        )
        .fetch_one(pool)
        .await?;
        Ok(DatabaseCounts {
            records,
            calls,
            answered,
            with_bye,
        })
    }
}

impl Summary {
    /// Prints the summary as aligned lines.
    pub fn print(&self) {
        let row = |label: &str, value: String| println!("  {label:<26} {value}");

        row(
            "accounting lines read",
            format!(
                "{} of {} fed (published {}, invalid {}, blank {})",
                self.lines_read,
                self.lines_fed,
                self.lines_published,
                self.lines_invalid,
                self.lines_blank
            ),
        );
        let pipeline_dead_letters: u64 = self
            .dead_letters
            .iter()
            .filter(|group| group.subject.starts_with("akira.dlq.CDR."))
            .map(|group| group.count)
            .sum();
        let repeated =
            self.lines_published as i64 - self.records_stored - pipeline_dead_letters as i64;
        row(
            "records stored",
            format!(
                "{} in cdr_events ({repeated} published lines repeated a stored record, \
                 {pipeline_dead_letters} dead-lettered by the pipeline)",
                self.records_stored
            ),
        );
        row(
            "calls paired",
            format!(
                "{} in cdr_calls ({} answered, {} of them with their BYE)",
                self.calls, self.calls_answered, self.calls_with_bye
            ),
        );
        row(
            "records dead-lettered",
            format!("{} in AKIRA_DLQ", self.dead_letter_total),
        );
        for group in &self.dead_letters {
            println!(
                "  {:<26}   {} x {} on {}: {}",
                "", group.count, group.reason, group.subject, group.first_error
            );
        }
        row(
            "alerts posted",
            format!(
                "{} in {} Alertmanager payloads",
                self.alerts, self.alert_payloads
            ),
        );
        let by_endpoint: Vec<String> = self
            .requests_by_endpoint
            .iter()
            .map(|(endpoint, count)| format!("{endpoint} {count}"))
            .collect();
        row(
            "notifications delivered",
            format!(
                "{} of {} published, {} dropped as duplicates (HTTP requests by endpoint: {})",
                self.notifications_delivered,
                self.notifications_published,
                self.notifications_duplicate,
                if by_endpoint.is_empty() {
                    "none".to_string()
                } else {
                    by_endpoint.join(", ")
                }
            ),
        );
        row("retention job", self.retention.clone());
        println!("  metrics endpoints:");
        for (name, url) in &self.metrics_endpoints {
            println!("    {name:<24} {url}");
        }
    }
}

/// Fills in the counts read from the workers, NATS, PostgreSQL and the receiver. The
/// `*_before` values are the counts from before the demo fed its input.
pub async fn collect(
    summary: &mut Summary,
    workers: &[WorkerProcess],
    receiver: &WebhookReceiver,
    jetstream: &jetstream::Context,
    pool: &sqlx::PgPool,
    dead_letters_before: u64,
    database_before: DatabaseCounts,
) -> anyhow::Result<()> {
    let bridge = worker_metrics(workers, "cdr-bridge").await;
    let lines = |outcome: &str| {
        metric_sum(
            &bridge,
            "akira_cdr_bridge_lines_total",
            &[("outcome", outcome)],
        ) as u64
    };
    summary.lines_published = lines("published");
    summary.lines_invalid = lines("invalid");
    summary.lines_blank = lines("blank");
    summary.lines_read = summary.lines_published + summary.lines_invalid + summary.lines_blank;

    let database = DatabaseCounts::read(pool).await?;
    summary.records_stored = database.records - database_before.records;
    summary.calls = database.calls - database_before.calls;
    summary.calls_answered = database.answered - database_before.answered;
    summary.calls_with_bye = database.with_bye - database_before.with_bye;

    let (total, groups) = dead_letters_since(jetstream, dead_letters_before).await?;
    summary.dead_letter_total = total;
    summary.dead_letters = groups;

    let relay = worker_metrics(workers, "alert-relay").await;
    let notifications = |outcome: &str| {
        metric_sum(
            &relay,
            "akira_relay_notifications_total",
            &[("outcome", outcome)],
        ) as u64
    };
    summary.notifications_published = notifications("published");
    summary.notifications_duplicate = notifications("duplicate");
    summary.notifications_delivered = receiver.distinct_notifications();
    summary.requests_by_endpoint = receiver.requests();
    for worker in workers {
        summary
            .metrics_endpoints
            .insert(worker.name.clone(), worker.metrics_url());
    }
    Ok(())
}
