# NixOS module: declarative dockerfuse mounts.
#
#   services.dockerfuse.mounts.web = {
#     container = "web";
#     mountPoint = "/mnt/web";
#   };
#
# gives one systemd service per mount, `dockerfuse-<name>.service`, that waits
# for the container to run, mounts it in the foreground, and unmounts on stop.
#
# Patterns followed: nixpkgs' module conventions (`mkOption` with type,
# description, example; `types.attrsOf (types.submodule ...)` for named
# instances, as in e.g. services.restic.backups); `utils.escapeSystemdExecArgs`
# (nixos/lib/utils.nix) to quote Exec* lines; `path = [ "/run/wrappers" ]` to
# reach setuid wrappers from a unit (as nixpkgs' zabbix-agent and rootless
# docker modules do); systemd's "+" (run privileged) and "-" (ignore failure)
# Exec* prefixes.
#
# The flake's nixosModules.default imports this file and sets `package`;
# imported on its own, set services.dockerfuse.package yourself.
{
  config,
  lib,
  options,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    mkIf
    mkMerge
    mkOption
    types
    literalExpression
    ;
  inherit (utils) escapeSystemdExecArg escapeSystemdExecArgs;

  cfg = config.services.dockerfuse;
  mounts = lib.attrValues cfg.mounts;
  anyAllowOther = lib.any (m: m.allowOther) mounts;
  anyNonRoot = lib.any (m: m.user != "root") mounts;

  docker = "${config.virtualisation.docker.package}/bin/docker";
  fusermount3 = "${pkgs.fuse3}/bin/fusermount3";
  # Units get only coreutils, findutils, grep, sed and systemd on PATH.
  scriptPath = lib.makeBinPath [
    pkgs.coreutils
    pkgs.gawk
    pkgs.gnused
    pkgs.util-linux
  ];

  # ExecStartPre: wait (bounded) until the container runs. A unit that is
  # restarted after the container stopped sits here, "activating", until the
  # container is back or the bound runs out (then it fails and is retried).
  waitForContainer = pkgs.writeShellScript "dockerfuse-wait-for-container" ''
    export PATH=${scriptPath}:$PATH
    container=$1
    for ((i = 0; i < 60; i++)); do
      state=$(${docker} inspect -f '{{.State.Running}}' "$container" 2>/dev/null || true)
      if [ "$state" = true ]; then
        exit 0
      fi
      sleep 1
    done
    echo "container '$container' is not running (waited 60 s)" >&2
    exit 1
  '';

  # Lazily detach a FUSE mount left at the mount point, if any. Looks only at
  # /proc/self/mountinfo (a dead FUSE mount cannot be stat'ed) and touches
  # only fuse* filesystems, never something else mounted there.
  unmountStale = pkgs.writeShellScript "dockerfuse-unmount" ''
    export PATH=${scriptPath}:$PATH
    mp=$1
    esc=$(printf '%s' "$mp" | sed -e 's/\\/\\134/g' -e 's/ /\\040/g' -e 's/\t/\\011/g')
    fstype=$(MP=$esc awk '
      $5 == ENVIRON["MP"] { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
      END { print t }' /proc/self/mountinfo)
    case "$fstype" in
      fuse|fuse.*) exec ${fusermount3} -u -z -- "$mp" ;;
    esac
  '';

  # ExecStartPre (as root): clear a stale mount, create the mount point owned
  # by the mounting user if it does not exist yet (fusermount3 wants a
  # non-root user to own the directory it mounts on).
  prepareMountPoint = pkgs.writeShellScript "dockerfuse-prepare-mountpoint" ''
    set -eu
    export PATH=${scriptPath}:$PATH
    mp=$1
    user=$2
    ${unmountStale} "$mp" || true
    if [ ! -d "$mp" ]; then
      mkdir -p -- "$mp"
      chown -- "$user" "$mp"
    fi
  '';

  # ExecStartPost (as the mounting user, who is the one allowed to stat a
  # FUSE mount without allow_other): "active" means mounted.
  waitForMount = pkgs.writeShellScript "dockerfuse-wait-for-mount" ''
    export PATH=${scriptPath}:$PATH
    mp=$1
    for ((i = 0; i < 120; i++)); do
      if mountpoint -q -- "$mp"; then
        exit 0
      fi
      sleep 0.5
    done
    echo "$mp was not mounted within 60 s" >&2
    exit 1
  '';

  # The option -> CLI flag mapping. nix/check-offline.sh (and checks.module-flags)
  # extract every double-quoted string that starts with two dashes from this
  # file and look each one up in `dockerfuse --help`.
  mkArgs =
    m:
    [
      (lib.getExe cfg.package)
      "--id"
      m.container
      "--mount"
      m.mountPoint
      "--path"
      m.path
    ]
    ++ lib.optional m.readOnly "--read-only"
    ++ lib.optional m.allowOther "--allow-other"
    ++ lib.optionals (m.transport != "auto") [
      "--transport"
      m.transport
    ]
    ++ lib.optional m.reconnect "--reconnect"
    ++ m.extraArgs;

  mkService = m: {
    # systemd expands %-specifiers in Description= too.
    description = lib.replaceStrings [ "%" ] [ "%%" ] "dockerfuse: container ${m.container} on ${m.mountPoint}";
    after = [ "docker.service" ];
    bindsTo = [ "docker.service" ];
    partOf = [ "docker.service" ];
    wantedBy = [ "multi-user.target" ];
    # /run/wrappers/bin first: a non-root mount needs the setuid fusermount3
    # (the package's own fuse3 is only appended to PATH, see nix/packages.nix).
    path = [ "/run/wrappers" ];
    # Give up after 5 quick failures (e.g. a setup error); a container that
    # stays stopped costs >= 60 s per try (waitForContainer), never hits this.
    startLimitIntervalSec = 60;
    startLimitBurst = 5;
    serviceConfig = {
      Type = "simple";
      User = m.user;
      ExecStartPre = [
        "+${waitForContainer} ${escapeSystemdExecArg m.container}"
        "+${prepareMountPoint} ${escapeSystemdExecArgs [ m.mountPoint m.user ]}"
      ];
      # Foreground: SIGTERM (systemctl stop) makes dockerfuse unmount and exit
      # 0; a container that stops makes it unmount and exit 3 (a failure, so
      # Restart= brings the mount back when the container runs again).
      ExecStart = escapeSystemdExecArgs (mkArgs m);
      ExecStartPost = "${waitForMount} ${escapeSystemdExecArg m.mountPoint}";
      # Whatever happened, a stopped unit leaves no mount behind.
      ExecStopPost = "-+${unmountStale} ${escapeSystemdExecArg m.mountPoint}";
      Restart = "on-failure";
      # Exit 2 is bad usage (e.g. in extraArgs): retrying cannot help.
      RestartPreventExitStatus = 2;
      RestartSec = 5;
      TimeoutStartSec = "3min";
      TimeoutStopSec = 30;
    };
  };

  mountSubmodule =
    { name, ... }:
    {
      options = {
        container = mkOption {
          type = types.str;
          default = name;
          defaultText = lib.literalMD "the attribute name of the mount";
          example = "web";
          description = ''
            Name or ID of the Docker container whose filesystem is mounted
            (`--id`). It must be running; the service waits up to 60 s for it.
          '';
        };

        mountPoint = mkOption {
          type = types.strMatching "/.*";
          example = "/mnt/web";
          description = ''
            Absolute host directory the container's tree appears under
            (`--mount`). Created, owned by {option}`user`, if it does not exist.
          '';
        };

        path = mkOption {
          type = types.strMatching "/.*";
          default = "/";
          example = "/app";
          description = ''
            Directory inside the container that becomes the root of the
            mount (`--path`).
          '';
        };

        readOnly = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = "Mount read-only (`--read-only`).";
        };

        allowOther = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = ''
            Let users other than {option}`user` access the mount
            (`--allow-other`). Turns on
            {option}`programs.fuse.userAllowOther`, which a non-root
            {option}`user` needs for this.
          '';
        };

        transport = mkOption {
          type = types.enum [
            "auto"
            "exec"
            "local"
          ];
          default = "auto";
          example = "exec";
          description = ''
            How dockerfuse reaches the container's files (`--transport`;
            `dockerfuse --help` describes each). The default, `auto`, passes
            no flag and lets dockerfuse choose.
          '';
        };

        reconnect = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = ''
            Keep the mount when the connection to the container is lost and
            reconnect when it is back (`--reconnect`), instead of unmounting
            and exiting (then the service's `Restart=on-failure` mounts
            again once the container runs).
          '';
        };

        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "--ttl"
            "0"
            "--satellite-arch"
            "arm64"
          ];
          description = ''
            Further command-line arguments for `dockerfuse`, appended after
            the ones the other options produce. Do not pass `--daemonize`:
            the service runs dockerfuse in the foreground.
          '';
        };

        user = mkOption {
          type = types.str;
          default = "root";
          example = "alice";
          description = ''
            Host user the dockerfuse process runs as. It needs access to the
            Docker socket (e.g. membership in the `docker` group). Without
            {option}`allowOther`, only this user can use the mount. (The user
            the satellite runs as inside the container is dockerfuse's
            `--user`; pass it in {option}`extraArgs`.)
          '';
        };
      };
    };
