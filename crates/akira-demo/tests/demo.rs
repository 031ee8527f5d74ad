//! Runs `akira-demo` end to end, as `scripts/demo` does after its setup and build.
//!
//! The demo runs the other workspace binaries from the directory of its own binary, so
//! they must be built too: `cargo nextest run --workspace` (scripts/test) builds them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Counts of the accounting lines the demo feeds, computed from the files themselves: the
/// Kamailio sample, then the edge cases.
struct SampleCounts {
    lines: u64,
    /// Lines that are not a JSON object, which the bridge dead-letters.
    not_json: u64,
    /// Distinct lines among the JSON objects.
    distinct_json: u64,
    calls_with_invite: u64,
}

fn sample_counts(root: &Path) -> SampleCounts {
    let data = root.join("examples/data");
    let mut files = vec![data.join("kamailio-acc.jsonl")];
    let mut edge_cases: Vec<PathBuf> = std::fs::read_dir(data.join("edge-cases"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    edge_cases.sort();
    files.extend(edge_cases);

    let mut counts = SampleCounts {
        lines: 0,
        not_json: 0,
        distinct_json: 0,
        calls_with_invite: 0,
    };
    let mut distinct = HashSet::new();
    let mut invite_calls = HashSet::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for line in bytes
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            counts.lines += 1;
            let Ok(serde_json::Value::Object(record)) = serde_json::from_slice(line) else {
                counts.not_json += 1;
                continue;
            };
            distinct.insert(line.to_vec());
            if record.get("method").and_then(|m| m.as_str()) == Some("INVITE") {
                invite_calls.insert(record["callid"].as_str().unwrap().to_string());
            }
        }
    }
    counts.distinct_json = distinct.len() as u64;
    counts.calls_with_invite = invite_calls.len() as u64;
    counts
}

fn number(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no number `{key}`: {summary}"))
}

#[test]
fn demo_runs_to_summary() {
    let demo = Path::new(env!("CARGO_BIN_EXE_akira-demo"));
    let root = repository_root();
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");

    let output = Command::new(demo)
        .arg("--bin-dir")
        .arg(demo.parent().unwrap())
        .arg("--root")
        .arg(&root)
        .args(["--line-delay", "1ms", "--timeout", "180s", "--summary-json"])
        .arg(&summary_path)
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "akira-demo failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("metrics endpoints:"), "{stdout}");
    assert!(stdout.contains("==> demo finished"), "{stdout}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    let sample = sample_counts(&root);

    // Every line is read, and each is either published, dead-lettered or blank.
    assert_eq!(number(&summary, "lines_fed"), sample.lines);
    assert_eq!(number(&summary, "lines_read"), sample.lines);
    let published = number(&summary, "lines_published");
    let invalid = number(&summary, "lines_invalid");
    let blank = number(&summary, "lines_blank");
    assert_eq!(published + invalid + blank, sample.lines);
    assert_eq!(invalid, sample.not_json);
    assert!(
        invalid > 0,
        "the edge cases hold lines that are not JSON: {summary}"
    );

    // The pipeline dead-letters the records it cannot store; every other distinct line is
    // one row. Byte-identical lines (Kamailio accounts a failed INVITE twice) make one row.
    let pipeline_dead_letters: u64 = summary["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|group| group["subject"] == "akira.dlq.CDR.cdr-pipeline")
        .map(|group| group["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        number(&summary, "records_stored") + pipeline_dead_letters,
        sample.distinct_json
    );
    assert_eq!(number(&summary, "calls"), sample.calls_with_invite);
    assert!(number(&summary, "calls_with_bye") > 0, "{summary}");
    assert_eq!(
        number(&summary, "dead_letter_total"),
        invalid + pipeline_dead_letters
    );

    // Every routed alert reaches the local receiver.
    assert_eq!(number(&summary, "alert_payloads"), 3);
    let delivered = number(&summary, "notifications_delivered");
    assert!(delivered > 0, "{summary}");
    assert_eq!(delivered, number(&summary, "notifications_published"));
    for endpoint in ["ops", "pager", "network"] {
        assert!(
            summary["requests_by_endpoint"][endpoint]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{endpoint}: {summary}"
        );
    }

    assert_eq!(
        summary["metrics_endpoints"].as_object().unwrap().len(),
        4,
        "{summary}"
    );
    assert_eq!(summary["workers_stopped_cleanly"], true);
}
