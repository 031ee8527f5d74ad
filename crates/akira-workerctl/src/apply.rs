//! `akira-workerctl apply`: reads the server's streams and consumers, builds the plan and
//! carries it out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::TryStreamExt;

use crate::connect::{error_chain, NatsArgs};
use crate::declarations::Declarations;
use crate::output::count;
use crate::plan::{
    self, Action, ConsumerState, Desired, ObjectRef, PlanOptions, ServerState, Step, StreamState,
};
use crate::ExitStatus;

/// Arguments of `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// The declarations file.
    #[arg(
        value_name = "FILE",
        help = "Declarations file: TOML with [[streams]] and [[consumers]], or JSON when it ends in .json"
    )]
    pub file: PathBuf,

    /// Print the plan without changing anything; exit 2 when changes are pending, 0 when in sync.
    #[arg(long)]
    pub dry_run: bool,

    /// Delete streams and durable consumers that the file does not declare.
    #[arg(long)]
    pub prune: bool,

    /// Delete and recreate this stream or consumer (a stream name, a durable name or
    /// STREAM/CONSUMER) when a declared field cannot be changed in place; repeatable.
    #[arg(long, value_name = "NAME")]
    pub recreate: Vec<String>,

    /// Let --recreate delete an object that still contains messages.
    #[arg(long, requires = "recreate")]
    pub force: bool,

    /// Maximum time to wait for NATS JetStream to respond before giving up, such as 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::connect::parse_duration)]
    pub wait: Duration,
}

/// Runs `apply` and returns the exit status: success, or pending changes for `--dry-run`.
pub async fn run(nats: &NatsArgs, args: &ApplyArgs) -> anyhow::Result<ExitStatus> {
    let declarations = Declarations::load(&args.file)?.with_dead_letter_stream();
    let (_client, jetstream) = nats.connect_jetstream_waiting(args.wait).await?;
    let server = read_server_state(&jetstream).await?;

    let options = PlanOptions {
        prune: args.prune,
        recreate: args.recreate.clone(),
        force: args.force,
        origin: args.file.display().to_string(),
    };
    let plan = match plan::build_plan(&declarations, &server, &options) {
        Ok(plan) => plan,
        Err(errors) => {
            let count = errors.len();
            for error in &errors[..count - 1] {
                eprintln!("error: {error}");
            }
            anyhow::bail!("{} (nothing was changed)", errors[count - 1]);
        }
    };
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }

    let mut stdout = std::io::stdout().lock();
    let pending = plan.pending_changes();
    if args.dry_run {
        for step in &plan.steps {
            writeln!(stdout, "{step}")?;
        }
        if pending == 0 {
            writeln!(
                stdout,
                "no changes: the server matches {}",
                args.file.display()
            )?;
            return Ok(ExitStatus::Success);
        }
        writeln!(
            stdout,
            "dry run: {} pending, nothing was changed",
            count(pending, "change")
        )?;
        return Ok(ExitStatus::ChangesPending);
    }

    let mut applied = 0;
    for step in &plan.steps {
        if let Err(err) = execute(&jetstream, step).await {
            stdout.flush()?;
            anyhow::bail!(
                "cannot {} {}: {}; {applied} of {} were applied before this one",
                step.action.as_str(),
                step.object,
                error_chain(err.as_ref()),
                count(pending, "change")
            );
        }
        if step.is_change() {
            applied += 1;
        }
        writeln!(stdout, "{step}")?;
    }
    if pending == 0 {
        writeln!(
            stdout,
            "no changes: the server matches {}",
            args.file.display()
        )?;
    } else {
        writeln!(stdout, "applied {}", count(pending, "change"))?;
    }
    Ok(ExitStatus::Success)
}

/// Reads every stream and its consumers from the server.
pub async fn read_server_state(jetstream: &jetstream::Context) -> anyhow::Result<ServerState> {
    let infos: Vec<jetstream::stream::Info> = jetstream
        .streams()
        .try_collect()
        .await
        .map_err(|err| anyhow::anyhow!("cannot list streams: {}", error_chain(&err)))?;

    let mut server = ServerState::default();
    for info in infos {
        let name = info.config.name.clone();
        let stream = jetstream
            .get_stream_no_info(&name)
            .await
            .with_context(|| format!("cannot open stream {name}"))?;
        let consumers: Vec<jetstream::consumer::Info> =
            stream.consumers().try_collect().await.map_err(|err| {
                anyhow::anyhow!(
                    "cannot list consumers of stream {name}: {}",
                    error_chain(&err)
                )
            })?;
        let consumers: BTreeMap<String, ConsumerState> = consumers
            .into_iter()
            .map(|consumer| {
                (
                    consumer.name.clone(),
                    ConsumerState {
                        config: consumer.config,
                        num_pending: consumer.num_pending,
                        num_ack_pending: consumer.num_ack_pending,
                    },
                )
            })
            .collect();
        server.streams.insert(
            name,
            StreamState {
                config: info.config,
                messages: info.state.messages,
                consumers,
            },
        );
    }
    Ok(server)
}

async fn execute(jetstream: &jetstream::Context, step: &Step) -> Result<(), async_nats::Error> {
    match (&step.object, step.action, &step.desired) {
        (_, Action::Unchanged | Action::Keep, _) => {}
        (ObjectRef::Stream(_), Action::Create, Desired::Stream(config)) => {
            jetstream.create_stream(config.as_ref().clone()).await?;
        }
        (ObjectRef::Stream(_), Action::Update, Desired::Stream(config)) => {
            jetstream.update_stream(config.as_ref()).await?;
        }
        (ObjectRef::Stream(name), Action::Recreate, Desired::Stream(config)) => {
            jetstream.delete_stream(name).await?;
            jetstream.create_stream(config.as_ref().clone()).await?;
        }
        (ObjectRef::Stream(name), Action::Delete, _) => {
            jetstream.delete_stream(name).await?;
        }
        (ObjectRef::Consumer { stream, .. }, Action::Create, Desired::Consumer(config)) => {
            jetstream
                .create_consumer_strict_on_stream(config.as_ref().clone(), stream)
                .await?;
        }
        (ObjectRef::Consumer { stream, .. }, Action::Update, Desired::Consumer(config)) => {
            jetstream
                .update_consumer_on_stream(config.as_ref().clone(), stream)
                .await?;
        }
        (ObjectRef::Consumer { stream, name }, Action::Recreate, Desired::Consumer(config)) => {
            jetstream.delete_consumer_from_stream(name, stream).await?;
            jetstream
                .create_consumer_strict_on_stream(config.as_ref().clone(), stream)
                .await?;
        }
        (ObjectRef::Consumer { stream, name }, Action::Delete, _) => {
            jetstream.delete_consumer_from_stream(name, stream).await?;
        }
        (object, action, _) => {
            return Err(format!(
                "internal error: no configuration for {} {object}",
                action.as_str()
            )
            .into());
        }
    }
    Ok(())
}