in
{
  options.services.dockerfuse = {
    package = mkOption {
      type = types.package;
      defaultText = literalExpression "dockerfuse.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = ''
        The dockerfuse package. The flake's module sets it to the flake's
        own package; its `bin/dockerfuse` finds `fusermount3` on PATH.
      '';
    };

    mounts = mkOption {
      type = types.attrsOf (types.submodule mountSubmodule);
      default = { };
      example = literalExpression ''
        {
          web = {
            container = "web";
            mountPoint = "/mnt/web";
            path = "/usr/share/nginx/html";
            readOnly = true;
          };
        }
      '';
      description = ''
        Containers to mount. Each entry `<name>` becomes the service
        `dockerfuse-<name>.service`, bound to `docker.service`.
      '';
    };
  };

  config = mkIf (cfg.mounts != { }) (mkMerge [
    {
      assertions = [
        {
          assertion = config.virtualisation.docker.enable;
          message = "services.dockerfuse.mounts needs virtualisation.docker.enable = true (the units bind to docker.service).";
        }
        {
          assertion = lib.allUnique (map (m: m.mountPoint) mounts);
          message = "services.dockerfuse.mounts: two mounts share a mountPoint.";
        }
      ];

      programs.fuse.userAllowOther = mkIf anyAllowOther true;

      systemd.services = lib.mapAttrs' (
        name: m: lib.nameValuePair "dockerfuse-${name}" (mkService m)
      ) cfg.mounts;
    }

    # Newer nixpkgs gate fuse.conf and the setuid fusermount3 wrapper behind
    # programs.fuse.enable; older ones have no such option and always
    # install them.
    (lib.optionalAttrs (options.programs.fuse ? enable) {
      programs.fuse.enable = mkIf (anyAllowOther || anyNonRoot) true;
    })
  ]);
}
