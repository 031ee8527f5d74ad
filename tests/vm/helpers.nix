# Shared pieces of the VM tests: the base node, the example worker that
# fails on purpose, and Python helpers for the test scripts.
#
# `akira` carries the flake's NixOS module (`nixosModule`) and packages
# (`packages`); the offline evaluation tests pass stand-ins for both.
{ lib, akira }:
{
  inherit lib;

  # A node with a local NATS server with JetStream, the nats CLI and curl
  # for the assertions, and the akira package.
  baseNode =
    { pkgs, ... }:
    {
      imports = [ akira.nixosModule ];

      services.nats = {
        enable = true;
        jetstream = true;
      };

      services.akira-workers.package = akira.packages.default;

      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
        pkgs.natscli
      ];

      virtualisation.memorySize = 1536;
    };

  # The `akira-example-flaky` example worker as a pull worker named `flaky`
  # on the stream `TEST`. Its `[flaky]` table sets `fail_times` (deliveries
  # that fail with a retryable error before the handler succeeds),
  # `permanent` (every delivery fails with a permanent error) and
  # `handler_delay` (time the handler takes per message).
  # NOTE: this table is the assumed interface of the example binary in
  # crates/akira-workers/examples/; keep both in step.
  flakyWorker =
    {
      flaky,
      consumer ? { },
      settings ? { },
    }:
    {
      class = "pull";
      executable = lib.getExe' akira.packages.akira-example-flaky "akira-example-flaky";
      metrics.port = 9464;
      consumer = {
        stream = "TEST";
        filterSubject = "akira.test.>";
        ackWait = "5s";
        maxDeliver = 5;
      }
      // consumer;
      settings = lib.recursiveUpdate {
        retry = {
          base = "1s";
          cap = "2s";
        };
        inherit flaky;
      } settings;
    };

  testStream = {
    subjects = [ "akira.test.>" ];
  };

  # Prepended to every test script. Observations go through the nats CLI
  # (`--json` output of the JetStream API) and the worker's /metrics page,
  # so the assertions do not depend on the worker's own log format.
  pythonHelpers = ''
    import base64
    import json
    import re

    NATS = "nats --server nats://127.0.0.1:4222"
    SECOND = 1_000_000_000
    MINUTE = 60 * SECOND
    HOUR = 60 * MINUTE
    DAY = 24 * HOUR


    def nats_json(command):
        return json.loads(machine.succeed(f"{NATS} {command} --json"))


    def stream_info(stream):
        return nats_json(f"stream info {stream}")


    def consumer_info(stream, consumer):
        return nats_json(f"consumer info {stream} {consumer}")


    def wait_for_json(command, condition, timeout=120):
        """Wait until `jq -e condition` holds for the JSON output of a nats command."""
        machine.wait_until_succeeds(
            f"{NATS} {command} --json | jq -e '{condition}'", timeout=timeout
        )


    def stored_message(stream, sequence):
        """Return (subject, headers, payload) of one message stored in a stream."""
        message = nats_json(f"stream get {stream} {sequence}")
        headers = {}
        raw_headers = base64.b64decode(message.get("hdrs") or "").decode()
        for line in raw_headers.split("\r\n")[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip()] = value.strip()
        payload = base64.b64decode(message.get("data") or "")
        return message["subject"], headers, payload


    def metric_values(text, name, labels):
        """Return the values of samples of `name` whose labels include `labels`."""
        values = []
        pattern = re.compile(r"^" + re.escape(name) + r"(\{(?P<labels>[^}]*)\})? (?P<value>\S+)")
        for line in text.splitlines():
            match = pattern.match(line)
            if match is None:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels") or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                values.append(float(match.group("value")))
        return values


    def assert_fields(what, actual, expected):
        for key, value in expected.items():
            assert actual.get(key) == value, (
                f"{what}: expected {key} = {value!r}, got {actual.get(key)!r}"
            )


    def dead_letter_count():
        return stream_info("AKIRA_DLQ")["state"]["messages"]

  '';
}
