//! `akira-workerctl dlq list|show|purge|replay` and `status` on a dead-letter stream filled
//! by failing workers.

mod support;

use akira_testkit::wait_for;
use akira_workers::dlq::{DeadLetter, Reason};
use async_nats::header::HeaderMap;
use serde_json::Value;
use support::{subject_count, Env, TestWorker, DEADLINE};

/// Streams and consumers that match the test worker's settings: ack_wait 1s, max_deliver 3,
/// and the backoff the library derives from base 100ms and cap 1s.
const DECLARATIONS: &str = r#"
[[streams]]
name = "ORDERS"
subjects = ["akira.orders.>"]

[[streams]]
name = "PAYMENTS"
subjects = ["akira.payments.>"]

[[consumers]]
durable_name = "orders-worker"
stream = "ORDERS"
filter_subject = "akira.orders.>"
ack_policy = "explicit"
ack_wait = "1s"
max_deliver = 3
backoff = ["1s", "1s"]
max_ack_pending = 100

[[consumers]]
durable_name = "payments-worker"
stream = "PAYMENTS"
filter_subject = "akira.payments.>"
ack_policy = "explicit"
ack_wait = "1s"
max_deliver = 3
backoff = ["1s", "1s"]
max_ack_pending = 100
"#;

const BINARY: &[u8] = &[0x00, 0xff, 0x10, b'A', 0x7f];

