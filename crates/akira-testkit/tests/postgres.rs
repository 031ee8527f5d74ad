use std::net::TcpStream;

use akira_testkit::Postgres;
use sqlx::{Connection, PgConnection};

async fn connect(postgres: &Postgres) -> PgConnection {
    PgConnection::connect(&postgres.url())
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", postgres.url()))
}

#[tokio::test]
async fn start_accepts_connection_as_akira() {
    let postgres = Postgres::start();
    assert_eq!(
        postgres.url(),
        format!("postgres://akira@127.0.0.1:{}/akira", postgres.port())
    );

    let mut connection = connect(&postgres).await;
    let (database, user): (String, String) =
        sqlx::query_as("SELECT current_database(), current_user::text")
            .fetch_one(&mut connection)
            .await
            .expect("query the session");

    assert_eq!(database, "akira");
    assert_eq!(user, "akira");
}

#[tokio::test]
async fn stop_and_start_again_keep_data() {
    let mut postgres = Postgres::start();
    let port = postgres.port();
    let mut connection = connect(&postgres).await;
    sqlx::query("CREATE TABLE kept (value text NOT NULL)")
        .execute(&mut connection)
        .await
        .expect("create a table");
    sqlx::query("INSERT INTO kept (value) VALUES ('before the outage')")
        .execute(&mut connection)
        .await
        .expect("insert a row");
    drop(connection);

    postgres.stop();
    assert!(!postgres.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(PgConnection::connect(&postgres.url()).await.is_err());

    postgres.start_again();
    assert!(postgres.is_running());
    assert_eq!(postgres.port(), port);
    let mut connection = connect(&postgres).await;
    let (value,): (String,) = sqlx::query_as("SELECT value FROM kept")
        .fetch_one(&mut connection)
        .await
        .expect("read the row back");
    assert_eq!(value, "before the outage");
}

#[test]
fn drop_stops_cluster_and_removes_dir() {
    let postgres = Postgres::start();
    let port = postgres.port();
    let data_dir = postgres.data_dir().to_path_buf();
    assert!(data_dir.join("PG_VERSION").is_file());

    drop(postgres);

    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!data_dir.exists());
}
