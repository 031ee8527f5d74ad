# The provisioning unit creates the declared streams and consumers, and a
# switch that changes a mutable option updates them by reloading the unit,
# not restarting it.
{
  lib,
  baseNode,
  flakyWorker,
  pythonHelpers,
  testStream,
  ...
}:
{
  name = "akira-provision";

  nodes.machine = {
    imports = [ baseNode ];
    services.akira-workers = {
      streams.TEST = testStream // {
        max_age = "1h";
      };
      workers.flaky = flakyWorker {
        flaky.fail_times = 0;
        consumer.maxAckPending = 100;
      };
    };

    specialisation.changed.configuration = {
      services.akira-workers = {
        streams.TEST.max_age = lib.mkForce "2h";
        workers.flaky.consumer.maxAckPending = lib.mkForce 50;
      };
    };
  };

  testScript =
    { nodes, ... }:
    pythonHelpers
    + ''
      machine.wait_for_unit("nats.service")
      machine.wait_for_unit("akira-nats-provision.service")

      after = machine.succeed("systemctl show --property=After --value akira-nats-provision.service")
      assert "nats.service" in after.split(), f"provisioning is not ordered after nats.service: {after}"

      assert_fields("AKIRA_DLQ", stream_info("AKIRA_DLQ")["config"], {
          "subjects": ["akira.dlq.>"],
          "retention": "limits",
          "storage": "file",
          "max_age": 30 * DAY,
          "duplicate_window": 2 * MINUTE,
          "num_replicas": 1,
      })
      assert_fields("TEST", stream_info("TEST")["config"], {
          "subjects": ["akira.test.>"],
          "max_age": HOUR,
      })
      assert_fields("consumer TEST/flaky", consumer_info("TEST", "flaky")["config"], {
          "durable_name": "flaky",
          "filter_subject": "akira.test.>",
          "ack_policy": "explicit",
          "ack_wait": 5 * SECOND,
          "max_deliver": 5,
          "backoff": [5 * SECOND] * 4,
          "max_ack_pending": 100,
      })

      invocation = machine.succeed(
          "systemctl show --property=InvocationID --value akira-nats-provision.service"
      ).strip()
      machine.succeed(
          "${nodes.machine.system.build.toplevel}/specialisation/changed/bin/switch-to-configuration test"
      )

      assert_fields("TEST after the switch", stream_info("TEST")["config"], {"max_age": 2 * HOUR})
      assert_fields(
          "consumer TEST/flaky after the switch",
          consumer_info("TEST", "flaky")["config"],
          {"max_ack_pending": 50},
      )
      reloaded = machine.succeed(
          "systemctl show --property=InvocationID --value akira-nats-provision.service"
      ).strip()
      assert reloaded == invocation, "the switch restarted akira-nats-provision.service instead of reloading it"
      machine.wait_for_unit("akira-flaky.service")
    '';
}
