//! The NixOS VM tests of `tests/vm/`, run here with the real binaries and a test kit
//! nats-server, with the settings, declarations and `akira-workerctl` arguments the module
//! generates for each VM node (see `fixtures/module/`).
//!
//! Each test makes the assertions of its VM scenario in the same order. The test plays
//! systemd's part (restarting a worker, firing a timer, switching the configuration), and a
//! comment marks each spot, including the VM checks of systemd itself that have no
//! counterpart here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use akira_e2e::{
    http_get, metric_values, records, stored_message, wait_until, Machine, ModuleFixture, Record,
    Worker,
};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;

const SECOND: Duration = Duration::from_secs(1);

async fn stream_info(jetstream: &jetstream::Context, name: &str) -> stream::Info {
    let mut handle = jetstream
        .get_stream(name)
        .await
        .unwrap_or_else(|err| panic!("cannot open stream {name}: {err}"));
    handle
        .info()
        .await
        .unwrap_or_else(|err| panic!("cannot read stream {name}: {err}"))
        .clone()
}

async fn consumer_info(jetstream: &jetstream::Context, stream: &str, name: &str) -> consumer::Info {
    let handle = jetstream
        .get_stream(stream)
        .await
        .unwrap_or_else(|err| panic!("cannot open stream {stream}: {err}"));
    handle
        .consumer_info(name)
        .await
        .unwrap_or_else(|err| panic!("cannot read consumer {stream}/{name}: {err}"))
}

async fn dead_letter_count(jetstream: &jetstream::Context) -> u64 {
    stream_info(jetstream, "AKIRA_DLQ").await.state.messages
}

/// Waits until `condition` holds for the consumer's info, like `wait_for_json` on
/// `nats consumer info` in the VM tests.
async fn wait_for_consumer(
    jetstream: &jetstream::Context,
    stream: &str,
    name: &str,
    timeout: Duration,
    description: &str,
    condition: impl Fn(&consumer::Info) -> bool,
) {
    let reached = wait_until(timeout, || async {
        condition(&consumer_info(jetstream, stream, name).await)
    })
    .await;
    let info = consumer_info(jetstream, stream, name).await;
    assert!(
        reached,
        "consumer {stream}/{name}: {description} not reached within {timeout:?}; \
         delivered {}, ack floor {}, ack pending {}, pending {}",
        info.delivered.consumer_sequence,
        info.ack_floor.stream_sequence,
        info.num_ack_pending,
        info.num_pending
    );
}

async fn wait_for_stream_messages(
    jetstream: &jetstream::Context,
    stream: &str,
    messages: u64,
    timeout: Duration,
) {
    let reached = wait_until(timeout, || async {
        stream_info(jetstream, stream).await.state.messages == messages
    })
    .await;
    let found = stream_info(jetstream, stream).await.state.messages;
    assert!(
        reached,
        "stream {stream} holds {found} messages after {timeout:?}, expected {messages}"
    );
}

async fn publish(jetstream: &jetstream::Context, subject: &str, payload: &str) {
    jetstream
        .publish(subject.to_string(), payload.to_string().into())
        .await
        .unwrap_or_else(|err| panic!("cannot publish to {subject}: {err}"))
        .await
        .unwrap_or_else(|err| panic!("no PubAck for {subject}: {err}"));
}

async fn worker_metrics(worker: &Worker) -> String {
    let address = worker
        .metrics_address
        .as_deref()
        .expect("the worker serves metrics");
    match http_get(address, "/metrics").await {
        Some((200, body)) => body,
        other => panic!("GET http://{address}/metrics failed: {other:?}"),
    }
}

fn assert_fields(
    description: &str,
    actual: &std::collections::BTreeMap<String, String>,
    expected: &[(&str, &str)],
) {
    for (key, value) in expected {
        assert_eq!(
            actual.get(*key).map(String::as_str),
            Some(*value),
            "{description}: {key}; all fields: {actual:#?}"
        );
    }
}

