//! `akira-audit-retention`: a timer job. Deletes the rows of one PostgreSQL table whose
//! timestamp column is older than `retention.max_age`, in batches with a pause between
//! them. `--dry-run` counts what it would delete. Records the `akira_job_*` metrics.

mod retention;
mod settings;

use std::process::ExitCode;

use akira_workers::{BoxError, Config, WorkerArgs};
use clap::Parser;
use time::format_description::well_known::Rfc3339;

use crate::settings::RetentionSettings;

/// Delete rows older than a configured age from one PostgreSQL table.
#[derive(Parser)]
#[command(name = "akira-audit-retention", version)]
struct Args {
    #[command(flatten)]
    common: WorkerArgs,
    /// Count the rows that would be deleted and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    akira_workers::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let config = Config::load(&args.common.config)?;
    let settings = config
        .section::<RetentionSettings>("retention")?
        .validate(config.origin())?;
    let database_url = settings.database_url()?;
    if args.common.check_config {
        println!("configuration ok: {}", args.common.config.display());
        return Ok(());
    }

    let dry_run = args.dry_run;
    akira_workers::job::run(config, |context| async move {
        let table = settings.table.clone();
        let summary = retention::run(&settings, &database_url, dry_run, &context.shutdown_token()).await?;
        let cutoff = summary.cutoff.format(&Rfc3339).unwrap_or_default();
        let column = &settings.timestamp_column;
        if dry_run {
            println!("dry run: would delete {} rows from {table} with {column} before {cutoff}", summary.rows);
            tracing::info!(table = %table, rows = summary.rows, cutoff = %cutoff, "dry run: nothing deleted");
        } else {
            println!(
                "deleted {} rows from {table} with {column} before {cutoff} in {} batches",
                summary.rows, summary.batches
            );
            tracing::info!(table = %table, rows = summary.rows, batches = summary.batches, cutoff = %cutoff, "deleted old rows");
        }
        if summary.interrupted {
            tracing::warn!(table = %table, "stopped early on request; the next run deletes the rest");
        }
        Ok(())
    })
    .await
}
