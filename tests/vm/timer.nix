# The retention job runs from its timer as a oneshot service and writes its
# akira_job_* metrics to the node exporter's textfile directory.
{
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
      ensureUsers = [ { name = "akira-audit-retention"; } ];
    };

    # NOTE: the `[retention]` keys are the assumed configuration of the
    # audit-retention worker; keep them in step with its crate.
    services.akira-workers = {
      textfileDirectory = "/var/lib/prometheus-node-exporter-text-files";
      workers.audit-retention = {
        class = "timer";
        timer = {
          onCalendar = "*:*:0/10";
          persistent = false;
        };
        settings.retention.database_url = "postgresql:///akira?host=/run/postgresql&user=akira-audit-retention";
        wants = [ "postgresql.service" ];
      };
    };

    # The default accuracy of one minute would let the first run slip.
    systemd.timers.akira-audit-retention.timerConfig.AccuracySec = "1s";
  };

  testScript = pythonHelpers + ''
    TEXTFILE_DIR = "/var/lib/prometheus-node-exporter-text-files"

    machine.wait_for_unit("akira-audit-retention.timer")
    machine.wait_until_succeeds(
        f"grep --no-filename '^akira_job_last_success_timestamp_seconds' {TEXTFILE_DIR}/*.prom",
        timeout=120,
    )

    result = machine.succeed(
        "systemctl show --property=Result --value akira-audit-retention.service"
    ).strip()
    assert result == "success", f"the last run of akira-audit-retention.service ended with {result}"
    triggered = machine.succeed(
        "systemctl show --property=LastTriggerUSec --value akira-audit-retention.timer"
    ).strip()
    assert triggered not in ("", "n/a", "0"), f"the timer never fired: LastTriggerUSec={triggered}"

    metrics = machine.succeed(f"cat {TEXTFILE_DIR}/*.prom")
    runs = metric_values(metrics, "akira_job_runs_total", {"outcome": "success"})
    assert runs and runs[0] >= 1, f"expected at least one successful run, got {runs}"
    last_success = metric_values(metrics, "akira_job_last_success_timestamp_seconds", {})
    now = float(machine.succeed("date +%s"))
    assert last_success and now - 600 < last_success[0] <= now + 1, (
        f"akira_job_last_success_timestamp_seconds {last_success} is not recent (now {now})"
    )
    assert "akira_job_duration_seconds" in metrics, "akira_job_duration_seconds missing from the textfile"

    # The node exporter runs as another user and must be able to read the file.
    modes = machine.succeed(f"stat --format=%a {TEXTFILE_DIR}/*.prom").split()
    assert all(mode == "644" for mode in modes), f"textfile modes {modes}, expected 644"
  '';
}
