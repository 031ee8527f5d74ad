//! `akira-example-job`: a timer job that succeeds, or fails with `--fail`, for tests of the
//! timer-job runtime.

use clap::Parser;

/// Runs the example job once.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: akira_workers::WorkerArgs,
    /// Fail the run on purpose.
    #[arg(long)]
    fail: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    akira_workers::exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), akira_workers::BoxError> {
    let Some(config) = args.common.load()? else {
        return Ok(());
    };
    let fail = args.fail;
    akira_workers::job::run(config, |_context| async move {
        if fail {
            return Err("failing on purpose (--fail)".into());
        }
        tracing::info!("example job did its work");
        Ok(())
    })
    .await
}