/// Mirrors tests/vm/redelivery.nix: a handler that fails twice with a retryable error, then
/// succeeds. The message is delivered three times, acknowledged once, and never reaches the
/// dead-letter stream.
#[tokio::test(flavor = "multi_thread")]
async fn redelivery() {
    let fixture = ModuleFixture::load("redelivery");
    let machine = Machine::start();
    machine.provision(&fixture, &[]);
    let worker = machine.start_worker(&fixture, "akira-example");
    let jetstream = machine.jetstream().await;

    publish(&jetstream, "akira.test.redelivery", "redelivery test").await;
    wait_for_consumer(
        &jetstream,
        "TEST",
        "example",
        60 * SECOND,
        "ack floor 1",
        |info| info.ack_floor.stream_sequence == 1,
    )
    .await;

    let info = consumer_info(&jetstream, "TEST", "example").await;
    assert_eq!(
        info.delivered.consumer_sequence, 3,
        "expected 3 deliveries (2 failures, then success)"
    );
    assert_eq!(info.num_ack_pending, 0, "unacknowledged messages");
    assert_eq!(info.num_pending, 0, "undelivered messages");
    assert_eq!(
        dead_letter_count(&jetstream).await,
        0,
        "expected no dead letters"
    );

    let expected = vec![
        Record::new("akira.test.redelivery", 1, 1, "failed", "redelivery test"),
        Record::new("akira.test.redelivery", 1, 2, "failed", "redelivery test"),
        Record::new("akira.test.redelivery", 1, 3, "ok", "redelivery test"),
    ];
    assert_eq!(records(&machine.record_file()), expected);

    let metrics = worker_metrics(&worker).await;
    let example = ("worker", "example");
    assert_eq!(
        metric_values(&metrics, "akira_worker_redeliveries_total", &[example]),
        vec![2.0],
        "akira_worker_redeliveries_total"
    );
    assert_eq!(
        metric_values(
            &metrics,
            "akira_worker_messages_total",
            &[example, ("outcome", "retry")]
        ),
        vec![2.0],
        "akira_worker_messages_total for outcome retry"
    );
    assert_eq!(
        metric_values(
            &metrics,
            "akira_worker_messages_total",
            &[example, ("outcome", "ack")]
        ),
        vec![1.0],
        "akira_worker_messages_total for outcome ack"
    );
}

