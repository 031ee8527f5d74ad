//! The bridge as a process against a real nats-server: what lands in CDR and AKIRA_DLQ.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use akira_testkit::NatsServer;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// What the bridge should do with a line, decided here without the bridge's code.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Record,
    Invalid,
    Blank,
}

fn expected(line: &[u8]) -> Expected {
    const MAX_LINE_BYTES: usize = 1024;
    let Ok(text) = std::str::from_utf8(line) else {
        return Expected::Invalid;
    };
    if text.trim().is_empty() {
        return Expected::Blank;
    }
    if line.len() > MAX_LINE_BYTES {
        return Expected::Invalid;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Expected::Record,
        _ => Expected::Invalid,
    }
}

fn saved_offset(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("state.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    state["offset"].as_u64()
}

/// Returns the payloads stored in CDR, in order.
async fn cdr_payloads(js: &async_nats::jetstream::Context) -> Vec<Vec<u8>> {
    messages(js, "CDR")
        .await
        .into_iter()
        .map(|message| message.payload.to_vec())
        .collect()
}

fn numbered_lines(prefix: &str, count: usize) -> Vec<u8> {
    let mut content = Vec::new();
    for number in 0..count {
        content.extend_from_slice(
            format!("{{\"time\": 1796413782, \"method\": \"INVITE\", \"callid\": \"{prefix}-{number}@127.0.0.1\", \"sip_code\": \"200\"}}\n")
                .as_bytes(),
        );
    }
    content
}

fn lines_of(content: &[u8]) -> Vec<Vec<u8>> {
    lines_with_offsets(content)
        .into_iter()
        .map(|(_, line)| line)
        .collect()
}

#[tokio::test]
async fn sample_and_invalid_lines_are_stored_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("acc.jsonl");

    let mut content = std::fs::read(sample_file()).unwrap();
    content
        .extend(std::fs::read(edge_case_file("kamailio-flatstore-cdr-bad-duration.txt")).unwrap());
    content.extend(std::fs::read(edge_case_file("sip-user-agent-padding.jsonl")).unwrap());
    content.extend(std::fs::read(fixture("crafted-invalid-lines.txt")).unwrap());
    std::fs::write(&input, &content).unwrap();

    let lines = lines_with_offsets(&content);
    let records: Vec<&(u64, Vec<u8>)> = lines
        .iter()
        .filter(|(_, l)| expected(l) == Expected::Record)
        .collect();
    let invalid: Vec<&(u64, Vec<u8>)> = lines
        .iter()
        .filter(|(_, l)| expected(l) == Expected::Invalid)
        .collect();
    let blank = lines
        .iter()
        .filter(|(_, l)| expected(l) == Expected::Blank)
        .count();
    assert_eq!(
        records.len(),
        940 + 1,
        "the sample's lines and the padded user agent are records"
    );
    assert_eq!(
        invalid.len(),
        2 + 5,
        "two flatstore lines and five crafted lines are invalid"
    );
    assert_eq!(blank, 1);

    let metrics_address = format!("127.0.0.1:{}", akira_testkit::free_port());
    let config = write_config(dir.path(), &nats.url(), &input, &metrics_address, "");
    let mut bridge = start_bridge(&config);
    let js = connect(&nats.url()).await;

    let done = wait_until(WAIT, || async {
        saved_offset(dir.path()) == Some(content.len() as u64)
    })
    .await;
    assert!(
        done,
        "the bridge did not reach the end of the file:\n{}",
        bridge.log()
    );

    let stored = messages(&js, "CDR").await;
    assert_eq!(
        stored.len(),
        records.len(),
        "CDR holds each record line once"
    );
    let mut ids = HashSet::new();
    for (message, (offset, line)) in stored.iter().zip(&records) {
        assert_eq!(
            message.payload.as_ref(),
            line.as_slice(),
            "payload at offset {offset}"
        );
        assert_eq!(message.subject, "akira.cdr.edge1");
        assert_eq!(
            message.header("Akira-Cdr-Offset"),
            Some(offset.to_string().as_str())
        );
        let id = message
            .header("Nats-Msg-Id")
            .expect("Nats-Msg-Id")
            .to_string();
        assert!(id.starts_with("cdr:edge1:"), "{id}");
        assert!(id.ends_with(&format!(":{offset}")), "{id}");
        assert!(ids.insert(id), "Nats-Msg-Id repeats");
    }

    let dead = messages(&js, "AKIRA_DLQ").await;
    assert_eq!(
        dead.len(),
        invalid.len(),
        "AKIRA_DLQ holds each invalid line once"
    );
    for (message, (offset, line)) in dead.iter().zip(&invalid) {
        assert_eq!(message.subject, "akira.dlq.cdr-bridge.edge1");
        assert_eq!(message.header("Akira-Dlq-Reason"), Some("invalid_record"));
        assert_eq!(message.header("Akira-Dlq-Subject"), Some("akira.cdr.edge1"));
        assert_eq!(
            message.header("Akira-Cdr-File"),
            Some(input.to_str().unwrap())
        );
        assert_eq!(
            message.header("Akira-Cdr-Offset"),
            Some(offset.to_string().as_str())
        );
        assert!(message
            .header("Akira-Dlq-Error")
            .is_some_and(|e| !e.is_empty()));
        if line.len() > 1024 {
            assert_eq!(
                message.payload.as_ref(),
                &line[..1024],
                "a long line keeps its first 1024 bytes"
            );
            assert_eq!(message.header("Akira-Cdr-Truncated"), Some("true"));
            assert_eq!(
                message.header("Akira-Cdr-Line-Length"),
                Some(line.len().to_string().as_str())
            );
        } else {
            assert_eq!(
                message.payload.as_ref(),
                line.as_slice(),
                "payload at offset {offset}"
            );
            assert_eq!(message.header("Akira-Cdr-Truncated"), None);
        }
    }
    let errors: Vec<&str> = dead
        .iter()
        .filter_map(|m| m.header("Akira-Dlq-Error"))
        .collect();
    assert!(
        errors[0].contains("not valid JSON"),
        "flatstore line: {}",
        errors[0]
    );
    assert!(errors.iter().any(|e| e.contains("UTF-8")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("not an object")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("max_line_bytes")),
        "{errors:?}"
    );

    assert_eq!(stored.len() + dead.len() + blank, lines.len());

    let metrics = fetch_metrics(&metrics_address).expect("metrics endpoint");
    assert_eq!(
        sample(
            &metrics,
            "akira_cdr_bridge_lines_total{worker=\"cdr-bridge\",outcome=\"published\"}"
        ),
        Some(records.len() as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "akira_cdr_bridge_lines_total{worker=\"cdr-bridge\",outcome=\"invalid\"}"
        ),
        Some(invalid.len() as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "akira_worker_dead_letters_total{worker=\"cdr-bridge\",reason=\"invalid_record\"}"
        ),
        Some(invalid.len() as f64)
    );

    let status = bridge
        .terminate(Duration::from_secs(15))
        .expect("the bridge stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", bridge.log());
}

