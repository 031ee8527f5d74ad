#!/usr/bin/env python3
"""Check the units and files the akira-workers module generates against its option values.

Reads the JSON of tests/nix/suite.nix (a file path, or stdin with "-") and
reports every mismatch, each naming the unit, option or case it concerns.
Exits 1 when any check fails.
"""

import json
import re
import sys

PROVISION = "akira-nats-provision"
SENTINEL = "akira-dlq-sentinel"
PROVISION_SERVICE = f"{PROVISION}.service"
DECLARATIONS_ETC = "akira-workers/declarations.toml"

# Units of the sample host by worker class; see tests/nix/sample-host.nix.
SAMPLE_LONG_RUNNING = {
    "akira-cdr-bridge": "cdr-bridge",
    "akira-cdr-pipeline-1": "cdr-pipeline",
    "akira-cdr-pipeline-2": "cdr-pipeline",
    "akira-notification-dispatcher": "notification-dispatcher",
    "akira-alert-relay": "alert-relay",
}
SAMPLE_TIMER = "akira-audit-retention"
TEXTFILE_DIR = "/var/lib/prometheus-node-exporter-text-files"
NATS_CREDS = "nats-creds:/run/secrets/akira/nats.creds"

HARDENING = {
    "DynamicUser": True,
    "NoNewPrivileges": True,
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "PrivateTmp": True,
    "RestrictAddressFamilies": ["AF_INET", "AF_INET6", "AF_UNIX"],
}


class Checker:
    def __init__(self):
        self.failures = []
        self.checks = 0

    def equal(self, where, actual, expected):
        self.checks += 1
        if actual != expected:
            self.failures.append(f"{where}: expected {expected!r}, got {actual!r}")

    def true(self, where, condition, detail):
        self.checks += 1
        if not condition:
            self.failures.append(f"{where}: {detail}")


DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value):
    """Convert "<n><unit>" with a unit of ms, s, m, h or d into seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", value)
    if match is None:
        raise ValueError(f"invalid duration {value!r}: expected <n>ms, <n>s, <n>m, <n>h or <n>d")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def library_backoff(ack_wait, base, cap, max_deliver):
    """The backoff the worker library expects, written independently of lib.nix:
    max(ack_wait, min(cap, base * 2^i)) for i in 0 .. max_deliver - 2."""
    return [max(ack_wait, min(cap, base * 2**i)) for i in range(max_deliver - 1)]


def check_function_tests(check, suite):
    for failure in suite["functionTests"]:
        check.true(
            f"lib.nix {failure['name']}",
            False,
            f"expected {failure['expected']!r}, got {failure['result']!r}",
        )
    check.equal("invalid retry.base throws", suite["invalidBackoffDurationThrows"], True)


def check_rejected(check, suite):
    for case, result in sorted(suite["rejected"].items()):
        failed = result["failed"]
        for fragment in result["expected"]:
            check.true(
                f"case {case}",
                any(fragment in message for message in failed),
                f"no failed assertion contains {fragment!r}; failed: {failed!r}",
            )
        check.equal(f"case {case}: number of failed assertions", len(failed), len(result["expected"]))


def check_hardening(check, unit, config):
    for key, value in HARDENING.items():
        check.equal(f"{unit} {key}", config.get(key), value)
    check.true(
        f"{unit} SystemCallFilter",
        "@system-service" in config.get("SystemCallFilter", []),
        f"@system-service missing from {config.get('SystemCallFilter')!r}",
    )
    check.true(f"{unit} MemoryMax", bool(config.get("MemoryMax")), "MemoryMax is not set")


def check_ordering_after_provision(check, unit, service):
    check.true(
        f"{unit} after",
        PROVISION_SERVICE in service["after"],
        f"not ordered after {PROVISION_SERVICE}: {service['after']!r}",
    )
    check.true(
        f"{unit} requires",
        PROVISION_SERVICE in service["requires"],
        f"does not require {PROVISION_SERVICE}: {service['requires']!r}",
    )


def check_long_running(check, host, unit, worker):
    service = host["services"][unit]
    config = service["serviceConfig"]
    settings = host["workerSettings"][unit]

    check.equal(f"{unit} Type", config.get("Type"), "notify")
    check.equal(f"{unit} NotifyAccess", config.get("NotifyAccess"), "main")
    check.equal(f"{unit} Restart", config.get("Restart"), "always")
    check.true(f"{unit} WatchdogSec", bool(config.get("WatchdogSec")), "WatchdogSec is not set")
    check.true(f"{unit} RestartSec", bool(config.get("RestartSec")), "RestartSec is not set")
    check.true(
        f"{unit} start limits",
        {"StartLimitIntervalSec", "StartLimitBurst"} <= set(service["unitConfig"]),
        f"StartLimitIntervalSec/StartLimitBurst missing from [Unit]: {service['unitConfig']!r}",
    )
    stop = duration_seconds(config["TimeoutStopSec"])
    shutdown = duration_seconds(settings["worker"]["shutdown_timeout"])
    check.true(
        f"{unit} TimeoutStopSec",
        stop > shutdown,
        f"TimeoutStopSec {stop}s is not longer than worker.shutdown_timeout {shutdown}s",
    )
    check.equal(f"{unit} wantedBy", service["wantedBy"], ["multi-user.target"])
    check.equal(f"{unit} User", config.get("User"), f"akira-{worker}")
    check.true(
        f"{unit} ExecStart",
        re.fullmatch(
            rf"/nix/store/\S+/bin/akira-{worker} --config /nix/store/\S+-{unit}\.toml",
            config.get("ExecStart", ""),
        )
        is not None,
        f"unexpected ExecStart {config.get('ExecStart')!r}",
    )
    check.true(
        f"{unit} LoadCredential",
        NATS_CREDS in config.get("LoadCredential", []),
        f"{NATS_CREDS} missing from {config.get('LoadCredential')!r}",
    )
    check.equal(f"{unit} settings worker.name", settings["worker"]["name"], worker)
    check.equal(f"{unit} settings nats.name", settings["nats"]["name"], unit)
    check.equal(
        f"{unit} settings nats.creds_file",
        settings["nats"].get("creds_file"),
        "$CREDENTIALS_DIRECTORY/nats-creds",
    )
    check_ordering_after_provision(check, unit, service)
    check_hardening(check, unit, config)


def check_sample_units(check, host):
    expected_services = set(SAMPLE_LONG_RUNNING) | {SAMPLE_TIMER, PROVISION, SENTINEL}
    check.equal("sample host services", sorted(host["services"]), sorted(expected_services))
    check.equal("sample host timers", sorted(host["timers"]), [SAMPLE_TIMER])
    check.equal("sample host failed assertions", host["failedAssertions"], [])
    check.equal("sample host warnings", host["warnings"], [])

    for unit, worker in SAMPLE_LONG_RUNNING.items():
        check_long_running(check, host, unit, worker)

    services = host["services"]
    check.equal("akira-cdr-bridge StateDirectory", services["akira-cdr-bridge"]["serviceConfig"].get("StateDirectory"), "akira-cdr-bridge")
    check.equal(
        "akira-cdr-bridge SupplementaryGroups (serviceConfig merged last)",
        services["akira-cdr-bridge"]["serviceConfig"].get("SupplementaryGroups"),
        ["kamailio"],
    )
    check.equal(
        "akira-cdr-bridge PrivateUsers (off for supplementary groups)",
        services["akira-cdr-bridge"]["serviceConfig"].get("PrivateUsers"),
        False,
    )
    for unit in sorted(set(SAMPLE_LONG_RUNNING) - {"akira-cdr-bridge"}):
        check.true(
            f"{unit} StateDirectory",
            "StateDirectory" not in services[unit]["serviceConfig"],
            "a stateless worker got a StateDirectory",
        )
        check.equal(f"{unit} PrivateUsers", services[unit]["serviceConfig"].get("PrivateUsers"), True)
    for unit in ("akira-cdr-pipeline-1", "akira-cdr-pipeline-2"):
        check.true(
            f"{unit} postgresql ordering",
            "postgresql.service" in services[unit]["after"] and "postgresql.service" in services[unit]["wants"],
            f"postgresql.service missing from after/wants: {services[unit]['after']!r} {services[unit]['wants']!r}",
        )
    check.true(
        "akira-notification-dispatcher LoadCredential",
        "pager-token:/run/secrets/akira/pager-token"
        in services["akira-notification-dispatcher"]["serviceConfig"].get("LoadCredential", []),
        "the pager-token credential is missing",
    )
    check.equal(
        "akira-cdr-pipeline-2 metrics.listen (port + instance - 1)",
        host["workerSettings"]["akira-cdr-pipeline-2"]["metrics"]["listen"],
        "127.0.0.1:9466",
    )


def check_sample_timer(check, host):
    unit = SAMPLE_TIMER
    service = host["services"][unit]
    config = service["serviceConfig"]
    timer = host["timers"][unit]

    check.equal(f"{unit}.timer OnCalendar", timer["timerConfig"].get("OnCalendar"), ["*-*-* 03:15:00"])
    check.equal(f"{unit}.timer RandomizedDelaySec", timer["timerConfig"].get("RandomizedDelaySec"), "10m")
    check.equal(f"{unit}.timer Persistent", timer["timerConfig"].get("Persistent"), True)
    check.equal(f"{unit}.timer wantedBy", timer["wantedBy"], ["timers.target"])

    check.equal(f"{unit} Type", config.get("Type"), "oneshot")
    check.equal(f"{unit} wantedBy (started by its timer only)", service["wantedBy"], [])
    for key in ("Restart", "WatchdogSec", "RemainAfterExit"):
        check.true(f"{unit} {key}", key not in config, f"a timer job must not set {key}")
    check.equal(f"{unit} TimeoutStartSec", config.get("TimeoutStartSec"), "1h")
    check.equal(f"{unit} ReadWritePaths", config.get("ReadWritePaths"), [TEXTFILE_DIR])
    check.equal(f"{unit} SupplementaryGroups", config.get("SupplementaryGroups"), ["akira-metrics"])
    check.equal(f"{unit} UMask (textfile readable by the node exporter)", config.get("UMask"), "0022")
    check.equal(f"{unit} PrivateUsers (off for supplementary groups)", config.get("PrivateUsers"), False)
    check.equal(f"{unit} settings job.textfile_dir", host["workerSettings"][unit]["job"]["textfile_dir"], TEXTFILE_DIR)
    check.equal(f"{unit} settings metrics.listen", host["workerSettings"][unit]["metrics"]["listen"], "")
    check_ordering_after_provision(check, unit, service)
    check_hardening(check, unit, {**config, "UMask": "0077"})

    check.equal("tmpfiles rules", host["tmpfiles"], [f"d {TEXTFILE_DIR} 2775 root akira-metrics - -"])
    check.equal("groups", host["groups"], ["akira-metrics"])


def check_sample_provision(check, host):
    service = host["services"][PROVISION]
    config = service["serviceConfig"]
    apply = config.get("ExecStart", "")

    check.equal(f"{PROVISION} Type", config.get("Type"), "oneshot")
    check.equal(f"{PROVISION} RemainAfterExit", config.get("RemainAfterExit"), True)
    check.true(
        f"{PROVISION} ExecStart",
        re.fullmatch(
            r"/nix/store/\S+/bin/akira-workerctl --creds %d/nats-creds apply /etc/akira-workers/declarations\.toml --wait 60s",
            apply,
        )
        is not None,
        f"unexpected ExecStart {apply!r}",
    )
    check.equal(f"{PROVISION} ExecReload", config.get("ExecReload"), apply)
    check.equal(f"{PROVISION} reloadIfChanged", service["reloadIfChanged"], True)
    check.equal(f"{PROVISION} reloadTriggers", service["reloadTriggers"], [host["etc"].get(DECLARATIONS_ETC)])
    check.true(
        f"{PROVISION} after",
        "nats.service" in service["after"],
        f"not ordered after the local nats.service: {service['after']!r}",
    )
    check.equal(f"{PROVISION} NATS_URL", service["environment"].get("NATS_URL"), "nats://127.0.0.1:4222")
    check.equal(f"{PROVISION} LoadCredential", config.get("LoadCredential"), [NATS_CREDS])
    check.true(
        f"/etc/{DECLARATIONS_ETC}",
        str(host["etc"].get(DECLARATIONS_ETC, "")).endswith("-akira-declarations.toml"),
        f"declarations file not installed: {host['etc']!r}",
    )
    check_hardening(check, PROVISION, config)

    sentinel = host["services"][SENTINEL]
    sentinel_config = sentinel["serviceConfig"]
    check.true(
        f"{SENTINEL} ExecStart",
        re.fullmatch(r"/nix/store/\S+/bin/akira-workerctl --creds %d/nats-creds dlq sentinel", sentinel_config.get("ExecStart", ""))
        is not None,
        f"unexpected ExecStart {sentinel_config.get('ExecStart')!r}",
    )
    # akira-workerctl dlq sentinel sends READY=1 once subscribed, and no WATCHDOG=1.
    check.equal(f"{SENTINEL} Type", sentinel_config.get("Type"), "notify")
    check.equal(f"{SENTINEL} NotifyAccess", sentinel_config.get("NotifyAccess"), "main")
    check.true(f"{SENTINEL} WatchdogSec", "WatchdogSec" not in sentinel_config, "the sentinel sends no WATCHDOG=1")
    check.equal(f"{SENTINEL} LoadCredential", sentinel_config.get("LoadCredential"), [NATS_CREDS])
    check.equal(f"{SENTINEL} NATS_URL", sentinel["environment"].get("NATS_URL"), "nats://127.0.0.1:4222")
    check.equal(f"{SENTINEL} Restart", sentinel_config.get("Restart"), "always")
    check_ordering_after_provision(check, SENTINEL, sentinel)
    check_hardening(check, SENTINEL, sentinel["serviceConfig"])
    check.equal("system packages", host["systemPackages"], ["akira-workers"])


def check_sample_declarations(check, host):
    declarations = host["declarations"]
    streams = {stream["name"]: stream for stream in declarations["streams"]}

    check.equal("declared streams", sorted(streams), ["AKIRA_DLQ", "CDR", "NOTIFY"])
    check.equal(
        "AKIRA_DLQ declaration",
        streams.get("AKIRA_DLQ"),
        {
            "name": "AKIRA_DLQ",
            "subjects": ["akira.dlq.>"],
            "retention": "limits",
            "storage": "file",
            "max_age": "30d",
            "duplicate_window": "2m",
            "num_replicas": 1,
        },
    )
    check.equal(
        "CDR declaration",
        streams.get("CDR"),
        {
            "name": "CDR",
            "subjects": ["akira.cdr.>"],
            "retention": "limits",
            "storage": "file",
            "max_age": "14d",
            "duplicate_window": "2m",
            "num_replicas": 1,
        },
    )

    consumers = {consumer["durable_name"]: consumer for consumer in declarations["consumers"]}
    check.equal("declared consumers (one per worker, not per instance)", sorted(consumers), ["cdr-pipeline", "notification-dispatcher"])
    check.equal(
        "consumer cdr-pipeline",
        consumers.get("cdr-pipeline"),
        {
            "stream": "CDR",
            "durable_name": "cdr-pipeline",
            "filter_subject": "akira.cdr.>",
            "ack_policy": "explicit",
            "ack_wait": "30s",
            "max_deliver": 20,
            "max_ack_pending": 1000,
            # max(30s, min(5m, 5s * 2^i)) for i in 0..18
            "backoff": ["30s", "30s", "30s", "40s", "80s", "160s"] + ["5m"] * 13,
        },
    )
    check.equal(
        "consumer notification-dispatcher",
        consumers.get("notification-dispatcher"),
        {
            "stream": "NOTIFY",
            "durable_name": "notification-dispatcher",
            "filter_subject": "akira.notify.>",
            "ack_policy": "explicit",
            "ack_wait": "60s",
            "max_deliver": 8,
            "max_ack_pending": 200,
            # max(60s, min(10m, 5s * 2^i)) for i in 0..6
            "backoff": ["1m", "1m", "1m", "1m", "80s", "160s", "320s"],
            "deliver_subject": "akira.deliver.notification-dispatcher",
            "deliver_group": "notification-dispatcher",
            "flow_control": True,
            "idle_heartbeat": "5s",
        },
    )

    check_consumers_match_workers(check, "sample host", host)


def check_consumers_match_workers(check, where, host):
    """Each worker's [consumer] and [retry] must agree with its declaration,
    including the backoff, which the worker derives and checks at startup."""
    consumers = {consumer["durable_name"]: consumer for consumer in host["declarations"]["consumers"]}
    for unit, settings in sorted(host["workerSettings"].items()):
        if "consumer" not in settings:
            continue
        declared = consumers.get(settings["consumer"].get("durable_name"))
        if declared is None:
            check.true(f"{where} {unit}", False, f"no consumer declaration for {settings['consumer']!r}")
            continue
        for key in ("stream", "filter_subject", "ack_wait", "max_ack_pending", "deliver_subject", "deliver_group"):
            check.equal(f"{where} {unit} settings consumer.{key}", settings["consumer"].get(key), declared.get(key))
        check.equal(f"{where} {unit} settings retry.max_deliver", settings["retry"]["max_deliver"], declared["max_deliver"])

        retry = settings["retry"]
        expected = library_backoff(
            ack_wait=duration_seconds(settings["consumer"]["ack_wait"]),
            base=duration_seconds(retry.get("base", "1s")),
            cap=duration_seconds(retry.get("cap", "5m")),
            max_deliver=retry["max_deliver"],
        )
        declared_backoff = [duration_seconds(delay) for delay in declared.get("backoff", [])]
        check.equal(f"{where} {unit} declared backoff (seconds)", declared_backoff, expected)
        if declared_backoff:
            check.equal(
                f"{where} {unit} first backoff delay (nats-server's ack_wait)",
                declared_backoff[0],
                duration_seconds(declared["ack_wait"]),
            )


def check_remote_nats(check, suite):
    host = suite["remoteNats"]
    provision = host["services"][PROVISION]
    settings = host["workerSettings"]["akira-alert-relay"]

    check.true(
        "remote NATS: provisioning order",
        "nats.service" not in provision["after"],
        f"ordered after nats.service although NATS runs elsewhere: {provision['after']!r}",
    )
    check.equal(
        "remote NATS: NATS_URL",
        provision["environment"].get("NATS_URL"),
        "tls://nats-1.example.org:4222,tls://nats-2.example.org:4222",
    )
    check.true(
        "remote NATS: provisioning ExecStart",
        re.fullmatch(
            r"/nix/store/\S+/bin/akira-workerctl --nkey %d/nats-nkey apply /etc/akira-workers/declarations\.toml --wait 60s",
            provision["serviceConfig"]["ExecStart"],
        )
        is not None,
        f"unexpected ExecStart {provision['serviceConfig']['ExecStart']!r}",
    )
    check.equal(
        "remote NATS: provisioning LoadCredential",
        provision["serviceConfig"].get("LoadCredential"),
        ["nats-nkey:/run/secrets/akira/nkey"],
    )
    check.equal("remote NATS: nkey seed setting", settings["nats"].get("nkey_seed_file"), "$CREDENTIALS_DIRECTORY/nats-nkey")
    check.equal(
        "remote NATS: nkey seed credential",
        host["services"]["akira-alert-relay"]["serviceConfig"].get("LoadCredential"),
        ["nats-nkey:/run/secrets/akira/nkey"],
    )
    check.equal("remote NATS: worker servers", settings["nats"]["servers"], ["tls://nats-1.example.org:4222", "tls://nats-2.example.org:4222"])
    check.equal("remote NATS: warnings", host["warnings"], [])

    disabled = suite["provisionDisabled"]
    check.true(
        "provisioning disabled: unit",
        PROVISION not in disabled["services"],
        "akira-nats-provision.service exists although provision.enable = false",
    )
    relay = disabled["services"]["akira-alert-relay"]
    check.equal("provisioning disabled: requires", relay["requires"], [])
    check.true(
        "provisioning disabled: after",
        PROVISION_SERVICE not in relay["after"],
        f"still ordered after {PROVISION_SERVICE}",
    )
    check.true(
        "provisioning disabled: declarations file",
        DECLARATIONS_ETC not in disabled["etc"],
        "declarations file installed although provision.enable = false",
    )


def check_workerctl_credentials(check, suite):
    """Every connection option reaches akira-workerctl as the flag its --help lists."""
    host = suite["workerctlCredentials"]
    provision = host["services"][PROVISION]["serviceConfig"]
    sentinel = host["services"][SENTINEL]["serviceConfig"]
    connection = (
        "--user akira --password-file %d/nats-password --token-file %d/nats-token"
        " --nkey %d/nats-nkey --tls-ca %d/nats-ca --tls-cert %d/nats-cert --tls-key %d/nats-key"
    )
    check.true(
        "workerctl credentials: provisioning ExecStart",
        re.fullmatch(
            r"/nix/store/\S+/bin/akira-workerctl --creds %d/nats-creds " + re.escape(connection)
            + r" apply /etc/akira-workers/declarations\.toml --wait 60s",
            provision["ExecStart"],
        )
        is not None,
        f"unexpected ExecStart {provision['ExecStart']!r}",
    )
    check.true(
        "workerctl credentials: sentinel ExecStart",
        re.fullmatch(
            r"/nix/store/\S+/bin/akira-workerctl --creds %d/nats-creds " + re.escape(connection) + " dlq sentinel",
            sentinel["ExecStart"],
        )
        is not None,
        f"unexpected ExecStart {sentinel['ExecStart']!r}",
    )
    expected_credentials = sorted([
        "nats-ca:/run/secrets/akira/ca.pem",
        "nats-cert:/run/secrets/akira/client.pem",
        "nats-key:/run/secrets/akira/client.key",
        "nats-nkey:/run/secrets/akira/nkey",
        "nats-password:/run/secrets/akira/password",
        "nats-token:/run/secrets/akira/token",
    ])
    check.equal(
        "workerctl credentials: provisioning LoadCredential",
        sorted(provision["LoadCredential"]),
        sorted(expected_credentials + ["nats-creds:/run/secrets/akira/provision.creds"]),
    )
    check.equal(
        "workerctl credentials: sentinel LoadCredential",
        sorted(sentinel["LoadCredential"]),
        sorted(expected_credentials + ["nats-creds:/run/secrets/akira/nats.creds"]),
    )
    check.equal("workerctl credentials: failed assertions", host["failedAssertions"], [])


def check_vm_tests(check, suite):
    expected = {"redelivery", "dead-letter", "restart", "timer", "provision"}
    check.equal("VM tests", sorted(suite["vm"]), sorted(expected))

    for name, test in sorted(suite["vm"].items()):
        where = f"VM test {name}"
        check.equal(f"{where} name", test["name"], f"akira-{name}")
        try:
            compile(test["script"], f"tests/vm/{name}.nix (testScript)", "exec")
        except SyntaxError as error:
            check.true(where, False, f"test script is not valid Python: {error}")

        hosts = [test["host"]] + list(test["host"]["specialisations"].values())
        units = set()
        for host in hosts:
            check.equal(f"{where} failed assertions", host["failedAssertions"], [])
            units |= {f"{unit}.service" for unit in host["services"]}
            units |= {f"{unit}.timer" for unit in host["timers"]}
        for mentioned in sorted(set(re.findall(r"akira-[a-z0-9-]+\.(?:service|timer)", test["script"]))):
            check.true(where, mentioned in units, f"the script uses {mentioned}, which the node does not define")
        for tested_host in hosts:
            check_consumers_match_workers(check, where, tested_host)

    provision = suite["vm"]["provision"]["host"]
    changed = provision["specialisations"].get("changed")
    if changed is None:
        check.true("VM test provision", False, "specialisation `changed` is missing")
        return

    def declared_test_stream(host):
        return next(stream for stream in host["declarations"]["streams"] if stream["name"] == "TEST")

    check.equal("VM test provision: TEST max_age", declared_test_stream(provision).get("max_age"), "1h")
    check.equal("VM test provision: changed TEST max_age", declared_test_stream(changed).get("max_age"), "2h")
    check.equal(
        "VM test provision: changed max_ack_pending",
        changed["declarations"]["consumers"][0].get("max_ack_pending"),
        50,
    )
    check.equal(
        "VM test provision: changed declarations trigger a reload",
        changed["services"][PROVISION]["reloadTriggers"] != provision["services"][PROVISION]["reloadTriggers"],
        True,
    )


def first_difference(actual, expected, path="$"):
    """Return the JSON path and both values of the first place where two values differ."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key in sorted(set(actual) | set(expected)):
            if key not in actual or key not in expected:
                return f"{path}.{key}", actual.get(key, "<missing>"), expected.get(key, "<missing>")
            difference = first_difference(actual[key], expected[key], f"{path}.{key}")
            if difference:
                return difference
        return None
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        for index, (left, right) in enumerate(zip(actual, expected)):
            difference = first_difference(left, right, f"{path}[{index}]")
            if difference:
                return difference
        return None
    return None if actual == expected else (path, actual, expected)


