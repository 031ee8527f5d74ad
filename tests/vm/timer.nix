# The retention job runs from its timer as a oneshot service: it deletes
# the rows older than max_age from a PostgreSQL table, connecting through
# peer authentication as the sample host does, and writes its akira_job_*
# metrics to the node exporter's textfile directory.
#
# Mirrored by `timer` in crates/akira-e2e/tests/vm_mirror.rs.
{
  lib,
  baseNode,
  pythonHelpers,
  ...
}:
{
  name = "akira-timer";

  nodes.machine = {
    imports = [ baseNode ];

    services.postgresql = {
      enable = true;
      ensureDatabases = [ "akira" ];
      ensureUsers = [
        {
          name = "akira";
          ensureDBOwnership = true;
        }
      ];
      identMap = ''
        akira akira-audit-retention akira
      '';
      authentication = ''
        local akira akira peer map=akira
      '';
    };

    services.akira-workers = {
      textfileDirectory = "/var/lib/prometheus-node-exporter-text-files";
      workers.audit-retention = {
        class = "timer";
        timer = {
          onCalendar = "*:*:0/10";
          persistent = false;
        };
        settings.retention = {
          database_url = "postgres:///akira?host=/run/postgresql&user=akira";
          table = "retention_test";
          timestamp_column = "created_at";
          max_age = "30d";
        };
        wants = [ "postgresql.service" ];
      };
    };

    # The test script starts the timer once the table exists. The default
    # accuracy of one minute would let the first run slip.
    systemd.timers.akira-audit-retention = {
      wantedBy = lib.mkForce [ ];
      timerConfig.AccuracySec = "1s";
    };
  };

  testScript = pythonHelpers + ''
    TEXTFILE = "/var/lib/prometheus-node-exporter-text-files/audit-retention.prom"
    # Three rows older than max_age (30 days) and two recent ones.
    SETUP_SQL = (
        "CREATE TABLE retention_test (id integer PRIMARY KEY, created_at timestamptz NOT NULL);"
        " INSERT INTO retention_test SELECT i, now() - interval '60 days' FROM generate_series(1, 3) AS i;"
        " INSERT INTO retention_test SELECT i, now() FROM generate_series(4, 5) AS i;"
    )


    def sql(query):
        return machine.succeed(
            f"runuser -u postgres -- psql --dbname=akira --tuples-only --no-align -v ON_ERROR_STOP=1 --command=\"{query}\""
        ).strip()


    machine.wait_for_unit("postgresql.service")
    sql(SETUP_SQL)
    sql("ALTER TABLE retention_test OWNER TO akira")
    machine.succeed("systemctl start akira-audit-retention.timer")

    machine.wait_until_succeeds(
        f"grep '^akira_job_last_success_timestamp_seconds' {TEXTFILE}", timeout=120
    )

    result = machine.succeed(
        "systemctl show --property=Result --value akira-audit-retention.service"
    ).strip()
    assert result == "success", f"the last run of akira-audit-retention.service ended with {result}"
    triggered = machine.succeed(
        "systemctl show --property=LastTriggerUSec --value akira-audit-retention.timer"
    ).strip()
    assert triggered not in ("", "n/a", "0"), f"the timer never fired: LastTriggerUSec={triggered}"

    output = machine.succeed("journalctl --unit=akira-audit-retention.service --output=cat")
    assert "deleted 3 rows from retention_test" in output, f"no deletion reported:\n{output}"
    old_rows = sql("SELECT count(*) FROM retention_test WHERE created_at < now() - interval '30 days'")
    assert old_rows == "0", f"{old_rows} rows older than 30 days remain"
    rows = sql("SELECT count(*) FROM retention_test")
    assert rows == "2", f"expected the 2 recent rows to remain, found {rows}"

    metrics = machine.succeed(f"cat {TEXTFILE}")
    worker = {"worker": "audit-retention"}
    runs = metric_values(metrics, "akira_job_runs_total", {**worker, "outcome": "success"})
    assert runs and runs[0] >= 1, f"expected at least one successful run, got {runs}"
    failures = metric_values(metrics, "akira_job_runs_total", {**worker, "outcome": "failure"})
    assert failures == [0.0], f"expected no failed run, got {failures}"
    last_success = metric_values(metrics, "akira_job_last_success_timestamp_seconds", worker)
    now = float(machine.succeed("date +%s"))
    assert len(last_success) == 1 and now - 600 < last_success[0] <= now + 1, (
        f"akira_job_last_success_timestamp_seconds {last_success} is not recent (now {now})"
    )
    assert "akira_job_duration_seconds" in metrics, "akira_job_duration_seconds missing from the textfile"

    # The node exporter runs as another user and must be able to read the file.
    mode = machine.succeed(f"stat --format=%a {TEXTFILE}").strip()
    assert mode == "644", f"textfile mode {mode}, expected 644"
  '';
}
