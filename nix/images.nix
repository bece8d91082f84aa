# Test images for the VM tests: alpine 3.20.3 for amd64 and arm64, made from
# the official minirootfs tarballs (the same files CI loads; URL + sha256 from
# shared/nix-facts.md) and tagged as integration/run-matrix.sh expects:
#   dockerfuse-test/alpine:amd64, dockerfuse-test/alpine:arm64
#
# Each image is a docker-archive written by hand (manifest.json + config +
# layer.tar, the recipe in nix-facts.md that `docker load` accepts), not
# dockerTools.buildImage: buildImage does take `architecture` (nixpkgs PR
# #201902) but builds its layer from store paths, which would drop the
# tarball's ownership, setuid bits and modes. Here layer.tar is the official
# tarball, gunzipped, byte for byte.
{
  fetchurl,
  runCommand,
  jq,
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

  # docker-archive for one architecture, with the same config
  # integration/images.sh writes on CI (architecture, created, Cmd, Env,
  # label): the architecture field is what makes `docker image inspect -f
  # '{{.Architecture}}'` say arm64 (`docker import --platform` does not).
  mkAlpineImage =
    arch:
    runCommand "dockerfuse-test-alpine-${arch}.tar"
      {
        nativeBuildInputs = [ jq ];
        tarball = tarballs.${arch};
        imageArch = arch;
        imageTag = "dockerfuse-test/alpine:${arch}";
      }
      ''
        gzip -dc "$tarball" > layer.tar
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
in
{
  inherit tarballs;

  alpine-amd64 = mkAlpineImage "amd64";
  alpine-arm64 = mkAlpineImage "arm64";
}
