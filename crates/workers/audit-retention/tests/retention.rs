//! The retention job as a process against a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use akira_testkit::Postgres;
use sqlx::{Connection, PgConnection};

const OLD_ROWS: i64 = 12_345;
const NEW_ROWS: i64 = 100;

struct Setup {
    postgres: Postgres,
    dir: tempfile::TempDir,
}

/// Starts PostgreSQL with an `audit_log` table: rows 40 to 60 days old and rows from the
/// last day.
async fn setup() -> Setup {
    let postgres = Postgres::start();
    let mut db = PgConnection::connect(&postgres.url()).await.unwrap();
    sqlx::query(
        "CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, created_at timestamptz NOT NULL, note text)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit_log (created_at, note)
         SELECT now() - interval '40 days' - (n % 20) * interval '1 day', 'old ' || n FROM generate_series(1, $1) AS n",
    )
    .bind(OLD_ROWS)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit_log (created_at, note)
         SELECT now() - (n % 24) * interval '1 hour', 'new ' || n FROM generate_series(1, $1) AS n",
    )
    .bind(NEW_ROWS)
    .execute(&mut db)
    .await
    .unwrap();
    Setup {
        postgres,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn write_config(dir: &Path, database_url: &str, table: &str) -> PathBuf {
    let text = format!(
        r#"[worker]
name = "audit-retention"

[log]
format = "text"

[job]
textfile_dir = "{textfile_dir}"

[retention]
database_url = "{database_url}"
table = "{table}"
timestamp_column = "created_at"
max_age = "30d"
batch_size = 1000
pause = "100ms"
"#,
        textfile_dir = dir.display(),
    );
    let path = dir.join("retention.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_job(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_akira-audit-retention"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

async fn counts(database_url: &str) -> (i64, i64) {
    let mut db = PgConnection::connect(database_url).await.unwrap();
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE created_at < now() - interval '30 days'),
                count(*) FILTER (WHERE created_at >= now() - interval '30 days')
         FROM audit_log",
    )
    .fetch_one(&mut db)
    .await
    .unwrap()
}

fn textfile(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("audit-retention.prom")).unwrap_or_default()
}

#[tokio::test]
async fn old_rows_are_deleted_in_batches() {
    let setup = setup().await;
    let config = write_config(setup.dir.path(), &setup.postgres.url(), "audit_log");

    let started = Instant::now();
    let output = run_job(&config, &[]);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    assert_eq!(
        counts(&setup.postgres.url()).await,
        (0, NEW_ROWS),
        "old rows gone, new rows kept"
    );
    assert!(
        elapsed >= Duration::from_millis(12 * 100),
        "12 pauses of 100 ms between 13 batches, took {elapsed:?}"
    );
    assert!(
        stdout.contains(&format!("deleted {OLD_ROWS} rows from audit_log")),
        "{stdout}"
    );
    // 12,345 rows at 1,000 per batch: 12 full batches and one of 345.
    assert!(stdout.contains("in 13 batches"), "{stdout}");

    let metrics = textfile(setup.dir.path());
    assert!(
        metrics.contains("akira_job_runs_total{worker=\"audit-retention\",outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("akira_job_last_success_timestamp_seconds{worker=\"audit-retention\"}")
    );

    let again = run_job(&config, &[]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("deleted 0 rows"));
    assert_eq!(counts(&setup.postgres.url()).await, (0, NEW_ROWS));
}

#[tokio::test]
async fn dry_run_deletes_nothing() {
    let setup = setup().await;
    let config = write_config(setup.dir.path(), &setup.postgres.url(), "audit_log");

    let output = run_job(&config, &["--dry-run"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert!(
        stdout.contains(&format!(
            "dry run: would delete {OLD_ROWS} rows from audit_log"
        )),
        "{stdout}"
    );
    assert_eq!(
        counts(&setup.postgres.url()).await,
        (OLD_ROWS, NEW_ROWS),
        "nothing deleted"
    );
}

#[tokio::test]
async fn missing_table_fails_the_run() {
    let setup = setup().await;
    let config = write_config(setup.dir.path(), &setup.postgres.url(), "audit_logs");

    let output = run_job(&config, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("table audit_logs not found"), "{stderr}");
    assert!(
        textfile(setup.dir.path())
            .contains("akira_job_runs_total{worker=\"audit-retention\",outcome=\"failure\"} 1"),
        "{}",
        textfile(setup.dir.path())
    );
}

#[tokio::test]
async fn wrong_column_type_fails_the_run() {
    let setup = setup().await;
    let config = write_config(setup.dir.path(), &setup.postgres.url(), "audit_log");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "timestamp_column = \"created_at\"",
        "timestamp_column = \"note\"",
    );
    std::fs::write(&config, text).unwrap();

    let output = run_job(&config, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("column note of audit_log is text"),
        "{stderr}"
    );
    assert_eq!(counts(&setup.postgres.url()).await, (OLD_ROWS, NEW_ROWS));
}

#[test]
fn check_config_rejects_sql_in_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "postgres:///akira",
        "audit_log; DROP TABLE audit_log",
    );
    let output = run_job(&config, &["--check-config"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("retention.table"), "{stderr}");
}

#[test]
fn example_config_is_valid() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/config/audit-retention.toml");
    let output = run_job(&example, &["--check-config"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
