# VM test: the NixOS module mounts a container declaratively.
#
#  - services.dockerfuse.mounts.web mounts the container "web" on /mnt/web
#    (readOnly and allowOther on, so both flags are exercised);
#  - /etc/alpine-release reads through the mount;
#  - `docker stop web`: the unit leaves the active state and /mnt/web is no
#    longer a mount point; `docker start web`: Restart=on-failure mounts again;
#  - `systemctl stop` unmounts.
#
# The container is started by a oneshot unit from the hand-made alpine image
# (nix/images.nix), without a restart policy, so `docker stop` keeps it down.
{
  testers,
  images,
  dockerfuseModule,
}:
testers.runNixOSTest {
  name = "dockerfuse-vm-module";

  nodes.machine =
    { config, ... }:
    {
      imports = [ dockerfuseModule ];

      virtualisation = {
        docker.enable = true;
        memorySize = 2048;
        diskSize = 2048;
      };
      boot.kernelModules = [ "fuse" ];

      users.users.alice.isNormalUser = true;

      systemd.services.web-container = {
        description = "Test container 'web' (alpine 3.20.3)";
        after = [ "docker.service" ];
        requires = [ "docker.service" ];
        before = [ "dockerfuse-web.service" ];
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
      };

      services.dockerfuse.mounts.web = {
        container = "web";
        mountPoint = "/mnt/web";
        readOnly = true;
        allowOther = true;
      };
    };

  testScript = ''
    machine.wait_for_unit("web-container.service")

    with subtest("the unit is active and the container's tree is mounted"):
        machine.wait_for_unit("dockerfuse-web.service")
        machine.succeed("systemctl is-active dockerfuse-web.service")
        machine.succeed("mountpoint -q /mnt/web")
        release = machine.succeed("cat /mnt/web/etc/alpine-release").strip()
        assert release == "3.20.3", f"/etc/alpine-release through the mount: {release!r}"

    with subtest("readOnly = true gives a read-only mount"):
        machine.fail("touch /mnt/web/root/dockerfuse-was-here")
        machine.fail("docker exec web test -e /root/dockerfuse-was-here")

    with subtest("allowOther = true lets another user in"):
        machine.succeed("grep -qx user_allow_other /etc/fuse.conf")
        release = machine.succeed(
            "runuser -u alice -- cat /mnt/web/etc/alpine-release"
        ).strip()
        assert release == "3.20.3", f"alice reads {release!r}"

    with subtest("docker stop: the unit leaves the active state, the mount goes"):
        machine.succeed("docker stop -t 1 web")
        machine.wait_until_fails("systemctl is-active --quiet dockerfuse-web.service", timeout=60)
        machine.wait_until_fails("mountpoint -q /mnt/web", timeout=60)
        # The mount point stays behind as an ordinary, reusable directory.
        machine.succeed("test -d /mnt/web")

    with subtest("docker start: Restart=on-failure mounts it again"):
        machine.succeed("docker start web")
        machine.wait_until_succeeds("mountpoint -q /mnt/web", timeout=180)
        machine.wait_for_unit("dockerfuse-web.service")
        machine.succeed("grep -qx 3.20.3 /mnt/web/etc/alpine-release")

    with subtest("systemctl stop unmounts"):
        machine.succeed("systemctl stop dockerfuse-web.service")
        machine.fail("mountpoint -q /mnt/web")
        machine.fail("awk '$3 ~ /^fuse([.]|$)/ { found = 1 } END { exit !found }' /proc/mounts")
  '';
}
