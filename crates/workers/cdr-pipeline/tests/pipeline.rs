//! The pipeline as a process against a real nats-server and PostgreSQL.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use akira_testkit::{NatsServer, Postgres};
use sha2::{Digest, Sha256};
use support::*;

const WAIT: Duration = Duration::from_secs(90);

/// Returns a transaction record with its own callid, shaped like the sample's.
fn crafted_record(callid: &str) -> Vec<u8> {
    format!(
        "{{\"time\": 1796413782, \"method\": \"INVITE\", \"from_tag\": \"t1\", \"to_tag\": \"t2\", \"callid\": \"{callid}\", \"sip_code\": \"200\", \"sip_reason\": \"OK\", \"src_user\": \"+390200000001\"}}"
    )
    .into_bytes()
}

async fn start_pipeline(
    dir: &std::path::Path,
    nats: &NatsServer,
    postgres: &Postgres,
    metrics_listen: &str,
) -> (WorkerProcess, async_nats::jetstream::Context) {
    let config = write_pipeline_config(dir, &nats.url(), &postgres.url(), metrics_listen);
    let pipeline = start_worker(&pipeline_binary(), &config);
    let js = connect_nats(&nats.url()).await;
    let up = wait_until(WAIT, || consumer_exists(&js)).await;
    assert!(
        up,
        "the pipeline did not create its consumer:\n{}",
        pipeline.log()
    );
    (pipeline, js)
}

#[tokio::test]
async fn sample_lands_once_through_bridge() {
    let nats = NatsServer::start();
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, js) = start_pipeline(dir.path(), &nats, &postgres, "").await;

    let mut content = std::fs::read(repository_file("examples/data/kamailio-acc.jsonl")).unwrap();
    let sample_lines = lines_of(&content);
    content.extend(
        std::fs::read(repository_file(
            "examples/data/edge-cases/kamailio-flatstore-cdr-bad-duration.txt",
        ))
        .unwrap(),
    );
    content.extend(
        std::fs::read(repository_file(
            "examples/data/edge-cases/sip-user-agent-padding.jsonl",
        ))
        .unwrap(),
    );
    let all_lines = lines_of(&content);
    let distinct: HashSet<Vec<u8>> = sample_lines
        .iter()
        .map(|line| Sha256::digest(line).to_vec())
        .collect();
    assert_eq!(sample_lines.len(), 940);
    assert_eq!(
        distinct.len(),
        790,
        "150 failed INVITEs are written twice, byte for byte"
    );

    // The bridge tails the file while it grows 20 lines at a time, and is killed with
    // SIGKILL partway through, then started again.
    let input = dir.path().join("acc.jsonl");
    std::fs::write(&input, b"").unwrap();
    let writer_input = input.clone();
    let writer_lines = all_lines.clone();
    let writer = std::thread::spawn(move || {
        for chunk in writer_lines.chunks(20) {
            let mut bytes = Vec::new();
            for line in chunk {
                bytes.extend_from_slice(line);
                bytes.push(b'\n');
            }
            append(&writer_input, &bytes);
            std::thread::sleep(Duration::from_millis(25));
        }
    });
    let bridge_config = write_bridge_config(dir.path(), &nats.url(), &input);
    let mut bridge = start_worker(&bridge_binary(), &bridge_config);
    let partway = wait_until(WAIT, || async { message_count(&js, "CDR").await >= 300 }).await;
    assert!(partway, "the bridge did not publish:\n{}", bridge.log());
    bridge.kill();
    assert!(
        (message_count(&js, "CDR").await as usize) < sample_lines.len(),
        "the bridge was killed after the whole file; the test proves nothing"
    );
    let bridge = start_worker(&bridge_binary(), &bridge_config);
    writer.join().unwrap();

    // 940 sample lines and the padded user agent in CDR; the two flatstore lines in AKIRA_DLQ
    // from the bridge, the user agent line from the pipeline.
    let settled = wait_until(WAIT, || async {
        message_count(&js, "CDR").await == 941
            && message_count(&js, "AKIRA_DLQ").await == 3
            && row_count(&postgres.url()).await == Some(790)
    })
    .await;
    assert!(
        settled,
        "CDR {} AKIRA_DLQ {} rows {:?}\nbridge:\n{}\npipeline:\n{}",
        message_count(&js, "CDR").await,
        message_count(&js, "AKIRA_DLQ").await,
        row_count(&postgres.url()).await,
        bridge.log(),
        pipeline.log()
    );

    let mut db = connect_postgres(&postgres.url()).await;
    let stored: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT record_sha256 FROM cdr_events")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let stored: HashSet<Vec<u8>> = stored.into_iter().map(|(key,)| key).collect();
    assert_eq!(stored, distinct, "every distinct sample line is one row");

    let kinds: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM cdr_events GROUP BY kind ORDER BY kind")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(kinds, [("acc".to_string(), 490), ("cdr".to_string(), 300)]);

    let dead = messages(&js, "AKIRA_DLQ").await;
    let bridge_dead: Vec<_> = dead
        .iter()
        .filter(|m| m.subject == "akira.dlq.cdr-bridge.edge1")
        .collect();
    assert_eq!(bridge_dead.len(), 2);
    assert!(bridge_dead
        .iter()
        .all(|m| m.header("Akira-Dlq-Reason") == Some("invalid_record")));
    let pipeline_dead: Vec<_> = dead
        .iter()
        .filter(|m| m.subject == "akira.dlq.CDR.cdr-pipeline")
        .collect();
    assert_eq!(pipeline_dead.len(), 1);
    assert_eq!(
        pipeline_dead[0].header("Akira-Dlq-Reason"),
        Some("permanent")
    );
    assert!(pipeline_dead[0]
        .header("Akira-Dlq-Error")
        .unwrap()
        .contains("`method`"));
    assert_eq!(
        pipeline_dead[0].payload.as_ref(),
        all_lines.last().unwrap().as_slice()
    );
    assert_eq!(
        940 + 1 + bridge_dead.len(),
        all_lines.len(),
        "the counts add up to the lines in the file"
    );
}

