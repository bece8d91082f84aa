# The dockerfuse package and its static satellites, built with crane.
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
# - crane's `build-std` example and API docs (`vendorMultipleCargoDeps` with
#   `cargoLockList` = the workspace's Cargo.lock and the one of rust-src's
#   `library/`, taken from the toolchain's `passthru.availableComponents`):
#   `-Zbuild-std` needs the standard library's own dependencies vendored.
# - rust-overlay's README: `rust-bin.nightly."YYYY-MM-DD".minimal.override
#   { extensions = [ "rust-src" ]; }` for a dated nightly with rust-src.
# - cargo-zigbuild's README: `cargo zigbuild` in place of `cargo build`,
#   zig on PATH (nixpkgs' cargo-zigbuild wraps it with zig).
{
  pkgs,
  crane,
}:
let
  inherit (pkgs) lib;

  # The satellites: build.rs's name (DOCKERFUSE_SATELLITE_<NAME>) -> Rust
  # target, the same table as crates/dockerfuse/build.rs.
  satelliteTargets = {
    x86_64 = "x86_64-unknown-linux-musl";
    aarch64 = "aarch64-unknown-linux-musl";
    i686 = "i686-unknown-linux-musl";
    armv7 = "armv7-unknown-linux-musleabihf";
    armv6 = "arm-unknown-linux-musleabihf";
    powerpc64le = "powerpc64le-unknown-linux-musl";
    riscv64 = "riscv64gc-unknown-linux-musl";
    s390x = "s390x-unknown-linux-musl";
  };

  # The host program's toolchain (rust-overlay, stable), with the musl
  # targets of build.rs's stable route, for the development shell (where
  # build.rs builds amd64, arm64 and 386 itself; rust-lld ships inside the
  # rustc component, where rustc finds it by name).
  craneLib = (crane.mkLib pkgs).overrideToolchain (
    p:
    p.rust-bin.stable.latest.default.override {
      targets = [
        satelliteTargets.x86_64
        satelliteTargets.aarch64
        satelliteTargets.i686
      ];
    }
  );

  # The satellites' toolchain, as build.rs's zig route: the nightly that
  # crates/dockerfuse/satellite-toolchain.txt pins (its `nightly DATE`
  # line), with rust-src, for -Zbuild-std.
  pinnedNightly =
    let
      lines = lib.splitString "\n" (builtins.readFile ../crates/dockerfuse/satellite-toolchain.txt);
      line = lib.findFirst (l: lib.hasPrefix "nightly " l) (throw "satellite-toolchain.txt has no nightly line") lines;
    in
    lib.trim (lib.removePrefix "nightly " line);
  nightlyToolchain = p: p.rust-bin.nightly.${pinnedNightly}.minimal.override { extensions = [ "rust-src" ]; };
  craneLibNightly = (crane.mkLib pkgs).overrideToolchain nightlyToolchain;
  rustSrc = (nightlyToolchain pkgs).passthru.availableComponents.rust-src;

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
  # Static musl binaries for every arch from the host's native pkgs, the
  # way build.rs's zig route makes them: the standard library rebuilt for
  # the target with optimize_for_size (no backtrace support: half the
  # size), linked by zig (cargo-zigbuild), which ships musl for every
  # target, so no cross gcc and no rust-std per target; identical on
  # x86_64-linux and aarch64-linux hosts. nixpkgs' zig, not the PyPI
  # ziglang build.rs's route pins: the files may differ from a rustup
  # machine's by the musl zig links.
  satelliteVendorDir = craneLibNightly.vendorMultipleCargoDeps {
    inherit (craneLibNightly.findCargoFiles src) cargoConfigs;
    cargoLockList = [
      ../Cargo.lock
      "${rustSrc}/lib/rustlib/src/rust/library/Cargo.lock"
    ];
  };

  mkSatellite =
    { arch, target }:
    craneLibNightly.buildPackage (
      commonArgs
      // {
        pname = "dockerfuse-satellite-${arch}";
        cargoVendorDir = satelliteVendorDir;
        # Two crates besides the satellite (libc, speedy): no separate
        # dependency derivation (it would build the standard library twice).
        cargoArtifacts = null;
        CARGO_PROFILE = "satellite";
        CARGO_BUILD_TARGET = target;
        cargoBuildCommand = "cargo zigbuild --profile satellite";
        cargoExtraArgs = lib.concatStringsSep " " [
          "--locked -p dockerfuse-satellite --target ${target}"
          "-Ztrim-paths -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size"
        ];
        # RUSTFLAGS, not CARGO_BUILD_RUSTFLAGS: .cargo/config.toml's
        # per-target rustflags would win over the latter. As build.rs: zig
        # links its own musl (no rust-std crt files); no source locations
        # in panics.
        RUSTFLAGS = "-C target-feature=+crt-static -C link-self-contained=no -Zlocation-detail=none";
        CARGO_PROFILE_SATELLITE_TRIM_PATHS = "all";
        nativeBuildInputs = [
          pkgs.cargo-zigbuild
          pkgs.zig
        ];
        # zig and cargo-zigbuild keep caches under HOME.
        preBuild = ''
          export HOME=$TMPDIR
          export ZIG_GLOBAL_CACHE_DIR=$TMPDIR/zig-cache
        '';
        # Its tests run on the host target in checks.cargo-test; this
        # derivation only produces the uploadable binary.
        doCheck = false;
        doInstallCargoArtifacts = false;
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

  # { x86_64 = <drv>; aarch64 = <drv>; i686 = <drv>; ... }
  satellites = lib.mapAttrs (arch: target: mkSatellite { inherit arch target; }) satelliteTargets;
  satellite-x86_64 = satellites.x86_64;
  satellite-aarch64 = satellites.aarch64;

  # --- host program --------------------------------------------------------

  # crates/dockerfuse/build.rs embeds these files instead of building the
  # satellites itself. Set on every derivation that runs the real build.rs
  # (package, clippy, tests).
  #
  # Not set on buildDepsOnly, on purpose: crane's mkDummySrc replaces every
  # package's build script with a dummy (`package.build = dummyrs`), so the
  # deps-only build never runs build.rs; giving it the satellite store paths
  # would only make every satellite/proto change rebuild all dependencies.
  # DOCKERFUSE_SATELLITE_X86_64, _AARCH64, _I686, _ARMV7, _ARMV6,
  # _POWERPC64LE, _RISCV64, _S390X: every satellite build.rs would build is
  # given, so it builds none and never calls rustup in the sandbox.
  satelliteEnv = lib.mapAttrs' (
    arch: drv:
    lib.nameValuePair "DOCKERFUSE_SATELLITE_${lib.toUpper arch}" "${drv}/bin/dockerfuse-satellite"
  ) satellites;

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
      passthru = { inherit satellites satellite-x86_64 satellite-aarch64; };
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
    satellites
    satellite-x86_64
    satellite-aarch64
    dockerfuse
    ;
}
