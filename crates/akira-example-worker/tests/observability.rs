//! Metrics, readiness, sd_notify, JSON logs and timer-job textfiles, seen from outside.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use akira_testkit::{free_port, NatsServer};
use async_nats::jetstream;
use support::*;

fn base_config(url: &str, name: &str, metrics_port: u16, extra: &str) -> String {
    format!(
        "[worker]\nname = \"{name}\"\nensure = true\nshutdown_timeout = \"5s\"\n[nats]\nservers = [\"{url}\"]\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[log]\nformat = \"json\"\n{extra}"
    )
}

/// Checks every line against the OpenMetrics text format: comments, samples and `# EOF` last.
fn assert_valid_exposition(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "exposition does not end with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or("");
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT"),
                "unexpected comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value in: {line}"
        );
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels in: {line}");
            let labels = &series[name_end + 1..series.len() - 1];
            for pair in labels.split("\",") {
                let (key, value) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label in: {line}"));
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in: {line}"
                );
                assert!(!value.contains('\n'));
            }
        }
    }
}

#[tokio::test]
async fn metrics_count_a_known_run_exactly() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = "[consumer]\nstream = \"COUNT\"\ndurable_name = \"count\"\nfilter_subject = \"count.>\"\n\
                 deliver_subject = \"akira.deliver.count\"\n[retry]\nbase = \"100ms\"\nmax_deliver = 3\n\
                 [example]\nclass = \"push\"\nbehaviour = \"fail-then-succeed\"\nfail_times = 1\n";
    let _worker = start_worker(
        worker_binary(),
        dir.path(),
        "count",
        &base_config(&server.url(), "count", port, extra),
        &[],
        &[],
    );
    let address = format!("127.0.0.1:{port}");
    let ready = wait_until(Duration::from_secs(15), || async {
        matches!(http_get(&address, "/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready);

    // fail-then-succeed with fail_times = 1: each message is retried once, then acked.
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    for i in 0..6 {
        js.publish("count.item", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let series = |name: &str| format!("{name}{{worker=\"count\"");
    let settled = wait_until(Duration::from_secs(15), || async {
        let body = http_get(&address, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();
        sample(
            &body,
            &format!(
                "{},outcome=\"ack\"}}",
                series("akira_worker_messages_total")
            ),
        ) == Some(6.0)
    })
    .await;
    let body = http_get(&address, "/metrics").await.unwrap().1;
    assert!(settled, "metrics:\n{body}");
    assert_valid_exposition(&body);
    let value = |suffix: &str| {
        sample(
            &body,
            &format!("{}{suffix}", series("akira_worker_messages_total")),
        )
    };
    assert_eq!(value(",outcome=\"retry\"}"), Some(6.0), "{body}");
    assert_eq!(value(",outcome=\"dead_letter\"}"), Some(0.0), "{body}");
    assert_eq!(value(",outcome=\"error\"}"), Some(0.0), "{body}");
    assert_eq!(
        sample(&body, "akira_worker_redeliveries_total{worker=\"count\"}"),
        Some(6.0)
    );
    assert_eq!(
        sample(&body, "akira_worker_nats_connected{worker=\"count\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "akira_worker_in_flight{worker=\"count\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "akira_worker_handler_duration_seconds_count{worker=\"count\"}"
        ),
        Some(12.0)
    );
    assert!(
        sample(
            &body,
            "akira_worker_last_success_timestamp_seconds{worker=\"count\"}"
        )
        .unwrap()
            > 1.7e9
    );
    assert!(
        body.contains("akira_worker_build_info{worker=\"count\",version=\""),
        "{body}"
    );
    assert!(
        body.contains("akira_worker_consumer_pending_messages{worker=\"count\"}"),
        "{body}"
    );
    assert!(
        body.contains("le=\"0.001\"") && body.contains("le=\"4194.304\""),
        "buckets do not span 1 ms to 1 h"
    );
}

#[tokio::test]
async fn dead_letters_are_counted_by_reason() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = "[consumer]\nstream = \"DEAD\"\ndurable_name = \"dead\"\nfilter_subject = \"dead.>\"\n\
                 deliver_subject = \"akira.deliver.dead\"\n[example]\nclass = \"push\"\nbehaviour = \"permanent\"\n";
    let _worker = start_worker(
        worker_binary(),
        dir.path(),
        "dead",
        &base_config(&server.url(), "dead", port, extra),
        &[],
        &[],
    );
    let address = format!("127.0.0.1:{port}");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            matches!(http_get(&address, "/readyz").await, Some((200, _)))
        })
        .await
    );
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    for i in 0..3 {
        js.publish("dead.item", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let counted = wait_until(Duration::from_secs(15), || async {
        let body = http_get(&address, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();
        sample(
            &body,
            "akira_worker_dead_letters_total{worker=\"dead\",reason=\"permanent\"}",
        ) == Some(3.0)
    })
    .await;
    let body = http_get(&address, "/metrics").await.unwrap().1;
    assert!(counted, "{body}");
    assert_eq!(
        sample(
            &body,
            "akira_worker_messages_total{worker=\"dead\",outcome=\"dead_letter\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &body,
            "akira_worker_messages_total{worker=\"dead\",outcome=\"ack\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "akira_worker_dead_letters_total{worker=\"dead\",reason=\"max_deliver\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn readyz_follows_consumer_and_connection() {
    let mut server = NatsServer::start();
    let url = server.url();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    // The worker is started but not yet running its consumer: /readyz must fail.
    let config_text = format!(
        "[worker]\nname = \"ready\"\nensure = false\n[nats]\nservers = [\"{url}\"]\n[metrics]\nlisten = \"{address}\"\n\
         [consumer]\nstream = \"READY\"\ndurable_name = \"ready\"\nfilter_subject = \"ready.>\"\n"
    );
    let config =
        akira_workers::Config::from_toml(&config_text, "test", std::iter::empty()).unwrap();
    let worker = akira_workers::Worker::start(config).await.unwrap();
    let token = worker.shutdown_token();
    let (status, body) = http_get(&address, "/readyz").await.unwrap();
    assert_eq!(
        status, 503,
        "ready before the consumer was verified: {body}"
    );
    assert!(body.contains("consumer"), "{body}");
    assert_eq!(http_get(&address, "/healthz").await.unwrap().0, 200);

    js.create_stream(akira_workers::dlq::dlq_stream_config())
        .await
        .unwrap();
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "READY".into(),
            subjects: vec!["ready.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("ready".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            backoff: akira_workers::RetryPolicy::default().server_backoff(Duration::from_secs(30)),
            filter_subject: "ready.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let running = tokio::spawn(
        worker.run_pull(|batch| async move { batch.iter().map(|_| Ok(())).collect() }),
    );
    let ready = wait_until(Duration::from_secs(10), || async {
        matches!(http_get(&address, "/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready);

    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let not_ready = wait_until(Duration::from_secs(10), || async {
        matches!(http_get(&address, "/readyz").await, Some((503, _)))
    })
    .await;
    assert!(not_ready, "/readyz passed while NATS was down");

    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let ready_again = wait_until(Duration::from_secs(20), || async {
        matches!(http_get(&address, "/readyz").await, Some((200, _)))
    })
    .await;
    assert!(ready_again, "/readyz did not pass after NATS came back");
    token.cancel();
    running.await.unwrap().unwrap();
    drop(server);
}

/// Collects sd_notify datagrams with the time they arrived.
fn collect_notifications(socket: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut buffer = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buffer) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buffer[..n]).to_string(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn sd_notify_ready_watchdog_and_stopping() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // The service loop runs 2 s, then blocks its thread for 3 s, then runs again.
    let extra = "[example]\nclass = \"service\"\nblock_after = \"2s\"\nsleep = \"3s\"\n";
    let socket_text = socket_path.display().to_string();
    let mut process = start_worker(
        worker_binary(),
        dir.path(),
        "notify",
        &base_config(&server.url(), "notify", free_port(), extra),
        &[
            ("NOTIFY_SOCKET", socket_text.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
        &[],
    );
    let started = Instant::now();
    let notes = tokio::task::spawn_blocking(move || {
        let notes = collect_notifications(&socket, started + Duration::from_millis(4500));
        (socket, notes)
    })
    .await
    .unwrap();
    let (socket, notes) = notes;

    let ready_at = notes
        .iter()
        .find(|(_, text)| text.contains("READY=1"))
        .map(|(t, _)| *t);
    let ready_at =
        ready_at.unwrap_or_else(|| panic!("no READY=1; got {notes:?}\n{}", process.log()));
    let pings: Vec<Instant> = notes
        .iter()
        .filter(|(_, text)| text == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    let healthy_pings: Vec<&Instant> = pings
        .iter()
        .filter(|t| **t > ready_at && **t < started + Duration::from_millis(1900))
        .collect();
    assert!(
        healthy_pings.len() >= 4,
        "expected a ping every 200 ms while healthy, got {}",
        healthy_pings.len()
    );
    for pair in healthy_pings.windows(2) {
        let gap = *pair[1] - *pair[0];
        assert!(
            gap <= Duration::from_millis(450),
            "gap between pings {gap:?} exceeds the watchdog interval"
        );
    }
    // Blocked from about 2 s to 5 s: after the 400 ms grace no ping may arrive.
    let blocked_pings = pings
        .iter()
        .filter(|t| {
            **t > started + Duration::from_millis(2700)
                && **t < started + Duration::from_millis(4500)
        })
        .count();
    assert_eq!(
        blocked_pings, 0,
        "pings continued while the main loop was blocked"
    );

    std::thread::sleep(Duration::from_millis(1000));
    process.signal("TERM");
    let stop_notes = tokio::task::spawn_blocking(move || {
        collect_notifications(&socket, Instant::now() + Duration::from_secs(2))
    })
    .await
    .unwrap();
    assert!(
        stop_notes
            .iter()
            .any(|(_, text)| text.contains("STOPPING=1")),
        "no STOPPING=1: {stop_notes:?}"
    );
    assert!(process
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .success());
}

#[tokio::test]
async fn json_logs_carry_message_fields_and_no_secrets() {
    let server = NatsServer::builder()
        .config("authorization { user: akira, password: \"s3cr3t-p4ss\" }\n")
        .start();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("nats-password");
    std::fs::write(&password_file, "s3cr3t-p4ss\n").unwrap();
    let extra = format!(
        "[nats]\nuser = \"akira\"\npassword_file = \"{}\"\n[consumer]\nstream = \"LOGS\"\ndurable_name = \"logs\"\n\
         filter_subject = \"logs.>\"\ndeliver_subject = \"akira.deliver.logs\"\n[retry]\nbase = \"100ms\"\n\
         [example]\nclass = \"push\"\nbehaviour = \"fail-then-succeed\"\nfail_times = 1\n",
        password_file.display()
    );
    let url = server.url();
    let text = format!(
        "[worker]\nname = \"logs\"\nensure = true\n[metrics]\nlisten = \"\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n{extra}"
    )
    .replace("[nats]\n", &format!("[nats]\nservers = [\"{url}\"]\n"));
    let mut process = start_worker(worker_binary(), dir.path(), "logs", &text, &[], &[]);

    let client =
        async_nats::ConnectOptions::with_user_and_password("akira".into(), "s3cr3t-p4ss".into())
            .connect(&url)
            .await
            .unwrap();
    let js = jetstream::new(client);
    let ready = wait_until(Duration::from_secs(15), || async {
        process.log().contains("\"ready\"")
    })
    .await;
    assert!(ready, "{}", process.log());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Akira-Correlation-Id", "corr-42");
    js.publish_with_headers("logs.call", headers, "hello".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let acked = wait_until(Duration::from_secs(10), || async {
        process.log().contains("\"acked\"")
    })
    .await;
    assert!(acked, "{}", process.log());
    process.signal("TERM");
    process.wait_timeout(Duration::from_secs(10));

    let logs = process.log();
    assert!(
        !logs.contains("s3cr3t-p4ss"),
        "the password appears in the logs"
    );
    assert!(!logs.contains("hello"), "the payload appears in the logs");
    let retry_line = logs
        .lines()
        .find(|line| line.contains("handler failed; retrying"))
        .unwrap_or_else(|| panic!("no retry line in:\n{logs}"));
    let entry: serde_json::Value = serde_json::from_str(retry_line).unwrap();
    assert_eq!(entry["level"], "WARN");
    let span = &entry["span"];
    assert_eq!(span["worker"], "logs", "{entry}");
    assert_eq!(span["stream"], "LOGS");
    assert_eq!(span["consumer"], "logs");
    assert_eq!(span["subject"], "logs.call");
    assert_eq!(span["stream_sequence"], 1);
    assert_eq!(span["delivery_count"], 1);
    assert_eq!(span["correlation_id"], "corr-42");
    let acked_line = logs
        .lines()
        .find(|line| line.contains("\"acked\""))
        .unwrap();
    let acked: serde_json::Value = serde_json::from_str(acked_line).unwrap();
    assert_eq!(acked["span"]["delivery_count"], 2);
    for lifecycle in [
        "\"starting\"",
        "\"connected to NATS\"",
        "\"ready\"",
        "\"draining: stop requested\"",
        "\"stopped\"",
    ] {
        assert!(
            logs.contains(lifecycle),
            "missing lifecycle line {lifecycle}"
        );
    }
}

#[tokio::test]
async fn timer_job_records_runs_across_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let textfiles = dir.path().join("textfiles");
    std::fs::create_dir(&textfiles).unwrap();
    let config = format!(
        "[worker]\nname = \"example-job\"\n[job]\ntextfile_dir = \"{}\"\n[log]\nformat = \"json\"\n",
        textfiles.display()
    );
    for (round, args) in [(1, vec![]), (2, vec![]), (3, vec!["--fail"])] {
        let mut process = start_worker(job_binary(), dir.path(), "job", &config, &[], &args);
        let status = process
            .wait_timeout(Duration::from_secs(10))
            .expect("the job kept running");
        if args.is_empty() {
            assert!(status.success(), "run {round} failed:\n{}", process.log());
        } else {
            assert_eq!(status.code(), Some(1), "a failing run must exit non-zero");
            assert!(process.log().contains("failing on purpose"));
        }
    }
    let text = std::fs::read_to_string(textfiles.join("example-job.prom")).unwrap();
    assert_eq!(
        sample(
            &text,
            "akira_job_runs_total{worker=\"example-job\",outcome=\"success\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "akira_job_runs_total{worker=\"example-job\",outcome=\"failure\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "akira_job_duration_seconds{worker=\"example-job\"}").is_some());
    assert!(
        sample(
            &text,
            "akira_job_last_success_timestamp_seconds{worker=\"example-job\"}"
        )
        .unwrap()
            > 1.7e9
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "unparseable sample: {line}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&textfiles)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary files left behind: {leftovers:?}"
    );
}
