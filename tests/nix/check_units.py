#!/usr/bin/env python3
"""Render the sample host's units to unit files and check them with systemd-analyze.

Reads the JSON of tests/nix/suite.nix, writes the services and timers of
`sampleHost` as unit files the way NixOS renders `serviceConfig`,
`unitConfig` and `timerConfig` (booleans as true/false, lists as repeated
keys), and runs:

  * `systemd-analyze verify` on every unit (unless --no-verify), with each
    Exec*= program replaced by /bin/true because the store paths do not
    exist here;
  * `systemd-analyze security --offline=true` on every service, failing when
    a long-running unit's overall exposure is above --max-exposure.

Exits 1 when a check fails, 0 otherwise.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Keys that NixOS turns into [Unit] lines; `unitConfig` adds the rest.
UNIT_LISTS = {
    "after": "After",
    "before": "Before",
    "wants": "Wants",
    "requires": "Requires",
}
EXEC_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost")
STAND_IN_PROGRAM = "/bin/true"


def render_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_settings(settings):
    lines = []
    for key, value in settings.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            lines.append(f"{key}={render_value(item)}")
    return lines


def stand_in_exec(command):
    """Replace the program of an Exec*= line, keeping its arguments."""
    program, _, arguments = command.partition(" ")
    return f"{STAND_IN_PROGRAM} {arguments}".rstrip() if program.startswith("/nix/store/") else command


def render_unit(unit, section, section_settings):
    lines = ["[Unit]"]
    if unit.get("description"):
        lines.append(f"Description={unit['description']}")
    for key, directive in UNIT_LISTS.items():
        for dependency in unit.get(key, []):
            lines.append(f"{directive}={dependency}")
    lines += render_settings(unit.get("unitConfig", {}))
    if unit.get("reloadTriggers"):
        lines.append(f"X-Reload-Triggers={' '.join(unit['reloadTriggers'])}")

    lines += ["", f"[{section}]"]
    for name, value in sorted(unit.get("environment", {}).items()):
        lines.append(f'Environment="{name}={value}"')
    lines += render_settings(section_settings)

    if unit.get("wantedBy"):
        lines += ["", "[Install]"] + [f"WantedBy={target}" for target in unit["wantedBy"]]
    return "\n".join(lines) + "\n"


def write_units(host, directory):
    services = []
    for name, service in sorted(host["services"].items()):
        config = dict(service["serviceConfig"])
        for key in EXEC_KEYS:
            if key in config:
                config[key] = stand_in_exec(config[key])
        path = directory / f"{name}.service"
        path.write_text(render_unit(service, "Service", config))
        services.append(path)

    timers = []
    for name, timer in sorted(host["timers"].items()):
        path = directory / f"{name}.timer"
        path.write_text(render_unit(timer, "Timer", timer["timerConfig"]))
        timers.append(path)

    # Units the generated ones order themselves after but that only exist on
    # a NixOS host with those services enabled.
    for external in ("nats.service", "postgresql.service"):
        (directory / external).write_text(f"[Unit]\nDescription=stand-in for {external}\n\n[Service]\nExecStart={STAND_IN_PROGRAM}\n")
    return services, timers


def is_long_running(service):
    return service["serviceConfig"].get("Type") != "oneshot"


def verify(paths):
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
    )
    output = (result.stdout + result.stderr).strip()
    return result.returncode, output


def exposure(path):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    if match is None:
        raise RuntimeError(
            f"systemd-analyze security printed no exposure level for {path.name}:\n{result.stdout}{result.stderr}"
        )
    return float(match.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="JSON output of tests/nix/suite.nix")
    parser.add_argument("--max-exposure", type=float, default=2.0, help="maximum overall exposure allowed for long-running units (0.0 to 10.0)")
    parser.add_argument("--no-verify", action="store_true", help="skip systemd-analyze verify (no unit search path, as in the Nix sandbox)")
    parser.add_argument("--keep", metavar="DIR", help="write the unit files to DIR instead of a temporary directory")
    arguments = parser.parse_args()

    with open(arguments.suite) as handle:
        host = json.load(handle)["sampleHost"]

    failures = []
    with tempfile.TemporaryDirectory(prefix="akira-units-") as temporary:
        directory = Path(arguments.keep or temporary)
        directory.mkdir(parents=True, exist_ok=True)
        services, timers = write_units(host, directory)

        if not arguments.no_verify:
            status, output = verify(services + timers)
            if status != 0 or output:
                failures.append(f"systemd-analyze verify reported problems (exit status {status}):\n{output}")
            else:
                print(f"systemd-analyze verify: {len(services) + len(timers)} units without findings")

        for path in services:
            service = host["services"][path.stem]
            level = exposure(path)
            long_running = is_long_running(service)
            print(f"exposure {level:.1f} {path.name}{'' if long_running else ' (oneshot, not asserted)'}")
            if long_running and level > arguments.max_exposure:
                failures.append(
                    f"{path.name}: exposure {level:.1f} is above {arguments.max_exposure:.1f}; rerun with "
                    f"--keep DIR and run `systemd-analyze security --offline=true DIR/{path.name}` to see "
                    "which settings raise it"
                )

    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