/// Mirrors tests/vm/dead-letter.nix: a poison message makes the worker exit on each delivery
/// until the sentinel dead-letters it after max_deliver deliveries. `akira-workerctl dlq
/// replay` then publishes it again on its original subject.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letter() {
    const MAX_DELIVER: u64 = 3;
    let fixture = ModuleFixture::load("dead-letter");
    let machine = Machine::start();
    machine.provision(&fixture, &[]);
    let _sentinel = machine.start_sentinel(&fixture);
    let mut worker = machine.start_worker(&fixture, "akira-example");
    let jetstream = machine.jetstream().await;

    let mut headers = HeaderMap::new();
    headers.insert("Akira-Correlation-Id", "dead-letter-test");
    jetstream
        .publish_with_headers("akira.test.poison", headers, "poison".into())
        .await
        .expect("publish the poison message")
        .await
        .expect("PubAck for the poison message");

    // systemd's part: Restart=always starts the worker again each time it exits.
    let mut exits = Vec::new();
    let reached = wait_until(120 * SECOND, || {
        if let Some(status) = worker.process.exit_status() {
            exits.push(status);
            worker = machine.start_worker(&fixture, "akira-example");
        }
        let jetstream = &jetstream;
        async move { dead_letter_count(jetstream).await == 1 }
    })
    .await;
    assert!(
        reached,
        "no dead letter after {} worker exits; worker stderr:\n{}",
        exits.len(),
        worker.process.stderr()
    );

    let letter = stored_message(&jetstream, "AKIRA_DLQ", 1).await;
    assert_eq!(
        letter.subject, "akira.dlq.TEST.example",
        "dead letter subject"
    );
    assert_eq!(letter.payload, b"poison", "dead letter payload");
    let deliveries = MAX_DELIVER.to_string();
    assert_fields(
        "dead-letter headers",
        &letter.headers,
        &[
            ("Akira-Dlq-Stream", "TEST"),
            ("Akira-Dlq-Consumer", "example"),
            ("Akira-Dlq-Subject", "akira.test.poison"),
            ("Akira-Dlq-Sequence", "1"),
            ("Akira-Dlq-Deliveries", deliveries.as_str()),
            ("Akira-Dlq-Reason", "max_deliver_advisory"),
            ("Akira-Correlation-Id", "dead-letter-test"),
            ("Nats-Msg-Id", "dlq:TEST:1"),
        ],
    );
    let sentinel_name = letter
        .headers
        .get("Akira-Dlq-Worker")
        .cloned()
        .unwrap_or_default();
    assert!(
        sentinel_name.starts_with("sentinel@"),
        "Akira-Dlq-Worker is {sentinel_name:?}, expected sentinel@<host>"
    );
    assert!(
        letter.headers.contains_key("Akira-Dlq-Failed-At"),
        "Akira-Dlq-Failed-At missing from {:?}",
        letter.headers.keys()
    );

    let info = consumer_info(&jetstream, "TEST", "example").await;
    assert_eq!(info.delivered.consumer_sequence, MAX_DELIVER, "deliveries");
    assert_eq!(
        exits.len() as u64,
        MAX_DELIVER,
        "the worker should exit on each of the {MAX_DELIVER} deliveries and be restarted; exits: {exits:?}"
    );
    assert!(
        exits.iter().all(|status| !status.success()),
        "the worker exited successfully on a poison delivery: {exits:?}"
    );
    assert_eq!(
        records(&machine.record_file()),
        vec![],
        "the poison message was settled"
    );

    // With the worker stopped the replayed message stays in TEST to be inspected.
    worker.process.stop(30 * SECOND);
    let replay = machine.workerctl(&["dlq", "replay", "1"].map(String::from));
    let output = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "akira-workerctl dlq replay 1 failed; stderr:\n{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(
        output.contains("replayed 1 to akira.test.poison"),
        "unexpected replay output: {output}"
    );
    wait_for_stream_messages(&jetstream, "TEST", 2, 30 * SECOND).await;

    let replayed = stored_message(&jetstream, "TEST", 2).await;
    assert_eq!(replayed.subject, "akira.test.poison", "replay subject");
    assert_eq!(replayed.payload, b"poison", "replayed payload");
    assert_fields(
        "replay headers",
        &replayed.headers,
        &[
            ("Nats-Msg-Id", "replay:1"),
            ("Akira-Correlation-Id", "dead-letter-test"),
        ],
    );
    let leftover: Vec<&String> = replayed
        .headers
        .keys()
        .filter(|name| name.starts_with("Akira-Dlq-"))
        .collect();
    assert!(
        leftover.is_empty(),
        "the replay kept dead-letter headers: {leftover:?}"
    );
    assert_eq!(
        dead_letter_count(&jetstream).await,
        0,
        "the replayed dead letter is still in AKIRA_DLQ"
    );
}

/// Mirrors tests/vm/restart.nix: the pull worker is killed with SIGKILL while fetched
/// messages are unacknowledged. It is started again, the server redelivers those messages
/// after ack_wait, and every message is handled and acknowledged in the end.
#[tokio::test(flavor = "multi_thread")]
async fn restart() {
    const MESSAGES: u64 = 200;
    let fixture = ModuleFixture::load("restart");
    let machine = Machine::start();
    machine.provision(&fixture, &[]);
    let mut worker = machine.start_worker(&fixture, "akira-example");
    let jetstream = machine.jetstream().await;

    for _ in 0..MESSAGES {
        publish(&jetstream, "akira.test.restart", "restart test").await;
    }
    wait_for_stream_messages(&jetstream, "TEST", MESSAGES, 60 * SECOND).await;
    let record_file = machine.record_file();
    assert!(
        wait_until(60 * SECOND, || async { records(&record_file).len() >= 10 }).await,
        "fewer than 10 messages handled after 60s; worker stderr:\n{}",
        worker.process.stderr()
    );
    wait_for_consumer(
        &jetstream,
        "TEST",
        "example",
        30 * SECOND,
        "ack pending > 0",
        |info| info.num_ack_pending > 0,
    )
    .await;

    // systemd's part: Restart=always starts the worker again after the SIGKILL.
    worker.process.signal("KILL");
    let killed = worker.process.wait_timeout(10 * SECOND);
    assert!(killed.is_some(), "the worker survived SIGKILL");
    let _restarted = machine.start_worker(&fixture, "akira-example");

    wait_for_consumer(
        &jetstream,
        "TEST",
        "example",
        180 * SECOND,
        "every message acknowledged",
        |info| {
            info.ack_floor.stream_sequence == MESSAGES
                && info.num_ack_pending == 0
                && info.num_pending == 0
        },
    )
    .await;
    let info = consumer_info(&jetstream, "TEST", "example").await;
    assert!(
        info.delivered.consumer_sequence > MESSAGES,
        "expected redeliveries of the messages the killed process held, got {} deliveries",
        info.delivered.consumer_sequence
    );
    assert_eq!(
        dead_letter_count(&jetstream).await,
        0,
        "expected no dead letters"
    );

    let handled = records(&record_file);
    let succeeded: std::collections::BTreeSet<u64> = handled
        .iter()
        .filter(|record| record.result == "ok")
        .map(|record| record.sequence)
        .collect();
    let missing: Vec<u64> = (1..=MESSAGES)
        .filter(|sequence| !succeeded.contains(sequence))
        .collect();
    assert_eq!(
        missing,
        Vec::<u64>::new(),
        "stream sequences never handled successfully"
    );
    assert!(
        handled.iter().any(|record| record.delivered > 1),
        "no message was handled on a second delivery after the kill"
    );
}

