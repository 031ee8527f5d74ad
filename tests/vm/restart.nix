# The pull worker is killed with SIGKILL while fetched messages are
# unacknowledged. systemd restarts it, the server redelivers those messages
# after ack_wait, and every message is handled and acknowledged in the end.
#
# Mirrored by `restart` in crates/akira-e2e/tests/vm_mirror.rs.
{
  baseNode,
  exampleWorker,
  pythonHelpers,
  testStream,
  ...
}:
{
  name = "akira-restart";

  nodes.machine = {
    imports = [ baseNode ];
    services.akira-workers = {
      streams.TEST = testStream;
      # At most 10 messages held at once, 100 ms each: 200 messages take
      # 10 s or more, so the kill lands while the worker holds fetched
      # messages.
      workers.example = exampleWorker {
        example = {
          behaviour = "sleep";
          sleep = "100ms";
        };
        settings.consumer = {
          batch_size = 10;
          max_in_flight = 10;
        };
      };
    };
  };

  testScript = pythonHelpers + ''
    MESSAGES = 200

    machine.wait_for_unit("akira-nats-provision.service")
    machine.wait_for_unit("akira-example.service")

    machine.succeed(f"{NATS} pub akira.test.restart 'restart test' --count {MESSAGES}")
    wait_for_json("stream info TEST", f".state.messages == {MESSAGES}", timeout=60)
    machine.wait_until_succeeds(f"test $(wc -l < {RECORD_FILE}) -ge 10", timeout=60)
    wait_for_json("consumer info TEST example", ".num_ack_pending > 0", timeout=30)

    restarts_before = restart_count("akira-example.service")
    machine.succeed("systemctl kill --signal=SIGKILL akira-example.service")
    machine.wait_until_succeeds(
        f"test $(systemctl show --property=NRestarts --value akira-example.service) -gt {restarts_before}",
        timeout=60,
    )
    machine.wait_for_unit("akira-example.service")

    wait_for_json(
        "consumer info TEST example",
        f".ack_floor.stream_seq == {MESSAGES} and .num_ack_pending == 0 and .num_pending == 0",
        timeout=180,
    )
    info = consumer_info("TEST", "example")
    deliveries = info["delivered"]["consumer_seq"]
    assert deliveries > MESSAGES, (
        f"expected redeliveries of the messages the killed process held, got {deliveries} deliveries"
    )
    assert dead_letter_count() == 0, f"expected no dead letters, found {dead_letter_count()}"

    handled = records()
    succeeded = {sequence for _, sequence, _, result, _ in handled if result == "ok"}
    missing = sorted(set(range(1, MESSAGES + 1)) - succeeded)
    assert missing == [], f"stream sequences never handled successfully: {missing}"
    redelivered = [line for line in handled if line[2] > 1]
    assert redelivered, "no message was handled on a second delivery after the kill"
  '';
}
