//! JetStream push worker against a real nats-server.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use akira_testkit::NatsServer;
use akira_workers::Worker;
use common::*;

const PUSH: &str = "[consumer]\nstream = \"ORDERS\"\ndurable_name = \"orders\"\nfilter_subject = \"orders.>\"\n\
                    deliver_subject = \"akira.deliver.orders\"\ndeliver_group = \"orders\"\nmax_in_flight = 8\n";

#[tokio::test]
async fn push_worker_acks_every_message() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    create_stream(&js, "ORDERS", "orders.>").await;

    let worker = Worker::start(config(&server.url(), "orders", PUSH))
        .await
        .unwrap();
    let shutdown = worker.shutdown_token();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let running = tokio::spawn(worker.run_push(move |delivery| {
        let recorder = recorder.clone();
        async move {
            recorder
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(delivery.payload()).to_string());
            Ok(())
        }
    }));

    publish_numbers(&js, "orders.new", 0..200).await;
    let all_seen = wait_until(Duration::from_secs(20), || async {
        seen.lock().unwrap().len() >= 200
    })
    .await;
    assert!(all_seen, "handled {} of 200", seen.lock().unwrap().len());
    let settled = wait_until(Duration::from_secs(10), || async {
        consumer_state(&js, "ORDERS", "orders").await == (0, 0, 0)
    })
    .await;
    let state = consumer_state(&js, "ORDERS", "orders").await;
    assert!(
        settled,
        "consumer (pending, awaiting ack, redelivered) = {state:?}"
    );

    let distinct: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(distinct.len(), 200);
    assert_eq!(
        seen.lock().unwrap().len(),
        200,
        "a message was handled twice"
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn handler_publish_carries_correlation_id() {
    use futures::StreamExt;

    let server = NatsServer::start();
    let (client, js) = connect(&server.url()).await;
    create_stream(&js, "ORDERS", "orders.>").await;
    let mut downstream = client.subscribe("downstream.>").await.unwrap();

    let worker = Worker::start(config(&server.url(), "orders", PUSH))
        .await
        .unwrap();
    let shutdown = worker.shutdown_token();
    let running = tokio::spawn(worker.run_push(|delivery| async move {
        delivery
            .publisher()
            .publish("downstream.event", delivery.payload().clone())
            .await
            .map_err(akira_workers::HandlerError::retry)?;
        Ok(())
    }));

    let mut with_id = async_nats::HeaderMap::new();
    with_id.insert("Akira-Correlation-Id", "corr-7");
    js.publish_with_headers("orders.a", with_id, "a".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut with_msg_id = async_nats::HeaderMap::new();
    with_msg_id.insert("Nats-Msg-Id", "msg-9");
    js.publish_with_headers("orders.b", with_msg_id, "b".into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("orders.c", "c".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let mut ids = std::collections::HashMap::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(10), downstream.next())
            .await
            .unwrap()
            .unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Akira-Correlation-Id"))
            .map(|v| v.as_str().to_string());
        ids.insert(String::from_utf8_lossy(&message.payload).to_string(), id);
    }
    assert_eq!(ids["a"].as_deref(), Some("corr-7"));
    assert_eq!(ids["b"].as_deref(), Some("msg-9"));
    let generated = ids["c"].clone().expect("a new correlation id");
    assert_eq!(generated.len(), 36, "not a UUID: {generated}");

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn push_worker_resumes_after_server_restart() {
    let mut server = NatsServer::start();
    let url = server.url();
    let (_client, js) = connect(&url).await;
    create_stream(&js, "ORDERS", "orders.>").await;
    publish_numbers(&js, "orders.new", 0..100).await;

    let worker = Worker::start(config(&url, "orders", PUSH)).await.unwrap();
    let shutdown = worker.shutdown_token();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let recorder = seen.clone();
    let running = tokio::spawn(worker.run_push(move |delivery| {
        let recorder = recorder.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            recorder
                .lock()
                .unwrap()
                .insert(String::from_utf8_lossy(delivery.payload()).to_string());
            Ok(())
        }
    }));
    let started = wait_until(Duration::from_secs(20), || async {
        seen.lock().unwrap().len() >= 10
    })
    .await;
    assert!(started);
    assert!(
        seen.lock().unwrap().len() < 100,
        "the run finished before the restart"
    );

    // The restart blocks until the server is ready again, so it runs off the runtime's threads.
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();

    let (_client2, js2) = connect(&url).await;
    publish_numbers(&js2, "orders.new", 100..150).await;
    let done = wait_until(Duration::from_secs(60), || async {
        seen.lock().unwrap().len() >= 150
    })
    .await;
    assert!(
        done,
        "handled {} of 150 after the restart",
        seen.lock().unwrap().len()
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop(server);
}
