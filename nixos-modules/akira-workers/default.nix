{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.akira-workers;
  akiraLib = import ./lib.nix { inherit lib; };
  assertionsFor = import ./assertions.nix { inherit lib akiraLib; };
  tomlFormat = pkgs.formats.toml { };

  # Secrets stay outside the Nix store: a path literal would be copied into
  # it, so these options take absolute path strings only.
  secretFileType = lib.types.nullOr (
    lib.types.pathWith {
      inStore = false;
      absolute = true;
    }
  );

  globalOptionText = path: lib.literalExpression "config.services.akira-workers.${path}";

  # Connection options exist globally and per worker; a worker's copy
  # defaults to the global value.
  natsConnectionOptions =
    perWorker:
    let
      inheritable =
        path: fallback:
        if perWorker then
          {
            default = lib.attrByPath (lib.splitString "." path) null cfg.nats;
            defaultText = globalOptionText "nats.${path}";
          }
        else
          { default = fallback; };

      secretFile =
        path: credential: description:
        lib.mkOption (
          {
            type = secretFileType;
            example = "/run/secrets/akira/${credential}";
            description = ''
              ${description} The unit receives it with `LoadCredential=${credential}:…`
              and the worker reads it from `$CREDENTIALS_DIRECTORY/${credential}`.
            '';
          }
          // inheritable path null
        );
    in
    {
      servers = lib.mkOption (
        {
          type = lib.types.nonEmptyListOf lib.types.str;
          example = [
            "nats://nats-1.example.org:4222"
            "nats://nats-2.example.org:4222"
          ];
          description = "NATS server URLs to connect to.";
        }
        // inheritable "servers" [ "nats://127.0.0.1:4222" ]
      );

      credentialsFile = secretFile "credentialsFile" "nats-creds" "NATS credentials file (JWT and NKey seed).";

      nkeySeedFile = secretFile "nkeySeedFile" "nats-nkey" "NKey seed file.";

      user = lib.mkOption (
        {
          type = lib.types.nullOr lib.types.str;
          description = "User name for password authentication; requires `passwordFile`.";
        }
        // inheritable "user" null
      );

      passwordFile = secretFile "passwordFile" "nats-password" "Password file for `user`.";

      tokenFile = secretFile "tokenFile" "nats-token" "Authentication token file.";

      tls = {
        caFile = secretFile "tls.caFile" "nats-ca" "CA certificate that signs the NATS server certificate.";
        certFile = secretFile "tls.certFile" "nats-cert" "Client certificate; requires `keyFile`.";
        keyFile = secretFile "tls.keyFile" "nats-key" "Private key of the client certificate.";
      };
    };

  streamModule = {
    freeformType = tomlFormat.type;
    options = {
      subjects = lib.mkOption {
        type = lib.types.nonEmptyListOf lib.types.str;
        example = [ "akira.cdr.>" ];
        description = "Subjects the stream captures.";
      };
      retention = lib.mkOption {
        type = lib.types.enum [
          "limits"
          "interest"
          "workqueue"
        ];
        default = "limits";
        description = "Retention policy of the stream.";
      };
      storage = lib.mkOption {
        type = lib.types.enum [
          "file"
          "memory"
        ];
        default = "file";
        description = "Storage backend of the stream.";
      };
      num_replicas = lib.mkOption {
        type = lib.types.ints.between 1 5;
        default = 1;
        description = "Number of stream replicas in a JetStream cluster.";
      };
    };
  };

  workerModule =
    { name, ... }:
    {
      options = {
        enable = lib.mkEnableOption "the akira worker `${name}`" // {
          default = true;
        };

        class = lib.mkOption {
          type = lib.types.enum [
            "core"
            "push"
            "pull"
            "timer"
          ];
          example = "pull";
          description = ''
            How the worker runs. `core`, `push` and `pull` are long-running
            services (`Type=notify`); `push` and `pull` also get a JetStream
            consumer declaration, while `core` covers core NATS subscribers and
            workers without a consumer, such as the CDR bridge. `timer` runs
            as a oneshot service started by a systemd timer.
          '';
        };

        executable = lib.mkOption {
          type = lib.types.str;
          default = lib.getExe' cfg.package "akira-${name}";
          defaultText = lib.literalExpression ''lib.getExe' config.services.akira-workers.package "akira-<name>"'';
          description = "Worker executable; it is started with `--config` and the generated TOML file.";
        };

        settings = lib.mkOption {
          type = tomlFormat.type;
          default = { };
          example = lib.literalExpression ''
            {
              consumer.batch_size = 100;
              retry = { base = "1s"; cap = "5m"; };
              pipeline.database_url = "postgresql:///akira?host=/run/postgresql";
            }
          '';
          description = ''
            Worker configuration, rendered to the worker's TOML file on top of
            the values the module derives from the other options (worker name,
            NATS connection, consumer, metrics listen address). Keys that a
            dedicated option sets, such as `consumer.ack_wait`, are rejected
            here so that the consumer declaration and the worker agree.
          '';
        };

        consumer = {
          stream = lib.mkOption {
            type = lib.types.nullOr lib.types.str;
            default = null;
            example = "CDR";
            description = "Stream the consumer reads; required for `push` and `pull` workers.";
          };
          durableName = lib.mkOption {
            type = lib.types.str;
            default = name;
            defaultText = lib.literalExpression "<name>";
            description = "Durable name of the consumer, shared by all instances.";
          };
          filterSubject = lib.mkOption {
            type = lib.types.nullOr lib.types.str;
            default = null;
            example = "akira.cdr.>";
            description = "Subject filter of the consumer; `null` takes every subject of the stream.";
          };
          maxDeliver = lib.mkOption {
            type = lib.types.ints.positive;
            default = 5;
            description = "Deliveries before a message is dead-lettered; also the worker's `retry.max_deliver`.";
          };
          ackWait = lib.mkOption {
            type = lib.types.str;
            default = "30s";
            description = "How long the server waits for an acknowledgement before redelivering.";
          };
          backoff = lib.mkOption {
            type = lib.types.nullOr (lib.types.listOf lib.types.str);
            default = null;
            example = [
              "30s"
              "1m"
              "5m"
            ];
            description = ''
              Redelivery delays of the consumer. `null` derives them from
              `settings.retry` (`base`, default `1s`; `cap`, default `5m`) and
              `ackWait` as the worker does: delay *i* is
              max(ackWait, min(cap, base × 2^i)), for `maxDeliver - 1` steps.
            '';
          };
          maxAckPending = lib.mkOption {
            type = lib.types.ints.positive;
            default = 1000;
            description = "Unacknowledged messages the server allows across all instances.";
          };
          deliverSubject = lib.mkOption {
            type = lib.types.str;
            default = "akira.deliver.${name}";
            defaultText = lib.literalExpression ''"akira.deliver.<name>"'';
            description = "Delivery subject of a `push` consumer.";
          };
          deliverGroup = lib.mkOption {
            type = lib.types.str;
            default = name;
            defaultText = lib.literalExpression "<name>";
            description = "Queue group of a `push` consumer, shared by all instances.";
          };
        };

        instances = lib.mkOption {
          type = lib.types.ints.positive;
          default = 1;
          description = ''
            Number of copies of this worker on this host. With more than one,
            units are named `akira-<name>-1`, `akira-<name>-2` and so on.
            They share the durable consumer of a pull worker and the queue
            group of a push worker, or of a core worker that sets
            `settings.core.queue_group`.
          '';
        };

        timer = {
          onCalendar = lib.mkOption {
            type = lib.types.coercedTo lib.types.str lib.singleton (lib.types.listOf lib.types.str);
            default = [ "daily" ];
            example = "*-*-* 03:15:00";
            description = "`OnCalendar=` expressions of a `timer` worker.";
          };
          randomizedDelaySec = lib.mkOption {
            type = lib.types.str;
            default = "0";
            example = "10m";
            description = "`RandomizedDelaySec=` of the timer.";
          };
          persistent = lib.mkOption {
            type = lib.types.bool;
            default = true;
            description = "Whether a run missed while the host was off starts at the next boot (`Persistent=`).";
          };
          timeout = lib.mkOption {
            type = lib.types.str;
            default = "1h";
            description = "`TimeoutStartSec=` of one run; a run that takes longer is stopped and counts as failed.";
          };
        };

        metrics = {
          listenAddress = lib.mkOption {
            type = lib.types.str;
            default = "127.0.0.1";
            description = "Address of the `/metrics`, `/healthz` and `/readyz` server.";
          };
          port = lib.mkOption {
            type = lib.types.nullOr lib.types.port;
            default = null;
            example = 9464;
            description = ''
              Port of the metrics server; instance *n* listens on `port + n - 1`.
              `null` disables the server (timer workers write their metrics to
              `textfileDirectory` instead).
            '';
          };
        };

        shutdownTimeout = lib.mkOption {
          type = lib.types.ints.positive;
          default = 20;
          description = ''
            Graceful stop budget in seconds (`worker.shutdown_timeout`).
            `TimeoutStopSec=` is 10 seconds longer, so systemd never kills a
            worker that is still draining.
          '';
        };

        memoryMax = lib.mkOption {
          type = lib.types.str;
          default = "512M";
          description = "`MemoryMax=` of each instance.";
        };

        stateful = lib.mkOption {
          type = lib.types.bool;
          default = false;
          description = ''
            Whether the worker keeps state across restarts, such as the CDR
            bridge's read position. Each instance then gets
            `StateDirectory=<unit name>`, exported as `$STATE_DIRECTORY`.
          '';
        };

        environmentFile = lib.mkOption {
          type = secretFileType;
          default = null;
          example = "/run/secrets/akira/dispatcher.env";
          description = ''
            `EnvironmentFile=` of the unit, for overrides such as
            `AKIRA_DISPATCHER__SMTP_HOST=…`. Keep secrets in `credentials`.
          '';
        };

        credentials = lib.mkOption {
          type = lib.types.attrsOf (
            lib.types.pathWith {
              inStore = false;
              absolute = true;
            }
          );
          default = { };
          example = {
            database-url = "/run/secrets/akira/cdr-database-url";
          };
          description = ''
            Extra files passed with `LoadCredential=`, by credential name.
            Refer to them in `settings` as `$CREDENTIALS_DIRECTORY/<name>` in a
            `*_file` key. Names starting with `nats-` are taken by the NATS options.
          '';
        };

        wants = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = [ ];
          example = [ "postgresql.service" ];
          description = "Units the worker wants and starts after, for example a local database.";
        };

        nats = natsConnectionOptions true;

        serviceConfig = lib.mkOption {
          type = lib.types.attrsOf (
            lib.types.oneOf [
              lib.types.bool
              lib.types.int
              lib.types.str
              (lib.types.listOf lib.types.str)
            ]
          );
          default = { };
          example = {
            MemoryMax = "1G";
            SupplementaryGroups = [ "kamailio" ];
          };
          description = "Extra `[Service]` settings, applied last over the generated ones.";
        };
      };
    };

  enabledWorkers = akiraLib.enabledWorkers cfg;
  active = enabledWorkers != { } || cfg.deadLetterSentinel.enable;

  workerUnits = lib.concatLists (
    lib.mapAttrsToList (
      name: worker:
      map (instance: {
        inherit name worker instance;
      }) (akiraLib.workerInstances name worker)
    ) enabledWorkers
  );

  workerServices = lib.listToAttrs (
    map (
      unit:
      lib.nameValuePair unit.instance.unit (
        akiraLib.workerService {
          inherit cfg;
          inherit (unit) name worker instance;
          configFile = tomlFormat.generate "${unit.instance.unit}.toml" (
            akiraLib.workerSettings cfg unit.name unit.worker unit.instance
          );
        }
      )
    ) workerUnits
  );

  workerTimers = lib.mapAttrs' (
    name: worker: lib.nameValuePair "akira-${name}" (akiraLib.workerTimer name worker)
  ) (lib.filterAttrs (_: worker: worker.class == "timer") enabledWorkers);

  declarationsFile = tomlFormat.generate "akira-declarations.toml" (akiraLib.declarations cfg);

  # akira-workerctl only takes --creds, so other authentication methods
  # reach the workers but not the provisioning unit or the sentinel.
  workerctlUnsupportedAuth = lib.filter (path: lib.attrByPath path null cfg.nats != null) [
    [ "nkeySeedFile" ]
    [ "passwordFile" ]
    [ "tokenFile" ]
    [
      "tls"
      "certFile"
    ]
  ];
