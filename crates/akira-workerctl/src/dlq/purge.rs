//! `akira-workerctl dlq purge`: deletes dead letters, after confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use akira_workers::dlq;

use crate::connect::{error_chain, NatsArgs};
use crate::dlq::{open_dlq, select, time_ago, FilterArgs, Selection};
use crate::output::count;
use crate::ExitStatus;

/// Arguments of `dlq purge`.
#[derive(Debug, Clone, clap::Args)]
pub struct PurgeArgs {
    /// Sequences of the dead letters in AKIRA_DLQ.
    #[arg(value_name = "SEQ")]
    pub sequences: Vec<u64>,

    /// Delete every dead letter that the filters select (all of them without filters).
    #[arg(long, conflicts_with = "sequences")]
    pub all: bool,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Only dead letters stored longer ago than this age, such as 14d.
    #[arg(long, value_name = "AGE", value_parser = crate::connect::parse_duration)]
    pub older_than: Option<Duration>,

    /// Delete without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Runs `dlq purge`.
pub async fn run(nats: &NatsArgs, args: &PurgeArgs) -> anyhow::Result<ExitStatus> {
    let filtered = args.filter.is_set() || args.older_than.is_some();
    if !args.sequences.is_empty() && filtered {
        anyhow::bail!("give either sequences or filters, not both");
    }
    if args.sequences.is_empty() && !filtered && !args.all {
        anyhow::bail!(
            "name the dead letters to purge: sequences, filters such as --older-than 14d, or --all"
        );
    }

    let client = nats.connect().await?;
    let jetstream = nats.jetstream(client);
    let mut stream = open_dlq(&jetstream).await?;
    let selection = Selection {
        filter: args.filter.clone(),
        before: args.older_than.map(time_ago),
    };
    let records = select(&mut stream, &args.sequences, &selection).await?;

    let mut stdout = std::io::stdout().lock();
    if records.is_empty() {
        writeln!(stdout, "no dead letters match; nothing to purge")?;
        return Ok(ExitStatus::Success);
    }
    if !args.yes && !confirm(records.len())? {
        writeln!(stdout, "purge cancelled; nothing was deleted")?;
        return Ok(ExitStatus::Success);
    }

    let mut failed = Vec::new();
    for record in &records {
        if let Err(err) = stream.delete_message(record.dlq_sequence).await {
            writeln!(
                stdout,
                "not deleted {}: {}",
                record.dlq_sequence,
                error_chain(&err)
            )?;
            failed.push(record.dlq_sequence.to_string());
        }
    }
    writeln!(
        stdout,
        "deleted {} of {} from {}",
        records.len() - failed.len(),
        count(records.len(), "dead letter"),
        dlq::DLQ_STREAM
    )?;
    if failed.is_empty() {
        return Ok(ExitStatus::Success);
    }
    stdout.flush()?;
    anyhow::bail!(
        "not deleted: {} ({})",
        count(failed.len(), "dead letter"),
        failed.join(", ")
    )
}

fn confirm(number: usize) -> anyhow::Result<bool> {
    let letters = count(number, "dead letter");
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "purge of {letters} needs confirmation, but standard input is not a terminal; pass --yes"
        );
    }
    eprint!("Delete {letters} from {}? [y/N] ", dlq::DLQ_STREAM);
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}
