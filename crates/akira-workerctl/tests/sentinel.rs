//! `akira-workerctl dlq sentinel` against a real nats-server and a worker that exits on every
//! delivery of a poison message.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akira_testkit::wait_for;
use akira_workers::dlq::{DeadLetter, Reason};
use serde_json::Value;
use support::{send_signal, subject_count, Env, DEADLINE};

/// A poison stream whose consumer matches the test worker: ack_wait 1s, max_deliver 3.
const DECLARATIONS: &str = r#"
[[streams]]
name = "POISON"
subjects = ["akira.poison.>"]

[[consumers]]
durable_name = "poison-worker"
stream = "POISON"
filter_subject = "akira.poison.>"
ack_policy = "explicit"
ack_wait = "1s"
max_deliver = 3
backoff = ["1s", "1s"]
max_ack_pending = 100
"#;

const DLQ_SUBJECT: &str = "akira.dlq.POISON.poison-worker";
const ADVISORY_SUBJECT: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.POISON.poison-worker";

/// A running sentinel whose stderr is collected line by line.
struct Sentinel {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Sentinel {
    async fn start(env: &Env) -> Sentinel {
        let mut child = Command::new(support::CTL)
            .args(["dlq", "sentinel"])
            .env("NATS_URL", env.url())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let sentinel = Sentinel { child, stderr };
        sentinel.wait_for_log("sentinel ready").await;
        sentinel
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    async fn wait_for_log(&self, text: &str) {
        let what = format!("sentinel log line containing {text:?}");
        wait_for(&what, DEADLINE, || async { self.log().contains(text) }).await;
    }

    /// Sends SIGTERM and returns the exit code and the log.
    async fn stop(mut self) -> (Option<i32>, String) {
        send_signal(self.child.id(), "TERM");
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Give the reader thread a moment to collect the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return (status.code(), self.log());
            }
            assert!(
                Instant::now() < end,
                "sentinel did not stop after SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup() -> Env {
    let env = Env::start();
    let run = env.apply("streams.toml", DECLARATIONS, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    env
}

async fn dlq_count(env: &Env) -> usize {
    subject_count(&env.jetstream().await, "AKIRA_DLQ", DLQ_SUBJECT).await
}

fn dead_letters(env: &Env) -> Vec<Value> {
    let run = env.ctl(&["dlq", "list", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let listing: Value = serde_json::from_str(&run.stdout).unwrap();
    listing.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn crashing_worker_message_is_dead_lettered_once() {
    let env = setup();
    // Two sentinels in one queue group: each advisory is handled by one of them.
    let first = Sentinel::start(&env).await;
    let second = Sentinel::start(&env).await;
    let jetstream = env.jetstream().await;
    jetstream
        .publish("akira.poison.1", "poison".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // The test restarts the worker whenever it exits, as systemd would. Deliveries 1 to 3
    // each end in an exit. The pull of the next worker makes the server notice that the
    // message reached max_deliver, so it publishes the advisory.
    let mut exits = Vec::new();
    let mut worker_logs = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    let mut worker = env.start_worker("POISON", "poison-worker", "akira.poison.>", "exit");
    while dlq_count(&env).await == 0 {
        assert!(
            Instant::now() < end,
            "no dead letter after {} worker exits; worker logs:\n{}\nsentinel logs:\n{}\n{}",
            exits.len(),
            worker_logs.join("\n"),
            first.log(),
            second.log()
        );
        if let Some(code) = worker.exit_code() {
            exits.push(code);
            worker_logs.push(worker.log_text());
            worker = env.start_worker("POISON", "poison-worker", "akira.poison.>", "exit");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(worker);
    assert_eq!(
        exits,
        vec![3, 3, 3],
        "the worker should exit on deliveries 1 to 3"
    );

    let letters = dead_letters(&env);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter["reason"], "max_deliver_advisory");
    assert_eq!(letter["stream"], "POISON");
    assert_eq!(letter["consumer"], "poison-worker");
    assert_eq!(letter["subject"], "akira.poison.1");
    assert_eq!(letter["sequence"], 1);
    assert_eq!(letter["deliveries"], 3);
    assert!(
        letter["worker"].as_str().unwrap().starts_with("sentinel@"),
        "{letter:#}"
    );

    let show = env.ctl(&["dlq", "show", &letter["dlq_sequence"].to_string()]);
    assert!(
        show.stdout.contains("  Nats-Msg-Id: dlq:POISON:1\n"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("payload (text, 6 bytes):\npoison\n"),
        "{}",
        show.stdout
    );

    // Another worker start must not bring the message back or dead-letter it again. This
    // checks for an absence, so it can only wait a fixed time: two ack waits.
    let mut late = env.start_worker("POISON", "poison-worker", "akira.poison.>", "exit");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(late.exit_code(), None, "the message was delivered again");
    drop(late);
    assert_eq!(dlq_count(&env).await, 1);

    let (first_code, first_log) = first.stop().await;
    let (second_code, second_log) = second.stop().await;
    assert_eq!(first_code, Some(0), "{first_log}");
    assert_eq!(second_code, Some(0), "{second_log}");
    assert!(first_log.contains("sentinel stopped"), "{first_log}");
    assert!(second_log.contains("sentinel stopped"), "{second_log}");
    let handled = [&first_log, &second_log]
        .iter()
        .filter(|log| log.contains("dead_lettered=1"))
        .count();
    assert_eq!(
        handled, 1,
        "one sentinel handles the advisory:\n{first_log}\n---\n{second_log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_dead_letter_is_not_duplicated() {
    let env = setup();
    let sentinel = Sentinel::start(&env).await;
    let jetstream = env.jetstream().await;
    jetstream
        .publish("akira.poison.1", "poison".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // The worker dead-letters the message itself on its last delivery...
    let letter = DeadLetter {
        stream: "POISON".to_string(),
        consumer: "poison-worker".to_string(),
        subject: "akira.poison.1".to_string(),
        sequence: 1,
        deliveries: 3,
        reason: Reason::MaxDeliver,
        error: "boom".to_string(),
        worker: "poison-worker@test".to_string(),
        failed_at: time::OffsetDateTime::now_utc(),
    };
    letter
        .publish(&jetstream, None, "poison".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // ...and the server's advisory for the same message reaches the sentinel.
    let client = async_nats::connect(env.url()).await.unwrap();
    let advisory = r#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"POISON","consumer":"poison-worker","stream_seq":1,"deliveries":3}"#;
    client
        .publish(ADVISORY_SUBJECT, advisory.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    sentinel.wait_for_log("already dead-lettered").await;

    let letters = dead_letters(&env);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["reason"], "max_deliver");
    assert_eq!(letters[0]["worker"], "poison-worker@test");

    let (code, log) = sentinel.stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("duplicates=1"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn advisory_for_missing_message_is_logged() {
    let env = setup();
    let sentinel = Sentinel::start(&env).await;

    let client = async_nats::connect(env.url()).await.unwrap();
    let advisory =
        r#"{"stream":"POISON","consumer":"poison-worker","stream_seq":42,"deliveries":3}"#;
    client
        .publish(ADVISORY_SUBJECT, advisory.into())
        .await
        .unwrap();
    client
        .publish(ADVISORY_SUBJECT, "not json".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    sentinel.wait_for_log("no longer in its stream").await;
    sentinel
        .wait_for_log("invalid MAX_DELIVERIES advisory")
        .await;
    let log = sentinel.log();
    let warning = log
        .lines()
        .find(|line| line.contains("no longer in its stream"))
        .unwrap();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("stream_seq=42"), "{warning}");

    assert_eq!(dlq_count(&env).await, 0);
    let (code, log) = sentinel.stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("gone=1"), "{log}");
    assert!(log.contains("skipped=1"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinel_listens_again_after_server_restart() {
    let mut env = setup();
    let sentinel = Sentinel::start(&env).await;
    env.server.restart();

    let jetstream = env.jetstream().await;
    jetstream
        .publish("akira.poison.1", "poison".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let client = async_nats::connect(env.url()).await.unwrap();
    let advisory =
        r#"{"stream":"POISON","consumer":"poison-worker","stream_seq":1,"deliveries":3}"#;

    // The sentinel resubscribes after it reconnects; until then an advisory is lost, which is
    // why this publishes again until the dead letter appears.
    wait_for("the dead letter after a server restart", DEADLINE, || {
        let client = client.clone();
        let env = &env;
        async move {
            client
                .publish(ADVISORY_SUBJECT, advisory.into())
                .await
                .unwrap();
            client.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            dlq_count(env).await == 1
        }
    })
    .await;

    let letters = dead_letters(&env);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["reason"], "max_deliver_advisory");
    let (code, log) = sentinel.stop().await;
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn sentinel_help_explains_the_backstop() {
    let run = support::ctl_with_env(&["dlq", "sentinel", "--help"], &[], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("--queue-group"), "{}", run.stdout);
    assert!(run.stdout.contains("--stream"), "{}", run.stdout);
    assert!(run.stdout.contains("core NATS messages"), "{}", run.stdout);
    assert!(run.stdout.contains("must run"), "{}", run.stdout);
}
