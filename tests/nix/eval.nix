# Evaluates the akira-workers module for one host configuration, with the
# stand-in NixOS options and package set, and summarises what it generates
# as JSON-ready values: units, timers, files, the declarations and the
# rendered worker settings.
{ lib }:
let
  pkgs = import ./stub-pkgs.nix { inherit lib; };
  akiraLib = import ../../nixos-modules/akira-workers/lib.nix { inherit lib; };

  evaluate =
    modules:
    lib.evalModules {
      modules = [
        ./stand-ins.nix
        ../../nixos-modules/akira-workers
        { _module.args = { inherit pkgs; }; }
      ]
      ++ modules;
    };

  workerSettings =
    cfg:
    lib.listToAttrs (
      lib.concatLists (
        lib.mapAttrsToList (
          name: worker:
          map (
            instance: lib.nameValuePair instance.unit (akiraLib.workerSettings cfg name worker instance)
          ) (akiraLib.workerInstances name worker)
        ) (akiraLib.enabledWorkers cfg)
      )
    );

  summarise =
    config:
    let
      cfg = config.services.akira-workers;
    in
    {
      services = config.systemd.services;
      timers = config.systemd.timers;
      etc = lib.mapAttrs (_: file: file.source or null) config.environment.etc;
      tmpfiles = config.systemd.tmpfiles.rules;
      groups = builtins.attrNames config.users.groups;
      systemPackages = map (package: package.name) config.environment.systemPackages;
      failedAssertions = map (assertion: assertion.message) (
        lib.filter (assertion: !assertion.assertion) config.assertions
      );
      inherit (config) warnings;
      declarations = akiraLib.declarations cfg;
      workerSettings = workerSettings cfg;
    };
in
{
  inherit pkgs;

  # Summary of a host built from `modules`; specialisations are evaluated
  # as NixOS does, by adding their configuration to the host's modules.
  host =
    modules:
    let
      base = (evaluate modules).config;
      summary = summarise base;
    in
    summary
    // {
      specialisations = lib.mapAttrs (
        _: specialisation: summarise (evaluate (modules ++ [ specialisation.configuration ])).config
      ) base.specialisation;
    };

  # Only the failed assertions, for configurations that are meant to fail.
  failedAssertions =
    modules:
    let
      config = (evaluate modules).config;
    in
    map (assertion: assertion.message) (lib.filter (assertion: !assertion.assertion) config.assertions);
}
