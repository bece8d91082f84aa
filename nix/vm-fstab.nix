# VM test: a container mounted from NixOS's fileSystems (fstab), through
# `mount -t fuse.dockerfuse`. On a real host (nix/README.md):
#
#   fileSystems."/mnt/web" = {
#     device = "web:/";               # CONTAINER:PATH
#     fsType = "fuse.dockerfuse";
#     options = [ "x-systemd.automount" "x-systemd.requires=..." ... ];
#   };
#   system.fsPackages = [ dockerfuse ];  # puts mount.fuse.dockerfuse where mount looks
#
# In a test VM the same entry goes in `virtualisation.fileSystems`:
# nixpkgs' qemu-vm.nix sets the machine's `fileSystems` to that option with
# mkVMOverride, so an entry in `fileSystems` itself is dropped (no fstab
# line, no mount unit). nixpkgs' own VM tests do the same;
# nix/check-offline.sh refuses a VM test that sets an option qemu-vm.nix
# overrides.
#
# mount runs the package's mount.fuse.dockerfuse, fuse3's mount.fuse3 under
# that name, which runs `dockerfuse web:/ /mnt/web -o OPTIONS`. The
# container is started first by a unit the mount requires (and, at shutdown,
# is stopped after the mount). Checked:
#   - the first access to /mnt/web mounts it (automount), after the
#     container runs; reads and writes through it, seen from the container;
#   - allow_other: another user reads through it;
#   - `systemctl stop mnt-web.mount` unmounts and dockerfuse exits; the next
#     access mounts again;
#   - a reboot: the previous boot's journal says the mount was unmounted
#     (stopped before the container and docker), and it mounts again.
#
# Patterns followed: NixOS `fileSystems.<name>.{device,fsType,options,noCheck}`
# and `system.fsPackages` (as for sshfs: fsType "fuse.sshfs" with the
# package in system.fsPackages), systemd.mount(5)'s x-systemd.automount /
# x-systemd.requires= / x-systemd.after= fstab options, and the NixOS test
# driver's `shutdown()` / `start()` for the reboot.
{
  testers,
  dockerfuse,
  images,
}:
testers.runNixOSTest {
  name = "dockerfuse-vm-fstab";

  nodes.machine =
    { config, ... }:
    {
      virtualisation = {
        docker.enable = true;
        memorySize = 2048;
        diskSize = 2048;
      };
      boot.kernelModules = [ "fuse" ];

      users.users.alice.isNormalUser = true;

      # The container the mount needs: started once docker runs, removed
      # when stopped (after the mount, at shutdown: the mount requires it).
      systemd.services.web-container = {
        description = "Test container 'web' (alpine 3.20.3)";
        after = [ "docker.service" ];
        requires = [ "docker.service" ];
        wantedBy = [ "multi-user.target" ];
        path = [ config.virtualisation.docker.package ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        script = ''
          docker load -i ${images.alpine-amd64}
          docker rm -f web >/dev/null 2>&1 || true
          docker run -d --name web dockerfuse-test/alpine:amd64 tail -f /dev/null
        '';
        preStop = "docker rm -f web";
      };

      system.fsPackages = [ dockerfuse ];

      # (`fileSystems` on a real host: see the top of the file.)
      virtualisation.fileSystems."/mnt/web" = {
        device = "web:/";
        fsType = "fuse.dockerfuse";
        # Not a block device: nothing for fsck.
        noCheck = true;
        options = [
          # Mounted on first access, never in the boot's critical path: the
          # automount unit is what the boot pulls in ("noauto" is not
          # needed, and would leave the automount to be started by hand).
          "x-systemd.automount"
          "x-systemd.mount-timeout=120"
          # After (and, at shutdown, unmounted before) the engine and the
          # container.
          "x-systemd.requires=docker.service"
          "x-systemd.requires=web-container.service"
          "x-systemd.after=web-container.service"
          "_netdev"
          "nofail"
          # dockerfuse's --allow-other
          "allow_other"
        ];
      };
    };

  testScript = ''
    fuse_on_mnt = "awk '$2 == \"/mnt/web\" && $3 ~ /^fuse/ { found = 1 } END { exit !found }' /proc/mounts"

    machine.wait_for_unit("multi-user.target")

    with subtest("the package puts mount.fuse.dockerfuse where mount looks"):
        machine.succeed("command -v mount.fuse.dockerfuse")
        machine.succeed("grep -q ' /mnt/web fuse.dockerfuse ' /etc/fstab")

    with subtest("first access mounts the container, after it runs"):
        machine.wait_for_unit("mnt-web.automount")
        release = machine.succeed("cat /mnt/web/etc/alpine-release").strip()
        assert release == "3.20.3", f"/etc/alpine-release through the mount: {release!r}"
        machine.succeed(fuse_on_mnt)
        machine.succeed("systemctl is-active web-container.service")
        machine.succeed("systemctl is-active mnt-web.mount")
        # ([w]: the pattern does not match pgrep's own caller's command line)
        machine.succeed("pgrep -f '[w]eb:/ /mnt/web'")

    with subtest("reads and writes through the mount"):
        machine.succeed("echo from-host > /mnt/web/tmp/fstab-test")
        got = machine.succeed("docker exec web cat /tmp/fstab-test").strip()
        assert got == "from-host", f"the container reads {got!r}"
        machine.succeed("docker exec web sh -c 'echo from-container > /tmp/fstab-test2'")
        got = machine.succeed("cat /mnt/web/tmp/fstab-test2").strip()
        assert got == "from-container", f"the mount reads {got!r}"
        machine.succeed("rm /mnt/web/tmp/fstab-test /mnt/web/tmp/fstab-test2")
        machine.fail("docker exec web test -e /tmp/fstab-test")

    with subtest("allow_other: another user reads through it"):
        release = machine.succeed("runuser -u alice -- cat /mnt/web/etc/alpine-release").strip()
        assert release == "3.20.3", f"alice reads {release!r}"

    with subtest("systemctl stop unmounts, dockerfuse exits; the next access mounts again"):
        machine.succeed("systemctl stop mnt-web.mount")
        machine.fail(fuse_on_mnt)
        machine.wait_until_fails("pgrep -f '[w]eb:/ /mnt/web'", timeout=30)
        machine.succeed("grep -qx 3.20.3 /mnt/web/etc/alpine-release")
        machine.succeed(fuse_on_mnt)

    with subtest("shutdown unmounts it (before the container and docker stop)"):
        machine.shutdown()
        machine.start()
        machine.wait_for_unit("multi-user.target")
        journal = machine.succeed("journalctl -b -1 --no-pager -o cat -u mnt-web.mount")
        print(journal)
        assert "Unmounted" in journal, "no 'Unmounted' for mnt-web.mount in the previous boot's journal"
        machine.fail("journalctl -b -1 --no-pager -o cat -u mnt-web.mount | grep -Ei 'failed|timed out'")
        machine.succeed("grep -qx 3.20.3 /mnt/web/etc/alpine-release")
        machine.succeed(fuse_on_mnt)
  '';
}
