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

/// Counts of the bundled accounting sample, computed from the file itself.
struct SampleCounts {
    lines: u64,
    distinct_lines: u64,
    calls_with_invite: u64,
}

fn sample_counts(root: &Path) -> SampleCounts {
    let text = std::fs::read_to_string(root.join("examples/data/kamailio-acc.jsonl")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let distinct: HashSet<&str> = lines.iter().copied().collect();
    let mut invite_calls = HashSet::new();
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        if record["method"] == "INVITE" {
            invite_calls.insert(record["callid"].as_str().unwrap().to_string());
        }
    }
    SampleCounts {
        lines: lines.len() as u64,
        distinct_lines: distinct.len() as u64,
        calls_with_invite: invite_calls.len() as u64,
    }
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

    // Byte-identical lines (Kamailio accounts a failed INVITE twice) are stored once, so the
    // stored records plus the repeats equal the published lines.
    assert_eq!(
        number(&summary, "records_stored"),
        sample.distinct_lines - invalid
    );
    assert_eq!(number(&summary, "calls"), sample.calls_with_invite);
    assert!(number(&summary, "calls_with_bye") > 0, "{summary}");

    // The bridge's invalid lines are the only dead letters of the sample.
    assert_eq!(number(&summary, "dead_letter_total"), invalid);

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
