# A handler that fails permanently: the message lands in AKIRA_DLQ after its
# first delivery with the dead-letter headers, and `akira-workerctl dlq
# replay` publishes it again on its original subject.
{
  baseNode,
  flakyWorker,
  pythonHelpers,
  testStream,
  ...
}:
{
  name = "akira-dead-letter";

  nodes.machine = {
    imports = [ baseNode ];
    services.akira-workers = {
      streams.TEST = testStream;
      workers.flaky = flakyWorker { flaky.permanent = true; };
    };
  };

  # NOTE: `dlq replay <sequence>` is the assumed argument form of
  # akira-workerctl; the contract only names the subcommand.
  testScript = pythonHelpers + ''
    machine.wait_for_unit("akira-nats-provision.service")
    machine.wait_for_unit("akira-flaky.service")

    machine.succeed(
        f"{NATS} pub akira.test.poison 'poison message' -H 'Akira-Correlation-Id:dead-letter-test'"
    )
    wait_for_json("stream info AKIRA_DLQ", ".state.messages == 1", timeout=60)

    subject, headers, payload = stored_message("AKIRA_DLQ", 1)
    assert subject == "akira.dlq.TEST.flaky", f"dead letter published on {subject}"
    assert payload == b"poison message", f"dead letter payload changed: {payload!r}"
    assert_fields("dead-letter headers", headers, {
        "Akira-Dlq-Stream": "TEST",
        "Akira-Dlq-Consumer": "flaky",
        "Akira-Dlq-Subject": "akira.test.poison",
        "Akira-Dlq-Sequence": "1",
        "Akira-Dlq-Deliveries": "1",
        "Akira-Dlq-Reason": "permanent",
        "Akira-Dlq-Worker": "flaky",
        "Akira-Correlation-Id": "dead-letter-test",
        "Nats-Msg-Id": "dlq:TEST:1",
    })
    assert "Akira-Dlq-Failed-At" in headers, f"Akira-Dlq-Failed-At missing from {sorted(headers)}"

    wait_for_json("consumer info TEST flaky", ".ack_floor.stream_seq == 1", timeout=30)
    deliveries = consumer_info("TEST", "flaky")["delivered"]["consumer_seq"]
    assert deliveries == 1, f"a permanent failure is not retried, but the message was delivered {deliveries} times"

    metrics = machine.succeed("curl --fail --silent http://127.0.0.1:9464/metrics")
    dead_letters = metric_values(
        metrics, "akira_worker_dead_letters_total", {"worker": "flaky", "reason": "permanent"}
    )
    assert dead_letters == [1.0], f"expected akira_worker_dead_letters_total 1, got {dead_letters}"

    # With the worker stopped the replayed message stays in TEST to be inspected.
    machine.systemctl("stop akira-flaky.service")
    machine.succeed("NATS_URL=nats://127.0.0.1:4222 akira-workerctl dlq replay 1")
    wait_for_json("stream info TEST", ".state.messages == 2", timeout=30)

    subject, headers, payload = stored_message("TEST", 2)
    assert subject == "akira.test.poison", f"replay published on {subject}"
    assert payload == b"poison message", f"replayed payload changed: {payload!r}"
    assert_fields("replay headers", headers, {"Nats-Msg-Id": "replay:1"})
  '';
}
