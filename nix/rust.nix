# The Cargo workspace built with crane: one dependency build
# (`cargoArtifacts`) shared by every package and check, each package built
# from a source filtered down to the crates it needs, and the workspace
# checks (clippy, rustfmt, rustdoc, nextest).
{ pkgs, craneLib }:
let
  inherit (pkgs) lib;

  root = ../.;
  workspaceVersion = (lib.importTOML ../Cargo.toml).workspace.package.version;

  # Worker crates live in crates/workers/<name> and build the binary
  # akira-<name>; the list follows the directory, so a new worker needs no
  # change here.
  workerNames =
    if builtins.pathExists ../crates/workers then
      builtins.attrNames (
        lib.filterAttrs (_: type: type == "directory") (builtins.readDir ../crates/workers)
      )
    else
      [ ];

  # Files cargo reads besides Rust sources and manifests: SQL migrations
  # and sqlx's offline query data.
  buildDataFiles = directory: lib.fileset.fileFilter (file: file.hasExt "sql" || file.hasExt "json") directory;

  # Every crate depends on the library, and the library's dev-dependency on
  # the test kit must resolve, so both are part of each package's source.
  # The workspace lists its members with globs, so cargo accepts the
  # crates left out.
  sourceForCrate =
    crate:
    lib.fileset.toSource {
      inherit root;
      fileset = lib.fileset.unions [
        ../Cargo.toml
        ../Cargo.lock
        (craneLib.fileset.commonCargoSources ../crates/akira-workers)
        (craneLib.fileset.commonCargoSources ../crates/akira-testkit)
        (buildDataFiles ../crates/akira-workers)
        (craneLib.fileset.commonCargoSources crate)
        (buildDataFiles crate)
      ];
    };

  # The checks compile and run the whole workspace, tests included.
  # NOTE: tests that read files outside crates/ need them added here. The
  # relay's tests read examples/data; the demo's test also reads
  # deploy/streams.toml.
  workspaceSource = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (craneLib.fileset.commonCargoSources root)
      ../crates
      (lib.fileset.maybeMissing ../.config)
      (lib.fileset.maybeMissing ../examples)
      (lib.fileset.maybeMissing ../deploy)
    ];
  };

  commonArgs = {
    pname = "akira-workers";
    version = workspaceVersion;
    src = craneLib.cleanCargoSource root;
    strictDeps = true;
    # sqlx's query macros read the prepared query data in .sqlx instead of
    # connecting to a database at build time.
    SQLX_OFFLINE = "true";
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  # Packages skip the test suite; the nextest check runs it once for the
  # workspace. Their cargoExtraArgs drop crane's default --locked because
  # the filtered sources leave workspace members out of Cargo.lock's view.
  packageArgs = commonArgs // {
    inherit cargoArtifacts;
    doCheck = false;
  };

  buildCrate =
    {
      crate,
      binary,
      description,
    }:
    let
      cratePname = (lib.importTOML (crate + "/Cargo.toml")).package.name;
    in
    craneLib.buildPackage (
      packageArgs
      // {
        pname = cratePname;
        src = sourceForCrate crate;
        cargoExtraArgs = "--package ${cratePname}";
        meta = {
          inherit description;
          mainProgram = binary;
        };
      }
    );

  workers = lib.listToAttrs (
    map (
      name:
      lib.nameValuePair "akira-${name}" (buildCrate {
        crate = ../crates/workers + "/${name}";
        binary = "akira-${name}";
        description = "akira worker ${name}";
      })
    ) workerNames
  );

  akira-workerctl = buildCrate {
    crate = ../crates/akira-workerctl;
    binary = "akira-workerctl";
    description = "Operator tool for akira workers: stream declarations, status and dead letters";
  };

  # The demo's orchestrator; `nix run .#demo` puts it on PATH.
  akira-demo = buildCrate {
    crate = ../crates/akira-demo;
    binary = "akira-demo";
    description = "Runs the akira worker fleet on the bundled sample input and prints what it did";
  };

  # The test worker and test job of the VM tests (binaries
  # akira-example-worker and akira-example-job); not part of `default`.
  akira-example-worker = buildCrate {
    crate = ../crates/akira-example-worker;
    binary = "akira-example-worker";
    description = "Configurable example worker and timer job for tests: succeeds, fails, sleeps or exits on demand";
  };

  default = pkgs.symlinkJoin {
    name = "akira-workers-${workspaceVersion}";
    paths = [ akira-workerctl ] ++ builtins.attrValues workers;
    meta = {
      description = "akira-workerctl and every akira worker binary";
      mainProgram = "akira-workerctl";
    };
  };

  natsServer = "${pkgs.nats-server}/bin/nats-server";
  postgresqlBin = "${lib.getBin pkgs.postgresql}/bin";

  checkArgs = commonArgs // {
    inherit cargoArtifacts;
    src = workspaceSource;
  };
in
{
  inherit cargoArtifacts natsServer postgresqlBin;

  packages = workers // {
    inherit
      akira-workerctl
      akira-demo
      akira-example-worker
      default
      ;
  };

  checks = {
    clippy = craneLib.cargoClippy (
      checkArgs
      // {
        cargoClippyExtraArgs = "--all-targets -- --deny warnings";
      }
    );

    fmt = craneLib.cargoFmt {
      inherit (commonArgs) pname version;
      src = workspaceSource;
    };

    doc = craneLib.cargoDoc (
      checkArgs
      // {
        env.RUSTDOCFLAGS = "--deny warnings";
      }
    );

    # The test kit starts a throwaway nats-server and PostgreSQL cluster per
    # test from these binaries, on loopback ports inside the build sandbox,
    # as the unprivileged build user.
    nextest = craneLib.cargoNextest (
      checkArgs
      // {
        nativeBuildInputs = [
          pkgs.nats-server
          pkgs.postgresql
        ];
        preCheck = ''
          export NATS_SERVER_BIN=${natsServer}
          export PG_BIN=${postgresqlBin}
          "$NATS_SERVER_BIN" --version
          "$PG_BIN/initdb" --version
        '';
        cargoNextestExtraArgs = "--no-tests=fail";
        # The end-to-end tests in crates/akira-e2e run the workspace's
        # binaries from the profile directory, and cargo builds a binary for
        # the tests only when its own package has integration tests.
        buildPhaseCargoCommand = ''
          mkdir -p $out
          cargo build --workspace --bins ''${CARGO_PROFILE:+--profile $CARGO_PROFILE}
        '';
      }
    );
  };
}
