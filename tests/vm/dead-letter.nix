# A poison message: the worker exits on each of its deliveries without
# settling it, systemd restarts the worker, and after max_deliver
# deliveries the dead-letter sentinel moves the message to AKIRA_DLQ.
# `akira-workerctl dlq replay` then publishes it again on its original
# subject.
#
# Mirrored by `dead_letter` in crates/akira-e2e/tests/vm_mirror.rs.
{
  baseNode,
  exampleWorker,
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
      deadLetterSentinel.enable = true;
      workers.example = exampleWorker {
        example = {
          behaviour = "poison";
          poison = "poison";
        };
        consumer.maxDeliver = 3;
      };
    };
  };

  testScript = pythonHelpers + ''
    MAX_DELIVER = 3

    machine.wait_for_unit("akira-nats-provision.service")
    machine.wait_for_unit("akira-dlq-sentinel.service")
    machine.wait_for_unit("akira-example.service")
    restarts_before = restart_count("akira-example.service")

    machine.succeed(
        f"{NATS} pub akira.test.poison poison -H 'Akira-Correlation-Id:dead-letter-test'"
    )
    wait_for_json("stream info AKIRA_DLQ", ".state.messages == 1", timeout=120)

    subject, headers, payload = stored_message("AKIRA_DLQ", 1)
    assert subject == "akira.dlq.TEST.example", f"dead letter published on {subject}"
    assert payload == b"poison", f"dead letter payload changed: {payload!r}"
    assert_fields("dead-letter headers", headers, {
        "Akira-Dlq-Stream": "TEST",
        "Akira-Dlq-Consumer": "example",
        "Akira-Dlq-Subject": "akira.test.poison",
        "Akira-Dlq-Sequence": "1",
        "Akira-Dlq-Deliveries": str(MAX_DELIVER),
        "Akira-Dlq-Reason": "max_deliver_advisory",
        "Akira-Correlation-Id": "dead-letter-test",
        "Nats-Msg-Id": "dlq:TEST:1",
    })
    worker = headers.get("Akira-Dlq-Worker", "")
    assert worker.startswith("sentinel@"), f"Akira-Dlq-Worker is {worker!r}, expected sentinel@<host>"
    assert "Akira-Dlq-Failed-At" in headers, f"Akira-Dlq-Failed-At missing from {sorted(headers)}"

    deliveries = consumer_info("TEST", "example")["delivered"]["consumer_seq"]
    assert deliveries == MAX_DELIVER, f"expected {MAX_DELIVER} deliveries, got {deliveries}"
    restarts = restart_count("akira-example.service") - restarts_before
    assert restarts == MAX_DELIVER, (
        f"the worker should exit on each of the {MAX_DELIVER} deliveries and be restarted; restarts: {restarts}"
    )
    handled = records()
    assert handled == [], f"the poison message was settled: {handled}"

    # With the worker stopped the replayed message stays in TEST to be inspected.
    machine.systemctl("stop akira-example.service")
    output = machine.succeed("akira-workerctl dlq replay 1")
    assert "replayed 1 to akira.test.poison" in output, f"unexpected replay output: {output}"
    wait_for_json("stream info TEST", ".state.messages == 2", timeout=30)

    subject, headers, payload = stored_message("TEST", 2)
    assert subject == "akira.test.poison", f"replay published on {subject}"
    assert payload == b"poison", f"replayed payload changed: {payload!r}"
    assert_fields("replay headers", headers, {
        "Nats-Msg-Id": "replay:1",
        "Akira-Correlation-Id": "dead-letter-test",
    })
    leftover = sorted(name for name in headers if name.startswith("Akira-Dlq-"))
    assert leftover == [], f"the replay kept dead-letter headers: {leftover}"
    assert dead_letter_count() == 0, f"the replayed dead letter is still in AKIRA_DLQ: {dead_letter_count()}"
  '';
}
