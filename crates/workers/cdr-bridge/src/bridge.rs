//! The publishing loop: read lines, publish them, commit the position after their PubAcks.
//!
//! Lines are published in file order with up to `bridge.max_in_flight` PubAcks outstanding.
//! The committed position only moves past a line once its PubAck and the PubAcks of every
//! line before it have arrived, and the state file is written from the committed position.
//! When a publish or a PubAck fails, every outstanding line is read and published again from
//! the committed position, under the same `Nats-Msg-Id`, so the stream's duplicate window
//! drops the ones it already stored. While NATS is unreachable nothing more is read.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use akira_workers::dlq::{self, header_value, headers, Reason};
use akira_workers::{BoxError, ServiceContext};
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::line::{self, Verdict};
use crate::metrics::{BridgeMetrics, LineOutcome, RotationKind};
use crate::settings::BridgeSettings;
use crate::state::{self, SavedPosition};
use crate::tail::{Change, FileKey, Line, Tailer};

/// Header with the path of the tailed file, on records and dead letters.
pub const FILE_HEADER: &str = "Akira-Cdr-File";
/// Header with the byte offset of the line in that file.
pub const OFFSET_HEADER: &str = "Akira-Cdr-Offset";
/// Header set to `true` on a dead letter whose payload is only the start of a long line.
pub const TRUNCATED_HEADER: &str = "Akira-Cdr-Truncated";
/// Header with the full length of a line that was cut.
pub const LENGTH_HEADER: &str = "Akira-Cdr-Line-Length";

/// How long one publish may wait for room in the client's send buffer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// The state file is written at most this often while lines are being acknowledged, and
/// always when the bridge is idle, switches files or stops.
const SAVE_INTERVAL: Duration = Duration::from_millis(200);
/// Backoff after a failed publish: doubles from the first value up to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// The outcome of one published (or skipped) line, in file order.
struct Settled {
    end: u64,
    outcome: LineOutcome,
    result: Result<(), BoxError>,
}

type InFlight = FuturesOrdered<Pin<Box<dyn Future<Output = Settled> + Send>>>;

/// A publish or PubAck that failed; the lines from the committed position are sent again.
#[derive(Debug)]
struct PublishFailed {
    offset: u64,
    error: BoxError,
}

pub struct Bridge {
    settings: BridgeSettings,
    subject: String,
    dlq_subject: String,
    identity: String,
    jetstream: jetstream::Context,
    metrics: BridgeMetrics,
    worker_metrics: akira_workers::metrics::WorkerMetrics,
    tailer: Option<Tailer>,
    /// The file and offset up to which every line is acknowledged.
    committed: Option<(FileKey, u64)>,
    saved: Option<SavedPosition>,
    last_save: Instant,
    invalid_log: LogLimiter,
}

/// Runs the bridge until shutdown. Returns an error only when it cannot go on: an unreadable
/// file or state file, or a configuration the server cannot take.
pub async fn run(ctx: ServiceContext, settings: BridgeSettings) -> Result<(), BoxError> {
    check_max_payload(&ctx.client, &settings)?;
    if ctx.config.worker.ensure {
        ensure_streams(&ctx.jetstream).await?;
    }

    let saved = state::load(settings.state_file())?;
    let resume = match &saved {
        Some(position) if position.path == settings.path => Some(position.resume()),
        Some(position) => {
            tracing::warn!(
                saved_path = %position.path.display(),
                path = %settings.path.display(),
                state_file = %settings.state_file().display(),
                "the state file belongs to another path; reading the configured file from the start"
            );
            None
        }
        None => None,
    };

    let path = settings.path.clone();
    let max_line_bytes = settings.max_line_bytes;
    let rotate_wait = settings.rotate_wait;
    let (tailer, changes) = tokio::task::spawn_blocking(move || {
        Tailer::open(&path, max_line_bytes, rotate_wait, resume)
    })
    .await?
    .map_err(|err| format!("cannot open {}: {err}", settings.path.display()))?;

    let metrics = BridgeMetrics::register(&ctx.metrics);
    let mut bridge = Bridge {
        subject: settings.subject(),
        dlq_subject: settings.dlq_subject(),
        identity: ctx.identity.clone(),
        jetstream: ctx.jetstream.clone(),
        metrics,
        worker_metrics: ctx.metrics.clone(),
        committed: tailer.position(),
        tailer: Some(tailer),
        saved,
        last_save: Instant::now(),
        invalid_log: LogLimiter::new(Duration::from_secs(1)),
        settings,
    };
    for change in &changes {
        bridge.log_change(change);
    }
    match bridge.committed {
        Some((key, offset)) => tracing::info!(
            path = %bridge.settings.path.display(),
            subject = %bridge.subject,
            inode = key.id.inode,
            generation = key.generation,
            offset,
            "tailing"
        ),
        None => tracing::info!(
            path = %bridge.settings.path.display(),
            "waiting for the file to be created"
        ),
    }
    bridge.save_state(true)?;
    bridge.run_loop(&ctx).await
}