in
{
  options.services.akira-workers = {
    package = lib.mkPackageOption pkgs "akira-workers" {
      extraDescription = "It must contain `akira-workerctl` and the `akira-<name>` worker binaries.";
    };

    nats = natsConnectionOptions false;

    streams = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule streamModule);
      default = { };
      example = lib.literalExpression ''
        {
          CDR = { subjects = [ "akira.cdr.>" ]; max_age = "14d"; duplicate_window = "2m"; };
        }
      '';
      description = ''
        Streams to declare, by name, with NATS field names (`max_age`,
        `duplicate_window`, `max_bytes`, …; durations as strings such as
        `30d`). `AKIRA_DLQ` is declared by default: limits retention, file
        storage, a maximum age of 30 days and a 2-minute duplicate window.
      '';
    };

    provision = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = ''
          Whether `akira-nats-provision.service` applies the stream and
          consumer declarations with `akira-workerctl apply` before the
          workers start. Disable it when streams are managed elsewhere.
        '';
      };
      credentialsFile = lib.mkOption {
        type = secretFileType;
        default = cfg.nats.credentialsFile;
        defaultText = globalOptionText "nats.credentialsFile";
        description = "NATS credentials of the provisioning unit, which needs JetStream management permissions.";
      };
      wait = lib.mkOption {
        type = lib.types.str;
        default = "60s";
        description = "How long `akira-workerctl apply` waits for the NATS server to become reachable.";
      };
    };

    deadLetterSentinel = {
      enable = lib.mkEnableOption "the dead-letter sentinel (`akira-workerctl dlq sentinel`) as `akira-dlq-sentinel.service`";
      extraArgs = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        description = "Extra arguments of `akira-workerctl dlq sentinel`.";
      };
    };

    textfileDirectory = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/var/lib/prometheus-node-exporter-text-files";
      description = ''
        Directory of the node exporter's textfile collector, where timer
        workers write their `akira_job_*` metrics. The module creates it with
        mode 2775 for `textfileGroup`.
      '';
    };

    textfileGroup = lib.mkOption {
      type = lib.types.str;
      default = "akira-metrics";
      description = "Group that owns `textfileDirectory`; timer workers run with it as a supplementary group.";
    };

    workers = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule workerModule);
      default = { };
      description = "Workers to run on this host, by name; `<name>` selects the binary `akira-<name>`.";
    };
  };

  config = lib.mkMerge [
    {
      services.akira-workers.streams.AKIRA_DLQ = lib.mapAttrs (_: lib.mkDefault) {
        subjects = [ "akira.dlq.>" ];
        retention = "limits";
        storage = "file";
        max_age = "30d";
        duplicate_window = "2m";
      };
    }

    (lib.mkIf active {
      assertions = assertionsFor cfg;

      warnings =
        lib.optional
          (workerctlUnsupportedAuth != [ ] && (cfg.provision.enable || cfg.deadLetterSentinel.enable))
          "services.akira-workers.nats sets ${
            lib.concatMapStringsSep ", " (lib.concatStringsSep ".") workerctlUnsupportedAuth
          }, but akira-workerctl only takes a credentials file, so the provisioning unit and the dead-letter sentinel connect without that authentication; set services.akira-workers.nats.credentialsFile (or provision.credentialsFile) to credentials with JetStream management permissions.";

      environment.systemPackages = [ cfg.package ];

      systemd.services = lib.mkMerge [
        workerServices
        (lib.mkIf cfg.provision.enable {
          ${akiraLib.provisionUnit} = akiraLib.provisionService {
            inherit cfg declarationsFile;
            natsRunsLocally = config.services.nats.enable or false;
          };
        })
        (lib.mkIf cfg.deadLetterSentinel.enable {
          ${akiraLib.sentinelUnit} = akiraLib.sentinelService cfg;
        })
      ];

      systemd.timers = workerTimers;

      environment.etc.${akiraLib.declarationsEtcPath} = lib.mkIf cfg.provision.enable {
        source = declarationsFile;
      };

      systemd.tmpfiles.rules = lib.optional (
        cfg.textfileDirectory != null
      ) "d ${cfg.textfileDirectory} 2775 root ${cfg.textfileGroup} - -";

      users.groups = lib.mkIf (cfg.textfileDirectory != null) { ${cfg.textfileGroup} = { }; };
    })
  ];
}
