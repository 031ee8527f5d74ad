//! Decides what `apply` does by comparing declarations with the server's streams and
//! consumers. Nothing here talks to the server, so every rule can be tested on its own.
//!
//! Only declared fields are compared. Some fields cannot be changed in place: a stream's
//! storage and retention to or from work-queue, and a consumer's ack policy, deliver policy,
//! push or pull kind, flow control, idle heartbeat and max waiting. A change to one of them
//! makes the whole plan fail unless the object is named with `--recreate`, so nothing is
//! changed before the operator decides.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy};
use async_nats::jetstream::stream::{self, RetentionPolicy};
use serde::Serialize;

use crate::declarations::{ConsumerDeclaration, Declarations, StreamDeclaration};
use crate::output::count;

/// The streams and consumers that exist on the server.
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    pub streams: BTreeMap<String, StreamState>,
}

/// One stream on the server with its consumers.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub config: stream::Config,
    pub messages: u64,
    /// Consumers by name.
    pub consumers: BTreeMap<String, ConsumerState>,
}

/// One consumer on the server.
#[derive(Debug, Clone)]
pub struct ConsumerState {
    pub config: consumer::Config,
    /// Messages not yet delivered.
    pub num_pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub num_ack_pending: usize,
}

/// Options of one `apply` run.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Delete streams and durable consumers that are not declared.
    pub prune: bool,
    /// Objects to delete and recreate when a field cannot be changed in place: a stream name,
    /// a durable consumer name, or `STREAM/CONSUMER`.
    pub recreate: Vec<String>,
    /// Recreate even when the object still contains messages.
    pub force: bool,
    /// The declarations file, named in hints.
    pub origin: String,
}

/// A stream or a consumer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectRef {
    Stream(String),
    Consumer { stream: String, name: String },
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectRef::Stream(name) => write!(f, "stream {name}"),
            ObjectRef::Consumer { stream, name } => write!(f, "consumer {stream}/{name}"),
        }
    }
}

/// One field whose declared value differs from the server's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.field, self.old, self.new)
    }
}

/// Action of `apply` on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Unchanged,
    /// Delete and create again, because a field cannot be changed in place.
    Recreate,
    /// Delete an undeclared object (`--prune`).
    Delete,
    /// Leave an undeclared object alone (no `--prune`).
    Keep,
}

impl Action {
    /// Returns the word printed at the start of the plan line.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Recreate => "recreate",
            Action::Delete => "delete",
            Action::Keep => "keep",
        }
    }
}

/// The configuration an action sends to the server.
#[derive(Debug, Clone)]
pub enum Desired {
    Stream(Box<stream::Config>),
    Consumer(Box<consumer::Config>),
    Nothing,
}

/// One line of the plan.
#[derive(Debug, Clone)]
pub struct Step {
    pub object: ObjectRef,
    pub action: Action,
    pub changes: Vec<Change>,
    pub desired: Desired,
    pub note: Option<String>,
}

impl Step {
    /// Returns true when the step changes the server.
    pub fn is_change(&self) -> bool {
        matches!(
            self.action,
            Action::Create | Action::Update | Action::Recreate | Action::Delete
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<9} {}", self.action.as_str(), self.object)?;
        if !self.changes.is_empty() {
            let changes: Vec<String> = self.changes.iter().map(Change::to_string).collect();
            write!(f, ": {}", changes.join("; "))?;
        }
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// Steps of `apply`, in the order they run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Declared values the server will not keep as written.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Returns the number of steps that change the server.
    pub fn pending_changes(&self) -> usize {
        self.steps.iter().filter(|step| step.is_change()).count()
    }
}

/// A reason the plan cannot be carried out; nothing has been changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{object}: {field} cannot be changed in place (server: {current}, declared: {declared}); \
         run `akira-workerctl apply {origin} --recreate {recreate_name}` to delete and recreate the {kind} \
         (rejected while it contains messages unless --force is given), or set {field} back to {current} in {origin}"
    )]
    Immutable {
        object: ObjectRef,
        field: &'static str,
        current: String,
        declared: String,
        origin: String,
        recreate_name: String,
        kind: &'static str,
    },
    #[error("{object}: --recreate rejected because {detail}; add --force to delete them, or drain the {kind} first")]
    RecreateRefused {
        object: ObjectRef,
        detail: String,
        kind: &'static str,
    },
    #[error("--recreate {name}: no declared stream or consumer has that name; use a stream name, a durable name or STREAM/CONSUMER")]
    UnknownRecreate { name: String },
    #[error("--recreate {name}: the name matches {matches}; write STREAM/CONSUMER for a consumer")]
    AmbiguousRecreate { name: String, matches: String },
    #[error("{object}: stream {stream} is neither declared in {origin} nor present on the server; declare it or fix `stream`")]
    MissingStream {
        object: ObjectRef,
        stream: String,
        origin: String,
    },
    #[error("{object}: backoff has {backoff} delays but max_deliver is {max_deliver}; the server allows at most max_deliver delays, so shorten backoff or raise max_deliver")]
    BackoffTooLong {
        object: ObjectRef,
        backoff: usize,
        max_deliver: i64,
    },
}

