# The pull worker is killed with SIGKILL while it holds a fetched batch:
# systemd restarts it, the server redelivers what the killed process held
# after ack_wait, and every message is acknowledged in the end.
{
  baseNode,
  flakyWorker,
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
      # One message at a time, 100 ms each: 300 messages take about 30 s,
      # so the kill lands in the middle of a batch.
      workers.flaky = flakyWorker {
        flaky = {
          fail_times = 0;
          handler_delay = "100ms";
        };
        settings.consumer = {
          batch_size = 10;
          max_in_flight = 1;
        };
      };
    };
  };

  testScript = pythonHelpers + ''
    MESSAGES = 300

    machine.wait_for_unit("akira-nats-provision.service")
    machine.wait_for_unit("akira-flaky.service")

    machine.succeed(f"{NATS} pub akira.test.restart 'restart test' --count {MESSAGES}")
    wait_for_json("stream info TEST", f".state.messages == {MESSAGES}", timeout=60)
    wait_for_json(
        "consumer info TEST flaky",
        ".ack_floor.stream_seq >= 10 and .num_ack_pending > 0",
        timeout=60,
    )

    restarts_before = int(
        machine.succeed("systemctl show --property=NRestarts --value akira-flaky.service")
    )
    machine.succeed("systemctl kill --signal=SIGKILL akira-flaky.service")
    machine.wait_until_succeeds(
        "test $(systemctl show --property=NRestarts --value akira-flaky.service)"
        f" -gt {restarts_before}",
        timeout=60,
    )
    machine.wait_for_unit("akira-flaky.service")

    wait_for_json(
        "consumer info TEST flaky",
        f".ack_floor.stream_seq == {MESSAGES} and .num_ack_pending == 0 and .num_pending == 0",
        timeout=180,
    )
    info = consumer_info("TEST", "flaky")
    deliveries = info["delivered"]["consumer_seq"]
    assert deliveries > MESSAGES, (
        f"expected redeliveries of the messages the killed process held, got {deliveries} deliveries"
    )
    assert dead_letter_count() == 0, f"expected no dead letters, found {dead_letter_count()}"
  '';
}
