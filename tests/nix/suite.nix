# Everything the evaluation tests check, as one JSON-ready value:
# unit tests of the pure functions, the sample host, variants of it, the
# configurations the module must reject, and the VM test nodes and scripts.
# tests/nix/check_eval.py asserts on the result.
{ lib }:
let
  harness = import ./eval.nix { inherit lib; };
  akiraLib = import ../../nixos-modules/akira-workers/lib.nix { inherit lib; };
  inherit (harness) pkgs;

  throws = value: !(builtins.tryEval (builtins.deepSeq value value)).success;

  vmTests = import ../vm {
    inherit lib;
    akira = {
      nixosModule = ../../nixos-modules/akira-workers;
      packages = {
        default = pkgs.akira-workers;
        akira-example-flaky = pkgs.fakePackage "akira-example-flaky";
      };
    };
    runTest = test: test;
  };

  vmNodes = {
    machine.system.build.toplevel = pkgs.fakeStorePath "nixos-system-machine";
  };

  remoteNats = {
    services.akira-workers = {
      nats.servers = [
        "tls://nats-1.example.org:4222"
        "tls://nats-2.example.org:4222"
      ];
      nats.nkeySeedFile = "/run/secrets/akira/nkey";
      workers.alert-relay.class = "core";
    };
  };
in
{
  functionTests = lib.runTests {
    testParseMilliseconds = {
      expr = akiraLib.parseDurationMs "test" "1500ms";
      expected = 1500;
    };
    testParseDays = {
      expr = akiraLib.parseDurationMs "test" "30d";
      expected = 30 * 24 * 3600 * 1000;
    };
    testParseRejectsFraction = {
      expr = throws (akiraLib.parseDurationMs "test" "1.5s");
      expected = true;
    };
    testParseRejectsCompound = {
      expr = throws (akiraLib.parseDurationMs "test" "1m30s");
      expected = true;
    };
    testFormatKeepsMilliseconds = {
      expr = akiraLib.formatDurationMs 1500;
      expected = "1500ms";
    };
    testFormatUsesLargestExactUnit = {
      expr = map akiraLib.formatDurationMs [
        64000
        300000
        7200000
        2592000000
      ];
      expected = [
        "64s"
        "5m"
        "2h"
        "30d"
      ];
    };
    testBackoffDoublesUpToCap = {
      expr = akiraLib.backoffScheduleMs {
        ackWaitMs = 1000;
        baseMs = 1000;
        capMs = 10000;
        maxDeliver = 6;
      };
      expected = [
        1000
        2000
        4000
        8000
        10000
      ];
    };
    testBackoffNeverBelowAckWait = {
      expr = akiraLib.backoffScheduleMs {
        ackWaitMs = 30000;
        baseMs = 1000;
        capMs = 300000;
        maxDeliver = 8;
      };
      expected = [
        30000
        30000
        30000
        30000
        30000
        32000
        64000
      ];
    };
    testBackoffEmptyForSingleDelivery = {
      expr = akiraLib.backoffScheduleMs {
        ackWaitMs = 30000;
        baseMs = 1000;
        capMs = 300000;
        maxDeliver = 1;
      };
      expected = [ ];
    };
    testBackoffLongScheduleStaysCapped = {
      expr = lib.last (
        akiraLib.backoffScheduleMs {
          ackWaitMs = 1000;
          baseMs = 1000;
          capMs = 300000;
          maxDeliver = 200;
        }
      );
      expected = 300000;
    };
    testEscapeKeepsPlainArgument = {
      expr = akiraLib.escapeExecArg "--wait=60s";
      expected = "--wait=60s";
    };
    testEscapeQuotesSpaces = {
      expr = akiraLib.escapeExecArg "two words";
      expected = ''"two words"'';
    };
    testEscapeSpecifiersAndVariables = {
      expr = akiraLib.escapeExecArg "50%$HOME";
      expected = ''"50%%$$HOME"'';
    };
    testInstancesKeepPlainNameForOne = {
      expr = map (instance: instance.unit) (akiraLib.workerInstances "cdr-pipeline" { instances = 1; });
      expected = [ "akira-cdr-pipeline" ];
    };
    testInstancesNumbered = {
      expr = map (instance: instance.unit) (akiraLib.workerInstances "cdr-pipeline" { instances = 3; });
      expected = [
        "akira-cdr-pipeline-1"
        "akira-cdr-pipeline-2"
        "akira-cdr-pipeline-3"
      ];
    };
  };

  sampleHost = harness.host [ ./sample-host.nix ];

  remoteNats = harness.host [ remoteNats ];

  provisionDisabled = harness.host [
    remoteNats
    { services.akira-workers.provision.enable = false; }
  ];

  # A stream declared with an invalid duration must stop the evaluation
  # with the option path in the message (checked by tests/nix/run).
  invalidBackoffDurationThrows = throws (
    harness.host [
      {
        services.akira-workers = {
          streams.CDR.subjects = [ "akira.cdr.>" ];
          workers.cdr-pipeline = {
            class = "pull";
            consumer.stream = "CDR";
            settings.retry.base = "1.5s";
          };
        };
      }
    ]
  ).declarations;

  rejected = lib.mapAttrs (_: case: {
    inherit (case) expected;
    failed = harness.failedAssertions case.modules;
  }) (import ./cases.nix);

  vm = lib.mapAttrs (
    _: test:
    let
      script = if builtins.isFunction test.testScript then test.testScript { nodes = vmNodes; } else test.testScript;
    in
    {
      inherit (test) name;
      inherit script;
      host = harness.host [ test.nodes.machine ];
    }
  ) vmTests;
}