#[tokio::test]
async fn restart_after_sigkill_loses_and_repeats_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("acc.jsonl");
    std::fs::write(&input, b"").unwrap();

    // The sample six times over, appended 40 lines at a time while the bridge runs.
    let sample = lines_of(&std::fs::read(sample_file()).unwrap());
    let all: Vec<Vec<u8>> = (0..6).flat_map(|_| sample.clone()).collect();
    let total = all.len();
    let writer_input = input.clone();
    let writer_lines = all.clone();
    let writer = std::thread::spawn(move || {
        for chunk in writer_lines.chunks(40) {
            let mut bytes = Vec::new();
            for line in chunk {
                bytes.extend_from_slice(line);
                bytes.push(b'\n');
            }
            append(&writer_input, &bytes);
            std::thread::sleep(Duration::from_millis(10));
        }
    });

    let config = write_config(dir.path(), &nats.url(), &input, "", "");
    let mut bridge = start_bridge(&config);
    let js = connect(&nats.url()).await;
    let started = wait_until(WAIT, || async { message_count(&js, "CDR").await >= 1500 }).await;
    assert!(
        started,
        "the bridge published too little:\n{}",
        bridge.log()
    );
    bridge.kill();
    let at_kill = message_count(&js, "CDR").await as usize;
    assert!(
        at_kill < total,
        "the bridge was killed after the whole file; the test proves nothing"
    );

    let mut restarted = start_bridge(&config);
    writer.join().unwrap();
    let length = std::fs::metadata(&input).unwrap().len();
    let done = wait_until(WAIT, || async { saved_offset(dir.path()) == Some(length) }).await;
    assert!(
        done,
        "the restarted bridge did not finish:\n{}",
        restarted.log()
    );

    let payloads = cdr_payloads(&js).await;
    assert_eq!(
        payloads.len(),
        total,
        "CDR holds each line once (killed at {at_kill})"
    );
    assert!(payloads == all, "CDR holds the lines in file order");
    let ids: HashSet<String> = messages(&js, "CDR")
        .await
        .iter()
        .filter_map(|m| m.header("Nats-Msg-Id").map(str::to_string))
        .collect();
    assert_eq!(ids.len(), total);
    assert!(restarted.is_running());
}

