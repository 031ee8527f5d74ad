# Configurations the module must reject, each with a fragment of the
# assertion message it must produce.
let
  worker = name: settings: { services.akira-workers.workers.${name} = settings; };
  stream = name: subjects: { services.akira-workers.streams.${name}.subjects = subjects; };
in
{
  pull-worker-without-stream = {
    modules = [ (worker "cdr-pipeline" { class = "pull"; }) ];
    expected = [
      "services.akira-workers.workers.cdr-pipeline: a pull worker consumes from a stream; set services.akira-workers.workers.cdr-pipeline.consumer.stream"
    ];
  };

  consumer-of-undeclared-stream = {
    modules = [
      (worker "notification-dispatcher" {
        class = "push";
        consumer.stream = "NOTIFY";
      })
    ];
    expected = [
      "services.akira-workers.workers.notification-dispatcher.consumer.stream is \"NOTIFY\", which is not declared in services.akira-workers.streams"
    ];
  };

  timer-with-instances = {
    modules = [
      (worker "audit-retention" {
        class = "timer";
        instances = 2;
      })
    ];
    expected = [
      "services.akira-workers.workers.audit-retention.instances is 2, but a timer worker runs as one oneshot service"
    ];
  };

  timer-without-calendar = {
    modules = [
      (worker "audit-retention" {
        class = "timer";
        timer.onCalendar = [ ];
      })
    ];
    expected = [ "services.akira-workers.workers.audit-retention.timer.onCalendar is empty" ];
  };

  settings-override-consumer = {
    modules = [
      (stream "CDR" [ "akira.cdr.>" ])
      (worker "cdr-pipeline" {
        class = "pull";
        consumer.stream = "CDR";
        settings.consumer.ack_wait = "10s";
        settings.retry.max_deliver = 3;
      })
    ];
    expected = [
      "services.akira-workers.workers.cdr-pipeline.settings.consumer.ack_wait is set; set services.akira-workers.workers.cdr-pipeline.consumer.ackWait instead"
      "services.akira-workers.workers.cdr-pipeline.settings.retry.max_deliver is set; set services.akira-workers.workers.cdr-pipeline.consumer.maxDeliver instead"
    ];
  };

  settings-override-shutdown-timeout = {
    modules = [
      (worker "alert-relay" {
        class = "core";
        settings.worker.shutdown_timeout = "60s";
      })
    ];
    expected = [
      "services.akira-workers.workers.alert-relay.settings.worker.shutdown_timeout is set; set services.akira-workers.workers.alert-relay.shutdownTimeout instead"
    ];
  };

  duplicate-metrics-port = {
    modules = [
      (stream "CDR" [ "akira.cdr.>" ])
      (worker "cdr-pipeline" {
        class = "pull";
        consumer.stream = "CDR";
        instances = 2;
        metrics.port = 9464;
      })
      (worker "alert-relay" {
        class = "core";
        metrics.port = 9465;
      })
    ];
    expected = [
      "the units akira-alert-relay, akira-cdr-pipeline-2 all serve metrics on 127.0.0.1:9465"
    ];
  };

  duplicate-consumer = {
    modules = [
      (stream "CDR" [ "akira.cdr.>" ])
      (worker "cdr-pipeline" {
        class = "pull";
        consumer.stream = "CDR";
      })
      (worker "cdr-archiver" {
        class = "pull";
        consumer = {
          stream = "CDR";
          durableName = "cdr-pipeline";
        };
      })
    ];
    expected = [ "more than one worker declares the consumer CDR/cdr-pipeline" ];
  };

  user-without-password = {
    modules = [
      (worker "alert-relay" {
        class = "core";
        nats.user = "relay";
      })
    ];
    expected = [
      "services.akira-workers.workers.alert-relay.nats: user and passwordFile go together"
    ];
  };

  certificate-without-key = {
    modules = [
      { services.akira-workers.nats.tls.certFile = "/run/secrets/akira/client.crt"; }
      (worker "alert-relay" { class = "core"; })
    ];
    expected = [
      "services.akira-workers.workers.alert-relay.nats.tls: certFile and keyFile go together"
    ];
  };

  reserved-credential-name = {
    modules = [
      { services.akira-workers.nats.credentialsFile = "/run/secrets/akira/nats.creds"; }
      (worker "alert-relay" {
        class = "core";
        credentials.nats-creds = "/run/secrets/other.creds";
      })
    ];
    expected = [
      "services.akira-workers.workers.alert-relay.credentials uses the reserved name(s) nats-creds"
    ];
  };
}
