# A handler that fails twice with a retryable error, then succeeds: the
# message is delivered three times, acknowledged once, and never reaches
# the dead-letter stream.
{
  baseNode,
  flakyWorker,
  pythonHelpers,
  testStream,
  ...
}:
{
  name = "akira-redelivery";

  nodes.machine = {
    imports = [ baseNode ];
    services.akira-workers = {
      streams.TEST = testStream;
      workers.flaky = flakyWorker { flaky.fail_times = 2; };
    };
  };

  testScript = pythonHelpers + ''
    machine.wait_for_unit("nats.service")
    machine.wait_for_unit("akira-nats-provision.service")
    machine.wait_for_unit("akira-flaky.service")

    machine.succeed(f"{NATS} pub akira.test.redelivery 'redelivery test'")
    wait_for_json("consumer info TEST flaky", ".ack_floor.stream_seq == 1", timeout=60)

    info = consumer_info("TEST", "flaky")
    deliveries = info["delivered"]["consumer_seq"]
    assert deliveries == 3, f"expected 3 deliveries (2 failures, then success), got {deliveries}"
    assert info["num_ack_pending"] == 0, f"unacknowledged messages: {info['num_ack_pending']}"
    assert info["num_pending"] == 0, f"undelivered messages: {info['num_pending']}"
    assert dead_letter_count() == 0, f"expected no dead letters, found {dead_letter_count()}"

    metrics = machine.succeed("curl --fail --silent http://127.0.0.1:9464/metrics")
    redeliveries = metric_values(metrics, "akira_worker_redeliveries_total", {"worker": "flaky"})
    assert redeliveries == [2.0], f"expected akira_worker_redeliveries_total 2, got {redeliveries}"
  '';
}
