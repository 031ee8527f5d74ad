//! `akira-workerctl dlq list`.

use std::io::Write;

use crate::connect::NatsArgs;
use crate::dlq::{open_dlq, scan, FilterArgs, Selection};
use crate::output::{format_time, Table};
use crate::ExitStatus;

/// Arguments of `dlq list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dlq list`.
pub async fn run(nats: &NatsArgs, args: &ListArgs) -> anyhow::Result<ExitStatus> {
    let client = nats.connect().await?;
    let jetstream = nats.jetstream(client);
    let mut stream = open_dlq(&jetstream).await?;
    let selection = Selection {
        filter: args.filter.clone(),
        before: None,
    };
    let records = scan(&mut stream, &selection).await?;

    let mut stdout = std::io::stdout().lock();
    if args.json {
        let summaries: Vec<_> = records.iter().map(|record| record.summary()).collect();
        serde_json::to_writer_pretty(&mut stdout, &summaries)?;
        writeln!(stdout)?;
        return Ok(ExitStatus::Success);
    }
    if records.is_empty() {
        writeln!(stdout, "no dead letters match")?;
        return Ok(ExitStatus::Success);
    }
    let mut table = Table::new([
        "SEQ",
        "TIME",
        "SOURCE",
        "SUBJECT",
        "DELIVERIES",
        "REASON",
        "ERROR",
    ]);
    for record in &records {
        let summary = record.summary();
        table.row([
            summary.dlq_sequence.to_string(),
            format_time(summary.time),
            format!("{}/{}", summary.stream, summary.consumer),
            summary.subject.unwrap_or_else(|| "-".to_string()),
            summary
                .deliveries
                .map(|count| count.to_string())
                .unwrap_or_else(|| "-".to_string()),
            summary.reason.unwrap_or_else(|| "-".to_string()),
            summary.error.unwrap_or_default(),
        ]);
    }
    table.write(&mut stdout)?;
    Ok(ExitStatus::Success)
}
