#!/usr/bin/env python3
"""Check flake.lock and the shape of the flake's outputs.

Usage: check_flake.py OUTPUTS_JSON REPOSITORY

OUTPUTS_JSON is the JSON of tests/nix/flake-outputs.nix. The lock file must
be what `nix flake lock` writes (version 7, sorted keys, two-space indent),
lock exactly the inputs that flake.nix declares, and pin each with a full
revision and a narHash. Exits 1 when a check fails.
"""

import base64
import json
import re
import sys
from pathlib import Path

VM_TESTS = ["dead-letter", "provision", "redelivery", "restart", "timer"]
RUST_CHECKS = ["clippy", "doc", "fmt", "nextest"]
SYSTEMS = ["aarch64-linux", "x86_64-linux"]


def parse_github_url(url):
    """Split "github:OWNER/REPO[/REF]" into the fields of a lock's `original`."""
    match = re.fullmatch(r"github:([^/]+)/([^/]+)(?:/(.+))?", url)
    if match is None:
        return None
    original = {"type": "github", "owner": match.group(1), "repo": match.group(2)}
    if match.group(3):
        original["ref"] = match.group(3)
    return original


def check_lock(failures, inputs, lock_path):
    text = lock_path.read_text()
    lock = json.loads(text)

    if text != json.dumps(lock, indent=2, sort_keys=True) + "\n":
        failures.append("flake.lock is not formatted as `nix flake lock` writes it (sorted keys, two-space indent, final newline)")
    if lock.get("version") != 7:
        failures.append(f"flake.lock version is {lock.get('version')!r}, expected 7")
    root = lock.get("root")
    root_inputs = lock.get("nodes", {}).get(root, {}).get("inputs", {})
    if sorted(root_inputs) != sorted(inputs):
        failures.append(f"flake.lock locks {sorted(root_inputs)}, but flake.nix declares {sorted(inputs)}")

    for name, declaration in sorted(inputs.items()):
        node = lock.get("nodes", {}).get(root_inputs.get(name, name))
        if node is None:
            failures.append(f"flake.lock has no node for input {name}")
            continue
        expected_original = parse_github_url(declaration.get("url", ""))
        if expected_original is None:
            failures.append(f"input {name}: url {declaration.get('url')!r} is not a github: URL")
        elif node.get("original") != expected_original:
            failures.append(
                f"input {name}: flake.lock original {node.get('original')!r} does not match "
                f"flake.nix url {declaration['url']!r}; Nix would re-lock it"
            )
        locked = node.get("locked", {})
        if not re.fullmatch(r"[0-9a-f]{40}", locked.get("rev", "")):
            failures.append(f"input {name}: locked rev {locked.get('rev')!r} is not a full commit hash")
        nar_hash = locked.get("narHash", "")
        digest = nar_hash.removeprefix("sha256-")
        try:
            valid_hash = nar_hash.startswith("sha256-") and len(base64.b64decode(digest, validate=True)) == 32
        except ValueError:
            valid_hash = False
        if not valid_hash:
            failures.append(f"input {name}: narHash {nar_hash!r} is not an SRI SHA-256 hash")
        if not isinstance(locked.get("lastModified"), int):
            failures.append(f"input {name}: lastModified {locked.get('lastModified')!r} is not an integer")
        for key in ("owner", "repo", "type"):
            if expected_original and locked.get(key) != expected_original[key]:
                failures.append(f"input {name}: locked {key} {locked.get(key)!r}, expected {expected_original[key]!r}")


def check_outputs(failures, outputs, repository):
    workers_dir = repository / "crates" / "workers"
    workers = sorted(path.name for path in workers_dir.iterdir() if path.is_dir()) if workers_dir.is_dir() else []
    worker_packages = [f"akira-{worker}" for worker in workers]

    def expect(subject, actual, expected):
        if actual != expected:
            failures.append(f"{subject}: expected {expected!r}, got {actual!r}")

    expected_packages = sorted(worker_packages + ["akira-demo", "akira-example-worker", "akira-workerctl", "default"])
    expected_checks = sorted(RUST_CHECKS + ["nixos-module-eval"] + [f"vm-{test}" for test in VM_TESTS])
    for system in SYSTEMS:
        expect(f"packages.{system}", sorted(outputs["packages"].get(system, [])), expected_packages)
        expect(f"checks.{system}", sorted(outputs["checks"].get(system, [])), expected_checks)
        expect(f"apps.{system}", outputs["apps"].get(system), ["demo"])
        expect(f"devShells.{system}", outputs["devShells"].get(system), ["default"])
    expect("nixosModules", outputs["nixosModules"], ["akira-workers", "default"])
    expect("overlays", outputs["overlays"], ["default"])

    for package in worker_packages + ["akira-workerctl", "akira-demo", "akira-example-worker"]:
        expect(f"packages.x86_64-linux.{package} meta.mainProgram", outputs["mainPrograms"].get(package), package)
    expect(
        "binaries in packages.default",
        sorted(outputs["defaultPackagePrograms"]),
        sorted(worker_packages + ["akira-workerctl"]),
    )
    expect(
        "VM test names",
        outputs["vmTests"],
        {f"vm-{test}": f"akira-{test}" for test in VM_TESTS},
    )
    expect("akira-example-worker cargo arguments", outputs["exampleWorkerCargoArgs"], "--package akira-example-worker")
    if "--deny warnings" not in outputs["clippyArgs"]:
        failures.append(f"clippy check does not deny warnings: {outputs['clippyArgs']!r}")
    if "cargo build --workspace --bins" not in outputs["nextestBuild"]:
        failures.append(
            "the nextest check does not build the workspace binaries that crates/akira-e2e runs: "
            f"{outputs['nextestBuild']!r}"
        )
    for variable in ("NATS_SERVER_BIN", "PG_BIN"):
        if f"export {variable}=" not in outputs["nextestPreCheck"]:
            failures.append(f"nextest preCheck does not export {variable}")
    if not outputs["defaultModuleExecStart"].startswith(outputs["defaultPackage"] + "/bin/akira-alert-relay "):
        failures.append(
            "nixosModules.default does not run workers from packages.default: "
            f"{outputs['defaultModuleExecStart']!r}"
        )


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as handle:
        outputs = json.load(handle)
    repository = Path(sys.argv[2])

    failures = []
    check_lock(failures, outputs["inputs"], repository / "flake.lock")
    check_outputs(failures, outputs, repository)

    for failure in failures:
        print(f"FAIL {failure}")
    print(f"flake: {'ok' if not failures else f'{len(failures)} problems'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