#[tokio::test]
async fn calls_view_pairs_invite_and_bye() {
    let nats = NatsServer::start();
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (_pipeline, js) = start_pipeline(dir.path(), &nats, &postgres, "").await;

    let content = std::fs::read(repository_file("examples/data/kamailio-acc.jsonl")).unwrap();
    for (number, line) in lines_of(&content).iter().enumerate() {
        publish(&js, "akira.cdr.edge1", &format!("view-{number}"), line).await;
    }
    assert!(
        wait_until(WAIT, || async {
            row_count(&postgres.url()).await == Some(790)
        })
        .await
    );

    let mut db = connect_postgres(&postgres.url()).await;
    let codes: Vec<(Option<i16>, i64)> = sqlx::query_as(
        "SELECT final_sip_code, count(*) FROM cdr_calls GROUP BY final_sip_code ORDER BY final_sip_code",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let codes: BTreeMap<i16, i64> = codes
        .into_iter()
        .map(|(code, count)| (code.unwrap(), count))
        .collect();
    assert_eq!(
        codes,
        BTreeMap::from([
            (200, 150),
            (404, 30),
            (408, 10),
            (480, 30),
            (486, 40),
            (487, 40)
        ]),
        "the sample's call mix"
    );

    let answered: Vec<(bool, bool, f64, f64)> = sqlx::query_as(
        "SELECT end_time IS NOT NULL, start_time <= answer_time,
                extract(epoch FROM duration)::float8, extract(epoch FROM dialog_duration)::float8
         FROM cdr_calls WHERE final_sip_code = 200",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(answered.len(), 150);
    for (ended, started_first, duration, dialog_duration) in answered {
        assert!(ended, "an answered call has its BYE time");
        assert!(started_first, "the dialog start comes before the answer");
        // The scenario talks for 1 to 4 s; acc times are whole seconds.
        assert!((0.0..=6.0).contains(&duration), "duration {duration}");
        assert!(
            dialog_duration >= duration - 1.0,
            "dialog {dialog_duration} vs {duration}"
        );
    }

    let unanswered: Vec<(Option<f64>, bool)> = sqlx::query_as(
        "SELECT extract(epoch FROM duration)::float8, answer_time IS NULL FROM cdr_calls WHERE final_sip_code <> 200",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(unanswered.len(), 150);
    assert!(unanswered
        .iter()
        .all(|(duration, no_answer)| *duration == Some(0.0) && *no_answer));
}

#[tokio::test]
async fn postgres_outage_retries_until_back() {
    let nats = NatsServer::start();
    let mut postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics_address = format!("127.0.0.1:{}", akira_testkit::free_port());
    let (pipeline, js) = start_pipeline(dir.path(), &nats, &postgres, &metrics_address).await;

    for number in 0..100 {
        publish(
            &js,
            "akira.cdr.edge1",
            &format!("before-{number}"),
            &crafted_record(&format!("before-{number}")),
        )
        .await;
    }
    assert!(
        wait_until(WAIT, || async {
            row_count(&postgres.url()).await == Some(100)
        })
        .await,
        "{}",
        pipeline.log()
    );

    postgres.stop();
    let missing_callid = br#"{"time": 1796413782, "method": "INVITE", "from_tag": "t1", "to_tag": "t2", "sip_code": "200", "sip_reason": "OK"}"#;
    publish(&js, "akira.cdr.edge1", "missing-callid", missing_callid).await;
    for number in 0..200 {
        publish(
            &js,
            "akira.cdr.edge1",
            &format!("during-{number}"),
            &crafted_record(&format!("during-{number}")),
        )
        .await;
    }

    let dead_lettered = wait_until(WAIT, || async {
        message_count(&js, "AKIRA_DLQ").await >= 1
    })
    .await;
    assert!(dead_lettered, "{}", pipeline.log());
    let dead = messages(&js, "AKIRA_DLQ").await;
    assert_eq!(dead[0].payload.as_ref(), missing_callid.as_slice());
    assert_eq!(dead[0].header("Akira-Dlq-Reason"), Some("permanent"));
    assert_eq!(
        dead[0].header("Akira-Dlq-Deliveries"),
        Some("1"),
        "dead-lettered on first delivery"
    );
    assert!(dead[0]
        .header("Akira-Dlq-Error")
        .unwrap()
        .contains("`callid`"));

    // At least one fetch of records (max_in_flight is 64) failed and was retried.
    let retried = wait_until(WAIT, || async {
        fetch_metrics(&metrics_address)
            .and_then(|text| {
                sample(
                    &text,
                    "akira_worker_messages_total{worker=\"cdr-pipeline\",outcome=\"retry\"}",
                )
            })
            .is_some_and(|count| count >= 64.0)
    })
    .await;
    assert!(
        retried,
        "the records were not retried during the outage:\n{}",
        pipeline.log()
    );

    postgres.start_again();
    let landed = wait_until(WAIT, || async {
        row_count(&postgres.url()).await == Some(300)
    })
    .await;
    assert!(
        landed,
        "rows {:?}\n{}",
        row_count(&postgres.url()).await,
        pipeline.log()
    );

    let mut db = connect_postgres(&postgres.url()).await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT callid) FROM cdr_events")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(distinct, 300, "each record once");
    assert_eq!(
        message_count(&js, "AKIRA_DLQ").await,
        1,
        "no record ran out of deliveries"
    );
}

#[tokio::test]
async fn republished_record_stores_once() {
    let nats = NatsServer::start();
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics_address = format!("127.0.0.1:{}", akira_testkit::free_port());
    let (pipeline, js) = start_pipeline(dir.path(), &nats, &postgres, &metrics_address).await;

    let record = crafted_record("republished@127.0.0.1");
    publish(&js, "akira.cdr.edge1", "first-id", &record).await;
    publish(&js, "akira.cdr.edge1", "replay:7", &record).await;
    publish(&js, "akira.cdr.edge2", "other-source", &record).await;

    let counted = wait_until(WAIT, || async {
        fetch_metrics(&metrics_address).is_some_and(|text| {
            let inserted = sample(
                &text,
                "akira_cdr_pipeline_records_total{worker=\"cdr-pipeline\",result=\"inserted\"}",
            );
            let duplicate = sample(
                &text,
                "akira_cdr_pipeline_records_total{worker=\"cdr-pipeline\",result=\"duplicate\"}",
            );
            inserted.unwrap_or(0.0) + duplicate.unwrap_or(0.0) == 3.0
        })
    })
    .await;
    assert!(counted, "{}", pipeline.log());

    let mut db = connect_postgres(&postgres.url()).await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT source FROM cdr_events ORDER BY source")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(
        rows,
        [("edge1".to_string(),), ("edge2".to_string(),)],
        "one row per source"
    );
}

#[tokio::test]
async fn invalid_records_are_dead_lettered_naming_field() {
    let nats = NatsServer::start();
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, js) = start_pipeline(dir.path(), &nats, &postgres, "").await;

    let content = std::fs::read(fixture("crafted-records.jsonl")).unwrap();
    let lines = lines_of(&content);
    for (number, line) in lines.iter().enumerate() {
        publish(&js, "akira.cdr.edge1", &format!("crafted-{number}"), line).await;
    }
    let settled = wait_until(WAIT, || async {
        message_count(&js, "AKIRA_DLQ").await == 5 && row_count(&postgres.url()).await == Some(2)
    })
    .await;
    assert!(settled, "{}", pipeline.log());

    let dead = messages(&js, "AKIRA_DLQ").await;
    let errors: Vec<&str> = dead
        .iter()
        .map(|m| m.header("Akira-Dlq-Error").unwrap())
        .collect();
    let expected_fields = ["`callid`", "`time`", "`sip_code`", "`ua`", "`method`"];
    for (error, field) in errors.iter().zip(expected_fields) {
        assert!(error.contains(field), "{error} should name {field}");
    }
    for (message, line) in dead.iter().zip(&lines) {
        assert_eq!(message.header("Akira-Dlq-Reason"), Some("permanent"));
        assert_eq!(message.header("Akira-Dlq-Deliveries"), Some("1"));
        assert_eq!(message.payload.as_ref(), line.as_slice());
    }

    let mut db = connect_postgres(&postgres.url()).await;
    let ua: String = sqlx::query_scalar(
        "SELECT extra->>'ua' FROM cdr_events WHERE callid = 'crafted-padded-ua@127.0.0.1'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        ua,
        format!("Yealink SIP-T27G 69.81.0.25 {}\u{7}", "\u{FF}".repeat(23))
    );
    let code: i16 = sqlx::query_scalar(
        "SELECT sip_code FROM cdr_events WHERE callid = 'crafted-number-code@127.0.0.1'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(code, 486);
}

#[test]
fn check_config_requires_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_pipeline_config(dir.path(), "nats://127.0.0.1:4222", "postgres:///x", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("database_url = \"postgres:///x\"\n", "");
    std::fs::write(&config, text).unwrap();

    let output = std::process::Command::new(pipeline_binary())
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pipeline.database_url_file"), "{stderr}");
}

#[test]
fn example_config_is_valid() {
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(
        credentials.path().join("database-url"),
        "postgres://cdr:secret@127.0.0.1/akira\n",
    )
    .unwrap();
    let output = std::process::Command::new(pipeline_binary())
        .arg("--config")
        .arg(repository_file("examples/config/cdr-pipeline.toml"))
        .arg("--check-config")
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
