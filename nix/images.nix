# Test images for the VM tests, tagged as integration/run-matrix.sh expects:
#
#   dockerfuse-test/alpine:amd64, dockerfuse-test/alpine:arm64
#       alpine 3.20.3, made from the official minirootfs tarballs (the same
#       files CI loads; URL + sha256 from shared/nix-facts.md)
#   dockerfuse-test/busybox:amd64, :arm64, :386
#       one static busybox, its applet links in /bin, a minimal /etc (the
#       recipe of integration/images.sh, which uses Debian's busybox-static
#       on CI): nixpkgs' busybox built static against musl, natively for
#       x86_64 and through pkgsCross for aarch64 and i686. A 386 container
#       runs natively on an x86_64 kernel.
#
# Each image is a docker-archive written by hand (manifest.json + config +
# layer.tar, the recipe in nix-facts.md that `docker load` accepts), not
# dockerTools.buildImage: buildImage does take `architecture` (nixpkgs PR
# #201902) but builds its layer from store paths, which would drop the
# tarball's ownership, setuid bits and modes. For alpine, layer.tar is the
# official tarball, gunzipped, byte for byte.
{
  fetchurl,
  runCommand,
  jq,
  pkgsStatic,
  pkgsCross,
}:
let
  tarballs = {
    amd64 = fetchurl {
      url = "https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz";
      sha256 = "d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c";
    };
    arm64 = fetchurl {
      url = "https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/aarch64/alpine-minirootfs-3.20.3-aarch64.tar.gz";
      sha256 = "041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de";
    };
  };

  # Static busybox per image architecture. pkgsStatic is the static-musl
  # package set of its base set, so each is a static musl busybox.
  busyboxes = {
    amd64 = pkgsStatic.busybox;
    arm64 = pkgsCross.aarch64-multiplatform-musl.pkgsStatic.busybox;
    "386" = pkgsCross.musl32.pkgsStatic.busybox;
  };

  # The applets the scenarios call inside the containers (the same list as
  # integration/images.sh's NEEDED_APPLETS).
  neededApplets = [
    "sh"
    "cat"
    "ls"
    "stat"
    "sha256sum"
    "dd"
    "find"
    "readlink"
    "mkdir"
    "rm"
    "rmdir"
    "ln"
    "test"
    "touch"
    "sleep"
    "uname"
    "chmod"
    "mv"
    "printf"
    "head"
  ];

  # busybox's root filesystem as one tar: /bin/busybox, a link per applet
  # (nixpkgs' busybox installs one per applet in bin/ and sbin/; here they
  # all go to /bin, as integration/images.sh does), /etc/passwd and
  # /etc/group, the usual empty directories. Owners, modes and times fixed.
  mkBusyboxLayer =
    arch:
    runCommand "dockerfuse-test-busybox-${arch}-layer.tar"
      {
        busybox = busyboxes.${arch};
        needed = neededApplets;
      }
      ''
        root=$PWD/root
        mkdir -p "$root"/{bin,etc,root,tmp,var/tmp,run,proc,sys,dev}
        chmod 1777 "$root/tmp" "$root/var/tmp"
        chmod 700 "$root/root"
        install -m 755 "$busybox/bin/busybox" "$root/bin/busybox"
        for dir in "$busybox/bin" "$busybox/sbin"; do
          [ -d "$dir" ] || continue
          for a in "$dir"/*; do
            a=''${a##*/}
            [ "$a" = busybox ] || [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
          done
        done
        for a in $needed; do
          [ -e "$root/bin/$a" ] || { echo "busybox for ${arch} lacks the applet '$a' the tests need" >&2; exit 1; }
        done
        printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > "$root/etc/passwd"
        printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' > "$root/etc/group"
        tar -C "$root" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1700000000 -cf "$out" .
      '';

  # docker-archive for one architecture from one uncompressed layer, with
  # the same config integration/images.sh writes on CI (architecture,
  # created, Cmd, Env, label): the architecture field is what makes `docker
  # image inspect -f '{{.Architecture}}'` say arm64 (`docker import
  # --platform` does not).
  mkImage =
    {
      kind,
      arch,
      layer,
    }:
    runCommand "dockerfuse-test-${kind}-${arch}.tar"
      {
        nativeBuildInputs = [ jq ];
        inherit layer;
        imageArch = arch;
        imageTag = "dockerfuse-test/${kind}:${arch}";
      }
      ''
        cp "$layer" layer.tar
        chmod u+w layer.tar
        layer_sha=$(sha256sum layer.tar | cut -d' ' -f1)

        jq -cn \
          --arg arch "$imageArch" \
          --arg diff "sha256:$layer_sha" \
          '{
             architecture: $arch,
             os: "linux",
             created: "2023-11-14T22:13:20Z",
             config: {
               Cmd: ["/bin/sh"],
               Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
               Labels: { "org.dockerfuse.test": "1" }
             },
             rootfs: { type: "layers", diff_ids: [$diff] }
           }' \
          > config.json
        config_sha=$(sha256sum config.json | cut -d' ' -f1)
        mv config.json "$config_sha.json"

        jq -cn --arg config "$config_sha.json" --arg tag "$imageTag" \
          '[{ Config: $config, RepoTags: [$tag], Layers: ["layer.tar"] }]' \
          > manifest.json

        tar --sort=name --mtime=@1 --owner=0 --group=0 --numeric-owner \
          -cf "$out" manifest.json "$config_sha.json" layer.tar
      '';

  alpineLayer =
    arch:
    runCommand "dockerfuse-test-alpine-${arch}-layer.tar" { tarball = tarballs.${arch}; } ''
      gzip -dc "$tarball" > "$out"
    '';
in
{
  inherit tarballs busyboxes;

  alpine-amd64 = mkImage {
    kind = "alpine";
    arch = "amd64";
    layer = alpineLayer "amd64";
  };
  alpine-arm64 = mkImage {
    kind = "alpine";
    arch = "arm64";
    layer = alpineLayer "arm64";
  };
  busybox-amd64 = mkImage {
    kind = "busybox";
    arch = "amd64";
    layer = mkBusyboxLayer "amd64";
  };
  busybox-arm64 = mkImage {
    kind = "busybox";
    arch = "arm64";
    layer = mkBusyboxLayer "arm64";
  };
  busybox-386 = mkImage {
    kind = "busybox";
    arch = "386";
    layer = mkBusyboxLayer "386";
  };
}
