# A timer job runs from its timer as a oneshot service and writes its
# akira_job_* metrics to the node exporter's textfile directory.
#
# Mirrored by `timer` in crates/akira-e2e/tests/vm_mirror.rs.
{
  baseNode,
  exampleProgram,
  pythonHelpers,
  ...
}:
{
  name = "akira-timer";

  nodes.machine = {
    imports = [ baseNode ];

    # TODO: run akira-audit-retention against PostgreSQL here once the
    # fleet workers are in the workspace; until then the example job stands in.
    services.akira-workers = {
      textfileDirectory = "/var/lib/prometheus-node-exporter-text-files";
      workers.example-job = {
        class = "timer";
        executable = exampleProgram "akira-example-job";
        timer = {
          onCalendar = "*:*:0/10";
          persistent = false;
        };
      };
    };

    # The default accuracy of one minute would let the first run slip.
    systemd.timers.akira-example-job.timerConfig.AccuracySec = "1s";
  };

  testScript = pythonHelpers + ''
    TEXTFILE = "/var/lib/prometheus-node-exporter-text-files/example-job.prom"

    machine.wait_for_unit("akira-example-job.timer")
    machine.wait_until_succeeds(
        f"grep '^akira_job_last_success_timestamp_seconds' {TEXTFILE}", timeout=120
    )

    result = machine.succeed(
        "systemctl show --property=Result --value akira-example-job.service"
    ).strip()
    assert result == "success", f"the last run of akira-example-job.service ended with {result}"
    triggered = machine.succeed(
        "systemctl show --property=LastTriggerUSec --value akira-example-job.timer"
    ).strip()
    assert triggered not in ("", "n/a", "0"), f"the timer never fired: LastTriggerUSec={triggered}"

    metrics = machine.succeed(f"cat {TEXTFILE}")
    runs = metric_values(metrics, "akira_job_runs_total", {"worker": "example-job", "outcome": "success"})
    assert runs and runs[0] >= 1, f"expected at least one successful run, got {runs}"
    failures = metric_values(metrics, "akira_job_runs_total", {"worker": "example-job", "outcome": "failure"})
    assert failures == [0.0], f"expected no failed run, got {failures}"
    last_success = metric_values(metrics, "akira_job_last_success_timestamp_seconds", {"worker": "example-job"})
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
