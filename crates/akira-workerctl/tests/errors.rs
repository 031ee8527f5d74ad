//! Every error path ends with one `error:` line that names the value, and exit code 1.

mod support;

use support::{ctl_with_env, Env, Run};

/// Asserts exit code 1 and exactly one stderr line, starting with `error:` and containing
/// every text in `expected`.
fn assert_one_line_error(run: &Run, expected: &[&str]) {
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line: {run:?}");
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    for text in expected {
        assert!(
            lines[0].contains(text),
            "{text:?} missing from: {}",
            lines[0]
        );
    }
}

fn unreachable_url() -> String {
    format!("nats://127.0.0.1:{}", akira_testkit::free_port())
}

#[test]
fn unreachable_server_is_one_line() {
    let url = unreachable_url();
    for args in [
        vec!["status"],
        vec!["dlq", "list"],
        vec!["dlq", "show", "1"],
        vec!["dlq", "replay", "1"],
        vec!["dlq", "purge", "1", "--yes"],
    ] {
        let mut all = vec!["--server", url.as_str(), "--timeout", "1s"];
        all.extend(args.iter());
        let run = ctl_with_env(&all, &[], None);
        assert_one_line_error(&run, &["cannot connect to NATS", &url, "--server"]);
    }
}

#[test]
fn nats_url_is_used_without_server_flag() {
    let url = unreachable_url();
    let run = ctl_with_env(&["status", "--timeout", "1s"], &[("NATS_URL", &url)], None);
    assert_one_line_error(&run, &[&url]);
}

#[test]
fn apply_gives_up_after_wait() {
    let env = Env::start();
    let path = env.write("streams.toml", "[[streams]]\nname = \"ORDERS\"\n");
    let url = unreachable_url();
    let started = std::time::Instant::now();
    let run = ctl_with_env(
        &[
            "--server",
            &url,
            "apply",
            path.to_str().unwrap(),
            "--wait",
            "2s",
            "--timeout",
            "500ms",
        ],
        &[],
        None,
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{run:?}"
    );
    assert_eq!(run.code, 1, "{run:?}");
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "{run:?}");
    assert!(errors[0].contains(&url), "{}", errors[0]);
    assert!(errors[0].contains("kept trying for 2s"), "{}", errors[0]);
}

#[test]
fn invalid_server_url_names_value() {
    let run = ctl_with_env(&["--server", "nats://bad host:4222", "status"], &[], None);
    assert_one_line_error(&run, &["\"nats://bad host:4222\""]);
}

#[test]
fn missing_file_names_path() {
    let env = Env::start();
    let path = env.dir.path().join("missing.toml");
    let run = env.ctl(&["apply", path.to_str().unwrap()]);
    assert_one_line_error(
        &run,
        &["cannot read declarations file", path.to_str().unwrap()],
    );
}

#[test]
fn bad_declarations_are_one_line() {
    let env = Env::start();
    let cases: [(&str, &[&str]); 6] = [
        (
            "[[streams]]\nname = \"ORDERS\"\nsubjects = [\n",
            &["invalid TOML at line"],
        ),
        (
            "[[streams]]\nname = \"ORDERS\"\nmax_agee = \"1d\"\n",
            &["stream `ORDERS`", "unknown field `max_agee`"],
        ),
        (
            "[[streams]]\nname = \"ORDERS\"\nmax_age = \"7 weeks-ish\"\n",
            &["stream `ORDERS`", "max_age", "\"7 weeks-ish\""],
        ),
        (
            "[[streams]]\nname = \"ORDERS\"\nstorage = \"ssd\"\n",
            &["stream `ORDERS`", "ssd"],
        ),
        (
            "[[consumers]]\ndurable_name = \"worker\"\nstream = \"ORDERS\"\nack = \"all\"\n",
            &[
                "consumer `worker` on stream `ORDERS`",
                "unknown field `ack`",
            ],
        ),
        (
            "[[consumer]]\ndurable_name = \"worker\"\n",
            &["unknown key `consumer`"],
        ),
    ];
    for (text, expected) in cases {
        let path = env.write("streams.toml", text);
        let run = env.ctl(&["apply", path.to_str().unwrap()]);
        let mut all = vec![path.to_str().unwrap()];
        all.extend_from_slice(expected);
        assert_one_line_error(&run, &all);
    }

    let json = env.write("streams.json", "{\"streams\": [");
    let run = env.ctl(&["apply", json.to_str().unwrap()]);
    assert_one_line_error(&run, &["invalid JSON", json.to_str().unwrap()]);
}

#[test]
fn consumer_on_missing_stream_is_rejected() {
    let env = Env::start();
    let text = "[[consumers]]\ndurable_name = \"worker\"\nstream = \"NOPE\"\n";
    let run = env.apply("streams.toml", text, &[]);
    assert_one_line_error(
        &run,
        &["consumer NOPE/worker", "stream NOPE", "neither declared"],
    );
}

#[test]
fn dead_letter_stream_not_found() {
    let env = Env::start();
    for args in [
        vec!["dlq", "list"],
        vec!["dlq", "show", "1"],
        vec!["dlq", "purge", "--all", "--yes"],
    ] {
        let run = env.ctl(&args);
        assert_one_line_error(&run, &["AKIRA_DLQ", "apply"]);
    }
}

#[test]
fn dead_letter_not_found_names_sequence() {
    let env = Env::start();
    assert_eq!(env.apply("streams.toml", "", &[]).code, 0);
    let run = env.ctl(&["dlq", "show", "42"]);
    assert_one_line_error(&run, &["dead letter 42 not found in AKIRA_DLQ", "dlq list"]);
}

#[test]
fn unknown_recreate_name_is_rejected() {
    let env = Env::start();
    let run = env.apply(
        "streams.toml",
        "[[streams]]\nname = \"ORDERS\"\n",
        &["--recreate", "ORDRES"],
    );
    assert_one_line_error(&run, &["--recreate ORDRES"]);
}

#[test]
fn missing_credentials_file_names_path() {
    let env = Env::start();
    let path = env.dir.path().join("missing.creds");
    let run = env.ctl(&["--creds", path.to_str().unwrap(), "status"]);
    assert_one_line_error(&run, &["credentials file", path.to_str().unwrap()]);
}

#[test]
fn invalid_command_line_exits_one() {
    let run = ctl_with_env(&["dlq", "frobnicate"], &[], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("frobnicate"), "{run:?}");

    let bad_duration = ctl_with_env(&["apply", "x.toml", "--wait", "soon"], &[], None);
    assert_eq!(bad_duration.code, 1, "{bad_duration:?}");
    assert!(bad_duration.stderr.contains("\"soon\""), "{bad_duration:?}");

    let help = ctl_with_env(&["--help"], &[], None);
    assert_eq!(help.code, 0, "{help:?}");
    assert!(
        help.stdout.contains("Exit codes: 0 success, 1 error, 2"),
        "{}",
        help.stdout
    );
}
