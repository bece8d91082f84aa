# VM test: the packaged dockerfuse against a real Docker engine, driven by
# the same scenario script CI runs (integration/run-matrix.sh): the whole
# scenario list of integration/scenarios.txt (those it marks for the VM),
# with the environment and tools written in nix/vm-matrix.txt (CI runs the
# same list under the same PATH restrictions first, see nix/vm-matrix.sh), on alpine and busybox images of amd64 and arm64 and a
# busybox image of 386 (nix/images.nix). arm64 runs under the static
# qemu-user that boot.binfmt registers with the F flag.
#
# Pattern followed: `pkgs.testers.runNixOSTest { name; nodes; testScript; }`
# (nixpkgs' NixOS test framework, as cntr's vm-test.nix uses it through
# testers.nixosTest), `virtualisation.docker.enable`,
# `virtualisation.podman.enable` (nixos/modules/virtualisation/podman), and
# `boot.binfmt.{emulatedSystems,preferStaticEmulators}` from
# nixos/modules/system/boot/binfmt.nix.
#
# The scenarios run as users other than root (users, rootless-podman,
# rootless-docker) find their users declared here, as a NixOS machine has
# them (integration/users-lib.sh's ensure_user makes only what is missing):
# `users.users.<name>` with `isNormalUser`, `extraGroups` and
# `autoSubUidGidRange` (nixos/modules/config/users-groups.nix, which writes
# /etc/subuid and /etc/subgid). The setuid helpers they need are NixOS's
# wrappers in /run/wrappers/bin, first on PATH (security.wrappers'
# environment.extraInit; the test's root shell sources /etc/profile):
# fusermount3 (nixos/modules/security/wrappers, or programs.fuse where
# nixpkgs has `programs.fuse.enable`), mount and umount (security.wrappers),
# newuidmap and newgidmap (nixos/modules/programs/shadow.nix). Rootless
# Docker is `virtualisation.docker.rootless` (nixos/modules/virtualisation/
# docker-rootless.nix): pkgs.docker's `dockerd-rootless` (its
# contrib/dockerd-rootless.sh, wrapped with rootlesskit on its PATH); the
# scenario starts it itself, as the user, with its own socket.
{
  lib,
  pkgs,
  testers,
  dockerfuse,
  images,
  integration,
  # Scenarios (integration/scenarios.txt), environment and tools
  # (nix/vm-matrix.txt): each written once.
  # (An argument only so nix/check-offline.sh can show that the test script
  # follows the file.)
  vmMatrix ? import ./vm-matrix.nix { },
}:
let
  matrix = vmMatrix;

  # The tools' packages, by nixpkgs attribute path ("python3", "util-linux").
  # The VM's pkgs is this pkgs (runNixOSTest's nodes use the test's pkgs).
  toolPackage = t: lib.getAttrFromPath (lib.splitString "." t.name) pkgs;

  # NAME=VALUE ... for the shell, each value quoted.
  envAssignments = lib.concatStringsSep " " (
    lib.mapAttrsToList (n: v: "${n}=${lib.escapeShellArg v}") matrix.env
  );
  # `scenario` entries only: `not-in-vm` ones are run by CI alone.
  scenarioList = lib.concatStringsSep " " matrix.scenarios;

  loadedImages = [
    {
      tag = "dockerfuse-test/alpine:amd64";
      arch = "amd64";
      file = images.alpine-amd64;
    }
    {
      tag = "dockerfuse-test/alpine:arm64";
      arch = "arm64";
      file = images.alpine-arm64;
    }
    {
      tag = "dockerfuse-test/busybox:amd64";
      arch = "amd64";
      file = images.busybox-amd64;
    }
    {
      tag = "dockerfuse-test/busybox:arm64";
      arch = "arm64";
      file = images.busybox-arm64;
    }
    {
      tag = "dockerfuse-test/busybox:386";
      arch = "386";
      file = images.busybox-386;
    }
  ];
  # What `uname -m` may say in a container of each architecture. A 386
  # process on an x86_64 kernel sees x86_64 unless the engine sets the
  # linux32 personality (then i686).
  unameOf = {
    amd64 = [ "x86_64" ];
    arm64 = [ "aarch64" ];
    "386" = [
      "x86_64"
      "i686"
    ];
  };

  # Python lines, indented one level (under a `with subtest(...)`).
  indent = lines: lib.concatMapStrings (l: "    " + l + "\n") lines;

  # "tool" entries: each named binary is in its package's bin output (not
  # only somewhere on the VM's PATH). "module" entries: on the VM's PATH.
  binaryChecks =
    lib.concatMap (
      t: map (b: "machine.succeed(\"test -x ${lib.getBin (toolPackage t)}/bin/${b}\")") t.bins
    ) matrix.tools
    ++ lib.concatMap (m: map (b: "machine.succeed(\"command -v ${b}\")") m.bins) matrix.modules;

  # The setuid wrappers a user's mount and rootless engines need, first on
  # the PATH the scenarios get; the declared users as the scenarios expect
  # them.
  wrapperChecks =
    map (b: "machine.succeed(\"test -u /run/wrappers/bin/${b} -a -O /run/wrappers/bin/${b}\")") [
      "fusermount3"
      "mount"
      "umount"
      "newuidmap"
      "newgidmap"
    ]
    ++ [
      "machine.succeed(\"test \\\"$(type -P fusermount3)\\\" = /run/wrappers/bin/fusermount3\")"
      "machine.succeed(\"type -P dockerd-rootless\")"
      "machine.succeed(\"id -nG dfu-member | tr ' ' '\\\\n' | grep -qx docker\")"
      "machine.fail(\"id -nG dfu-plain | tr ' ' '\\\\n' | grep -qx docker\")"
      "machine.succeed(\"grep -q '^dfu-rootless:' /etc/subuid && grep -q '^dfu-rootless:' /etc/subgid\")"
      "machine.succeed(\"grep -qx user_allow_other /etc/fuse.conf\")"
    ];

  imageLoads = lib.concatMap (i: [
    "machine.succeed(\"docker load -i ${i.file}\")"
    "got = machine.succeed(\"docker image inspect -f '{{.Architecture}}' ${i.tag}\").strip()"
    "assert got == \"${i.arch}\", \"${i.tag} says \" + got"
    "got = machine.succeed(\"docker run --rm --network none ${i.tag} uname -m\").strip()"
    "assert got in ${builtins.toJSON unameOf.${i.arch}}, \"uname -m in ${i.tag} says \" + got"
  ]) loadedImages;
