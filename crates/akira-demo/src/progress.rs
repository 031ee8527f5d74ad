//! Watching the fleet until it has processed everything the demo fed it.

use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream;

use crate::configs;
use crate::fleet::{metric_sum, WorkerProcess};

/// Conditions under which the fleet has processed everything the demo fed it.
pub struct Progress<'a> {
    pub workers: &'a [WorkerProcess],
    pub jetstream: &'a jetstream::Context,
    pub lines_fed: u64,
    pub alert_payloads: u64,
}

impl Progress<'_> {
    pub async fn wait_until_settled(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let pending = self.pending().await;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the fleet did not finish within {}s: {}; the worker logs are in the temp dir (run with --keep)",
                    timeout.as_secs(),
                    pending.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Returns what is still outstanding, empty when everything settled.
    async fn pending(&self) -> Vec<String> {
        let mut pending = Vec::new();

        let bridge = self.metrics("cdr-bridge").await;
        let lines_read = metric_sum(&bridge, "akira_cdr_bridge_lines_total", &[]) as u64;
        if lines_read < self.lines_fed {
            pending.push(format!(
                "the bridge read {lines_read} of {} lines",
                self.lines_fed
            ));
        }

        let relay = self.metrics("alert-relay").await;
        let handled = metric_sum(&relay, "akira_worker_messages_total", &[]) as u64;
        if handled < self.alert_payloads {
            pending.push(format!(
                "the relay handled {handled} of {} payloads",
                self.alert_payloads
            ));
        }

        for (stream, consumer) in [
            (configs::CDR_STREAM, configs::CDR_CONSUMER),
            (configs::NOTIFY_STREAM, configs::NOTIFY_CONSUMER),
        ] {
            match consumer_backlog(self.jetstream, stream, consumer).await {
                Ok(0) => {}
                Ok(backlog) => pending.push(format!(
                    "{backlog} messages not yet acknowledged by {consumer}"
                )),
                Err(err) => pending.push(format!("cannot read consumer {consumer}: {err:#}")),
            }
        }
        pending
    }

    async fn metrics(&self, name: &str) -> String {
        worker_metrics(self.workers, name).await
    }
}

/// Returns the `/metrics` text of worker `name`, or an empty text when it cannot be read.
pub async fn worker_metrics(workers: &[WorkerProcess], name: &str) -> String {
    let Some(worker) = workers.iter().find(|worker| worker.name == name) else {
        return String::new();
    };
    match reqwest::get(worker.metrics_url()).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Returns the messages of a consumer that are not delivered or not acknowledged yet.
async fn consumer_backlog(
    jetstream: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> anyhow::Result<u64> {
    let stream = jetstream.get_stream(stream).await?;
    let info = stream.consumer_info(consumer).await?;
    Ok(info.num_pending + info.num_ack_pending as u64)
}
