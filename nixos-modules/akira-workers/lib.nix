# Translation of the `services.akira-workers` option values into systemd
# units, worker TOML settings and JetStream declarations.
#
# Every function here is pure: it takes evaluated option values (and, where a
# file is needed, the path the module generated for it) and returns attribute
# sets. The module in ./default.nix only wires the results into `systemd.*`
# and `environment.etc`, and the evaluation tests call these functions directly.
{ lib }:
let
  # The provisioning unit and the dead-letter sentinel have fixed names
  # because worker units and operators refer to them.
  provisionUnit = "akira-nats-provision";
  sentinelUnit = "akira-dlq-sentinel";
  declarationsEtcPath = "akira-workers/declarations.toml";

  longRunningClasses = [
    "core"
    "push"
    "pull"
  ];
  consumerClasses = [
    "push"
    "pull"
  ];

  # Restart policy of long-running units; `serviceConfig` overrides the
  # service settings. Ten starts within five minutes mark the unit failed,
  # so a worker that cannot start shows up as failed instead of looping.
  restartPolicy = {
    Restart = "always";
    RestartSec = "2s";
  };
  startLimit = {
    StartLimitIntervalSec = 300;
    StartLimitBurst = 10;
  };
  watchdogSec = "30s";

  # systemd sends SIGKILL when TimeoutStopSec runs out; the margin leaves
  # the worker its whole graceful shutdown budget.
  stopTimeoutMarginSec = 10;

  durationUnitsMs = {
    ms = 1;
    s = 1000;
    m = 60 * 1000;
    h = 60 * 60 * 1000;
    d = 24 * 60 * 60 * 1000;
  };

  # Parses "<integer><unit>" into milliseconds. The worker and
  # `akira-workerctl` accept richer forms, but the backoff derivation only
  # needs these, and a clear error beats a silently wrong schedule.
  parseDurationMs =
    what: value:
    let
      parts = builtins.match "([0-9]+)(ms|s|m|h|d)" value;
    in
    if !(builtins.isString value) || parts == null then
      throw "${what}: invalid duration `${toString value}`; write an integer followed by one unit (ms, s, m, h or d), for example `30s` or `1500ms`"
    else
      lib.toIntBase10 (builtins.head parts) * durationUnitsMs.${builtins.elemAt parts 1};

  # Formats milliseconds with the largest unit that divides them exactly.
  formatDurationMs =
    ms:
    if lib.mod ms 1000 != 0 then
      "${toString ms}ms"
    else if lib.mod ms durationUnitsMs.m != 0 then
      "${toString (ms / 1000)}s"
    else if lib.mod ms durationUnitsMs.h != 0 then
      "${toString (ms / durationUnitsMs.m)}m"
    else if lib.mod ms durationUnitsMs.d != 0 then
      "${toString (ms / durationUnitsMs.h)}h"
    else
      "${toString (ms / durationUnitsMs.d)}d";

  # backoff[i] = max(ack_wait, min(cap, base * 2^i)) for i in 0 .. max_deliver - 2,
  # the schedule the worker library derives from `[retry]` and `ack_wait`.
  # Each step doubles the previous one already capped, so large max_deliver
  # values cannot overflow.
  backoffScheduleMs =
    {
      ackWaitMs,
      baseMs,
      capMs,
      maxDeliver,
    }:
    let
      cappedDelays = lib.foldl' (
        delays: _: delays ++ [ (lib.min capMs (2 * lib.last delays)) ]
      ) [ (lib.min capMs baseMs) ] (lib.range 2 (maxDeliver - 1));
    in
    if maxDeliver < 2 then [ ] else map (delay: lib.max ackWaitMs delay) cappedDelays;

  isConsumerWorker = worker: builtins.elem worker.class consumerClasses;
  isLongRunning = worker: builtins.elem worker.class longRunningClasses;

  enabledWorkers = cfg: lib.filterAttrs (_: worker: worker.enable) cfg.workers;

  optionPath = name: "services.akira-workers.workers.${name}";

  withoutNulls = lib.filterAttrs (_: value: value != null);

  # Quotes one argument for an Exec*= line. systemd expands `%` specifiers
  # and `$` variables in these lines, so both are escaped; arguments that
  # need a specifier, such as `%d/nats-creds`, are written without it.
  escapeExecArg =
    arg:
    let
      escaped =
        builtins.replaceStrings
          [
            "%"
            "$"
          ]
          [
            "%%"
            "$$"
          ]
          arg;
    in
    if builtins.match "[A-Za-z0-9_./:@,=+-]+" escaped != null then escaped else builtins.toJSON escaped;

  # Instances of one worker. A single instance keeps the plain unit name;
  # several get a numeric suffix and share the durable consumer or queue group.
  workerInstances =
    name: worker:
    if worker.instances == 1 then
      [
        {
          index = 1;
          unit = "akira-${name}";
        }
      ]
    else
      lib.genList (i: {
        index = i + 1;
        unit = "akira-${name}-${toString (i + 1)}";
      }) worker.instances;

  metricsListen =
    worker: instance:
    if worker.metrics.port == null then
      ""
    else
      let
        address = worker.metrics.listenAddress;
        host = if lib.hasInfix ":" address then "[${address}]" else address;
      in
      "${host}:${toString (worker.metrics.port + instance.index - 1)}";

  # Files handed to the unit with LoadCredential=, by credential name.
  # The worker reads them from $CREDENTIALS_DIRECTORY, so no secret is
  # copied into the Nix store or the unit file.
  natsCredentialFiles =
    nats:
    withoutNulls {
      nats-creds = nats.credentialsFile;
      nats-nkey = nats.nkeySeedFile;
      nats-password = nats.passwordFile;
      nats-token = nats.tokenFile;
      nats-ca = nats.tls.caFile;
      nats-cert = nats.tls.certFile;
      nats-key = nats.tls.keyFile;
    };

  credentialPath = credential: "$CREDENTIALS_DIRECTORY/${credential}";

  natsSettings =
    nats: connectionName:
    let
      files = natsCredentialFiles nats;
      fileSetting = credential: if files ? ${credential} then credentialPath credential else null;
      tls = withoutNulls {
        ca_file = fileSetting "nats-ca";
        cert_file = fileSetting "nats-cert";
        key_file = fileSetting "nats-key";
      };
    in
    withoutNulls {
      inherit (nats) servers user;
      name = connectionName;
      creds_file = fileSetting "nats-creds";
      nkey_seed_file = fileSetting "nats-nkey";
      password_file = fileSetting "nats-password";
      token_file = fileSetting "nats-token";
    }
    // lib.optionalAttrs (tls != { }) { inherit tls; };

  loadCredentialEntries =
    files: lib.mapAttrsToList (credential: path: "${credential}:${path}") files;

  # The backoff a consumer is declared with: the explicit option, or the
  # schedule derived from `settings.retry` and `consumer.ackWait`.
  consumerBackoff =
    name: worker:
    let
      retry = worker.settings.retry or { };
    in
    if worker.consumer.backoff != null then
      worker.consumer.backoff
    else
      map formatDurationMs (backoffScheduleMs {
        ackWaitMs = parseDurationMs "${optionPath name}.consumer.ackWait" worker.consumer.ackWait;
        baseMs = parseDurationMs "${optionPath name}.settings.retry.base" (retry.base or "1s");
        capMs = parseDurationMs "${optionPath name}.settings.retry.cap" (retry.cap or "5m");
        maxDeliver = worker.consumer.maxDeliver;
      });

  consumerSettings =
    worker:
    withoutNulls {
      inherit (worker.consumer) stream;
      durable_name = worker.consumer.durableName;
      filter_subject = worker.consumer.filterSubject;
      ack_wait = worker.consumer.ackWait;
      max_ack_pending = worker.consumer.maxAckPending;
    }
    // lib.optionalAttrs (worker.class == "push") {
      deliver_subject = worker.consumer.deliverSubject;
      deliver_group = worker.consumer.deliverGroup;
    };

  # Settings the module derives from options. User `settings` are applied
  # on top; the assertions reject user keys that would contradict the
  # consumer declaration or the unit's stop timeout.
  generatedSettings =
    cfg: name: worker: instance:
    lib.recursiveUpdate
      {
        worker = {
          inherit name;
          shutdown_timeout = "${toString worker.shutdownTimeout}s";
        };
        nats = natsSettings worker.nats instance.unit;
        metrics.listen = metricsListen worker instance;
      }
      (
        lib.optionalAttrs (isConsumerWorker worker) {
          consumer = consumerSettings worker;
          retry.max_deliver = worker.consumer.maxDeliver;
        }
        // lib.optionalAttrs (worker.class == "timer" && cfg.textfileDirectory != null) {
          job.textfile_dir = cfg.textfileDirectory;
        }
      );

  workerSettings =
    cfg: name: worker: instance:
    lib.recursiveUpdate (generatedSettings cfg name worker instance) worker.settings;

  # Hardening shared by every unit of the module. `systemd-analyze security
  # --offline=true` (systemd 252) rates the sample host's long-running units
  # 1.2 to 1.4 with it; tests/nix/run fails above 2.0.
  hardening = {
    DynamicUser = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateUsers = true;
    PrivateMounts = true;
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    SystemCallErrorNumber = "EPERM";
    DevicePolicy = "closed";
    KeyringMode = "private";
    UMask = "0077";
  };

  provisionDependency = cfg: lib.optional cfg.provision.enable "${provisionUnit}.service";

  # Writing into the node exporter's textfile directory needs its group and
  # a umask that leaves the files readable for the exporter.
  textfileServiceConfig =
    cfg: worker:
    lib.optionalAttrs (worker.class == "timer" && cfg.textfileDirectory != null) {
      ReadWritePaths = [ cfg.textfileDirectory ];
      SupplementaryGroups = [ cfg.textfileGroup ];
      UMask = "0022";
    };

  # PrivateUsers= maps only the unit's own user and group into its user
  # namespace, so a supplementary group shows up as `nogroup` there (seen
  # with systemd 257). A unit with supplementary groups runs without the
  # namespace unless its serviceConfig sets PrivateUsers= itself.
  withSupplementaryGroups =
    extra: serviceConfig:
    if (serviceConfig.SupplementaryGroups or [ ]) != [ ] && !(extra ? PrivateUsers) then
      serviceConfig // { PrivateUsers = false; }
    else
      serviceConfig;

  workerService =
    {
      cfg,
      name,
      worker,
      instance,
      configFile,
    }:
    let
      dependencies = provisionDependency cfg;
      credentialFiles = natsCredentialFiles worker.nats // worker.credentials;
      suffix = if worker.instances == 1 then "" else " (instance ${toString instance.index})";

      common = {
        User = "akira-${name}";
        ExecStart = "${worker.executable} --config ${configFile}";
        TimeoutStopSec = "${toString (worker.shutdownTimeout + stopTimeoutMarginSec)}s";
        MemoryMax = worker.memoryMax;
      }
      // lib.optionalAttrs (credentialFiles != { }) {
        LoadCredential = loadCredentialEntries credentialFiles;
      }
      // lib.optionalAttrs (worker.environmentFile != null) {
        EnvironmentFile = worker.environmentFile;
      }
      // lib.optionalAttrs worker.stateful {
        StateDirectory = instance.unit;
        StateDirectoryMode = "0700";
      };

      classSpecific =
        if isLongRunning worker then
          {
            Type = "notify";
            NotifyAccess = "main";
            WatchdogSec = watchdogSec;
          }
          // restartPolicy
        else
          {
            Type = "oneshot";
            TimeoutStartSec = worker.timer.timeout;
          };
    in
    {
      description = "akira worker ${name}${suffix}";
      wantedBy = lib.optional (isLongRunning worker) "multi-user.target";
      wants = [ "network-online.target" ] ++ worker.wants;
      after = [ "network-online.target" ] ++ dependencies ++ worker.wants;
      requires = dependencies;
      unitConfig = lib.optionalAttrs (isLongRunning worker) startLimit;
      serviceConfig = withSupplementaryGroups worker.serviceConfig (
        hardening // common // classSpecific // textfileServiceConfig cfg worker // worker.serviceConfig
      );
    };

  workerTimer = name: worker: {
    description = "Schedule of akira worker ${name}";
    wantedBy = [ "timers.target" ];
    timerConfig = {
      OnCalendar = worker.timer.onCalendar;
      RandomizedDelaySec = worker.timer.randomizedDelaySec;
      Persistent = worker.timer.persistent;
    };
  };

  # Arguments before the subcommand of every akira-workerctl unit; the
  # server list comes from NATS_URL in the unit's environment.
  workerctlGlobalArgs =
    credentialsFile: lib.optionals (credentialsFile != null) [ "--creds" "%d/nats-creds" ];

  workerctlEnvironment = cfg: { NATS_URL = lib.concatStringsSep "," cfg.nats.servers; };

  workerctlCredentials =
    credentialsFile:
    lib.optionalAttrs (credentialsFile != null) { LoadCredential = [ "nats-creds:${credentialsFile}" ]; };

  # The provisioning unit applies the declarations at boot and is reloaded,
  # not restarted, when they change on a switch: worker units require it,
  # and restarting it would restart every worker with it.
  provisionService =
    {
      cfg,
      declarationsFile,
      natsRunsLocally,
    }:
    let
      apply = lib.concatStringsSep " " (
        [ (lib.getExe' cfg.package "akira-workerctl") ]
        ++ workerctlGlobalArgs cfg.provision.credentialsFile
        ++ [
          "apply"
          "/etc/${declarationsEtcPath}"
          "--wait"
          (escapeExecArg cfg.provision.wait)
        ]
      );
      natsUnits = lib.optional natsRunsLocally "nats.service";
    in
    {
      description = "Apply the akira JetStream stream and consumer declarations";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ] ++ natsUnits;
      environment = workerctlEnvironment cfg;
      reloadIfChanged = true;
      reloadTriggers = [ declarationsFile ];
      serviceConfig =
        hardening
        // {
          Type = "oneshot";
          RemainAfterExit = true;
          User = provisionUnit;
          ExecStart = apply;
          ExecReload = apply;
          MemoryMax = "256M";
        }
        // workerctlCredentials cfg.provision.credentialsFile;
    };

  # NOTE: assumes `akira-workerctl dlq sentinel` runs in the foreground
  # until SIGTERM and takes the global --creds flag like the other
  # subcommands.
  sentinelService =
    cfg:
    let
      sentinel = cfg.deadLetterSentinel;
      dependencies = provisionDependency cfg;
    in
    {
      description = "Watch the akira dead-letter stream";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ] ++ dependencies;
      requires = dependencies;
      environment = workerctlEnvironment cfg;
      unitConfig = startLimit;
      serviceConfig =
        hardening
        // {
          Type = "simple";
          User = sentinelUnit;
          ExecStart = lib.concatStringsSep " " (
            [ (lib.getExe' cfg.package "akira-workerctl") ]
            ++ workerctlGlobalArgs cfg.nats.credentialsFile
            ++ [
              "dlq"
              "sentinel"
            ]
            ++ map escapeExecArg sentinel.extraArgs
          );
          MemoryMax = "256M";
        }
        // restartPolicy
        // workerctlCredentials cfg.nats.credentialsFile;
    };

  streamDeclaration = name: stream: { inherit name; } // withoutNulls stream;

  consumerDeclaration =
    name: worker:
    withoutNulls {
      inherit (worker.consumer) stream;
      durable_name = worker.consumer.durableName;
      filter_subject = worker.consumer.filterSubject;
      ack_policy = "explicit";
      ack_wait = worker.consumer.ackWait;
      max_deliver = worker.consumer.maxDeliver;
      max_ack_pending = worker.consumer.maxAckPending;
    }
    // (
      let
        backoff = consumerBackoff name worker;
      in
      lib.optionalAttrs (backoff != [ ]) { inherit backoff; }
    )
    // lib.optionalAttrs (worker.class == "push") {
      deliver_subject = worker.consumer.deliverSubject;
      deliver_group = worker.consumer.deliverGroup;
      idle_heartbeat = worker.settings.consumer.idle_heartbeat or "5s";
    };

  # The declarations file for `akira-workerctl apply`: every declared stream
  # and one consumer per enabled push or pull worker, however many instances
  # it runs.
  declarations = cfg: {
    streams = lib.mapAttrsToList streamDeclaration cfg.streams;
    consumers = lib.mapAttrsToList consumerDeclaration (
      lib.filterAttrs (_: isConsumerWorker) (enabledWorkers cfg)
    );
  };

in
{
  inherit
    backoffScheduleMs
    consumerBackoff
    declarations
    declarationsEtcPath
    enabledWorkers
    escapeExecArg
    formatDurationMs
    hardening
    isConsumerWorker
    isLongRunning
    metricsListen
    natsCredentialFiles
    optionPath
    parseDurationMs
    provisionService
    provisionUnit
    sentinelService
    sentinelUnit
    workerInstances
    workerService
    workerSettings
    workerTimer
    ;
}
