//! Retry delays, dead letters, permanent errors, panics and in-progress acks.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akira_testkit::NatsServer;
use akira_workers::dlq::{self, headers, DeadLetter, Reason};
use akira_workers::{HandlerError, Worker};
use async_nats::jetstream;
use common::*;

fn push_settings(stream: &str, extra: &str) -> String {
    let lower = stream.to_lowercase();
    format!(
        "[consumer]\nstream = \"{stream}\"\ndurable_name = \"{lower}\"\nfilter_subject = \"{lower}.>\"\n\
         deliver_subject = \"akira.deliver.{lower}\"\n{extra}"
    )
}

type Deliveries = Arc<Mutex<Vec<(Instant, i64, String)>>>;

/// Starts a push worker whose handler records each delivery and returns the result of `outcome`.
async fn start_push<F>(
    url: &str,
    stream: &str,
    extra: &str,
    outcome: F,
) -> (
    Deliveries,
    tokio_util_token::Token,
    tokio::task::JoinHandle<Result<(), akira_workers::WorkerError>>,
)
where
    F: Fn(i64, &str) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    let worker = Worker::start(config(
        url,
        &stream.to_lowercase(),
        &push_settings(stream, extra),
    ))
    .await
    .unwrap();
    let token = worker.shutdown_token();
    let deliveries: Deliveries = Arc::new(Mutex::new(Vec::new()));
    let recorder = deliveries.clone();
    let outcome = Arc::new(outcome);
    let running = tokio::spawn(worker.run_push(move |delivery| {
        let recorder = recorder.clone();
        let outcome = outcome.clone();
        async move {
            let payload = String::from_utf8_lossy(delivery.payload()).to_string();
            recorder
                .lock()
                .unwrap()
                .push((Instant::now(), delivery.delivered(), payload.clone()));
            outcome(delivery.delivered(), &payload)
        }
    }));
    (deliveries, tokio_util_token::Token(token), running)
}

mod tokio_util_token {
    /// The worker's shutdown token, cancelled when the test ends.
    pub struct Token(pub tokio_util::sync::CancellationToken);
    impl Drop for Token {
        fn drop(&mut self) {
            self.0.cancel();
        }
    }
}

async fn dlq_messages(
    js: &jetstream::Context,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let Ok(stream) = js.get_stream(dlq::DLQ_STREAM).await else {
        return Vec::new();
    };
    let mut stream_copy = stream.clone();
    let info = stream_copy.info().await.unwrap();
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            out.push(message);
        }
    }
    out
}

