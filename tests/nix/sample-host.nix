{ config, ... }:
{
  services.nats = {
    enable = true;
    jetstream = true;
  };

  services.postgresql = {
    enable = true;
    ensureDatabases = [ "akira" ];
    ensureUsers = [
      { name = "akira-cdr-pipeline"; }
      { name = "akira-audit-retention"; }
    ];
  };

  services.prometheus.exporters.node = {
    enable = true;
    extraFlags = [
      "--collector.textfile.directory=${config.services.akira-workers.textfileDirectory}"
    ];
  };

  services.akira-workers = {
    nats.credentialsFile = "/run/secrets/akira/nats.creds";
    textfileDirectory = "/var/lib/prometheus-node-exporter-text-files";
    deadLetterSentinel.enable = true;

    streams = {
      CDR = {
        subjects = [ "akira.cdr.>" ];
        max_age = "14d";
        duplicate_window = "2m";
      };
      NOTIFY = {
        subjects = [ "akira.notify.>" ];
        max_age = "3d";
      };
    };

    workers = {
      cdr-bridge = {
        class = "core";
        stateful = true;
        metrics.port = 9464;
        settings.bridge.input_dir = "/var/log/kamailio/acc";
        serviceConfig.SupplementaryGroups = [ "kamailio" ];
      };

      cdr-pipeline = {
        class = "pull";
        instances = 2;
        metrics.port = 9465;
        consumer = {
          stream = "CDR";
          filterSubject = "akira.cdr.>";
          ackWait = "30s";
          maxDeliver = 5;
        };
        settings = {
          consumer = {
            batch_size = 100;
            max_wait = "1s";
            max_in_flight = 64;
          };
          retry = {
            base = "1s";
            cap = "5m";
          };
          pipeline.database_url = "postgresql:///akira?host=/run/postgresql&user=akira-cdr-pipeline";
        };
        wants = [ "postgresql.service" ];
      };

      notification-dispatcher = {
        class = "push";
        metrics.port = 9467;
        consumer = {
          stream = "NOTIFY";
          filterSubject = "akira.notify.>";
          ackWait = "60s";
          maxDeliver = 8;
          maxAckPending = 200;
        };
        settings = {
          retry = {
            base = "5s";
            cap = "10m";
          };
          dispatcher.endpoints.pager = {
            url = "https://pager.example.net/v1/events";
            secret_header = "Authorization";
            secret_file = "$CREDENTIALS_DIRECTORY/pager-token";
          };
        };
        credentials.pager-token = "/run/secrets/akira/pager-token";
      };

      alert-relay = {
        class = "core";
        metrics.port = 9468;
        settings = {
          core = {
            subjects = [ "akira.alerts.>" ];
            queue_group = "alert-relay";
          };
          relay.default_endpoint = "pager";
        };
      };

      audit-retention = {
        class = "timer";
        timer = {
          onCalendar = "*-*-* 03:15:00";
          randomizedDelaySec = "10m";
        };
        settings.retention.database_url = "postgresql:///akira?host=/run/postgresql&user=akira-audit-retention";
        wants = [ "postgresql.service" ];
      };
    };
  };
}