in
testers.runNixOSTest {
  name = "dockerfuse-vm-cli";

  # The arm64 half runs under qemu-user inside qemu-system: give it time.
  globalTimeout = 3 * 60 * 60;

  nodes.machine =
    { options, ... }:
    {
      virtualisation = {
        docker.enable = true;
        # The classic image store, as on CI's Debian dockerd: a foreign-arch
        # image then runs without --platform (run-matrix.sh passes none).
        docker.daemon.settings.features.containerd-snapshotter = false;
        # No live-restore, as on CI (NixOS defaults it to true): the
        # engine-restart scenario expects the container to die with the
        # engine (container loss: exit 3).
        docker.liveRestore = false;
        # Podman from NixOS's own module (policy.json, registries.conf,
        # conmon, the OCI runtime); the real-podman scenario runs `podman
        # system service` with its own storage. Not dockerCompat: `docker`
        # stays Docker's CLI.
        podman.enable = true;
        # Rootless Docker for the users who start it (the rootless-docker
        # scenario runs dockerd-rootless as dfu-rootless, with DOCKER_HOST
        # set by itself; setSocketVariable sets it for login shells that
        # have XDG_RUNTIME_DIR, which the test's root shell has not).
        docker.rootless = {
          enable = true;
          setSocketVariable = true;
        };
        memorySize = 4096;
        diskSize = 8192;
        cores = 2;
      };

      # Static qemu-aarch64, registered with the F flag: the kernel opens it
      # at registration, so it also works inside a container's mount
      # namespace (the default dynamic wrapper under /run/binfmt does not).
      boot.binfmt.emulatedSystems = [ "aarch64-linux" ];
      boot.binfmt.preferStaticEmulators = true;

      boot.kernelModules = [ "fuse" ];

      # The users of integration/scenarios/users.sh (a docker group member
      # and a user not in the group) and of rootless-podman.sh and
      # rootless-docker.sh (subordinate ids for its user namespace).
      # nix/check-offline.sh checks these names against the scripts.
      users.users = {
        dfu-member = {
          isNormalUser = true;
          extraGroups = [ "docker" ];
        };
        dfu-plain = {
          isNormalUser = true;
        };
        dfu-rootless = {
          isNormalUser = true;
          autoSubUidGidRange = true;
        };
      };
      # user_allow_other in /etc/fuse.conf: a user's --allow-other is
      # possible (users.sh checks the refusal without it under a fuse.conf of
      # its own). `programs.fuse.enable` exists only in newer nixpkgs (where
      # it installs the fusermount3 wrapper); older ones always have it.
      programs.fuse = {
        userAllowOther = true;
      }
      // lib.optionalAttrs (options.programs.fuse ? enable) { enable = true; };

      # Every tool nix/vm-matrix.txt names ("tool" entries); docker,
      # dockerd, podman and systemctl come from the modules above and
      # systemd ("module" entries).
      environment.systemPackages = [ dockerfuse ] ++ map toolPackage matrix.tools;
    };

  testScript = ''
    machine.wait_for_unit("docker.service")

    with subtest("every binary nix/vm-matrix.txt names is there"):
    ${indent binaryChecks}
    with subtest("the users' setuid helpers and the declared users"):
    ${indent wrapperChecks}
    with subtest("binfmt: static qemu-aarch64 registered with the F flag"):
        machine.succeed("grep -qx enabled /proc/sys/fs/binfmt_misc/aarch64-linux")
        machine.succeed("grep -Eq '^flags: .*F' /proc/sys/fs/binfmt_misc/aarch64-linux")

    with subtest("load the test images (alpine and busybox, amd64 arm64 386)"):
    ${indent imageLoads}
    with subtest("the package runs"):
        machine.succeed("dockerfuse --help")

    with subtest("integration/run-matrix.sh against the packaged binary"):
        machine.succeed("cp -rL ${integration} /tmp/integration && chmod -R u+w /tmp/integration")
        # Images loaded above (integration/setup-engine.sh is not used:
        # NixOS provides the engine, podman, fuse3 and binfmt). Scenarios
        # from integration/scenarios.txt, environment from nix/vm-matrix.txt.
        machine.succeed(
            "cd /tmp/integration"
            " && DOCKERFUSE=${lib.getExe dockerfuse}"
            " DOCKERFUSE_TEST_SCENARIOS='${scenarioList}'"
            " ${envAssignments}"
            " bash ./run-matrix.sh > /tmp/run-matrix.log 2>&1"
            " || { cat /tmp/run-matrix.log >&2; exit 1; }",
            timeout=170 * 60,
        )
        print(machine.succeed("cat /tmp/run-matrix.log"))
        # The total (the last "N passed, N failed" line): something ran and
        # nothing failed; no command was missing.
        machine.succeed(
            "grep -E '^[0-9]+ passed, [0-9]+ failed$' /tmp/run-matrix.log | tail -n 1"
            " | grep -Eqx '[1-9][0-9]* passed, 0 failed'"
        )
        machine.fail("grep -q 'MISSING TOOL' /tmp/run-matrix.log")

    with subtest("the engine answers after the run (restarted through systemd)"):
        machine.succeed("systemctl is-active docker.service")
        machine.succeed("docker info")

    with subtest("nothing left mounted"):
        machine.fail("awk '$3 ~ /^fuse([.]|$)/ { found = 1 } END { exit !found }' /proc/mounts")
    '';
}