impl Bridge {
    async fn run_loop(&mut self, ctx: &ServiceContext) -> Result<(), BoxError> {
        let mut in_flight = InFlight::new();
        let mut backoff = BACKOFF.0;

        while !ctx.shutdown.is_cancelled() {
            ctx.tick();
            match self.step(ctx, &mut in_flight).await {
                Ok(()) => backoff = BACKOFF.0,
                Err(StepError::Fatal(error)) => return Err(error),
                Err(StepError::Publish(failed)) => {
                    self.recover(ctx, &mut in_flight, failed, backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
            self.save_state(false)?;
        }

        tracing::info!(
            in_flight = in_flight.len(),
            "stopping: waiting for outstanding PubAcks"
        );
        // Half the stop budget: the library's final flush needs time after this.
        let deadline = tokio::time::sleep(ctx.config.worker.shutdown_timeout / 2);
        tokio::pin!(deadline);
        while !in_flight.is_empty() {
            tokio::select! {
                settled = in_flight.next() => match settled {
                    Some(settled) => {
                        if self.settle(settled).is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = &mut deadline => {
                    tracing::warn!(in_flight = in_flight.len(), "PubAcks did not arrive before shutdown; those lines are published again on the next start");
                    break;
                }
            }
        }
        self.save_state(true)?;
        Ok(())
    }

    /// Reads and publishes what is available, collects PubAcks, and looks for rotation
    /// when there is nothing else to do.
    async fn step(
        &mut self,
        ctx: &ServiceContext,
        in_flight: &mut InFlight,
    ) -> Result<(), StepError> {
        let room = self.settings.max_in_flight.saturating_sub(in_flight.len());
        let lines = if room > 0 {
            self.with_tailer(move |tailer| tailer.read_lines(room))
                .await?
        } else {
            Vec::new()
        };
        let read_any = !lines.is_empty();
        for line in lines {
            self.publish(line, in_flight).await?;
        }

        if read_any && in_flight.len() < self.settings.max_in_flight {
            // Collect the PubAcks that already arrived, then read on.
            while let Some(Some(settled)) = in_flight.next().now_or_never() {
                self.settle(settled)?;
            }
            return Ok(());
        }
        if !in_flight.is_empty() {
            // Waiting at most SAVE_INTERVAL lets the loop save what is acknowledged and tick
            // the watchdog while a PubAck is slow.
            if let Ok(Some(settled)) = tokio::time::timeout(SAVE_INTERVAL, in_flight.next()).await {
                self.settle(settled)?;
            }
            return Ok(());
        }

        // Idle: everything read is acknowledged.
        self.save_state(true)?;
        self.update_lag();
        match self.with_tailer(|tailer| tailer.check()).await? {
            Some(Change::FinalLine(line)) => {
                self.log_change(&Change::FinalLine(line.clone()));
                self.publish(line, in_flight).await?;
            }
            Some(change) => {
                self.log_change(&change);
                self.committed = self.tailer.as_ref().and_then(Tailer::position);
                self.save_state(true)?;
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = ctx.shutdown.cancelled() => {}
                }
            }
        }
        Ok(())
    }

    /// Publishes one line, or queues a skip for a blank one, keeping file order.
    async fn publish(&mut self, line: Line, in_flight: &mut InFlight) -> Result<(), StepError> {
        let verdict = line::classify(&line, self.settings.max_line_bytes);
        let (subject, headers, outcome) = match &verdict {
            Verdict::Blank => {
                let settled = Settled {
                    end: line.end,
                    outcome: LineOutcome::blank,
                    result: Ok(()),
                };
                in_flight.push_back(Box::pin(std::future::ready(settled)));
                return Ok(());
            }
            Verdict::Record => (
                self.subject.clone(),
                self.record_headers(&line),
                LineOutcome::published,
            ),
            Verdict::Invalid(reason) => {
                self.invalid_log.log(|suppressed| {
                    tracing::error!(
                        path = %self.settings.path.display(),
                        offset = line.offset,
                        error = %reason,
                        dlq_subject = %self.dlq_subject,
                        suppressed,
                        "dead-lettering an invalid line"
                    )
                });
                (
                    self.dlq_subject.clone(),
                    self.dead_letter_headers(&line, &reason.to_string()),
                    LineOutcome::invalid,
                )
            }
        };

        let offset = line.offset;
        let end = line.end;
        let message = PublishMessage::build()
            .payload(Bytes::from(line.bytes))
            .headers(headers);
        let sent = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.jetstream.send_publish(subject, message),
        )
        .await;
        let ack = match sent {
            Ok(Ok(ack)) => ack,
            Ok(Err(error)) => return Err(StepError::publish(offset, error)),
            Err(_) => {
                return Err(StepError::publish(
                    offset,
                    format!("publishing timed out after {PUBLISH_TIMEOUT:?}; the client's send buffer is full"),
                ))
            }
        };
        in_flight.push_back(Box::pin(async move {
            let result = ack.await.map(|_| ()).map_err(BoxError::from);
            Settled {
                end,
                outcome,
                result,
            }
        }));
        Ok(())
    }

    fn record_headers(&self, line: &Line) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(headers::MSG_ID, header_value(&self.msg_id("cdr", line)));
        map.insert(
            FILE_HEADER,
            header_value(&self.settings.path.to_string_lossy()),
        );
        map.insert(OFFSET_HEADER, header_value(&line.offset.to_string()));
        map
    }

    fn dead_letter_headers(&self, line: &Line, error: &str) -> HeaderMap {
        let failed_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut map = HeaderMap::new();
        map.insert(
            headers::MSG_ID,
            header_value(&self.msg_id("dlq:cdr-bridge", line)),
        );
        map.insert(
            headers::REASON,
            header_value(Reason::InvalidRecord.as_str()),
        );
        map.insert(headers::SUBJECT, header_value(&self.subject));
        map.insert(headers::ERROR, header_value(&dlq::truncate_error(error)));
        map.insert(headers::WORKER, header_value(&self.identity));
        map.insert(headers::FAILED_AT, header_value(&failed_at));
        map.insert(
            FILE_HEADER,
            header_value(&self.settings.path.to_string_lossy()),
        );
        map.insert(OFFSET_HEADER, header_value(&line.offset.to_string()));
        if line.is_cut() {
            map.insert(TRUNCATED_HEADER, "true");
            map.insert(LENGTH_HEADER, header_value(&line.length.to_string()));
        }
        map
    }

    /// Returns `<prefix>:<source>:<device>:<inode>:<generation>:<offset>`.
    ///
    /// Device and inode name the file across renames. The generation changes when the file
    /// is truncated or replaced, so new lines at old offsets get new ids and the stream does
    /// not drop them as duplicates.
    fn msg_id(&self, prefix: &str, line: &Line) -> String {
        format!(
            "{prefix}:{}:{}:{}:{}:{}",
            self.settings.source,
            line.key.id.device,
            line.key.id.inode,
            line.key.generation,
            line.offset
        )
    }

    /// Moves the committed position past one acknowledged line.
    fn settle(&mut self, settled: Settled) -> Result<(), StepError> {
        if let Err(error) = settled.result {
            let offset = self.committed.map_or(0, |(_, offset)| offset);
            return Err(StepError::Publish(PublishFailed { offset, error }));
        }
        if let Some((_, offset)) = self.committed.as_mut() {
            *offset = settled.end;
        }
        self.metrics.count_line(settled.outcome);
        match settled.outcome {
            LineOutcome::published => {
                self.worker_metrics
                    .record_outcome(akira_workers::metrics::Outcome::ack, 1);
            }
            LineOutcome::invalid => {
                self.worker_metrics
                    .record_dead_letter(Reason::InvalidRecord.as_str());
                self.worker_metrics
                    .record_outcome(akira_workers::metrics::Outcome::dead_letter, 1);
            }
            LineOutcome::blank => {}
        }
        Ok(())
    }

    /// Drops the outstanding publishes, waits, and rewinds to the committed position.
    async fn recover(
        &mut self,
        ctx: &ServiceContext,
        in_flight: &mut InFlight,
        failed: PublishFailed,
        backoff: Duration,
    ) {
        self.worker_metrics.record_swallowed_error();
        tracing::warn!(
            error = %failed.error,
            offset = failed.offset,
            subject = %self.subject,
            retry_in = ?backoff,
            "publishing failed; lines from the committed offset are published again after the backoff"
        );
        in_flight.clear();
        if let (Some((_, offset)), Some(tailer)) = (self.committed, self.tailer.as_mut()) {
            tailer.rewind(offset);
        }

        // Tick during the wait: the loop is alive, it is waiting for NATS on purpose.
        let deadline = Instant::now() + backoff;
        while Instant::now() < deadline && !ctx.shutdown.is_cancelled() {
            ctx.tick();
            let pause = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = ctx.shutdown.cancelled() => {}
            }
        }
    }

    /// Writes the committed position when it changed, at most every [`SAVE_INTERVAL`]
    /// unless `force` is set.
    fn save_state(&mut self, force: bool) -> Result<(), state::StateError> {
        let Some((key, offset)) = self.committed else {
            return Ok(());
        };
        let position = SavedPosition {
            path: self.settings.path.clone(),
            device: key.id.device,
            inode: key.id.inode,
            generation: key.generation,
            offset,
            head: self
                .tailer
                .as_ref()
                .and_then(|t| t.head())
                .map(str::to_string),
        };
        if self.saved.as_ref() == Some(&position) {
            return Ok(());
        }
        if !force && self.last_save.elapsed() < SAVE_INTERVAL {
            return Ok(());
        }
        state::save(self.settings.state_file(), &position)?;
        self.saved = Some(position);
        self.last_save = Instant::now();
        Ok(())
    }

    fn update_lag(&self) {
        if let (Some(tailer), Some((_, offset))) = (self.tailer.as_ref(), self.committed) {
            if let Some((size, _)) = tailer.size_and_offset() {
                self.metrics.set_lag(size.saturating_sub(offset));
            }
        }
    }

    fn log_change(&self, change: &Change) {
        let path = self.settings.path.display();
        match change {
            Change::Opened { key } => {
                tracing::info!(%path, inode = key.id.inode, generation = key.generation, "opened the file")
            }
            Change::Truncated { key, lost_offset } => {
                self.metrics.count_rotation(RotationKind::truncate);
                tracing::info!(
                    %path,
                    previous_offset = lost_offset,
                    generation = key.generation,
                    "the file was truncated (copy-truncate rotation); reading from offset 0"
                )
            }
            Change::Rotated { from, to } => {
                self.metrics.count_rotation(RotationKind::rename);
                tracing::info!(
                    %path,
                    old_inode = from.id.inode,
                    new_inode = to.id.inode,
                    generation = to.generation,
                    "the file was rotated by rename; finished the old file and opened the new one"
                )
            }
            Change::SavedFileGone { saved, offset } => tracing::warn!(
                %path,
                saved_inode = saved.id.inode,
                saved_offset = offset,
                "the file of the saved position is gone; lines written to it after the saved offset were not published"
            ),
            Change::ResumedRotated { key, path: found } => tracing::info!(
                %path,
                rotated_path = %found.display(),
                inode = key.id.inode,
                "the file was rotated while the bridge was stopped; finishing the rotated file first"
            ),
            Change::FinalLine(line) => tracing::warn!(
                %path,
                offset = line.offset,
                length = line.length,
                "the rotated file ends without a newline; publishing its last line as it is"
            ),
        }
    }

    /// Runs a tailer call on the blocking pool: file reads may block on the disk.
    async fn with_tailer<T, F>(&mut self, call: F) -> Result<T, StepError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tailer) -> std::io::Result<T> + Send + 'static,
    {
        let mut tailer = self
            .tailer
            .take()
            .expect("the tailer is put back after each call");
        let (tailer, result) = tokio::task::spawn_blocking(move || {
            let result = call(&mut tailer);
            (tailer, result)
        })
        .await
        .map_err(|err| StepError::Fatal(err.into()))?;
        self.tailer = Some(tailer);
        result.map_err(|err| {
            StepError::Fatal(
                format!("reading {} failed: {err}", self.settings.path.display()).into(),
            )
        })
    }
}

