//! Command-line interface: global NATS options and the subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::apply::ApplyArgs;
use crate::connect::NatsArgs;
use crate::dlq::list::ListArgs;
use crate::dlq::purge::PurgeArgs;
use crate::dlq::replay::ReplayArgs;
use crate::dlq::show::ShowArgs;
use crate::sentinel::SentinelArgs;
use crate::status::StatusArgs;
use crate::ExitStatus;

/// Exit code of every error, including invalid command lines.
pub const EXIT_ERROR: u8 = 1;

/// Declares JetStream streams and consumers, shows their state, and inspects, replays and
/// purges dead letters in AKIRA_DLQ.
///
/// Exit codes: 0 success, 1 error, 2 `apply --dry-run` with changes pending.
#[derive(Debug, Parser)]
#[command(name = "akira-workerctl", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub nats: NatsArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and update the streams and consumers declared in FILE, and AKIRA_DLQ.
    Apply(ApplyArgs),
    /// Show messages and sequences per stream, progress per consumer, and dead letters per source.
    Status(StatusArgs),
    /// Inspect, replay and purge dead letters, or run the max-deliveries sentinel.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters: sequence, time, source, original subject, deliveries, reason, error.
    List(ListArgs),
    /// Show every header and the payload of one dead letter.
    Show(ShowArgs),
    /// Publish dead letters back to their original subject and delete them once stored.
    Replay(ReplayArgs),
    /// Delete dead letters.
    Purge(PurgeArgs),
    /// Dead-letter messages that reach max_deliver without being settled (long-running service).
    ///
    /// Listens to JetStream's MAX_DELIVERIES advisories, reads each message by stream sequence
    /// and publishes it to AKIRA_DLQ with reason max_deliver_advisory and the same Nats-Msg-Id
    /// as the worker library, so a message dead-lettered by both is stored once. This catches
    /// messages whose worker crashed or hung on every delivery.
    ///
    /// Advisories are core NATS messages: one published while no sentinel listens is lost, so
    /// the sentinel must run whenever workers run. Several sentinels share one queue group.
    /// Stops on SIGTERM or SIGINT.
    Sentinel(SentinelArgs),
}

/// Parses the command line, runs the command and returns the process exit code.
pub async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(matches!(cli.command, Command::Dlq(DlqCommand::Sentinel(_))));

    match run(&cli).await {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitStatus> {
    match &cli.command {
        Command::Apply(args) => crate::apply::run(&cli.nats, args).await,
        Command::Status(args) => crate::status::run(&cli.nats, args).await,
        Command::Dlq(DlqCommand::List(args)) => crate::dlq::list::run(&cli.nats, args).await,
        Command::Dlq(DlqCommand::Show(args)) => crate::dlq::show::run(&cli.nats, args).await,
        Command::Dlq(DlqCommand::Replay(args)) => crate::dlq::replay::run(&cli.nats, args).await,
        Command::Dlq(DlqCommand::Purge(args)) => crate::dlq::purge::run(&cli.nats, args).await,
        Command::Dlq(DlqCommand::Sentinel(args)) => crate::sentinel::run(&cli.nats, args).await,
    }
}

/// Joins an error and its causes into one line, leaving out a cause whose text the message
/// already contains.
fn one_line(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause_text = cause.to_string();
        if text.contains(&cause_text) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause_text);
    }
    text.replace('\n', " ")
}

/// Logs to standard error: `info` for the sentinel, `warn` for one-shot commands, whose
/// results go to standard output. `RUST_LOG` overrides both.
fn init_logging(service: bool) {
    let default = if service { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
