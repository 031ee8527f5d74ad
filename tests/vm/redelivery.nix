# A handler that fails twice with a retryable error, then succeeds: the
# message is delivered three times, acknowledged once, and never reaches
# the dead-letter stream.
#
# Mirrored by `redelivery` in crates/akira-e2e/tests/vm_mirror.rs.
{
  baseNode,
  exampleWorker,
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
      workers.example = exampleWorker {
        example = {
          behaviour = "fail-then-succeed";
          fail_times = 2;
        };
      };
    };
  };

  testScript = pythonHelpers + ''
    machine.wait_for_unit("nats.service")
    machine.wait_for_unit("akira-nats-provision.service")
    machine.wait_for_unit("akira-example.service")

    machine.succeed(f"{NATS} pub akira.test.redelivery 'redelivery test'")
    wait_for_json("consumer info TEST example", ".ack_floor.stream_seq == 1", timeout=60)

    info = consumer_info("TEST", "example")
    deliveries = info["delivered"]["consumer_seq"]
    assert deliveries == 3, f"expected 3 deliveries (2 failures, then success), got {deliveries}"
    assert info["num_ack_pending"] == 0, f"unacknowledged messages: {info['num_ack_pending']}"
    assert info["num_pending"] == 0, f"undelivered messages: {info['num_pending']}"
    assert dead_letter_count() == 0, f"expected no dead letters, found {dead_letter_count()}"

    handled = records()
    expected = [
        ("akira.test.redelivery", 1, 1, "failed", "redelivery test"),
        ("akira.test.redelivery", 1, 2, "failed", "redelivery test"),
        ("akira.test.redelivery", 1, 3, "ok", "redelivery test"),
    ]
    assert handled == expected, f"expected the handler to see {expected}, got {handled}"

    metrics = worker_metrics()
    redeliveries = metric_values(metrics, "akira_worker_redeliveries_total", {"worker": "example"})
    assert redeliveries == [2.0], f"expected akira_worker_redeliveries_total 2, got {redeliveries}"
    retries = metric_values(metrics, "akira_worker_messages_total", {"worker": "example", "outcome": "retry"})
    assert retries == [2.0], f"expected akira_worker_messages_total 2 for outcome retry, got {retries}"
    acks = metric_values(metrics, "akira_worker_messages_total", {"worker": "example", "outcome": "ack"})
    assert acks == [1.0], f"expected akira_worker_messages_total 1 for outcome ack, got {acks}"
  '';
}
