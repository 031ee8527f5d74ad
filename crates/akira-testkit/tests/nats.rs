use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use akira_testkit::{Error, NatsServer};
use async_nats::jetstream::{self, stream::StorageType};

const STREAM: &str = "TESTKIT";

/// Creates a file-backed stream and publishes `count` messages, waiting for each PubAck.
async fn publish_messages(url: &str, count: usize) {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let context = jetstream::new(client);
    context
        .create_stream(jetstream::stream::Config {
            name: STREAM.to_string(),
            subjects: vec!["testkit.>".to_string()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the stream");

    for index in 0..count {
        context
            .publish(
                format!("testkit.{index}"),
                format!("message {index}").into(),
            )
            .await
            .expect("publish")
            .await
            .expect("PubAck");
    }
}

/// Returns the stream's message count and the payload of sequence 1.
async fn read_stream(url: &str) -> (u64, String) {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let context = jetstream::new(client);
    let mut stream = context.get_stream(STREAM).await.expect("get the stream");
    let messages = stream.info().await.expect("stream info").state.messages;
    let first = stream.get_raw_message(1).await.expect("get message 1");
    (
        messages,
        String::from_utf8_lossy(&first.payload).into_owned(),
    )
}

fn http_get(url: &str, path: &str) -> String {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect to the monitoring port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

#[test]
fn start_serves_clients_and_monitoring() {
    let server = NatsServer::start();

    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert_ne!(server.port(), server.monitor_port());
    assert!(server.store_dir().is_dir());
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_ok());

    let response = http_get(&server.monitor_url(), "/healthz");
    let status_line = response.lines().next().unwrap_or_default();
    assert!(status_line.contains(" 200 "), "response: {response}");
    assert!(
        response.ends_with(r#"{"status":"ok"}"#),
        "response: {response}"
    );
}

#[tokio::test]
async fn restart_keeps_jetstream_data() {
    let mut server = NatsServer::start();
    let port = server.port();
    publish_messages(&server.url(), 3).await;

    server.restart();

    assert!(server.is_running());
    assert_eq!(server.port(), port);
    let (messages, first) = read_stream(&server.url()).await;
    assert_eq!(messages, 3);
    assert_eq!(first, "message 0");
}

#[tokio::test]
async fn kill_then_restart_keeps_acknowledged_data() {
    let mut server = NatsServer::start();
    publish_messages(&server.url(), 2).await;

    server.kill();
    assert!(!server.is_running());
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_err());

    server.restart();
    let (messages, first) = read_stream(&server.url()).await;
    assert_eq!(messages, 2);
    assert_eq!(first, "message 0");
}

#[test]
fn stop_then_restart_on_same_port() {
    let mut server = NatsServer::start();
    let port = server.port();

    server.stop();
    assert!(!server.is_running());
    assert!(server.pid().is_none());

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn drop_stops_server_and_removes_dir() {
    let server = NatsServer::start();
    let port = server.port();
    let dir = server.dir().to_path_buf();
    assert!(dir.is_dir());

    drop(server);

    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists());
}

#[tokio::test]
async fn builder_config_enables_authorization() {
    let server = NatsServer::builder()
        .config(r#"authorization { user: "testkit", password: "secret" }"#)
        .start();

    let anonymous = async_nats::connect(server.url()).await;
    assert!(anonymous.is_err(), "a client without credentials connected");

    let client = async_nats::ConnectOptions::with_user_and_password(
        "testkit".to_string(),
        "secret".to_string(),
    )
    .connect(server.url())
    .await
    .expect("connect with credentials");
    client.flush().await.expect("flush");
}

#[test]
fn builder_without_jetstream_starts() {
    let server = NatsServer::builder().jetstream(false).start();

    let config = std::fs::read_to_string(server.config_path()).expect("read the config");
    assert!(!config.contains("jetstream"), "config: {config}");
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_ok());
}

#[test]
fn invalid_config_reports_log_tail() {
    let error = NatsServer::builder()
        .config("authorization { user: ")
        .try_start()
        .expect_err("started with an invalid config");

    let message = error.to_string();
    assert!(message.contains("nats-server exited with"), "{message}");
    assert!(message.contains("Parse error"), "{message}");

    let Error::ExitedEarly { log, .. } = error else {
        panic!("expected ExitedEarly, got {message}");
    };
    assert!(log.is_file(), "the log {} was not kept", log.display());
    let dir = log.parent().expect("the log is in the temp dir");
    std::fs::remove_dir_all(dir).expect("remove the kept temp dir");
}