#[tokio::test]
async fn retry_gaps_grow_with_policy() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    create_stream(&js, "RETRY", "retry.>").await;
    let (deliveries, _token, _running) = start_push(
        &server.url(),
        "RETRY",
        "[retry]\nbase = \"500ms\"\ncap = \"5s\"\nmax_deliver = 5\njitter = 0.2\n",
        |delivered, _| {
            if delivered <= 2 {
                Err(HandlerError::retry("not yet"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    js.publish("retry.one", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let done = wait_until(Duration::from_secs(15), || async {
        deliveries.lock().unwrap().len() >= 3
    })
    .await;
    assert!(done, "saw {} deliveries", deliveries.lock().unwrap().len());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = deliveries.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "a succeeded message was delivered again");
    assert_eq!(seen.iter().map(|d| d.1).collect::<Vec<_>>(), vec![1, 2, 3]);
    let first_gap = seen[1].0 - seen[0].0;
    let second_gap = seen[2].0 - seen[1].0;
    assert!(
        first_gap >= Duration::from_millis(400),
        "first gap {first_gap:?} < 0.8 x 500ms"
    );
    assert!(
        second_gap >= Duration::from_millis(800),
        "second gap {second_gap:?} < 0.8 x 1s"
    );
    assert!(
        second_gap > first_gap,
        "gaps did not grow: {first_gap:?} then {second_gap:?}"
    );
}

#[tokio::test]
async fn always_failing_message_is_dead_lettered_once() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    create_stream(&js, "FAIL", "fail.>").await;
    let mut headers_in = async_nats::HeaderMap::new();
    headers_in.insert("X-Origin", "test");
    let (deliveries, _token, _running) = start_push(
        &server.url(),
        "FAIL",
        "[retry]\nbase = \"100ms\"\ncap = \"1s\"\nmax_deliver = 3\n",
        |_, _| Err(HandlerError::retry("database unavailable")),
    )
    .await;
    js.publish_with_headers("fail.one", headers_in, "payload-1".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let stored = wait_until(Duration::from_secs(15), || async {
        dlq_messages(&js).await.len() == 1
    })
    .await;
    assert!(
        stored,
        "AKIRA_DLQ holds {} messages",
        dlq_messages(&js).await.len()
    );
    let letters = dlq_messages(&js).await;
    let letter = &letters[0];
    assert_eq!(letter.subject.as_str(), "akira.dlq.FAIL.fail");
    assert_eq!(letter.payload.as_ref(), b"payload-1");
    let h = &letter.headers;
    let get = |name: &str| {
        h.get(name)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    assert_eq!(get(headers::STREAM), "FAIL");
    assert_eq!(get(headers::CONSUMER), "fail");
    assert_eq!(get(headers::SUBJECT), "fail.one");
    assert_eq!(get(headers::SEQUENCE), "1");
    assert_eq!(get(headers::DELIVERIES), "3");
    assert_eq!(get(headers::REASON), "max_deliver");
    assert!(get(headers::ERROR).contains("database unavailable"));
    assert!(get(headers::WORKER).starts_with("fail@"));
    assert!(time::OffsetDateTime::parse(
        &get(headers::FAILED_AT),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    assert_eq!(get(headers::MSG_ID), "dlq:FAIL:1");
    assert_eq!(get("X-Origin"), "test");
    assert_eq!(deliveries.lock().unwrap().len(), 3);

    let settled = wait_until(Duration::from_secs(5), || async {
        let (pending, awaiting, _) = consumer_state(&js, "FAIL", "fail").await;
        pending == 0 && awaiting == 0
    })
    .await;
    assert!(
        settled,
        "the original is still pending: {:?}",
        consumer_state(&js, "FAIL", "fail").await
    );

    // Dead-lettering the same message again (a second worker, or the sentinel) stores nothing new.
    let again = DeadLetter {
        stream: "FAIL".into(),
        consumer: "fail".into(),
        subject: "fail.one".into(),
        sequence: 1,
        deliveries: 3,
        reason: Reason::MaxDeliverAdvisory,
        error: "again".into(),
        worker: "other@host".into(),
        failed_at: time::OffsetDateTime::now_utc(),
    };
    let ack = again
        .publish(&js, None, "payload-1".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        ack.duplicate,
        "the second dead letter was not recognised as a duplicate"
    );
    assert_eq!(dlq_messages(&js).await.len(), 1);
}

#[tokio::test]
async fn permanent_error_is_dead_lettered_on_first_delivery() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    create_stream(&js, "PERM", "perm.>").await;
    let (deliveries, _token, _running) = start_push(&server.url(), "PERM", "", |_, _| {
        Err(HandlerError::permanent("missing field callid"))
    })
    .await;
    js.publish("perm.one", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let stored = wait_until(Duration::from_secs(10), || async {
        dlq_messages(&js).await.len() == 1
    })
    .await;
    assert!(stored);
    let letter = &dlq_messages(&js).await[0];
    assert_eq!(
        letter.headers.get(headers::REASON).unwrap().as_str(),
        "permanent"
    );
    assert_eq!(
        letter.headers.get(headers::DELIVERIES).unwrap().as_str(),
        "1"
    );
    assert_eq!(
        letter.headers.get(headers::ERROR).unwrap().as_str(),
        "missing field callid"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deliveries.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn panicking_handler_is_retried() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    create_stream(&js, "PANIC", "panic.>").await;
    let (deliveries, _token, running) = start_push(
        &server.url(),
        "PANIC",
        "[retry]\nbase = \"100ms\"\n",
        |delivered, payload| {
            if payload == "boom" && delivered == 1 {
                panic!("handler bug");
            }
            Ok(())
        },
    )
    .await;
    js.publish("panic.one", "boom".into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("panic.two", "fine".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let done = wait_until(Duration::from_secs(10), || async {
        let seen = deliveries.lock().unwrap();
        seen.iter().any(|d| d.2 == "boom" && d.1 == 2) && seen.iter().any(|d| d.2 == "fine")
    })
    .await;
    assert!(done, "deliveries: {:?}", deliveries.lock().unwrap());
    assert!(!running.is_finished(), "the worker stopped after a panic");
    let settled = wait_until(Duration::from_secs(5), || async {
        let (pending, awaiting, _) = consumer_state(&js, "PANIC", "panic").await;
        pending == 0 && awaiting == 0
    })
    .await;
    assert!(settled);
}

#[tokio::test]
async fn slow_handler_is_delivered_once() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    create_stream(&js, "SLOW", "slow.>").await;
    let worker = Worker::start(config(
        &server.url(),
        "slow",
        &push_settings("SLOW", "ack_wait = \"1s\"\n[retry]\nbase = \"1s\"\n"),
    ))
    .await
    .unwrap();
    let _token = tokio_util_token::Token(worker.shutdown_token());
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    tokio::spawn(worker.run_push(move |_| {
        let count = c.clone();
        async move {
            *count.lock().unwrap() += 1;
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        }
    }));
    js.publish("slow.one", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let settled = wait_until(Duration::from_secs(10), || async {
        let (pending, awaiting, _) = consumer_state(&js, "SLOW", "slow").await;
        pending == 0 && awaiting == 0 && *count.lock().unwrap() >= 1
    })
    .await;
    assert!(settled);
    assert_eq!(
        *count.lock().unwrap(),
        1,
        "the slow message was redelivered"
    );
    let (_, _, redelivered) = consumer_state(&js, "SLOW", "slow").await;
    assert_eq!(redelivered, 0);
}