fn setup() -> Env {
    let env = Env::start();
    let run = env.apply("streams.toml", DECLARATIONS, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    env
}

async fn dlq_count(env: &Env, subject: &str) -> usize {
    subject_count(&env.jetstream().await, "AKIRA_DLQ", subject).await
}

/// Waits until `count` dead letters are on `subject`, then stops the worker.
async fn wait_for_dead_letters(env: &Env, worker: TestWorker, subject: &str, count: usize) {
    let what = format!("{count} dead letters on {subject}");
    wait_for(&what, DEADLINE, || async {
        dlq_count(env, subject).await >= count
    })
    .await;
    let log = worker.log_text();
    drop(worker);
    assert_eq!(dlq_count(env, subject).await, count, "worker log:\n{log}");
}

/// Publishes three orders (JSON, binary, text with a header) that a `fail` worker dead-letters
/// with reason max_deliver, and one payment that a `permanent` worker dead-letters with reason
/// permanent. Returns the DLQ listing as JSON.
async fn fill_dead_letters(env: &Env) -> Vec<Value> {
    let jetstream = env.jetstream().await;
    let mut headers = HeaderMap::new();
    headers.insert("X-Trace", "trace-1");
    headers.insert("Akira-Correlation-Id", "corr-1");
    jetstream
        .publish(
            "akira.orders.json",
            r#"{"order":1,"items":["a","b"]}"#.into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    jetstream
        .publish("akira.orders.binary", BINARY.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    jetstream
        .publish_with_headers("akira.orders.text", headers, "plain text order".into())
        .await
        .unwrap()
        .await
        .unwrap();
    jetstream
        .publish("akira.payments.card", "declined".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let orders = env.start_worker("ORDERS", "orders-worker", "akira.orders.>", "fail");
    wait_for_dead_letters(env, orders, "akira.dlq.ORDERS.orders-worker", 3).await;
    let payments = env.start_worker(
        "PAYMENTS",
        "payments-worker",
        "akira.payments.>",
        "permanent",
    );
    wait_for_dead_letters(env, payments, "akira.dlq.PAYMENTS.payments-worker", 1).await;

    let run = env.ctl(&["dlq", "list", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let listing: Value = serde_json::from_str(&run.stdout).unwrap();
    listing.as_array().unwrap().clone()
}

fn find<'a>(listing: &'a [Value], subject: &str) -> &'a Value {
    listing
        .iter()
        .find(|entry| entry["subject"] == subject)
        .unwrap_or_else(|| panic!("no dead letter for {subject} in {listing:#?}"))
}

fn sequence_of(listing: &[Value], subject: &str) -> String {
    find(listing, subject)["dlq_sequence"]
        .as_u64()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_dead_letters_of_failing_workers() {
    let env = setup();
    let listing = fill_dead_letters(&env).await;
    assert_eq!(listing.len(), 4, "{listing:#?}");

    let text_order = find(&listing, "akira.orders.text");
    assert_eq!(text_order["stream"], "ORDERS");
    assert_eq!(text_order["consumer"], "orders-worker");
    assert_eq!(text_order["sequence"], 3);
    assert_eq!(text_order["deliveries"], 3);
    assert_eq!(text_order["reason"], "max_deliver");
    assert_eq!(
        text_order["error"],
        "downstream unavailable for akira.orders.text"
    );
    assert!(text_order["worker"]
        .as_str()
        .unwrap()
        .starts_with("orders-worker@"));
    assert!(text_order["time"].as_str().unwrap().ends_with('Z'));
    let payment = find(&listing, "akira.payments.card");
    assert_eq!(payment["reason"], "permanent");
    assert_eq!(payment["deliveries"], 1);
    assert_eq!(payment["error"], "payload rejected");

    let table = env.ctl(&["dlq", "list"]);
    assert_eq!(table.code, 0, "{table:?}");
    let header = table.lines()[0];
    for column in [
        "SEQ",
        "TIME",
        "SOURCE",
        "SUBJECT",
        "DELIVERIES",
        "REASON",
        "ERROR",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert_eq!(table.lines().len(), 5, "{}", table.stdout);
    let row = table
        .lines()
        .into_iter()
        .find(|line| line.contains("akira.orders.text"))
        .unwrap();
    assert!(row.contains("ORDERS/orders-worker"), "{row}");
    assert!(row.contains(" 3 "), "{row}");
    assert!(row.contains("max_deliver"), "{row}");
    assert!(
        row.ends_with("downstream unavailable for akira.orders.text"),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_select_dead_letters() {
    let env = setup();
    fill_dead_letters(&env).await;

    let cases: [(&[&str], usize); 8] = [
        (&["--stream", "ORDERS"], 3),
        (&["--stream", "PAYMENTS"], 1),
        (&["--consumer", "orders-worker"], 3),
        (&["--stream", "ORDERS", "--consumer", "payments-worker"], 0),
        (&["--reason", "permanent"], 1),
        (&["--reason", "max_deliver_advisory"], 0),
        (&["--since", "1h"], 4),
        (&["--since", "2999-01-01T00:00:00Z"], 0),
    ];
    for (filters, expected) in cases {
        let mut args = vec!["dlq", "list", "--json"];
        args.extend_from_slice(filters);
        let run = env.ctl(&args);
        assert_eq!(run.code, 0, "{filters:?}: {run:?}");
        let listing: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            listing.as_array().unwrap().len(),
            expected,
            "{filters:?}: {listing:#}"
        );
    }

    let none = env.ctl(&["dlq", "list", "--reason", "invalid_record"]);
    assert_eq!(none.code, 0, "{none:?}");
    assert_eq!(none.stdout.trim(), "no dead letters match");

    let bad = env.ctl(&["dlq", "list", "--reason", "crashed"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("\"crashed\""), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_headers_and_payload_forms() {
    let env = setup();
    let listing = fill_dead_letters(&env).await;

    let json = env.ctl(&["dlq", "show", &sequence_of(&listing, "akira.orders.json")]);
    assert_eq!(json.code, 0, "{json:?}");
    assert!(
        json.stdout.contains("  Akira-Dlq-Reason: max_deliver\n"),
        "{}",
        json.stdout
    );
    assert!(
        json.stdout.contains("  Akira-Dlq-Stream: ORDERS\n"),
        "{}",
        json.stdout
    );
    assert!(
        json.stdout
            .contains("  Akira-Dlq-Subject: akira.orders.json\n"),
        "{}",
        json.stdout
    );
    assert!(
        json.stdout.contains("  Nats-Msg-Id: dlq:ORDERS:1\n"),
        "{}",
        json.stdout
    );
    assert!(
        json.stdout
            .contains("payload (JSON, 29 bytes):\n{\n  \"items\": [\n"),
        "{}",
        json.stdout
    );

    let text = env.ctl(&["dlq", "show", &sequence_of(&listing, "akira.orders.text")]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("  X-Trace: trace-1\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("  Akira-Correlation-Id: corr-1\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("payload (text, 16 bytes):\nplain text order\n"),
        "{}",
        text.stdout
    );

    let binary_sequence = sequence_of(&listing, "akira.orders.binary");
    let binary = env.ctl(&["dlq", "show", &binary_sequence]);
    assert_eq!(binary.code, 0, "{binary:?}");
    assert!(
        binary
            .stdout
            .contains("payload (binary, 5 bytes):\n00000000  00 ff 10 41 7f"),
        "{}",
        binary.stdout
    );
    assert!(binary.stdout.contains("|...A.|"), "{}", binary.stdout);

    let raw = env.ctl(&["dlq", "show", &binary_sequence, "--raw"]);
    assert_eq!(raw.code, 0, "{raw:?}");
    assert_eq!(raw.stdout_bytes, BINARY);

    let as_json = env.ctl(&["dlq", "show", &binary_sequence, "--json"]);
    let value: Value = serde_json::from_str(&as_json.stdout).unwrap();
    assert_eq!(value["payload_hex"], "00ff10417f");
    assert_eq!(value["headers"]["Akira-Dlq-Reason"][0], "max_deliver");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_needs_confirmation_and_deletes_selected() {
    let env = setup();
    let listing = fill_dead_letters(&env).await;
    let json_sequence = sequence_of(&listing, "akira.orders.json");

    let unconfirmed = env.ctl(&["dlq", "purge", &json_sequence]);
    assert_eq!(unconfirmed.code, 1, "{unconfirmed:?}");
    assert!(unconfirmed.stderr.contains("pass --yes"), "{unconfirmed:?}");
    assert_eq!(
        dlq_count(&env, "akira.dlq.>").await,
        4,
        "deleted without confirmation"
    );

    let nothing_named = env.ctl(&["dlq", "purge", "--yes"]);
    assert_eq!(nothing_named.code, 1, "{nothing_named:?}");
    assert_eq!(dlq_count(&env, "akira.dlq.>").await, 4);

    let one = env.ctl(&["dlq", "purge", &json_sequence, "--yes"]);
    assert_eq!(one.code, 0, "{one:?}");
    assert_eq!(one.last_line(), "deleted 1 of 1 dead letter from AKIRA_DLQ");
    assert_eq!(dlq_count(&env, "akira.dlq.>").await, 3);

    let too_young = env.ctl(&["dlq", "purge", "--older-than", "14d", "--yes"]);
    assert_eq!(too_young.code, 0, "{too_young:?}");
    assert_eq!(
        too_young.last_line(),
        "no dead letters match; nothing to purge"
    );
    assert_eq!(dlq_count(&env, "akira.dlq.>").await, 3);

    let by_reason = env.ctl(&["dlq", "purge", "--reason", "permanent", "--yes"]);
    assert_eq!(by_reason.code, 0, "{by_reason:?}");
    assert_eq!(dlq_count(&env, "akira.dlq.PAYMENTS.>").await, 0);
    assert_eq!(dlq_count(&env, "akira.dlq.ORDERS.>").await, 2);

    let older = env.ctl(&[
        "dlq",
        "purge",
        "--older-than",
        "0s",
        "--stream",
        "ORDERS",
        "--yes",
    ]);
    assert_eq!(older.code, 0, "{older:?}");
    assert_eq!(
        older.last_line(),
        "deleted 2 of 2 dead letters from AKIRA_DLQ"
    );
    assert_eq!(dlq_count(&env, "akira.dlq.>").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_dead_letter_depth() {
    let env = setup();
    fill_dead_letters(&env).await;

    let table = env.ctl(&["status"]);
    assert_eq!(table.code, 0, "{table:?}");
    let orders = table.line_starting("ORDERS ");
    let columns: Vec<&str> = orders.split_whitespace().collect();
    assert_eq!(columns[1], "3", "messages: {orders}");
    assert_eq!(columns[3], "1", "first sequence: {orders}");
    assert_eq!(columns[4], "3", "last sequence: {orders}");
    let depth_rows: Vec<Vec<&str>> = table
        .lines()
        .into_iter()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|columns| columns.len() == 2 && columns[0].contains('/'))
        .collect();
    assert!(
        depth_rows.contains(&vec!["ORDERS/orders-worker", "3"]),
        "{}",
        table.stdout
    );
    assert!(
        depth_rows.contains(&vec!["PAYMENTS/payments-worker", "1"]),
        "{}",
        table.stdout
    );

    let run = env.ctl(&["status", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let status: Value = serde_json::from_str(&run.stdout).unwrap();
    let depth = status["dead_letters"].as_array().unwrap();
    assert_eq!(depth.len(), 2, "{depth:#?}");
    assert!(depth.contains(
        &serde_json::json!({"stream": "ORDERS", "consumer": "orders-worker", "messages": 3})
    ));
    assert!(depth.contains(
        &serde_json::json!({"stream": "PAYMENTS", "consumer": "payments-worker", "messages": 1})
    ));
    let consumer = status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|consumer| consumer["name"] == "orders-worker")
        .unwrap();
    assert_eq!(consumer["pending"], 0);
    assert_eq!(consumer["awaiting_ack"], 0);
    assert!(consumer["redelivered"].as_u64().is_some());
    assert!(consumer["last_activity"].as_str().is_some(), "{consumer:#}");
    let dlq = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stream| stream["name"] == "AKIRA_DLQ")
        .unwrap();
    assert_eq!(dlq["messages"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_returns_message_to_succeeding_worker() {
    let env = setup();
    let jetstream = env.jetstream().await;
    let mut headers = HeaderMap::new();
    headers.insert("X-Trace", "trace-7");
    jetstream
        .publish_with_headers("akira.orders.7", headers, "order seven".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let failing = env.start_worker("ORDERS", "orders-worker", "akira.orders.>", "fail");
    wait_for_dead_letters(&env, failing, "akira.dlq.ORDERS.orders-worker", 1).await;
    let listing: Value = serde_json::from_str(&env.ctl(&["dlq", "list", "--json"]).stdout).unwrap();
    let sequence = listing[0]["dlq_sequence"].as_u64().unwrap().to_string();

    let dry = env.ctl(&["dlq", "replay", &sequence, "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(
        dry.lines()[0],
        format!("would replay {sequence} to akira.orders.7")
    );
    assert_eq!(
        dlq_count(&env, "akira.dlq.>").await,
        1,
        "dry run deleted the dead letter"
    );

    let run = env.ctl(&["dlq", "replay", &sequence]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.lines()[0],
        format!("replayed {sequence} to akira.orders.7 (stream ORDERS sequence 2)")
    );
    assert_eq!(run.last_line(), "replayed 1 of 1 dead letter");
    assert_eq!(
        dlq_count(&env, "akira.dlq.>").await,
        0,
        "the dead letter is still in AKIRA_DLQ"
    );

    let orders = jetstream.get_stream("ORDERS").await.unwrap();
    let replayed = orders.get_raw_message(2).await.unwrap();
    assert_eq!(replayed.subject.as_str(), "akira.orders.7");
    assert_eq!(replayed.payload.as_ref(), b"order seven");
    let replay_id = format!("replay:{sequence}");
    assert_eq!(
        replayed.headers.get("Nats-Msg-Id").unwrap().as_str(),
        replay_id
    );
    assert_eq!(replayed.headers.get("X-Trace").unwrap().as_str(), "trace-7");
    for (name, _) in replayed.headers.iter() {
        let name: &str = name.as_ref();
        assert!(!name.starts_with("Akira-Dlq-"), "replay kept header {name}");
    }

    let succeeding = env.start_worker("ORDERS", "orders-worker", "akira.orders.>", "ok");
    wait_for(
        "the worker to process the replayed message",
        DEADLINE,
        || async {
            succeeding
                .records()
                .iter()
                .any(|line| line == "akira.orders.7 order seven")
        },
    )
    .await;
    wait_for("the consumer to ack the replayed message", DEADLINE, || {
        let orders = orders.clone();
        async move {
            let info = orders.consumer_info("orders-worker").await.unwrap();
            info.ack_floor.stream_sequence == 2 && info.num_ack_pending == 0
        }
    })
    .await;
    assert_eq!(dlq_count(&env, "akira.dlq.>").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_partial_failure_keeps_unpublished() {
    let env = setup();
    let jetstream = env.jetstream().await;

    // One dead letter whose original subject still has a stream, one whose has none.
    for (subject, sequence) in [("akira.orders.1", 1), ("akira.gone.1", 2)] {
        let letter = DeadLetter {
            stream: "ORDERS".to_string(),
            consumer: "orders-worker".to_string(),
            subject: subject.to_string(),
            sequence,
            deliveries: 3,
            reason: Reason::MaxDeliver,
            error: "boom".to_string(),
            worker: "orders-worker@test".to_string(),
            failed_at: time::OffsetDateTime::now_utc(),
        };
        letter
            .publish(&jetstream, None, "payload".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let run = env.ctl(&["dlq", "replay", "--all", "--stream", "ORDERS"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.lines()[0],
        "replayed 1 to akira.orders.1 (stream ORDERS sequence 1)"
    );
    assert!(
        run.lines()[1].starts_with("not replayed 2: "),
        "{}",
        run.stdout
    );
    assert!(run.lines()[1].contains("akira.gone.1"), "{}", run.stdout);
    assert_eq!(run.last_line(), "replayed 1 of 2 dead letters");
    let error = run.error_lines();
    assert_eq!(
        error,
        vec!["error: not replayed, still in AKIRA_DLQ: 1 dead letter (2)"]
    );

    let left: Value = serde_json::from_str(&env.ctl(&["dlq", "list", "--json"]).stdout).unwrap();
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["dlq_sequence"], 2);

    let redirected = env.ctl(&["dlq", "replay", "2", "--to", "akira.orders.redirected"]);
    assert_eq!(redirected.code, 0, "{redirected:?}");
    assert_eq!(
        redirected.lines()[0],
        "replayed 2 to akira.orders.redirected (stream ORDERS sequence 2)"
    );
    assert_eq!(dlq_count(&env, "akira.dlq.>").await, 0);
}