#[tokio::test]
async fn rename_rotation_loses_and_repeats_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("acc.jsonl");
    let rotated = dir.path().join("acc.jsonl.1");
    let first = numbered_lines("first", 100);
    let late = numbered_lines("late", 50);
    let second = numbered_lines("second", 50);
    let third = numbered_lines("third", 30);
    std::fs::write(&input, &first).unwrap();

    let config = write_config(dir.path(), &nats.url(), &input, "", "");
    let bridge = start_bridge(&config);
    let js = connect(&nats.url()).await;
    assert!(
        wait_until(WAIT, || async { message_count(&js, "CDR").await == 100 }).await,
        "{}",
        bridge.log()
    );

    // As logrotate does: rename, the writer still appends to its open file, then the
    // writer opens a new file at the old path.
    std::fs::rename(&input, &rotated).unwrap();
    append(&rotated, &late);
    append(&input, &second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&input, &third);

    let mut all = lines_of(&first);
    all.extend(lines_of(&late));
    all.extend(lines_of(&second));
    all.extend(lines_of(&third));
    let expected_count = all.len() as u64;
    let arrived = wait_until(WAIT, || async {
        message_count(&js, "CDR").await >= expected_count
    })
    .await;
    assert!(arrived, "{}", bridge.log());
    let length = std::fs::metadata(&input).unwrap().len();
    assert!(wait_until(WAIT, || async { saved_offset(dir.path()) == Some(length) }).await);

    let payloads = cdr_payloads(&js).await;
    assert_eq!(payloads.len(), all.len());
    assert!(
        payloads == all,
        "old file first, then the new one, each line once"
    );
    assert!(
        bridge.log().contains("rotated by rename"),
        "{}",
        bridge.log()
    );
}

#[tokio::test]
async fn copy_truncate_rotation_loses_and_repeats_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("acc.jsonl");
    let copy = dir.path().join("acc.jsonl.1");
    let first = numbered_lines("first", 100);
    let shorter = numbered_lines("shorter", 20);
    let longer = numbered_lines("longer", 300);
    std::fs::write(&input, &first).unwrap();

    let config = write_config(dir.path(), &nats.url(), &input, "", "");
    let bridge = start_bridge(&config);
    let js = connect(&nats.url()).await;
    assert!(
        wait_until(WAIT, || async { message_count(&js, "CDR").await == 100 }).await,
        "{}",
        bridge.log()
    );

    // copytruncate loses what the writer adds between the copy and the truncation, so
    // like logrotate the test truncates once the bridge has read everything.
    std::fs::copy(&input, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&input, &shorter);
    assert!(
        wait_until(WAIT, || async { message_count(&js, "CDR").await == 120 }).await,
        "{}",
        bridge.log()
    );

    // Truncated again and refilled past the old position at once: only the changed first
    // line shows the truncation.
    std::fs::copy(&input, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&input, &longer);

    let mut all = lines_of(&first);
    all.extend(lines_of(&shorter));
    all.extend(lines_of(&longer));
    let expected_count = all.len() as u64;
    assert!(
        wait_until(WAIT, || async {
            message_count(&js, "CDR").await >= expected_count
        })
        .await,
        "{}",
        bridge.log()
    );
    let length = std::fs::metadata(&input).unwrap().len();
    assert!(wait_until(WAIT, || async { saved_offset(dir.path()) == Some(length) }).await);

    let payloads = cdr_payloads(&js).await;
    assert_eq!(payloads.len(), all.len());
    assert!(payloads == all, "each generation's lines once, in order");
    assert_eq!(
        bridge.log().matches("was truncated").count(),
        2,
        "{}",
        bridge.log()
    );
}

