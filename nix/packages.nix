# The dockerfuse package and its two static satellites, built with crane.
#
# Patterns followed (crane v0.23.4, which flake.lock pins):
# - crane's `custom-toolchain` example: `(crane.mkLib pkgs).overrideToolchain
#   (p: p.rust-bin.stable.latest.default.override { targets = [ ... ]; })`,
#   with the toolchain built from rust-overlay's overlay; the function form is
#   what crane's API docs ask for since 0.18 (cross-splicing aware).
# - crane's `cross-musl` example: `CARGO_BUILD_TARGET` +
#   `CARGO_BUILD_RUSTFLAGS = "-C target-feature=+crt-static"` for static musl.
# - crane's `quick-start-workspace` example: one `buildDepsOnly` for the whole
#   workspace, per-crate `buildPackage` with `cargoExtraArgs = "-p <crate>"`,
#   `version` from `crateNameFromCargoToml`, `strictDeps = true`.
# - crane's API docs: `CARGO_PROFILE` selects the cargo profile for every cargo
#   invocation crane makes (`cargoWithProfile`), so `CARGO_PROFILE = "satellite"`
#   gives `cargo build --profile satellite`.
{
  pkgs,
  crane,
}:
let
  inherit (pkgs) lib;

  # One toolchain (rust-overlay, stable) holding both musl targets: the same
  # set rust-toolchain.toml asks rustup for. rust-lld ships inside its rustc
  # component (lib/rustlib/<host>/bin), where rustc finds it by name.
  muslTargets = [
    "x86_64-unknown-linux-musl"
    "aarch64-unknown-linux-musl"
  ];
  craneLib = (crane.mkLib pkgs).overrideToolchain (
    p: p.rust-bin.stable.latest.default.override { targets = muslTargets; }
  );

  # The workspace, and nothing else: no nix/, integration/, flake files or
  # docs, so editing those rebuilds nothing. The whole crates/ tree is kept
  # (not only *.rs/*.toml) so include_bytes!/test fixtures keep working.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../.cargo
      ../crates
    ];
  };

  # Only the root Cargo.toml is read: workspace.package.version.
  inherit (craneLib.crateNameFromCargoToml { cargoToml = ../Cargo.toml; }) version;

  commonArgs = {
    inherit src version;
    pname = "dockerfuse";
    strictDeps = true;
  };

  # --- satellites ----------------------------------------------------------
  #
  # Static musl binaries for both arches from the host's native pkgs, with one
  # toolchain and rust-lld as the linker for both targets: no cross gcc, no
  # nixpkgs cc-wrapper in the link, identical on x86_64-linux and
  # aarch64-linux hosts. For aarch64 this is what .cargo/config.toml already
  # says; x86_64 uses it too so that, on an aarch64 host, the x86_64 one is
  # not linked by the native (aarch64) cc.
  mkSatellite =
    { arch, target }:
    craneLib.buildPackage (
      commonArgs
      // {
        pname = "dockerfuse-satellite-${arch}";
        cargoExtraArgs = "--locked -p dockerfuse-satellite";
        CARGO_PROFILE = "satellite";
        CARGO_BUILD_TARGET = target;
        CARGO_BUILD_RUSTFLAGS = "-C target-feature=+crt-static";
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER = "rust-lld";
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER = "rust-lld";
        # Its tests run on the host target in checks.cargo-test; this
        # derivation only produces the uploadable binary.
        doCheck = false;
        # The profile already strips; the host's strip/patchelf must not touch
        # a foreign-arch static binary.
        dontStrip = true;
        dontPatchELF = true;
        meta = {
          description = "dockerfuse's in-container file server (static, ${target})";
          mainProgram = "dockerfuse-satellite";
          platforms = lib.platforms.linux;
        };
      }
    );

  satellite-x86_64 = mkSatellite {
    arch = "x86_64";
    target = "x86_64-unknown-linux-musl";
  };
  satellite-aarch64 = mkSatellite {
    arch = "aarch64";
    target = "aarch64-unknown-linux-musl";
  };

  # --- host program --------------------------------------------------------

  # crates/dockerfuse/build.rs embeds these files instead of building the
  # satellites itself. Set on every derivation that runs the real build.rs
  # (package, clippy, tests).
  #
  # Not set on buildDepsOnly, on purpose: crane's mkDummySrc replaces every
  # package's build script with a dummy (`package.build = dummyrs`), so the
  # deps-only build never runs build.rs; giving it the satellite store paths
  # would only make every satellite/proto change rebuild all dependencies.
  satelliteEnv = {
    DOCKERFUSE_SATELLITE_X86_64 = "${satellite-x86_64}/bin/dockerfuse-satellite";
    DOCKERFUSE_SATELLITE_AARCH64 = "${satellite-aarch64}/bin/dockerfuse-satellite";
  };

  # Dependencies of the whole workspace, for the host target, built once and
  # shared by the package, clippy and the tests.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  hostArgs = commonArgs // satelliteEnv // { inherit cargoArtifacts; };

  dockerfuse = craneLib.buildPackage (
    hostArgs
    // {
      cargoExtraArgs = "--locked -p dockerfuse";
      # The workspace tests run once, in checks.cargo-test.
      doCheck = false;
      nativeBuildInputs = [ pkgs.makeWrapper ];
      # fuser's mount and auto-unmount call `fusermount3`. --suffix, not
      # --prefix: where a setuid fusermount3 is already on PATH (NixOS's
      # /run/wrappers/bin, a distro's /usr/bin) it must win, or non-root
      # mounts fail with EPERM; ours is the fallback (enough for root).
      #
      # mount.fuse.dockerfuse: the helper `mount -t fuse.dockerfuse` (and so
      # an fstab / NixOS fileSystems entry) runs. fuse3's mount.fuse3 takes
      # the type from its argv[0] ("mount.fuse.<type>"), drops the options
      # only mount knows (_netdev, nofail, noauto...) and runs
      # `dockerfuse SOURCE MOUNTPOINT -o OPTIONS` through /bin/sh: PATH
      # starts with this package's bin so that is this dockerfuse.
      postInstall = ''
        wrapProgram $out/bin/dockerfuse \
          --suffix PATH : ${lib.makeBinPath [ pkgs.fuse3 ]}
        cat > $out/bin/mount.fuse.dockerfuse <<EOF
        #!${pkgs.runtimeShell}
        export PATH=$out/bin:\$PATH
        exec -a "\$0" ${pkgs.fuse3}/bin/mount.fuse3 "\$@"
        EOF
        chmod 755 $out/bin/mount.fuse.dockerfuse
      '';
      passthru = { inherit satellite-x86_64 satellite-aarch64; };
      meta = {
        description = "Mount the filesystem of a running Docker container through FUSE";
        mainProgram = "dockerfuse";
        license = [
          lib.licenses.mit
          lib.licenses.asl20
        ];
        platforms = lib.platforms.linux;
      };
    }
  );
in
{
  inherit
    craneLib
    src
    version
    commonArgs
    hostArgs
    cargoArtifacts
    satelliteEnv
    satellite-x86_64
    satellite-aarch64
    dockerfuse
    ;
}
