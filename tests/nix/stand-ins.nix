# Stand-in declarations for the NixOS options that the akira-workers module,
# the sample host and the VM test nodes set. They let `lib.evalModules`
# evaluate the module without a nixpkgs checkout; where NixOS merges values
# in a particular way (unit lists, unit settings) the stand-ins merge the
# same way, everything else accepts any value.
{ lib, ... }:
let
  # NixOS unit settings: lists from several definitions concatenate, any
  # other value must be defined once or identically.
  unitValue = lib.mkOptionType {
    name = "unitValue";
    description = "systemd unit setting";
    merge =
      loc: defs:
      if lib.all (def: builtins.isList def.value) defs then
        lib.concatMap (def: def.value) defs
      else
        lib.mergeEqualOption loc defs;
  };

  unitSettings = lib.mkOption {
    type = lib.types.attrsOf unitValue;
    default = { };
  };

  unitList = lib.mkOption {
    type = lib.types.listOf lib.types.str;
    default = [ ];
  };

  anyValue = lib.mkOption {
    type = lib.types.anything;
    default = { };
  };

  unitModule = extraOptions: {
    freeformType = lib.types.attrsOf lib.types.anything;
    options = {
      description = lib.mkOption {
        type = lib.types.str;
        default = "";
      };
      after = unitList;
      before = unitList;
      wants = unitList;
      requires = unitList;
      wantedBy = unitList;
      unitConfig = unitSettings;
    }
    // extraOptions;
  };

  serviceModule = unitModule {
    serviceConfig = unitSettings;
    environment = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
    };
    reloadIfChanged = lib.mkOption {
      type = lib.types.bool;
      default = false;
    };
    reloadTriggers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
    };
  };

  timerModule = unitModule { timerConfig = unitSettings; };

  serviceWithEnable = lib.mkOption {
    type = lib.types.submodule {
      freeformType = lib.types.attrsOf lib.types.anything;
      options.enable = lib.mkOption {
        type = lib.types.bool;
        default = false;
      };
    };
    default = { };
  };
in
{
  options = {
    assertions = lib.mkOption {
      type = lib.types.listOf lib.types.unspecified;
      default = [ ];
    };
    warnings = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
    };

    environment.etc = lib.mkOption {
      type = lib.types.attrsOf (lib.types.attrsOf lib.types.anything);
      default = { };
    };
    environment.systemPackages = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
    };

    systemd.services = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule serviceModule);
      default = { };
    };
    systemd.timers = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule timerModule);
      default = { };
    };
    systemd.tmpfiles.rules = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
    };

    users.users = lib.mkOption {
      type = lib.types.attrsOf (lib.types.attrsOf lib.types.anything);
      default = { };
    };
    users.groups = lib.mkOption {
      type = lib.types.attrsOf (lib.types.attrsOf lib.types.anything);
      default = { };
    };

    services.nats = serviceWithEnable;
    services.postgresql = serviceWithEnable;
    services.prometheus = anyValue;

    specialisation = lib.mkOption {
      type = lib.types.attrsOf (
        lib.types.submodule {
          options.configuration = lib.mkOption {
            type = lib.types.deferredModule;
            default = { };
          };
        }
      );
      default = { };
    };

    virtualisation = anyValue;
  };
}
