# The VM tests, by name. The flake passes `pkgs.testers.runNixOSTest` as
# `runTest`; the offline evaluation tests pass a function that returns the
# test definition, so they can evaluate the nodes and read the scripts.
{
  lib,
  akira,
  runTest,
}:
let
  helpers = import ./helpers.nix { inherit lib akira; };
in
lib.mapAttrs (_: scenario: runTest (import scenario helpers)) {
  redelivery = ./redelivery.nix;
  dead-letter = ./dead-letter.nix;
  restart = ./restart.nix;
  timer = ./timer.nix;
  provision = ./provision.nix;
}
