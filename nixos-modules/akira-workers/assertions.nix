# Assertions of the akira-workers module: configurations that would build
# but not work, each rejected with the option to change. Pure, like
# ./lib.nix, whose helpers it uses.
{ lib, akiraLib }:
let
  inherit (akiraLib)
    declarations
    enabledWorkers
    firstBackoffMs
    formatDurationMs
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

  # Connection options that only work in pairs. A copy that inherits both
  # values from the global options is checked once, as the global options.
  connectionPairs = [
    {
      fields = [
        [ "user" ]
        [ "passwordFile" ]
      ];
      where = "";
      message = "user and passwordFile go together; set both or neither.";
    }
    {
      fields = [
        [
          "tls"
          "certFile"
        ]
        [
          "tls"
          "keyFile"
        ]
      ];
      where = ".tls";
      message = "certFile and keyFile go together; set both or neither.";
    }
  ];

  connectionAssertions =
    {
      path,
      nats,
      global ? null,
    }:
    lib.concatMap (
      pair:
      let
        valuesOf = connection: map (field: lib.attrByPath field null connection) pair.fields;
        values = valuesOf nats;
        inherited = global != null && values == valuesOf global;
      in
      lib.optional (!inherited) {
        assertion = lib.all (value: value == null) values || lib.all (value: value != null) values;
        message = "${path}${pair.where}: ${pair.message}";
      }
    ) connectionPairs;

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
      firstBackoff = if isConsumerWorker worker then firstBackoffMs name worker else null;
      ackWaitMs = (akiraLib.consumerTiming name worker).ackWaitMs;
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
        assertion = credentialClashes == [ ];
        message = "${path}.credentials uses the reserved name(s) ${lib.concatStringsSep ", " credentialClashes}, which the module sets from the NATS options; rename the credential.";
      }
    ]
    ++ lib.optional (isConsumerWorker worker && firstBackoff != null) {
      assertion = firstBackoff == ackWaitMs;
      message = "${path}: the first backoff delay, min(settings.retry.cap, settings.retry.base), is ${formatDurationMs firstBackoff}, longer than consumer.ackWait ${worker.consumer.ackWait}. nats-server uses the first backoff delay as the consumer's ack_wait, so the worker would find ack_wait ${formatDurationMs firstBackoff} instead of ${worker.consumer.ackWait} at startup and exit; raise ${path}.consumer.ackWait to at least ${formatDurationMs firstBackoff} or lower settings.retry.base.";
    }
    ++ connectionAssertions {
      path = "${path}.nats";
      inherit (worker) nats;
      global = cfg.nats;
    }
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

  # The global connection, and the provisioning unit's and the sentinel's
  # when they override it.
  workerctlAssertions =
    cfg:
    connectionAssertions {
      path = "services.akira-workers.nats";
      inherit (cfg) nats;
    }
    ++ lib.optionals cfg.provision.enable (connectionAssertions {
      path = "services.akira-workers.provision.nats";
      inherit (cfg.provision) nats;
      global = cfg.nats;
    })
    ++ lib.optionals cfg.deadLetterSentinel.enable (connectionAssertions {
      path = "services.akira-workers.deadLetterSentinel.nats";
      inherit (cfg.deadLetterSentinel) nats;
      global = cfg.nats;
    });

  assertions =
    cfg:
    lib.concatLists (lib.mapAttrsToList (workerAssertions cfg) (enabledWorkers cfg))
    ++ workerctlAssertions cfg
    ++ metricsAssertions cfg
    ++ consumerAssertions cfg;
in
assertions
