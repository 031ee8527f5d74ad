{ config, ... }:
{
  services.nats = {
    enable = true;
    jetstream = true;
  };

  # The CDR pipeline, which creates the tables, and the retention job both
  # connect as the role `akira`, which owns the database. Peer
  # authentication maps their system users to it.
  services.postgresql = {
    enable = true;
    ensureDatabases = [ "akira" ];
    ensureUsers = [
      {
        name = "akira";
        ensureDBOwnership = true;
      }
    ];
    identMap = ''
      akira akira-cdr-pipeline akira
      akira akira-audit-retention akira
    '';
    authentication = ''
      local akira akira peer map=akira
    '';
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
        max_age = "1d";
        duplicate_window = "2m";
      };
    };

    workers = {
      cdr-bridge = {
        class = "core";
        stateful = true;
        metrics.port = 9464;
        # The position is kept in $STATE_DIRECTORY (`stateful`).
        settings.bridge = {
          path = "/var/log/kamailio/acc.json";
          source = "edge1";
        };
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
          # With retry.base 5s and cap 5m, a record is retried for about 70
          # minutes of PostgreSQL outage before it is dead-lettered.
          maxDeliver = 20;
        };
        settings = {
          consumer = {
            batch_size = 100;
            max_wait = "1s";
            max_in_flight = 200;
          };
          retry = {
            base = "5s";
            cap = "5m";
          };
          pipeline.database_url = "postgres:///akira?host=/run/postgresql&user=akira";
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
        settings.retention = {
          database_url = "postgres:///akira?host=/run/postgresql&user=akira";
          table = "cdr_events";
          timestamp_column = "event_time";
          max_age = "180d";
        };
        wants = [ "postgresql.service" ];
      };
    };
  };
}
