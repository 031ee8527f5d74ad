//! Feeding the sample input to the fleet: accounting lines to the bridge's file and
//! Alertmanager payloads to the relay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::AsyncWriteExt;

use crate::step;

/// Appends each sample to `target` one line at a time, as Kamailio appends records, and
/// returns the number of lines written.
pub async fn feed_accounting_file(
    samples: &[PathBuf],
    target: &Path,
    delay: Duration,
) -> anyhow::Result<u64> {
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(target)
        .await?;
    let mut written = 0;
    for sample in samples {
        written += append_lines(sample, &mut file, target, delay).await?;
    }
    Ok(written)
}

async fn append_lines(
    sample: &Path,
    file: &mut tokio::fs::File,
    target: &Path,
    delay: Duration,
) -> anyhow::Result<u64> {
    let text =
        std::fs::read(sample).with_context(|| format!("cannot read {}", sample.display()))?;
    let lines: Vec<&[u8]> = text
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    step(&format!(
        "appending {} {} of {} to {} ({}ms apart)",
        lines.len(),
        if lines.len() == 1 { "line" } else { "lines" },
        sample.display(),
        target.display(),
        delay.as_millis()
    ));
    for line in &lines {
        let mut record = line.to_vec();
        record.push(b'\n');
        file.write_all(&record).await?;
        file.flush().await?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(lines.len() as u64)
}

/// Posts each Alertmanager payload to the relay; returns the payload and alert counts.
pub async fn post_alerts(samples: &[PathBuf], relay_listen: &str) -> anyhow::Result<(u64, u64)> {
    let url = format!("http://{relay_listen}/alertmanager");
    let http = reqwest::Client::new();
    let mut alerts = 0;
    for sample in samples {
        let body =
            std::fs::read(sample).with_context(|| format!("cannot read {}", sample.display()))?;
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("{} is not JSON", sample.display()))?;
        alerts += parsed["alerts"]
            .as_array()
            .map_or(0, |list| list.len() as u64);
        let response = http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("posting {} to {url} failed", sample.display()))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "the relay returned {status} for {}: {}",
                sample.display(),
                text.trim()
            );
        }
        step(&format!("posted {} to {url}: {status}", sample.display()));
    }
    Ok((samples.len() as u64, alerts))
}
