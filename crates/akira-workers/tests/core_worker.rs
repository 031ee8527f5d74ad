//! Core NATS worker against a real nats-server.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use akira_testkit::NatsServer;
use akira_workers::Worker;
use common::*;

#[tokio::test]
async fn queue_group_splits_messages() {
    let server = NatsServer::start();
    let extra = "[core]\nsubjects = [\"events.>\"]\nqueue_group = \"events\"\n";
    let seen: Arc<Mutex<HashMap<String, Vec<&'static str>>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut tokens = Vec::new();
    let mut tasks = Vec::new();
    for instance in ["a", "b"] {
        let worker = Worker::start(config(&server.url(), "events", extra))
            .await
            .unwrap();
        tokens.push(worker.shutdown_token());
        let recorder = seen.clone();
        tasks.push(tokio::spawn(worker.run_core(move |delivery| {
            let recorder = recorder.clone();
            async move {
                let payload = String::from_utf8_lossy(delivery.payload()).to_string();
                recorder
                    .lock()
                    .unwrap()
                    .entry(payload)
                    .or_default()
                    .push(instance);
                Ok(())
            }
        })));
    }
    let (client, _js) = connect(&server.url()).await;
    // Both subscriptions must be registered before publishing, since core NATS keeps nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..400 {
        client
            .publish("events.call", i.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    let done = wait_until(Duration::from_secs(10), || async {
        seen.lock().unwrap().len() >= 400
    })
    .await;
    assert!(done, "handled {} of 400", seen.lock().unwrap().len());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap().clone();
    let twice: Vec<_> = seen.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    let by_a = seen.values().filter(|who| who[0] == "a").count();
    let by_b = seen.values().filter(|who| who[0] == "b").count();
    assert!(
        by_a > 0 && by_b > 0,
        "one instance got everything: a={by_a} b={by_b}"
    );
    assert_eq!(by_a + by_b, 400);

    for token in tokens {
        token.cancel();
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}