/// Mirrors tests/vm/timer.nix: the retention job deletes the rows older than max_age from a
/// PostgreSQL table and writes its akira_job_* metrics to the node exporter's textfile
/// directory.
#[tokio::test(flavor = "multi_thread")]
async fn timer() {
    // Three rows older than max_age (30 days) and two recent ones.
    const SETUP_SQL: &str = "CREATE TABLE retention_test (id integer PRIMARY KEY, created_at timestamptz NOT NULL);\
         INSERT INTO retention_test SELECT i, now() - interval '60 days' FROM generate_series(1, 3) AS i;\
         INSERT INTO retention_test SELECT i, now() FROM generate_series(4, 5) AS i;";
    let fixture = ModuleFixture::load("timer");
    let machine = Machine::start_with_postgres();
    let textfile = machine.textfile_directory().join("audit-retention.prom");

    machine.sql(SETUP_SQL);
    machine.sql("ALTER TABLE retention_test OWNER TO akira");

    // systemd's part: the timer starts the oneshot service. The VM test's checks that the
    // timer fired (LastTriggerUSec) have no counterpart here.
    let mut job = machine.start_worker(&fixture, "akira-audit-retention");
    let status = job
        .process
        .wait_timeout(60 * SECOND)
        .expect("the job did not finish within 60s");
    assert!(
        status.success(),
        "the run ended with {status}; stderr:\n{}",
        job.process.stderr()
    );

    let output = job.process.stdout();
    assert!(
        output.contains("deleted 3 rows from retention_test"),
        "no deletion reported:\n{output}"
    );
    let old_rows = machine
        .sql("SELECT count(*) FROM retention_test WHERE created_at < now() - interval '30 days'");
    assert_eq!(old_rows, "0", "rows older than 30 days remain");
    let rows = machine.sql("SELECT count(*) FROM retention_test");
    assert_eq!(rows, "2", "expected the 2 recent rows to remain");

    let metrics = std::fs::read_to_string(&textfile)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", textfile.display()));
    let worker = ("worker", "audit-retention");
    let runs = metric_values(
        &metrics,
        "akira_job_runs_total",
        &[worker, ("outcome", "success")],
    );
    assert!(
        runs.first().is_some_and(|&runs| runs >= 1.0),
        "expected at least one successful run, got {runs:?}"
    );
    let failures = metric_values(
        &metrics,
        "akira_job_runs_total",
        &[worker, ("outcome", "failure")],
    );
    assert_eq!(failures, vec![0.0], "expected no failed run");
    let last_success = metric_values(
        &metrics,
        "akira_job_last_success_timestamp_seconds",
        &[worker],
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        last_success.len() == 1 && now - 600.0 < last_success[0] && last_success[0] <= now + 1.0,
        "akira_job_last_success_timestamp_seconds {last_success:?} is not recent (now {now})"
    );
    assert!(
        metrics.contains("akira_job_duration_seconds"),
        "akira_job_duration_seconds missing from the textfile:\n{metrics}"
    );

    // The node exporter runs as another user and must be able to read the file.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&textfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "textfile mode {mode:o}, expected 644");
}

