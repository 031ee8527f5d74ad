# A stand-in for the nixpkgs package set: just enough for the module and the
# VM test nodes to evaluate. Nothing can be built here, so packages are
# derivation-shaped attribute sets with fake store paths, and a generated
# file's fake store path changes with its content, as a real one would.
{ lib }:
let
  fakeStorePathOf =
    name: content:
    "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" content)}-${name}";

  fakeStorePath = name: fakeStorePathOf name name;

  fakePackage = name: {
    type = "derivation";
    inherit name;
    outPath = fakeStorePath name;
  };

  # The TOML value type of `pkgs.formats.toml`, without building anything.
  tomlValue = lib.types.oneOf [
    lib.types.bool
    lib.types.int
    lib.types.float
    lib.types.str
    (lib.types.attrsOf tomlValue)
    (lib.types.listOf tomlValue)
  ];
in
{
  inherit fakePackage fakeStorePath;

  formats.toml = _: {
    type = lib.types.attrsOf tomlValue;
    generate = name: value: fakeStorePathOf name (builtins.toJSON value);
  };

  stdenv.hostPlatform.system = "x86_64-linux";

  akira-workers = fakePackage "akira-workers";
  curl = fakePackage "curl";
  jq = fakePackage "jq";
  natscli = fakePackage "natscli";
}
