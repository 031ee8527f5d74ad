//! `akira-workerctl apply` against a real nats-server.

mod support;

use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use support::Env;

const DECLARATIONS: &str = r#"
[[streams]]
name = "ORDERS"
subjects = ["akira.orders.>"]
storage = "file"
retention = "limits"
max_age = "7d"
duplicate_window = "2m"
description = "orders from the shop"

[[consumers]]
durable_name = "orders-worker"
stream = "ORDERS"
filter_subject = "akira.orders.>"
ack_policy = "explicit"
ack_wait = "30s"
max_deliver = 5
backoff = ["30s", "30s", "1m", "2m"]
max_ack_pending = 500
deliver_policy = "all"

[[consumers]]
durable_name = "orders-push"
stream = "ORDERS"
deliver_subject = "akira.deliver.orders-push"
deliver_group = "orders-push"
idle_heartbeat = "5s"
ack_wait = "30s"
max_deliver = 3
"#;

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_then_reports_no_changes() {
    let env = Env::start();

    let first = env.apply("streams.toml", DECLARATIONS, &[]);
    assert_eq!(first.code, 0, "{first:?}");
    first.line_starting("create    stream ORDERS");
    assert!(first
        .line_starting("create    stream AKIRA_DLQ")
        .contains("conventional settings"));
    first.line_starting("create    consumer ORDERS/orders-worker");
    first.line_starting("create    consumer ORDERS/orders-push");
    assert_eq!(first.last_line(), "applied 4 changes");

    let jetstream = env.jetstream().await;
    let mut orders = jetstream.get_stream("ORDERS").await.unwrap();
    let config = orders.info().await.unwrap().config.clone();
    assert_eq!(config.subjects, vec!["akira.orders.>".to_string()]);
    assert_eq!(config.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(config.description.as_deref(), Some("orders from the shop"));
    let consumer = orders
        .consumer_info("orders-worker")
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(consumer.max_deliver, 5);
    assert_eq!(consumer.max_ack_pending, 500);
    assert_eq!(consumer.backoff.len(), 4);
    assert_eq!(consumer.deliver_subject, None);
    let push = orders
        .consumer_info("orders-push")
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(
        push.deliver_subject.as_deref(),
        Some("akira.deliver.orders-push")
    );
    assert_eq!(push.deliver_group.as_deref(), Some("orders-push"));
    let mut dlq = jetstream.get_stream("AKIRA_DLQ").await.unwrap();
    let dlq_config = dlq.info().await.unwrap().config.clone();
    assert_eq!(dlq_config.subjects, vec!["akira.dlq.>".to_string()]);
    assert_eq!(dlq_config.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(dlq_config.duplicate_window, Duration::from_secs(120));
    assert_eq!(dlq_config.storage, StorageType::File);

    let second = env.apply("streams.toml", DECLARATIONS, &[]);
    assert_eq!(second.code, 0, "{second:?}");
    for line in second.lines().iter().take(4) {
        assert!(line.starts_with("unchanged "), "{line}");
    }
    assert!(
        second
            .last_line()
            .starts_with("no changes: the server matches"),
        "{second:?}"
    );
    assert!(!second.stdout.contains("create"), "{second:?}");
    assert!(!second.stdout.contains("update"), "{second:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_updates_max_age_in_place() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);
    let jetstream = env.jetstream().await;
    jetstream
        .publish("akira.orders.1", "kept".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let changed = DECLARATIONS.replace("max_age = \"7d\"", "max_age = \"14d\"");
    let run = env.apply("streams.toml", &changed, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.line_starting("update    stream ORDERS"),
        "update    stream ORDERS: max_age 7days -> 14days"
    );
    assert_eq!(run.last_line(), "applied 1 change");

    let mut orders = jetstream.get_stream("ORDERS").await.unwrap();
    let info = orders.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(14 * 86_400));
    assert_eq!(
        info.state.messages, 1,
        "an in-place update keeps the messages"
    );

    let again = env.apply("streams.toml", &changed, &[]);
    assert!(again.stdout.contains("no changes"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_updates_consumer_fields_in_place() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);

    let changed = DECLARATIONS
        .replace("max_ack_pending = 500", "max_ack_pending = 200")
        .replace("max_deliver = 5", "max_deliver = 6");
    let run = env.apply("streams.toml", &changed, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let line = run.line_starting("update    consumer ORDERS/orders-worker");
    assert!(line.contains("max_deliver 5 -> 6"), "{line}");
    assert!(line.contains("max_ack_pending 500 -> 200"), "{line}");

    let jetstream = env.jetstream().await;
    let orders = jetstream.get_stream("ORDERS").await.unwrap();
    let mut consumer = orders
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("orders-worker")
        .await
        .unwrap();
    let config = consumer.info().await.unwrap().config.clone();
    assert_eq!(config.max_deliver, 6);
    assert_eq!(config.max_ack_pending, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_change_is_rejected_before_any_change() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);

    // A mutable change in the same file must not be applied either.
    let changed = DECLARATIONS
        .replace("storage = \"file\"", "storage = \"memory\"")
        .replace("max_ack_pending = 500", "max_ack_pending = 200");
    let run = env.apply("streams.toml", &changed, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "", "nothing is printed as applied");
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "{run:?}");
    let error = errors[0];
    assert!(error.contains("stream ORDERS"), "{error}");
    assert!(error.contains("storage"), "{error}");
    assert!(error.contains("server: file"), "{error}");
    assert!(error.contains("declared: memory"), "{error}");
    assert!(error.contains("--recreate ORDERS"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");

    let jetstream = env.jetstream().await;
    let mut orders = jetstream.get_stream("ORDERS").await.unwrap();
    assert_eq!(
        orders.info().await.unwrap().config.storage,
        StorageType::File
    );
    let consumer = orders.consumer_info("orders-worker").await.unwrap();
    assert_eq!(consumer.config.max_ack_pending, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_immutable_fields_are_rejected() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);

    let cases = [
        (
            DECLARATIONS.replace("ack_policy = \"explicit\"", "ack_policy = \"all\""),
            "ack_policy",
            "server: explicit, declared: all",
        ),
        (
            DECLARATIONS.replace("deliver_policy = \"all\"", "deliver_policy = \"new\""),
            "deliver_policy",
            "server: all, declared: new",
        ),
        (
            DECLARATIONS.replace(
                "max_deliver = 5",
                "max_deliver = 5\ndeliver_subject = \"akira.deliver.orders-worker\"",
            ),
            "deliver_subject",
            "server: none (pull), declared: akira.deliver.orders-worker (push)",
        ),
    ];
    for (text, field, values) in cases {
        let run = env.apply("streams.toml", &text, &[]);
        assert_eq!(run.code, 1, "{field}: {run:?}");
        let error = run.error_lines().join("\n");
        assert!(error.contains("consumer ORDERS/orders-worker"), "{error}");
        assert!(error.contains(field), "{error}");
        assert!(error.contains(values), "{error}");
        assert!(error.contains("--recreate orders-worker"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recreate_rejects_stream_with_messages() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);
    let jetstream = env.jetstream().await;
    jetstream
        .publish("akira.orders.1", "one".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let memory = DECLARATIONS.replace("storage = \"file\"", "storage = \"memory\"");

    let refused = env.apply("streams.toml", &memory, &["--recreate", "ORDERS"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let error = refused.error_lines().join("\n");
    assert!(error.contains("contains 1 message;"), "{error}");
    assert!(error.contains("--force"), "{error}");
    let mut orders = jetstream.get_stream("ORDERS").await.unwrap();
    assert_eq!(orders.info().await.unwrap().state.messages, 1);

    let forced = env.apply(
        "streams.toml",
        &memory,
        &["--recreate", "ORDERS", "--force"],
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    let line = forced.line_starting("recreate  stream ORDERS");
    assert!(line.contains("storage file -> memory"), "{line}");
    forced.line_starting("create    consumer ORDERS/orders-worker");
    forced.line_starting("unchanged stream AKIRA_DLQ");

    let mut orders = jetstream.get_stream("ORDERS").await.unwrap();
    let info = orders.info().await.unwrap();
    assert_eq!(info.config.storage, StorageType::Memory);
    assert_eq!(info.state.messages, 0);
    assert!(orders.consumer_info("orders-worker").await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn recreate_consumer_changes_deliver_policy() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);
    let changed = DECLARATIONS.replace("deliver_policy = \"all\"", "deliver_policy = \"new\"");

    let run = env.apply(
        "streams.toml",
        &changed,
        &["--recreate", "ORDERS/orders-worker"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let line = run.line_starting("recreate  consumer ORDERS/orders-worker");
    assert!(line.contains("deliver_policy all -> new"), "{line}");
    run.line_starting("unchanged stream ORDERS");
    run.line_starting("unchanged consumer ORDERS/orders-push");

    let jetstream = env.jetstream().await;
    let orders = jetstream.get_stream("ORDERS").await.unwrap();
    let info = orders.consumer_info("orders-worker").await.unwrap();
    assert_eq!(
        info.config.deliver_policy,
        async_nats::jetstream::consumer::DeliverPolicy::New
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_exit_codes() {
    let env = Env::start();

    let pending = env.apply("streams.toml", DECLARATIONS, &["--dry-run"]);
    assert_eq!(pending.code, 2, "{pending:?}");
    pending.line_starting("create    stream ORDERS");
    assert_eq!(
        pending.last_line(),
        "dry run: 4 changes pending, nothing was changed"
    );
    let jetstream = env.jetstream().await;
    assert!(
        jetstream.get_stream("ORDERS").await.is_err(),
        "dry run created a stream"
    );
    assert!(
        jetstream.get_stream("AKIRA_DLQ").await.is_err(),
        "dry run created AKIRA_DLQ"
    );

    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);
    let in_sync = env.apply("streams.toml", DECLARATIONS, &["--dry-run"]);
    assert_eq!(in_sync.code, 0, "{in_sync:?}");
    assert!(in_sync.stdout.contains("no changes"), "{in_sync:?}");

    let changed = DECLARATIONS.replace("max_age = \"7d\"", "max_age = \"1d\"");
    let update = env.apply("streams.toml", &changed, &["--dry-run"]);
    assert_eq!(update.code, 2, "{update:?}");
    update.line_starting("update    stream ORDERS: max_age 7days -> 1day");
    let mut orders = jetstream.get_stream("ORDERS").await.unwrap();
    assert_eq!(
        orders.info().await.unwrap().config.max_age,
        Duration::from_secs(7 * 86_400),
        "dry run changed max_age"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_deletes_only_undeclared_objects() {
    let env = Env::start();
    let with_extra = format!(
        "{DECLARATIONS}\n[[streams]]\nname = \"LEGACY\"\nsubjects = [\"legacy.>\"]\n\n\
         [[consumers]]\ndurable_name = \"old-worker\"\nstream = \"ORDERS\"\n"
    );
    assert_eq!(env.apply("all.toml", &with_extra, &[]).code, 0);

    let kept = env.apply("streams.toml", DECLARATIONS, &[]);
    assert_eq!(kept.code, 0, "{kept:?}");
    kept.line_starting("keep      stream LEGACY (not declared; --prune deletes it)");
    kept.line_starting("keep      consumer ORDERS/old-worker (not declared; --prune deletes it)");
    let jetstream = env.jetstream().await;
    assert!(
        jetstream.get_stream("LEGACY").await.is_ok(),
        "deleted without --prune"
    );
    let orders = jetstream.get_stream("ORDERS").await.unwrap();
    assert!(
        orders.consumer_info("old-worker").await.is_ok(),
        "deleted without --prune"
    );

    let dry = env.apply("streams.toml", DECLARATIONS, &["--prune", "--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(
        jetstream.get_stream("LEGACY").await.is_ok(),
        "deleted by a dry run"
    );

    let pruned = env.apply("streams.toml", DECLARATIONS, &["--prune"]);
    assert_eq!(pruned.code, 0, "{pruned:?}");
    pruned.line_starting("delete    stream LEGACY");
    pruned.line_starting("delete    consumer ORDERS/old-worker");
    assert!(
        jetstream.get_stream("LEGACY").await.is_err(),
        "LEGACY was not pruned"
    );
    let orders = jetstream.get_stream("ORDERS").await.unwrap();
    assert!(
        orders.consumer_info("old-worker").await.is_err(),
        "old-worker was not pruned"
    );
    assert!(
        orders.consumer_info("orders-worker").await.is_ok(),
        "a declared consumer was pruned"
    );
    assert!(
        orders.consumer_info("orders-push").await.is_ok(),
        "a declared consumer was pruned"
    );
    assert!(
        jetstream.get_stream("AKIRA_DLQ").await.is_ok(),
        "AKIRA_DLQ was pruned"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_declarations_are_accepted() {
    let env = Env::start();
    let json = r#"{
        "streams": [{"name": "NOTIFY", "subjects": ["akira.notify.>"], "max_age": "1d"}],
        "consumers": [{"durable_name": "dispatcher", "stream": "NOTIFY", "ack_wait": "10s"}]
    }"#;
    let run = env.apply("streams.json", json, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    run.line_starting("create    stream NOTIFY");
    run.line_starting("create    consumer NOTIFY/dispatcher");
    let again = env.apply("streams.json", json, &[]);
    assert!(again.stdout.contains("no changes"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_waits_for_server_to_start() {
    let mut env = Env::start();
    let url = env.url();
    env.server.stop();
    let path = env.write("streams.toml", DECLARATIONS);

    let mut ctl = std::process::Command::new(support::CTL)
        .args(["apply", path.to_str().unwrap(), "--wait", "30s"])
        .env("NATS_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // The first stderr line reports that apply is waiting; only then does the server start.
    let stderr = ctl.stderr.take().unwrap();
    let (first_line, stderr) = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    })
    .await
    .unwrap();
    assert!(
        first_line.contains("waiting up to 30s for NATS JetStream"),
        "{first_line}"
    );
    assert!(first_line.contains(&url), "{first_line}");
    env.server.restart();

    let output = ctl.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut { stderr }, &mut rest).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {rest}"
    );
    assert!(stdout.contains("create    stream ORDERS"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_example_applies_cleanly() {
    let env = Env::start();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/streams.toml");

    let first = env.ctl(&["apply", path]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.stderr, "", "warnings for the example: {first:?}");
    for object in [
        "stream CDR",
        "stream NOTIFY",
        "stream JOBS",
        "stream AKIRA_DLQ",
        "consumer CDR/cdr-pipeline",
        "consumer NOTIFY/notification-dispatcher",
    ] {
        first.line_starting(&format!("create    {object}"));
    }

    let second = env.ctl(&["apply", path, "--dry-run"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.last_line().starts_with("no changes"), "{second:?}");

    let jetstream = env.jetstream().await;
    let notify = jetstream.get_stream("NOTIFY").await.unwrap();
    let dispatcher = notify
        .consumer_info("notification-dispatcher")
        .await
        .unwrap();
    assert_eq!(
        dispatcher.config.deliver_subject.as_deref(),
        Some("akira.deliver.notification-dispatcher")
    );
    assert_eq!(
        dispatcher.config.deliver_group.as_deref(),
        Some("notification-dispatcher")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_description_removes_it() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", DECLARATIONS, &[]).code, 0);
    let cleared = DECLARATIONS.replace(
        "description = \"orders from the shop\"",
        "description = \"\"",
    );

    let run = env.apply("streams.toml", &cleared, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.line_starting("update    stream ORDERS"),
        "update    stream ORDERS: description \"orders from the shop\" -> none"
    );
    let jetstream = env.jetstream().await;
    let mut orders = jetstream.get_stream("ORDERS").await.unwrap();
    assert_eq!(orders.info().await.unwrap().config.description, None);

    let again = env.apply("streams.toml", &cleared, &["--dry-run"]);
    assert_eq!(again.code, 0, "{again:?}");
}