/// Mirrors tests/vm/provision.nix: `akira-workerctl apply` with the module's declarations
/// creates the streams and the consumer, and applying the declarations of the changed
/// specialisation updates them. The worker starts against the consumer before and after.
#[tokio::test(flavor = "multi_thread")]
async fn provision() {
    let fixture = ModuleFixture::load("provision");
    let changed = fixture.specialisation("changed");
    let machine = Machine::start();
    let jetstream = machine.jetstream().await;

    // The VM test's check that provisioning is ordered after nats.service is systemd's part.
    machine.provision(&fixture, &[]);

    let dlq = stream_info(&jetstream, "AKIRA_DLQ").await.config;
    assert_eq!(
        dlq.subjects,
        vec!["akira.dlq.>".to_string()],
        "AKIRA_DLQ subjects"
    );
    assert_eq!(
        dlq.retention,
        stream::RetentionPolicy::Limits,
        "AKIRA_DLQ retention"
    );
    assert_eq!(dlq.storage, stream::StorageType::File, "AKIRA_DLQ storage");
    assert_eq!(dlq.max_age, 30 * 24 * 3600 * SECOND, "AKIRA_DLQ max_age");
    assert_eq!(
        dlq.duplicate_window,
        120 * SECOND,
        "AKIRA_DLQ duplicate_window"
    );
    assert_eq!(dlq.num_replicas, 1, "AKIRA_DLQ num_replicas");
    let test = stream_info(&jetstream, "TEST").await.config;
    assert_eq!(
        test.subjects,
        vec!["akira.test.>".to_string()],
        "TEST subjects"
    );
    assert_eq!(test.max_age, 3600 * SECOND, "TEST max_age");
    let consumer = consumer_info(&jetstream, "TEST", "example").await.config;
    assert_eq!(
        consumer.durable_name.as_deref(),
        Some("example"),
        "durable_name"
    );
    assert_eq!(consumer.filter_subject, "akira.test.>", "filter_subject");
    assert_eq!(
        consumer.ack_policy,
        consumer::AckPolicy::Explicit,
        "ack_policy"
    );
    assert_eq!(consumer.ack_wait, 5 * SECOND, "ack_wait");
    assert_eq!(consumer.max_deliver, 5, "max_deliver");
    assert_eq!(consumer.backoff, vec![5 * SECOND; 4], "backoff");
    assert_eq!(consumer.max_ack_pending, 100, "max_ack_pending");

    let mut worker = machine.start_worker(&fixture, "akira-example");
    publish(&jetstream, "akira.test.before", "before the switch").await;
    wait_for_consumer(
        &jetstream,
        "TEST",
        "example",
        60 * SECOND,
        "ack floor 1",
        |info| info.ack_floor.stream_sequence == 1,
    )
    .await;

    // systemd's part of the switch: the worker, whose settings changed, is stopped, the
    // provisioning unit's ExecReload= applies the new declarations with the same command
    // line, and the worker starts again with its new settings. Only the VM test checks that
    // the unit is reloaded rather than restarted.
    worker.process.stop(30 * SECOND);
    machine.provision(&changed, &[]);

    let test = stream_info(&jetstream, "TEST").await.config;
    assert_eq!(
        test.max_age,
        2 * 3600 * SECOND,
        "TEST max_age after the switch"
    );
    let consumer = consumer_info(&jetstream, "TEST", "example").await.config;
    assert_eq!(
        consumer.max_ack_pending, 50,
        "max_ack_pending after the switch"
    );
    assert_eq!(
        consumer.backoff,
        vec![5 * SECOND; 4],
        "backoff after the switch"
    );

    // A second apply of the same declarations finds nothing to change.
    machine.provision(&changed, &["--dry-run"]);

    let _worker = machine.start_worker(&changed, "akira-example");
    publish(&jetstream, "akira.test.after", "after the switch").await;
    wait_for_consumer(
        &jetstream,
        "TEST",
        "example",
        60 * SECOND,
        "ack floor 2",
        |info| info.ack_floor.stream_sequence == 2,
    )
    .await;
    let handled: Vec<(String, String)> = records(&machine.record_file())
        .into_iter()
        .map(|record| (record.subject, record.result))
        .collect();
    let expected = vec![
        ("akira.test.before".to_string(), "ok".to_string()),
        ("akira.test.after".to_string(), "ok".to_string()),
    ];
    assert_eq!(handled, expected, "messages the worker handled");
}