/// Streams whose names mark them as key-value buckets or object stores; `--prune` keeps them.
const UNPRUNED_STREAM_PREFIXES: [&str; 2] = ["KV_", "OBJ_"];

/// Compares `declarations` with `server` and returns the steps of `apply`, or every reason it
/// cannot proceed.
pub fn build_plan(
    declarations: &Declarations,
    server: &ServerState,
    options: &PlanOptions,
) -> Result<Plan, Vec<PlanError>> {
    let mut errors = Vec::new();
    let recreate = resolve_recreate(declarations, options, &mut errors);
    let mut plan = Plan::default();
    let mut recreated_streams = Vec::new();

    let mut stream_steps = Vec::new();
    for declaration in &declarations.streams {
        let object = ObjectRef::Stream(declaration.name.clone());
        let step = plan_stream(
            declaration,
            server.streams.get(&declaration.name),
            recreate.contains(&object),
            declarations,
            options,
            &mut plan.warnings,
        );
        match step {
            Ok(step) => {
                if step.action == Action::Recreate {
                    recreated_streams.push(declaration.name.clone());
                }
                stream_steps.push(step);
            }
            Err(mut stream_errors) => errors.append(&mut stream_errors),
        }
    }

    let mut consumer_steps = Vec::new();
    for declaration in &declarations.consumers {
        let object = consumer_ref(declaration);
        let stream_state = server.streams.get(&declaration.stream);
        if stream_state.is_none() && declarations.stream(&declaration.stream).is_none() {
            errors.push(PlanError::MissingStream {
                object,
                stream: declaration.stream.clone(),
                origin: options.origin.clone(),
            });
            continue;
        }
        let stream_recreated = recreated_streams.contains(&declaration.stream);
        let current = stream_state
            .filter(|_| !stream_recreated)
            .and_then(|stream| stream.consumers.get(&declaration.durable_name));
        match plan_consumer(
            declaration,
            current,
            recreate.contains(&object),
            stream_recreated,
            declarations,
            options,
            &mut plan.warnings,
        ) {
            Ok(step) => consumer_steps.push(step),
            Err(mut consumer_errors) => errors.append(&mut consumer_errors),
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }

    // Deletions go first so that subjects of a pruned stream are free for a declared one.
    plan.steps.extend(undeclared_steps(
        declarations,
        server,
        options,
        &recreated_streams,
    ));
    plan.steps.extend(stream_steps);
    plan.steps.extend(consumer_steps);
    Ok(plan)
}

fn resolve_recreate(
    declarations: &Declarations,
    options: &PlanOptions,
    errors: &mut Vec<PlanError>,
) -> Vec<ObjectRef> {
    let mut resolved = Vec::new();
    for name in &options.recreate {
        let mut matches: Vec<ObjectRef> = Vec::new();
        if let Some((stream, consumer)) = name.split_once('/') {
            if declarations
                .consumers
                .iter()
                .any(|declared| declared.stream == stream && declared.durable_name == consumer)
            {
                matches.push(ObjectRef::Consumer {
                    stream: stream.to_string(),
                    name: consumer.to_string(),
                });
            }
        } else {
            if declarations.stream(name).is_some() {
                matches.push(ObjectRef::Stream(name.clone()));
            }
            for declared in declarations
                .consumers
                .iter()
                .filter(|declared| &declared.durable_name == name)
            {
                matches.push(consumer_ref(declared));
            }
        }
        match matches.len() {
            0 => errors.push(PlanError::UnknownRecreate { name: name.clone() }),
            1 => resolved.extend(matches),
            _ => errors.push(PlanError::AmbiguousRecreate {
                name: name.clone(),
                matches: matches
                    .iter()
                    .map(ObjectRef::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
    resolved
}

fn consumer_ref(declaration: &ConsumerDeclaration) -> ObjectRef {
    ObjectRef::Consumer {
        stream: declaration.stream.clone(),
        name: declaration.durable_name.clone(),
    }
}

/// Returns the name to pass to `--recreate`: the plain name unless another declared object
/// shares it.
fn recreate_name(object: &ObjectRef, declarations: &Declarations) -> String {
    let plain = match object {
        ObjectRef::Stream(name) => name,
        ObjectRef::Consumer { name, .. } => name,
    };
    let uses = declarations
        .streams
        .iter()
        .filter(|stream| &stream.name == plain)
        .count()
        + declarations
            .consumers
            .iter()
            .filter(|consumer| &consumer.durable_name == plain)
            .count();
    match object {
        ObjectRef::Consumer { stream, name } if uses > 1 => format!("{stream}/{name}"),
        _ => plain.clone(),
    }
}

fn plan_stream(
    declaration: &StreamDeclaration,
    current: Option<&StreamState>,
    recreate: bool,
    declarations: &Declarations,
    options: &PlanOptions,
    warnings: &mut Vec<String>,
) -> Result<Step, Vec<PlanError>> {
    let object = ObjectRef::Stream(declaration.name.clone());
    let implicit_note = declaration
        .implicit
        .then(|| "dead-letter stream with the conventional settings".to_string());

    let Some(current) = current else {
        return Ok(Step {
            object,
            action: Action::Create,
            changes: Vec::new(),
            desired: Desired::Stream(Box::new(new_stream_config(declaration))),
            note: implicit_note,
        });
    };

    let diff = diff_stream(declaration, &current.config);
    if !diff.immutable.is_empty() && !recreate {
        return Err(immutable_errors(
            &object,
            diff.immutable,
            "stream",
            declarations,
            options,
        ));
    }
    if !diff.immutable.is_empty() {
        if current.messages > 0 && !options.force {
            return Err(vec![PlanError::RecreateRefused {
                object,
                detail: format!(
                    "the stream contains {}",
                    count(current.messages as usize, "message")
                ),
                kind: "stream",
            }]);
        }
        let consumers: Vec<&str> = current.consumers.keys().map(String::as_str).collect();
        let note = if consumers.is_empty() {
            None
        } else {
            Some(format!(
                "also deletes its consumers {}",
                consumers.join(", ")
            ))
        };
        return Ok(Step {
            object,
            action: Action::Recreate,
            changes: diff.all(),
            desired: Desired::Stream(Box::new(new_stream_config(declaration))),
            note,
        });
    }
    if recreate {
        warnings.push(format!(
            "--recreate {}: every declared field can be changed in place, so it is not recreated",
            declaration.name
        ));
    }
    if diff.mutable.is_empty() {
        return Ok(Step {
            object,
            action: Action::Unchanged,
            changes: Vec::new(),
            desired: Desired::Nothing,
            note: implicit_note,
        });
    }
    let mut desired = current.config.clone();
    apply_stream_fields(declaration, &mut desired);
    Ok(Step {
        object,
        action: Action::Update,
        changes: diff.mutable,
        desired: Desired::Stream(Box::new(desired)),
        note: implicit_note,
    })
}

#[allow(clippy::too_many_arguments)]
fn plan_consumer(
    declaration: &ConsumerDeclaration,
    current: Option<&ConsumerState>,
    recreate: bool,
    stream_recreated: bool,
    declarations: &Declarations,
    options: &PlanOptions,
    warnings: &mut Vec<String>,
) -> Result<Step, Vec<PlanError>> {
    let object = consumer_ref(declaration);
    let base = current
        .map(|state| state.config.clone())
        .unwrap_or_default();
    let effective = effective_ack_wait(declaration, &base.backoff, &object, warnings);
    check_backoff_length(declaration, &base, &object)?;

    let Some(current) = current else {
        return Ok(Step {
            object,
            action: Action::Create,
            changes: Vec::new(),
            desired: Desired::Consumer(Box::new(new_consumer_config(declaration))),
            note: stream_recreated.then(|| "its stream is recreated".to_string()),
        });
    };

    let diff = diff_consumer(declaration, &current.config, effective);
    if !diff.immutable.is_empty() && !recreate {
        return Err(immutable_errors(
            &object,
            diff.immutable,
            "consumer",
            declarations,
            options,
        ));
    }
    if !diff.immutable.is_empty() {
        let held = current.num_pending + current.num_ack_pending as u64;
        if held > 0 && !options.force {
            return Err(vec![PlanError::RecreateRefused {
                object,
                detail: format!(
                    "the consumer has {} pending and {} awaiting ack, and a new consumer starts again from its deliver policy",
                    count(current.num_pending as usize, "message"),
                    current.num_ack_pending
                ),
                kind: "consumer",
            }]);
        }
        return Ok(Step {
            object,
            action: Action::Recreate,
            changes: diff.all(),
            desired: Desired::Consumer(Box::new(new_consumer_config(declaration))),
            note: None,
        });
    }
    if recreate {
        warnings.push(format!(
            "--recreate {object}: every declared field can be changed in place, so it is not recreated"
        ));
    }
    if diff.mutable.is_empty() {
        return Ok(Step {
            object,
            action: Action::Unchanged,
            changes: Vec::new(),
            desired: Desired::Nothing,
            note: None,
        });
    }
    let mut desired = current.config.clone();
    apply_consumer_fields(declaration, &mut desired);
    Ok(Step {
        object,
        action: Action::Update,
        changes: diff.mutable,
        desired: Desired::Consumer(Box::new(desired)),
        note: None,
    })
}

fn immutable_errors(
    object: &ObjectRef,
    conflicts: Vec<Change>,
    kind: &'static str,
    declarations: &Declarations,
    options: &PlanOptions,
) -> Vec<PlanError> {
    conflicts
        .into_iter()
        .map(|conflict| PlanError::Immutable {
            object: object.clone(),
            field: conflict.field,
            current: conflict.old,
            declared: conflict.new,
            origin: options.origin.clone(),
            recreate_name: recreate_name(object, declarations),
            kind,
        })
        .collect()
}

/// Returns the ack wait the server will keep: nats-server replaces `ack_wait` with the first
/// backoff delay whenever a backoff is set, so comparing the declared value would report a
/// change on every run.
fn effective_ack_wait(
    declaration: &ConsumerDeclaration,
    server_backoff: &[Duration],
    object: &ObjectRef,
    warnings: &mut Vec<String>,
) -> Option<Duration> {
    let backoff = declaration.backoff.as_deref().unwrap_or(server_backoff);
    match (declaration.ack_wait, backoff.first()) {
        (Some(declared), Some(first)) if declared != *first => {
            warnings.push(format!(
                "{object}: ack_wait {} becomes {} on the server, because nats-server uses the first backoff delay as ack_wait",
                format_duration(declared),
                format_duration(*first)
            ));
            Some(*first)
        }
        (declared, _) => declared,
    }
}

fn check_backoff_length(
    declaration: &ConsumerDeclaration,
    current: &consumer::Config,
    object: &ObjectRef,
) -> Result<(), Vec<PlanError>> {
    let backoff = declaration.backoff.as_ref().unwrap_or(&current.backoff);
    let max_deliver = declaration.max_deliver.unwrap_or(current.max_deliver);
    if max_deliver > 0 && backoff.len() as i64 > max_deliver {
        return Err(vec![PlanError::BackoffTooLong {
            object: object.clone(),
            backoff: backoff.len(),
            max_deliver,
        }]);
    }
    Ok(())
}

/// Declared fields that differ, split by whether the server can change them in place.
#[derive(Debug, Default)]
struct Diff {
    mutable: Vec<Change>,
    immutable: Vec<Change>,
}

impl Diff {
    fn compare<T: PartialEq>(
        &mut self,
        field: &'static str,
        declared: Option<T>,
        current: T,
        show: impl Fn(&T) -> String,
        mutable: impl Fn(&T, &T) -> bool,
    ) {
        let Some(declared) = declared else { return };
        if declared == current {
            return;
        }
        let change = Change {
            field,
            old: show(&current),
            new: show(&declared),
        };
        if mutable(&current, &declared) {
            self.mutable.push(change);
        } else {
            self.immutable.push(change);
        }
    }

    fn all(self) -> Vec<Change> {
        let mut all = self.immutable;
        all.extend(self.mutable);
        all
    }
}

fn always<T>(_: &T, _: &T) -> bool {
    true
}

fn never<T>(_: &T, _: &T) -> bool {
    false
}

fn diff_stream(declaration: &StreamDeclaration, current: &stream::Config) -> Diff {
    let mut diff = Diff::default();
    diff.compare(
        "subjects",
        declaration
            .subjects
            .as_ref()
            .map(|subjects| sorted(subjects)),
        sorted(&current.subjects),
        |subjects| show_list(subjects),
        always,
    );

    diff.compare(
        "storage",
        declaration.storage,
        current.storage,
        enum_name,
        never,
    );

    diff.compare(
        "retention",
        declaration.retention,
        current.retention,
        enum_name,
        |old, new| *old != RetentionPolicy::WorkQueue && *new != RetentionPolicy::WorkQueue,
    );

    diff.compare(
        "max_age",
        declaration.max_age,
        current.max_age,
        |v| show_max_age(*v),
        always,
    );

    diff.compare(
        "max_msgs",
        declaration.max_msgs,
        unlimited(current.max_messages),
        |v| show_limit(*v),
        always,
    );

    diff.compare(
        "max_bytes",
        declaration.max_bytes,
        unlimited(current.max_bytes),
        |v| show_limit(*v),
        always,
    );

    diff.compare(
        "max_msg_size",
        declaration.max_msg_size.map(i64::from),
        unlimited(i64::from(current.max_message_size)),
        |v| show_limit(*v),
        always,
    );

    diff.compare(
        "discard",
        declaration.discard,
        current.discard,
        enum_name,
        always,
    );

    diff.compare(
        "num_replicas",
        declaration.num_replicas,
        current.num_replicas.max(1),
        |v| v.to_string(),
        always,
    );

    diff.compare(
        "duplicate_window",
        declaration.duplicate_window,
        current.duplicate_window,
        |v| format_duration(*v),
        always,
    );

    diff.compare(
        "description",
        declaration.description.as_deref().map(non_empty),
        current.description.as_deref().and_then(non_empty),
        |v| show_text(v.as_deref()),
        always,
    );
    diff
}

fn diff_consumer(
    declaration: &ConsumerDeclaration,
    current: &consumer::Config,
    effective_ack_wait: Option<Duration>,
) -> Diff {
    let mut diff = Diff::default();
    let filter_field = if declaration.filter_subjects.is_some() {
        "filter_subjects"
    } else {
        "filter_subject"
    };
    diff.compare(
        filter_field,
        declaration.filters().map(|filters| sorted(&filters)),
        sorted(&current_filters(current)),
        |filters| show_filters(filters),
        always,
    );

    diff.compare(
        "ack_policy",
        declaration.ack_policy,
        current.ack_policy,
        enum_name,
        never,
    );

    diff.compare(
        "ack_wait",
        effective_ack_wait,
        current.ack_wait,
        |v| format_duration(*v),
        always,
    );

    diff.compare(
        "max_deliver",
        declaration.max_deliver,
        unlimited(current.max_deliver),
        |v| show_limit(*v),
        always,
    );

    diff.compare(
        "backoff",
        declaration.backoff.clone(),
        current.backoff.clone(),
        |delays| show_durations(delays),
        always,
    );

    diff.compare(
        "max_ack_pending",
        declaration.max_ack_pending,
        current.max_ack_pending,
        |v| show_limit(*v),
        always,
    );

    diff.compare(
        "deliver_policy",
        declaration
            .deliver_policy
            .map(|policy| deliver_policy_name(&policy.to_nats())),
        deliver_policy_name(&current.deliver_policy),
        |v| v.clone(),
        never,
    );
    // A consumer declared without `deliver_subject` is a pull consumer, so this field is
    // always compared. Moving a push consumer to another subject is allowed in place.
    diff.compare(
        "deliver_subject",
        Some(declaration.deliver_subject.clone()),
        current.deliver_subject.clone(),
        |v| show_deliver_subject(v.as_deref()),
        |old, new| old.is_some() && new.is_some(),
    );

    diff.compare(
        "deliver_group",
        declaration.deliver_group.as_deref().map(non_empty),
        current.deliver_group.as_deref().and_then(non_empty),
        |v| show_text(v.as_deref()),
        always,
    );

    diff.compare(
        "flow_control",
        declaration.flow_control,
        current.flow_control,
        |v| v.to_string(),
        never,
    );

    diff.compare(
        "idle_heartbeat",
        declaration.idle_heartbeat,
        current.idle_heartbeat,
        |v| format_duration(*v),
        never,
    );

    diff.compare(
        "max_waiting",
        declaration.max_waiting,
        current.max_waiting,
        |v| v.to_string(),
        never,
    );

    diff.compare(
        "description",
        declaration.description.as_deref().map(non_empty),
        current.description.as_deref().and_then(non_empty),
        |v| show_text(v.as_deref()),
        always,
    );
    diff
}

/// Returns the configuration of a stream created from its declaration.
pub fn new_stream_config(declaration: &StreamDeclaration) -> stream::Config {
    let mut config = stream::Config {
        name: declaration.name.clone(),
        ..Default::default()
    };
    apply_stream_fields(declaration, &mut config);
    config
}

/// Sets the declared fields on `config` and leaves the others as they are.
pub fn apply_stream_fields(declaration: &StreamDeclaration, config: &mut stream::Config) {
    if let Some(subjects) = &declaration.subjects {
        config.subjects = subjects.clone();
    }

    if let Some(storage) = declaration.storage {
        config.storage = storage;
    }

    if let Some(retention) = declaration.retention {
        config.retention = retention;
    }

    if let Some(max_age) = declaration.max_age {
        config.max_age = max_age;
    }

    if let Some(max_msgs) = declaration.max_msgs {
        config.max_messages = max_msgs;
    }

    if let Some(max_bytes) = declaration.max_bytes {
        config.max_bytes = max_bytes;
    }

    if let Some(max_msg_size) = declaration.max_msg_size {
        config.max_message_size = max_msg_size;
    }

    if let Some(discard) = declaration.discard {
        config.discard = discard;
    }

    if let Some(num_replicas) = declaration.num_replicas {
        config.num_replicas = num_replicas;
    }

    if let Some(duplicate_window) = declaration.duplicate_window {
        config.duplicate_window = duplicate_window;
    }

    if let Some(description) = &declaration.description {
        config.description = non_empty(description);
    }
}

/// Returns the configuration of a durable consumer created from its declaration.
pub fn new_consumer_config(declaration: &ConsumerDeclaration) -> consumer::Config {
    let mut config = consumer::Config {
        durable_name: Some(declaration.durable_name.clone()),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    apply_consumer_fields(declaration, &mut config);
    config
}

/// Sets the declared fields on `config` and leaves the others as they are.
pub fn apply_consumer_fields(declaration: &ConsumerDeclaration, config: &mut consumer::Config) {
    match (&declaration.filter_subject, &declaration.filter_subjects) {
        (Some(one), _) => {
            config.filter_subject = one.clone();
            config.filter_subjects = Vec::new();
        }
        (None, Some(many)) if many.len() == 1 => {
            config.filter_subject = many[0].clone();
            config.filter_subjects = Vec::new();
        }
        (None, Some(many)) => {
            config.filter_subject = String::new();
            config.filter_subjects = many.clone();
        }
        (None, None) => {}
    }

    if let Some(ack_policy) = declaration.ack_policy {
        config.ack_policy = ack_policy;
    }

    if let Some(ack_wait) = declaration.ack_wait {
        config.ack_wait = ack_wait;
    }

    if let Some(max_deliver) = declaration.max_deliver {
        config.max_deliver = max_deliver;
    }

    if let Some(backoff) = &declaration.backoff {
        config.backoff = backoff.clone();
    }

    if let Some(max_ack_pending) = declaration.max_ack_pending {
        config.max_ack_pending = max_ack_pending;
    }

    if let Some(policy) = declaration.deliver_policy {
        config.deliver_policy = policy.to_nats();
    }

    config.deliver_subject = declaration.deliver_subject.clone();

    if let Some(group) = &declaration.deliver_group {
        config.deliver_group = non_empty(group);
    }

    if let Some(flow_control) = declaration.flow_control {
        config.flow_control = flow_control;
    }

    if let Some(idle_heartbeat) = declaration.idle_heartbeat {
        config.idle_heartbeat = idle_heartbeat;
    }

    if let Some(max_waiting) = declaration.max_waiting {
        config.max_waiting = max_waiting;
    }

    if let Some(description) = &declaration.description {
        config.description = non_empty(description);
    }
}

fn undeclared_steps(
    declarations: &Declarations,
    server: &ServerState,
    options: &PlanOptions,
    recreated_streams: &[String],
) -> Vec<Step> {
    let mut steps = Vec::new();
    for (name, stream) in &server.streams {
        let object = ObjectRef::Stream(name.clone());
        if declarations.stream(name).is_none() {
            let store = UNPRUNED_STREAM_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix));
            let (action, note) = if store {
                (
                    Action::Keep,
                    "not declared; key-value and object stores are never pruned".to_string(),
                )
            } else if options.prune {
                let note = match stream.consumers.len() {
                    0 => "not declared".to_string(),
                    consumers => format!(
                        "not declared; also deletes its {}",
                        count(consumers, "consumer")
                    ),
                };
                (Action::Delete, note)
            } else {
                (Action::Keep, "not declared; --prune deletes it".to_string())
            };
            steps.push(undeclared_step(object, action, note));
            continue;
        }
        if recreated_streams.contains(name) {
            continue;
        }
        for (consumer_name, consumer) in &stream.consumers {
            let declared = declarations.consumers.iter().any(|declared| {
                &declared.stream == name && &declared.durable_name == consumer_name
            });
            // Ephemeral consumers belong to running clients (ordered consumers, `nats sub`)
            // and are never declared, so they are neither listed nor pruned.
            if declared || consumer.config.durable_name.is_none() {
                continue;
            }
            let object = ObjectRef::Consumer {
                stream: name.clone(),
                name: consumer_name.clone(),
            };
            let (action, note) = if options.prune {
                (Action::Delete, "not declared")
            } else {
                (Action::Keep, "not declared; --prune deletes it")
            };
            steps.push(undeclared_step(object, action, note.to_string()));
        }
    }
    steps
}

fn undeclared_step(object: ObjectRef, action: Action, note: String) -> Step {
    Step {
        object,
        action,
        changes: Vec::new(),
        desired: Desired::Nothing,
        note: Some(note),
    }
}

fn current_filters(config: &consumer::Config) -> Vec<String> {
    if config.filter_subject.is_empty() {
        config.filter_subjects.clone()
    } else {
        vec![config.filter_subject.clone()]
    }
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

/// Maps the server's zero to its meaning, unlimited (`-1`).
fn unlimited(value: i64) -> i64 {
    if value == 0 {
        -1
    } else {
        value
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// Formats a duration the way declarations write it (`30s`, `5m`, `30days`).
pub fn format_duration(duration: Duration) -> String {
    akira_workers::duration::format(duration)
}

fn show_max_age(max_age: Duration) -> String {
    if max_age.is_zero() {
        "unlimited".to_string()
    } else {
        format_duration(max_age)
    }
}

fn show_limit(value: i64) -> String {
    if value < 0 {
        "unlimited".to_string()
    } else {
        value.to_string()
    }
}

fn show_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

fn show_filters(filters: &[String]) -> String {
    match filters {
        [] => "none".to_string(),
        [one] => one.clone(),
        many => show_list(many),
    }
}

fn show_durations(delays: &[Duration]) -> String {
    let delays: Vec<String> = delays.iter().map(|delay| format_duration(*delay)).collect();
    format!("[{}]", delays.join(", "))
}

fn show_text(text: Option<&str>) -> String {
    match text {
        Some(text) => format!("{text:?}"),
        None => "none".to_string(),
    }
}

fn show_deliver_subject(subject: Option<&str>) -> String {
    match subject {
        Some(subject) => format!("{subject} (push)"),
        None => "none (pull)".to_string(),
    }
}

/// Returns the NATS name of an enum value (`file`, `workqueue`, `explicit`).
fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_string(),
    }
}

fn deliver_policy_name(policy: &consumer::DeliverPolicy) -> String {
    use consumer::DeliverPolicy as Policy;
    match policy {
        Policy::All => "all".to_string(),
        Policy::Last => "last".to_string(),
        Policy::New => "new".to_string(),
        Policy::LastPerSubject => "last_per_subject".to_string(),
        Policy::ByStartSequence { start_sequence } => format!("by_start_sequence {start_sequence}"),
        Policy::ByStartTime { start_time } => format!("by_start_time {start_time}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declarations::Format;
    use async_nats::jetstream::stream::StorageType;

    fn declarations(text: &str) -> Declarations {
        Declarations::parse(text, Format::Toml, "streams.toml").unwrap()
    }

    fn options() -> PlanOptions {
        PlanOptions {
            origin: "streams.toml".to_string(),
            ..PlanOptions::default()
        }
    }

    fn server_with(declarations: &Declarations) -> ServerState {
        let mut server = ServerState::default();
        for stream in &declarations.streams {
            let mut config = new_stream_config(stream);
            // What nats-server fills in on create.
            config.max_messages = -1;
            config.max_bytes = -1;
            config.max_message_size = -1;
            config.num_replicas = 1;
            if config.duplicate_window.is_zero() {
                config.duplicate_window = Duration::from_secs(120);
            }
            server.streams.insert(
                stream.name.clone(),
                StreamState {
                    config,
                    messages: 0,
                    consumers: BTreeMap::new(),
                },
            );
        }
        for consumer in &declarations.consumers {
            let mut config = new_consumer_config(consumer);
            if config.ack_wait.is_zero() {
                config.ack_wait = Duration::from_secs(30);
            }
            if config.max_deliver == 0 {
                config.max_deliver = -1;
            }
            server
                .streams
                .get_mut(&consumer.stream)
                .unwrap()
                .consumers
                .insert(
                    consumer.durable_name.clone(),
                    ConsumerState {
                        config,
                        num_pending: 0,
                        num_ack_pending: 0,
                    },
                );
        }
        server
    }

    const CDR: &str = r#"
        [[streams]]
        name = "CDR"
        subjects = ["akira.cdr.>"]
        storage = "file"
        max_age = "7d"

        [[consumers]]
        durable_name = "cdr-pipeline"
        stream = "CDR"
        ack_wait = "30s"
        max_deliver = 5
    "#;

    #[test]
    fn missing_objects_are_created() {
        let plan = build_plan(&declarations(CDR), &ServerState::default(), &options()).unwrap();
        let actions: Vec<_> = plan.steps.iter().map(|step| step.action).collect();
        assert_eq!(actions, vec![Action::Create, Action::Create]);
        assert_eq!(plan.pending_changes(), 2);
    }

    #[test]
    fn matching_server_is_unchanged() {
        let declared = declarations(CDR);
        let plan = build_plan(&declared, &server_with(&declared), &options()).unwrap();
        assert_eq!(plan.pending_changes(), 0);
        assert!(plan
            .steps
            .iter()
            .all(|step| step.action == Action::Unchanged));
    }

    #[test]
    fn mutable_field_change_is_update() {
        let declared = declarations(CDR);
        let server = server_with(&declared);
        let changed = declarations(&CDR.replace("\"7d\"", "\"14d\""));
        let plan = build_plan(&changed, &server, &options()).unwrap();
        let step = &plan.steps[0];
        assert_eq!(step.action, Action::Update);
        assert_eq!(step.changes[0].field, "max_age");
        assert_eq!(step.changes[0].old, "7days");
        assert_eq!(step.changes[0].new, "14days");
        let Desired::Stream(config) = &step.desired else {
            panic!("no stream config")
        };
        assert_eq!(config.max_age, Duration::from_secs(14 * 86_400));
    }

    #[test]
    fn storage_change_is_refused_with_hint() {
        let declared = declarations(CDR);
        let server = server_with(&declared);
        let changed = declarations(&CDR.replace("storage = \"file\"", "storage = \"memory\""));
        let errors = build_plan(&changed, &server, &options()).unwrap_err();
        assert_eq!(errors.len(), 1);
        let message = errors[0].to_string();
        assert!(message.contains("stream CDR"), "{message}");
        assert!(message.contains("storage"), "{message}");
        assert!(message.contains("server: file"), "{message}");
        assert!(message.contains("declared: memory"), "{message}");
        assert!(message.contains("--recreate CDR"), "{message}");
    }

    #[test]
    fn recreate_refuses_stream_with_messages_unless_forced() {
        let declared = declarations(CDR);
        let mut server = server_with(&declared);
        server.streams.get_mut("CDR").unwrap().messages = 3;
        let changed = declarations(&CDR.replace("storage = \"file\"", "storage = \"memory\""));
        let mut recreate = options();
        recreate.recreate = vec!["CDR".to_string()];

        let errors = build_plan(&changed, &server, &recreate).unwrap_err();
        assert!(
            errors[0].to_string().contains("contains 3 messages"),
            "{}",
            errors[0]
        );

        recreate.force = true;
        let plan = build_plan(&changed, &server, &recreate).unwrap();
        let stream_step = plan
            .steps
            .iter()
            .find(|step| step.object == ObjectRef::Stream("CDR".into()))
            .unwrap();
        assert_eq!(stream_step.action, Action::Recreate);
        let Desired::Stream(config) = &stream_step.desired else {
            panic!("no stream config")
        };
        assert_eq!(config.storage, StorageType::Memory);
        let consumer_step = plan
            .steps
            .iter()
            .find(|step| matches!(step.object, ObjectRef::Consumer { .. }))
            .unwrap();
        assert_eq!(consumer_step.action, Action::Create);
    }

    #[test]
    fn retention_workqueue_change_is_immutable() {
        let declared = declarations(CDR);
        let server = server_with(&declared);
        let workqueue =
            declarations(&CDR.replace("storage = \"file\"", "retention = \"workqueue\""));
        assert!(build_plan(&workqueue, &server, &options()).is_err());
        let interest = declarations(&CDR.replace("storage = \"file\"", "retention = \"interest\""));
        let plan = build_plan(&interest, &server, &options()).unwrap();
        assert_eq!(plan.steps[0].action, Action::Update);
    }

    #[test]
    fn pull_to_push_is_immutable() {
        let declared = declarations(CDR);
        let server = server_with(&declared);
        let push = declarations(&CDR.replace(
            "max_deliver = 5",
            "max_deliver = 5\ndeliver_subject = \"akira.deliver.x\"",
        ));
        let errors = build_plan(&push, &server, &options()).unwrap_err();
        let message = errors[0].to_string();
        assert!(message.contains("consumer CDR/cdr-pipeline"), "{message}");
        assert!(message.contains("deliver_subject"), "{message}");
        assert!(message.contains("none (pull)"), "{message}");
    }

    #[test]
    fn undeclared_fields_keep_server_values() {
        let declared = declarations(CDR);
        let mut server = server_with(&declared);
        server.streams.get_mut("CDR").unwrap().config.max_messages = 1000;
        let plan = build_plan(&declared, &server, &options()).unwrap();
        assert_eq!(plan.pending_changes(), 0);
    }

    #[test]
    fn prune_deletes_only_with_flag() {
        let declared = declarations(CDR);
        let mut server = server_with(&declared);
        let extra = declarations("[[streams]]\nname = \"OLD\"\n[[streams]]\nname = \"KV_cache\"\n");
        server.streams.extend(server_with(&extra).streams);

        let plan = build_plan(&declared, &server, &options()).unwrap();
        assert_eq!(plan.pending_changes(), 0);
        assert!(plan
            .steps
            .iter()
            .any(|step| step.action == Action::Keep
                && step.object == ObjectRef::Stream("OLD".into())));

        let mut prune = options();
        prune.prune = true;
        let plan = build_plan(&declared, &server, &prune).unwrap();
        let deleted: Vec<_> = plan
            .steps
            .iter()
            .filter(|step| step.action == Action::Delete)
            .map(|step| step.object.clone())
            .collect();
        assert_eq!(deleted, vec![ObjectRef::Stream("OLD".into())]);
    }

    #[test]
    fn backoff_sets_effective_ack_wait() {
        let text = CDR.replace(
            "max_deliver = 5",
            "max_deliver = 5\nbackoff = [\"1m\", \"2m\"]",
        );
        let declared = declarations(&text);
        let mut server = server_with(&declared);
        let consumer = server
            .streams
            .get_mut("CDR")
            .unwrap()
            .consumers
            .get_mut("cdr-pipeline")
            .unwrap();
        consumer.config.ack_wait = Duration::from_secs(60);
        let plan = build_plan(&declared, &server, &options()).unwrap();
        assert_eq!(plan.pending_changes(), 0);
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(
            plan.warnings[0].contains("ack_wait 30s becomes 1m"),
            "{}",
            plan.warnings[0]
        );
    }

    #[test]
    fn consumer_on_unknown_stream_is_an_error() {
        let text = "[[consumers]]\ndurable_name = \"a\"\nstream = \"NOPE\"\n";
        let errors =
            build_plan(&declarations(text), &ServerState::default(), &options()).unwrap_err();
        assert!(
            errors[0].to_string().contains("stream NOPE"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn unknown_recreate_name_is_an_error() {
        let mut recreate = options();
        recreate.recreate = vec!["NOPE".to_string()];
        let errors =
            build_plan(&declarations(CDR), &ServerState::default(), &recreate).unwrap_err();
        assert!(
            errors[0].to_string().contains("--recreate NOPE"),
            "{}",
            errors[0]
        );
    }
}