#[tokio::test]
async fn partial_line_waits_for_newline() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("acc.jsonl");
    std::fs::write(&input, b"").unwrap();
    let config = write_config(dir.path(), &nats.url(), &input, "", "");
    let bridge = start_bridge(&config);
    let js = connect(&nats.url()).await;
    assert!(
        wait_until(WAIT, || async { saved_offset(dir.path()).is_some() }).await,
        "{}",
        bridge.log()
    );

    append(&input, br#"{"time": 1796413782, "method": "INV"#);
    // Ten poll intervals: long enough for the bridge to see the unfinished line.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        message_count(&js, "CDR").await,
        0,
        "an unfinished line was published"
    );

    append(&input, b"ITE\", \"callid\": \"a@b\"}\n");
    assert!(wait_until(WAIT, || async { message_count(&js, "CDR").await == 1 }).await);
    let payloads = cdr_payloads(&js).await;
    assert_eq!(
        payloads[0],
        br#"{"time": 1796413782, "method": "INVITE", "callid": "a@b"}"#
    );
}

#[tokio::test]
async fn nats_outage_resumes_from_position() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("acc.jsonl");
    let before = numbered_lines("before", 200);
    let during = numbered_lines("during", 300);
    std::fs::write(&input, &before).unwrap();

    let config = write_config(dir.path(), &nats.url(), &input, "", "");
    let mut bridge = start_bridge(&config);
    {
        let js = connect(&nats.url()).await;
        assert!(
            wait_until(WAIT, || async { message_count(&js, "CDR").await == 200 }).await,
            "{}",
            bridge.log()
        );
    }
    let saved = wait_until(WAIT, || async {
        saved_offset(dir.path()) == Some(before.len() as u64)
    })
    .await;
    assert!(
        saved,
        "the bridge did not save its position:\n{}",
        bridge.log()
    );

    nats.stop();
    append(&input, &during);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        bridge.is_running(),
        "the bridge exited while NATS was down:\n{}",
        bridge.log()
    );
    assert_eq!(
        saved_offset(dir.path()),
        Some(before.len() as u64),
        "the position moved without PubAcks"
    );
    nats.restart();

    let js = connect(&nats.url()).await;
    let length = (before.len() + during.len()) as u64;
    let done = wait_until(WAIT, || async { saved_offset(dir.path()) == Some(length) }).await;
    assert!(done, "the bridge did not resume:\n{}", bridge.log());

    let mut all = lines_of(&before);
    all.extend(lines_of(&during));
    let payloads = cdr_payloads(&js).await;
    assert_eq!(payloads.len(), all.len(), "each line once after the outage");
    assert!(payloads == all);
}

#[test]
fn check_config_rejects_dotted_source() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("acc.jsonl");
    let config = write_config(dir.path(), "nats://127.0.0.1:4222", &input, "", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("source = \"edge1\"", "source = \"edge.1\"");
    std::fs::write(&config, text).unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_akira-cdr-bridge"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bridge.source"), "{stderr}");
    assert!(stderr.contains("\"edge.1\""), "{stderr}");
}

#[test]
fn example_config_is_valid() {
    let state = tempfile::tempdir().unwrap();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/config/cdr-bridge.toml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_akira-cdr-bridge"))
        .arg("--config")
        .arg(&example)
        .arg("--check-config")
        .env("STATE_DIRECTORY", state.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
