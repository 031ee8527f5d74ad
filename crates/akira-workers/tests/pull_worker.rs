//! JetStream pull worker against a real nats-server.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use akira_testkit::NatsServer;
use akira_workers::{Delivery, HandlerResult, Worker};
use common::*;

#[tokio::test]
async fn pull_worker_bounds_messages_in_flight() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    create_stream(&js, "BULK", "bulk.>").await;
    publish_numbers(&js, "bulk.item", 0..10_000).await;

    let extra =
        "[consumer]\nstream = \"BULK\"\ndurable_name = \"bulk\"\nfilter_subject = \"bulk.>\"\n\
                 max_in_flight = 64\nbatch_size = 50\nmax_wait = \"500ms\"\n";
    let worker = Worker::start(config(&server.url(), "bulk", extra))
        .await
        .unwrap();
    let shutdown = worker.shutdown_token();

    let current = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let largest_batch = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(Mutex::new(HashSet::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, m, l, h, n) = (
        current.clone(),
        max_seen.clone(),
        largest_batch.clone(),
        handled.clone(),
        calls.clone(),
    );
    let running = tokio::spawn(worker.run_pull(move |batch: Vec<Delivery>| {
        let (current, max_seen, largest, handled, calls) =
            (c.clone(), m.clone(), l.clone(), h.clone(), n.clone());
        async move {
            let size = batch.len();
            let now = current.fetch_add(size, Ordering::SeqCst) + size;
            max_seen.fetch_max(now, Ordering::SeqCst);
            largest.fetch_max(size, Ordering::SeqCst);
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            {
                let mut handled = handled.lock().unwrap();
                for delivery in &batch {
                    handled.insert(delivery.stream_sequence().unwrap());
                }
            }
            current.fetch_sub(size, Ordering::SeqCst);
            batch
                .iter()
                .map(|_| HandlerResult::Ok(()))
                .collect::<Vec<_>>()
        }
    }));

    let done = wait_until(Duration::from_secs(90), || async {
        handled.lock().unwrap().len() >= 10_000
    })
    .await;
    assert!(done, "handled {} of 10000", handled.lock().unwrap().len());
    let settled = wait_until(Duration::from_secs(10), || async {
        let (pending, awaiting, _) = consumer_state(&js, "BULK", "bulk").await;
        pending == 0 && awaiting == 0
    })
    .await;
    assert!(
        settled,
        "consumer state {:?}",
        consumer_state(&js, "BULK", "bulk").await
    );
    assert!(
        max_seen.load(Ordering::SeqCst) <= 64,
        "handler saw {} at once",
        max_seen.load(Ordering::SeqCst)
    );
    assert!(largest_batch.load(Ordering::SeqCst) <= 50);
    assert!(
        calls.load(Ordering::SeqCst) >= 200,
        "expected batches, got {} calls",
        calls.load(Ordering::SeqCst)
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop(server);
}

#[tokio::test]
async fn pull_worker_resumes_after_server_restart() {
    let mut server = NatsServer::start();
    let url = server.url();
    let (_client, js) = connect(&url).await;
    create_stream(&js, "RESTART", "restart.>").await;
    publish_numbers(&js, "restart.item", 0..200).await;

    let extra = "[consumer]\nstream = \"RESTART\"\ndurable_name = \"restart\"\nfilter_subject = \"restart.>\"\n\
                 ack_wait = \"2s\"\nmax_in_flight = 10\nbatch_size = 10\nmax_wait = \"500ms\"\n[retry]\nbase = \"200ms\"\n";
    let worker = Worker::start(config(&url, "restart", extra)).await.unwrap();
    let shutdown = worker.shutdown_token();
    let handled = Arc::new(Mutex::new(HashSet::new()));
    let h = handled.clone();
    let running = tokio::spawn(worker.run_pull(move |batch: Vec<Delivery>| {
        let handled = h.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut handled = handled.lock().unwrap();
            for delivery in &batch {
                handled.insert(String::from_utf8_lossy(delivery.payload()).to_string());
            }
            batch
                .iter()
                .map(|_| HandlerResult::Ok(()))
                .collect::<Vec<_>>()
        }
    }));

    let started = wait_until(Duration::from_secs(20), || async {
        handled.lock().unwrap().len() >= 20
    })
    .await;
    assert!(started);
    let before_restart = handled.lock().unwrap().len();
    assert!(
        before_restart < 200,
        "the run finished before the restart; slow the handler down"
    );
    // The restart blocks until the server is ready again, so it runs off the runtime's threads.
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();

    let (_client2, js2) = connect(&url).await;
    publish_numbers(&js2, "restart.item", 200..300).await;
    let done = wait_until(Duration::from_secs(60), || async {
        handled.lock().unwrap().len() >= 300
    })
    .await;
    assert!(
        done,
        "handled {} of 300 after the restart",
        handled.lock().unwrap().len()
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop(server);
}
