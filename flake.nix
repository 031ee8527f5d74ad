{
  description = "akira-workers: NATS-native background workers, the telephony worker fleet built on them, and its NixOS module";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    crane.url = "github:ipetkov/crane";
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
    }:
    let
      inherit (nixpkgs) lib;

      # NixOS hosts and VM tests need Linux.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      forEachSystem = function: lib.genAttrs systems (system: function nixpkgs.legacyPackages.${system});

      rustFor =
        pkgs:
        import ./nix/rust.nix {
          inherit pkgs;
          craneLib = crane.mkLib pkgs;
        };

      # Evaluated once per system and shared by every output below.
      rust = forEachSystem rustFor;
      rustOf = pkgs: rust.${pkgs.stdenv.hostPlatform.system};

      vmTestsFor =
        pkgs:
        lib.mapAttrs' (name: test: lib.nameValuePair "vm-${name}" test) (
          import ./tests/vm {
            inherit lib;
            akira = {
              nixosModule = self.nixosModules.akira-workers;
              packages = (rustOf pkgs).packages;
            };
            runTest = pkgs.testers.runNixOSTest;
          }
        );

      # The module evaluation tests of tests/nix/run: the suite is evaluated
      # here with the pinned nixpkgs lib and checked in the build sandbox.
      # `systemd-analyze verify` needs the host's unit search path, so only
      # the offline security review runs here.
      moduleEvalCheck =
        pkgs:
        pkgs.runCommand "akira-nixos-module-eval"
          {
            nativeBuildInputs = [
              pkgs.python3
              pkgs.systemd
            ];
            suite = builtins.toJSON (import ./tests/nix/suite.nix { inherit lib; });
            passAsFile = [ "suite" ];
          }
          ''
            python3 ${./tests/nix/check_eval.py} "$suitePath"
            python3 ${./tests/nix/check_units.py} --no-verify "$suitePath"
            touch "$out"
          '';
    in
    {
      packages = lib.mapAttrs (_: systemRust: systemRust.packages) rust;

      checks = forEachSystem (
        pkgs:
        (rustOf pkgs).checks
        // {
          nixos-module-eval = moduleEvalCheck pkgs;
        }
        // vmTestsFor pkgs
      );

      apps = forEachSystem (
        pkgs:
        let
          inherit (rustOf pkgs) natsServer packages postgresqlBin;
          demo = pkgs.writeShellApplication {
            name = "akira-demo";
            runtimeInputs = [
              packages.default
              packages.akira-demo
              pkgs.nats-server
              pkgs.natscli
              pkgs.postgresql
            ];
            text = ''
              export AKIRA_BIN_DIR=${packages.default}/bin
              export NATS_SERVER_BIN=${natsServer}
              export PG_BIN=${postgresqlBin}
              exec ${self}/scripts/demo "$@"
            '';
          };
        in
        {
          demo = {
            type = "app";
            program = lib.getExe demo;
            meta.description = "Run the akira fleet on the bundled sample input with nixpkgs' nats-server and PostgreSQL";
          };
        }
      );

      devShells = forEachSystem (
        pkgs:
        let
          inherit (rustOf pkgs) checks natsServer postgresqlBin;
        in
        {
          default = (crane.mkLib pkgs).devShell {
            # Inherits the toolchain (cargo, rustc, clippy, rustfmt) and the
            # build inputs of the Rust checks.
            inherit checks;
            packages = [
              pkgs.cargo-nextest
              pkgs.deadnix
              pkgs.jq
              pkgs.nats-server
              pkgs.natscli
              pkgs.postgresql
              (lib.getOutput "cli" pkgs.prometheus)
              pkgs.python3
              pkgs.rust-analyzer
            ];
            NATS_SERVER_BIN = natsServer;
            PG_BIN = postgresqlBin;
          };
        }
      );

      # Adds `akira-workers` (all binaries) to a package set, for hosts
      # that build with their own nixpkgs.
      overlays.default = final: _prev: { akira-workers = (rustFor final).packages.default; };

      nixosModules = {
        # The module alone; `services.akira-workers.package` defaults to
        # `pkgs.akira-workers` (see overlays.default).
        akira-workers = ./nixos-modules/akira-workers;

        # The module with the package built from this flake.
        default =
          { lib, pkgs, ... }:
          {
            imports = [ self.nixosModules.akira-workers ];
            services.akira-workers.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          };
      };
    };
}
