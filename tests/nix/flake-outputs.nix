# Evaluates flake.nix's outputs with stand-ins for the nixpkgs package set
# and crane, which cannot be fetched here, and summarises their shape:
# output names, the VM tests the checks include, and the host that
# `nixosModules.default` produces. tests/nix/check_flake.py asserts on it.
{ lib }:
let
  flake = import ../../flake.nix;
  harness = import ./eval.nix { inherit lib; };
  stub = import ./stub-pkgs.nix { inherit lib; };

  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];

  stubPackage =
    name: extra:
    stub.fakePackage name
    // {
      meta = {
        mainProgram = name;
      };
    }
    // extra;

  pkgsFor =
    system:
    stub
    // {
      inherit lib;
      stdenv.hostPlatform.system = system;
      symlinkJoin = args: stubPackage args.name { inherit (args) meta paths; };
      writeShellApplication = args: stubPackage args.name { inherit (args) text; };
      runCommand = name: _env: _script: stubPackage name { };
      testers.runNixOSTest = test: stubPackage test.name { inherit test; };
    }
    // lib.genAttrs [
      "cargo-nextest"
      "deadnix"
      "nats-server"
      "postgresql"
      "prometheus"
      "python3"
      "rust-analyzer"
      "systemd"
    ] (name: stubPackage name { });

  # crane's builders return a derivation named after the build, carrying
  # the arguments they were given.
  craneFor = _pkgs: {
    fileset.commonCargoSources = path: path;
    cleanCargoSource = path: path;
    buildDepsOnly = args: stubPackage "${args.pname}-deps" { inherit args; };
    buildPackage = args: stubPackage args.pname { inherit args; inherit (args) meta; };
    cargoClippy = args: stubPackage "${args.pname}-clippy" { inherit args; };
    cargoFmt = args: stubPackage "${args.pname}-fmt" { inherit args; };
    cargoDoc = args: stubPackage "${args.pname}-doc" { inherit args; };
    cargoNextest = args: stubPackage "${args.pname}-nextest" { inherit args; };
    devShell = args: stubPackage "akira-devshell" { inherit args; };
  };

  inputs = {
    inherit self;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs systems pkgsFor;
    };
    crane.mkLib = craneFor;
  };

  self = flake.outputs inputs // {
    outPath = stub.fakeStorePath "source";
  };

  namesPerSystem = lib.mapAttrs (_: builtins.attrNames);

  defaultModuleHost = harness.host [
    self.nixosModules.default
    { services.akira-workers.workers.alert-relay.class = "core"; }
  ];
in
{
  inherit (flake) inputs;
  packages = namesPerSystem self.packages;
  checks = namesPerSystem self.checks;
  apps = namesPerSystem self.apps;
  devShells = namesPerSystem self.devShells;
  nixosModules = builtins.attrNames self.nixosModules;
  overlays = builtins.attrNames self.overlays;
  mainPrograms = lib.mapAttrs (_: package: package.meta.mainProgram) self.packages.x86_64-linux;
  # Only metadata: a package's name needs its crate's Cargo.toml, which may
  # not exist yet while the crate is being written.
  defaultPackagePrograms = map (package: package.meta.mainProgram) self.packages.x86_64-linux.default.paths;
  demoProgram = self.apps.x86_64-linux.demo.program;
  vmTests = lib.mapAttrs (_: check: check.test.name) (
    lib.filterAttrs (name: _: lib.hasPrefix "vm-" name) self.checks.x86_64-linux
  );
  nextestPreCheck = self.checks.x86_64-linux.nextest.args.preCheck;
  clippyArgs = self.checks.x86_64-linux.clippy.args.cargoClippyExtraArgs;
  flakyExample = self.packages.x86_64-linux.akira-example-flaky.args.cargoExtraArgs;
  defaultModuleExecStart = defaultModuleHost.services.akira-alert-relay.serviceConfig.ExecStart;
  defaultPackage = toString self.packages.x86_64-linux.default;
}