enum StepError {
    Publish(PublishFailed),
    Fatal(BoxError),
}

impl StepError {
    fn publish(offset: u64, error: impl Into<BoxError>) -> StepError {
        StepError::Publish(PublishFailed {
            offset,
            error: error.into(),
        })
    }
}

impl From<state::StateError> for StepError {
    fn from(error: state::StateError) -> StepError {
        StepError::Fatal(error.into())
    }
}

/// Rejects a `max_line_bytes` the server could not carry in one message.
fn check_max_payload(
    client: &async_nats::Client,
    settings: &BridgeSettings,
) -> Result<(), BoxError> {
    // Room for the headers of a dead letter, which are the larger kind.
    const HEADER_ROOM: usize = 4096;
    let max_payload = client.server_info().max_payload;
    if max_payload > 0 && settings.max_line_bytes + HEADER_ROOM > max_payload {
        return Err(format!(
            "bridge.max_line_bytes = {} does not fit the server's max_payload of {max_payload} bytes with headers; set it to at most {}",
            settings.max_line_bytes,
            max_payload.saturating_sub(HEADER_ROOM)
        )
        .into());
    }
    Ok(())
}

/// Creates the CDR and AKIRA_DLQ streams when they are missing (`worker.ensure = true`).
async fn ensure_streams(jetstream: &jetstream::Context) -> Result<(), BoxError> {
    let cdr = jetstream::stream::Config {
        name: "CDR".to_string(),
        subjects: vec!["akira.cdr.>".to_string()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    for config in [cdr, dlq::dlq_stream_config()] {
        let name = config.name.clone();
        jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|err| format!("creating stream {name} failed: {err}"))?;
    }
    Ok(())
}

/// Lets one log line through per interval and counts the ones held back.
struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    fn log(&mut self, emit: impl FnOnce(u64)) {
        let due = self.last.is_none_or(|last| last.elapsed() >= self.interval);
        if due {
            emit(self.suppressed);
            self.suppressed = 0;
            self.last = Some(Instant::now());
        } else {
            self.suppressed += 1;
        }
    }
}
