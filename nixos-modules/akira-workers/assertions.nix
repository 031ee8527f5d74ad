# Assertions of the akira-workers module: configurations that would build
# but not work, each rejected with the option to change. Pure, like
# ./lib.nix, whose helpers it uses.
{ lib, akiraLib }:
let
  inherit (akiraLib)
    declarations
    enabledWorkers
    isConsumerWorker
    metricsListen
    natsCredentialFiles
    optionPath
    workerInstances
    ;

  # The option that owns each derived settings key, and why a settings
  # value would break things.
  settingOwners =
    let
      consumerOption = option: {
        inherit option;
        reason = "the consumer declaration is generated from it";
      };
    in
    {
      "worker.shutdown_timeout" = {
        option = "shutdownTimeout";
        reason = "TimeoutStopSec= is derived from it";
      };
      "consumer.stream" = consumerOption "consumer.stream";
      "consumer.durable_name" = consumerOption "consumer.durableName";
      "consumer.filter_subject" = consumerOption "consumer.filterSubject";
      "consumer.ack_wait" = consumerOption "consumer.ackWait";
      "consumer.max_ack_pending" = consumerOption "consumer.maxAckPending";
      "consumer.deliver_subject" = consumerOption "consumer.deliverSubject";
      "consumer.deliver_group" = consumerOption "consumer.deliverGroup";
      "retry.max_deliver" = consumerOption "consumer.maxDeliver";
    };

  workerAssertions =
    cfg: name: worker:
    let
      path = optionPath name;
      # Settings keys the module writes from dedicated options; only the
      # shutdown timeout applies to workers without a consumer.
      ownedKeys = lib.filter (key: isConsumerWorker worker || key == "worker.shutdown_timeout") (
        builtins.attrNames settingOwners
      );
      settingConflicts = lib.filter (
        key: lib.hasAttrByPath (lib.splitString "." key) worker.settings
      ) ownedKeys;
      credentialClashes = lib.intersectLists (builtins.attrNames worker.credentials) (
        builtins.attrNames (natsCredentialFiles worker.nats)
      );
    in
    [
      {
        assertion = !(isConsumerWorker worker) || worker.consumer.stream != null;
        message = "${path}: a ${worker.class} worker consumes from a stream; set ${path}.consumer.stream, for example \"CDR\".";
      }
      {
        assertion =
          !(isConsumerWorker worker)
          || worker.consumer.stream == null
          || !cfg.provision.enable
          || cfg.streams ? ${worker.consumer.stream};
        message = "${path}.consumer.stream is \"${toString worker.consumer.stream}\", which is not declared in services.akira-workers.streams; declare it there so the provisioning unit creates it, or correct the name.";
      }
      {
        assertion = worker.class != "timer" || worker.instances == 1;
        message = "${path}.instances is ${toString worker.instances}, but a timer worker runs as one oneshot service; set it to 1.";
      }
      {
        assertion = worker.class != "timer" || worker.timer.onCalendar != [ ];
        message = "${path}.timer.onCalendar is empty, so the timer worker would never run; set a calendar expression such as \"daily\".";
      }
      {
        assertion = (worker.nats.user == null) == (worker.nats.passwordFile == null);
        message = "${path}.nats: user and passwordFile go together; set both or neither.";
      }
      {
        assertion = (worker.nats.tls.certFile == null) == (worker.nats.tls.keyFile == null);
        message = "${path}.nats.tls: certFile and keyFile go together; set both or neither.";
      }
      {
        assertion = credentialClashes == [ ];
        message = "${path}.credentials uses the reserved name(s) ${lib.concatStringsSep ", " credentialClashes}, which the module sets from the NATS options; rename the credential.";
      }
    ]
    ++ map (key: {
      assertion = false;
      message =
        let
          owner = settingOwners.${key};
        in
        "${path}.settings.${key} is set; set ${path}.${owner.option} instead, because ${owner.reason}.";
    }) settingConflicts;

  # Every metrics listen address must be unique across all instances of all
  # workers, or the second process fails to bind.
  metricsAssertions =
    cfg:
    let
      listeners = lib.concatLists (
        lib.mapAttrsToList (
          name: worker:
          map (instance: {
            inherit (instance) unit;
            address = metricsListen worker instance;
          }) (workerInstances name worker)
        ) (enabledWorkers cfg)
      );
      byAddress = lib.groupBy (listener: listener.address) (
        lib.filter (listener: listener.address != "") listeners
      );
      duplicates = lib.filterAttrs (_: users: builtins.length users > 1) byAddress;
    in
    lib.mapAttrsToList (address: users: {
      assertion = false;
      message = "services.akira-workers: the units ${
        lib.concatMapStringsSep ", " (listener: listener.unit) users
      } all serve metrics on ${address}; give each worker its own metrics.port (instances use consecutive ports from it).";
    }) duplicates;

  consumerAssertions =
    cfg:
    let
      # A worker without a stream already fails its own assertion.
      consumers = lib.filter (consumer: consumer ? stream) (declarations cfg).consumers;
      byName = lib.groupBy (consumer: "${consumer.stream}/${consumer.durable_name}") consumers;
      duplicates = lib.filterAttrs (_: declared: builtins.length declared > 1) byName;
    in
    lib.mapAttrsToList (key: _: {
      assertion = false;
      message = "services.akira-workers: more than one worker declares the consumer ${key}; give each worker its own consumer.durableName.";
    }) duplicates;

  assertions =
    cfg:
    lib.concatLists (lib.mapAttrsToList (workerAssertions cfg) (enabledWorkers cfg))
    ++ metricsAssertions cfg
    ++ consumerAssertions cfg;
in
assertions
