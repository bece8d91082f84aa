# VM test: the packaged dockerfuse against a real Docker engine, driven by
# the same scenario script CI runs (integration/run-matrix.sh), with alpine
# containers of both architectures; arm64 runs under the static qemu-user
# that boot.binfmt registers with the F flag.
#
# Pattern followed: `pkgs.testers.runNixOSTest { name; nodes; testScript; }`
# (nixpkgs' NixOS test framework, as cntr's vm-test.nix uses it through
# testers.nixosTest), `virtualisation.docker.enable`, and
# `boot.binfmt.{emulatedSystems,preferStaticEmulators}` from
# nixos/modules/system/boot/binfmt.nix.
{
  lib,
  testers,
  dockerfuse,
  images,
  integration,
}:
testers.runNixOSTest {
  name = "dockerfuse-vm-cli";

  # The arm64 half runs under qemu-user inside qemu-system: give it time.
  globalTimeout = 2 * 60 * 60;

  nodes.machine =
    { pkgs, ... }:
    {
      virtualisation = {
        docker.enable = true;
        # The classic image store, as on CI's Debian dockerd: a foreign-arch
        # image then runs without --platform (run-matrix.sh passes none).
        docker.daemon.settings.features.containerd-snapshotter = false;
        memorySize = 3072;
        diskSize = 4096;
        cores = 2;
      };

      # Static qemu-aarch64, registered with the F flag: the kernel opens it
      # at registration, so it also works inside a container's mount
      # namespace (the default dynamic wrapper under /run/binfmt does not).
      boot.binfmt.emulatedSystems = [ "aarch64-linux" ];
      boot.binfmt.preferStaticEmulators = true;

      boot.kernelModules = [ "fuse" ];

      # What run-matrix.sh needs on PATH (docker comes with
      # virtualisation.docker).
      environment.systemPackages = [
        dockerfuse
        pkgs.bash
        pkgs.coreutils
        pkgs.diffutils
        pkgs.fuse3
        pkgs.procps
        pkgs.util-linux
      ];
    };

  testScript = ''
    machine.wait_for_unit("docker.service")

    with subtest("binfmt: static qemu-aarch64 registered with the F flag"):
        machine.succeed("grep -qx enabled /proc/sys/fs/binfmt_misc/aarch64-linux")
        machine.succeed("grep -Eq '^flags: .*F' /proc/sys/fs/binfmt_misc/aarch64-linux")

    with subtest("load the alpine 3.20.3 images of both architectures"):
        machine.succeed("docker load -i ${images.alpine-amd64}")
        machine.succeed("docker load -i ${images.alpine-arm64}")
        for arch in ["amd64", "arm64"]:
            got = machine.succeed(
                "docker image inspect -f '{{.Architecture}}' dockerfuse-test/alpine:" + arch
            ).strip()
            assert got == arch, "dockerfuse-test/alpine:" + arch + " says " + got
        machine.succeed(
            "docker run --rm --platform linux/arm64 dockerfuse-test/alpine:arm64 uname -m"
            " | grep -qx aarch64"
        )

    with subtest("the package runs"):
        machine.succeed("dockerfuse --help")

    with subtest("integration/run-matrix.sh against the packaged binary"):
        machine.succeed("cp -rL ${integration} /tmp/integration && chmod -R u+w /tmp/integration")
        # The images were loaded above (integration/setup-engine.sh is not
        # used: NixOS provides the engine, fuse3 and binfmt). No busybox
        # images here (DOCKERFUSE_TEST_BUSYBOX=0). Larger watchdogs: arm64
        # runs under qemu-user inside this VM.
        machine.succeed(
            "cd /tmp/integration"
            " && DOCKERFUSE=${lib.getExe dockerfuse}"
            " DOCKERFUSE_TEST_BUSYBOX=0"
            " DFIT_SCENARIO_TIMEOUT=1800"
            " DFIT_MOUNT_TIMEOUT=300"
            " DFIT_BIG_TIMEOUT=900"
            " bash ./run-matrix.sh > /tmp/run-matrix.log 2>&1"
            " || { cat /tmp/run-matrix.log >&2; exit 1; }",
            timeout=100 * 60,
        )
        print(machine.succeed("cat /tmp/run-matrix.log"))
        # The total (the last "N passed, N failed" line): something ran and
        # nothing failed.
        machine.succeed(
            "grep -E '^[0-9]+ passed, [0-9]+ failed$' /tmp/run-matrix.log | tail -n 1"
            " | grep -Eqx '[1-9][0-9]* passed, 0 failed'"
        )

    with subtest("nothing left mounted"):
        machine.fail("awk '$3 ~ /^fuse([.]|$)/ { found = 1 } END { exit !found }' /proc/mounts")
  '';
}