def check_fixtures(check, suite):
    """The Rust end-to-end tests read what the module generates from committed copies."""
    fixtures = suite["fixtures"]
    for name, generated in sorted(fixtures["generated"].items()):
        path = f"{fixtures['directory']}/{name}.json"
        committed = fixtures["committed"].get(name)
        if committed is None:
            check.true(path, False, "missing; run `tests/nix/run --write-fixtures` and commit it")
            continue
        difference = first_difference(generated, committed)
        check.true(
            path,
            difference is None,
            "differs from what the module generates"
            + (f" at {difference[0]}: module {difference[1]!r}, file {difference[2]!r}" if difference else "")
            + "; run `tests/nix/run --write-fixtures`, rerun the Rust end-to-end tests and commit the file",
        )


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "-"
    with (sys.stdin if source == "-" else open(source)) as handle:
        suite = json.load(handle)

    check = Checker()
    check_function_tests(check, suite)
    check_rejected(check, suite)
    host = suite["sampleHost"]
    check_sample_units(check, host)
    check_sample_timer(check, host)
    check_sample_provision(check, host)
    check_sample_declarations(check, host)
    check_remote_nats(check, suite)
    check_workerctl_credentials(check, suite)
    check_vm_tests(check, suite)
    check_fixtures(check, suite)

    for failure in check.failures:
        print(f"FAIL {failure}")
    print(f"module evaluation: {check.checks - len(check.failures)} of {check.checks} checks passed")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
