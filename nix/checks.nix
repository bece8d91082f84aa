# `nix flake check`: lint, format, tests, the packages, and (x86_64-linux)
# the NixOS VM tests. Layout after cntr's checks.nix: crane checks, package
# checks, then VM tests where they can run.
#
# Crane patterns (API docs + quick-start-workspace example): `cargoClippy`
# with `cargoClippyExtraArgs = "--all-targets -- --deny warnings"`,
# `cargoFmt { inherit src; }`, `cargoTest` reusing `cargoArtifacts`.
{
  lib,
  pkgs,
  dockerfuse,
  dockerfuseModule,
}:
let
  inherit (dockerfuse)
    craneLib
    src
    version
    hostArgs
    satellite-x86_64
    satellite-aarch64
    satellites
    ;
  pkg = dockerfuse.dockerfuse;

  # What `file` says of each satellite's machine.
  satelliteMachine = {
    x86_64 = "x86-64";
    aarch64 = "ARM aarch64";
    i686 = "Intel 80386";
    armv7 = "ARM, EABI5";
    armv6 = "ARM, EABI5";
    powerpc64le = "64-bit PowerPC";
    riscv64 = "RISC-V";
    s390x = "IBM S/390";
  };

  images = pkgs.callPackage ./images.nix { };

  isX86_64Linux = pkgs.stdenv.hostPlatform.system == "x86_64-linux";
in
{
  # --- Rust ----------------------------------------------------------------

  cargo-clippy = craneLib.cargoClippy (
    hostArgs
    // {
      cargoClippyExtraArgs = "--all-targets -- --deny warnings";
    }
  );

  cargo-fmt = craneLib.cargoFmt {
    inherit src version;
    pname = "dockerfuse";
  };

  # Host-target tests of the whole workspace; build.rs gets the prebuilt
  # satellites through hostArgs (DOCKERFUSE_SATELLITE_*).
  cargo-test = craneLib.cargoTest hostArgs;

  # --- packages ------------------------------------------------------------

  package-dockerfuse = pkg;
  package-satellite-x86_64 = satellite-x86_64;
  package-satellite-aarch64 = satellite-aarch64;

  # Each of the eight satellites is a static ELF of its architecture, small
  # enough to upload on every mount: at most 320 KiB (the zig route makes
  # 209-295 KiB; the Go tool's satellite is ~4 MB).
  satellites-static =
    pkgs.runCommand "dockerfuse-satellites-static" { nativeBuildInputs = [ pkgs.file ]; }
      ''
        check() {
          bin=$1 machine=$2
          desc=$(file -b "$bin")
          echo "$bin: $desc"
          case "$desc" in
            *"$machine"*) ;;
            *) echo "FAIL: $bin is not a $machine ELF" >&2; exit 1 ;;
          esac
          case "$desc" in
            *"statically linked"* | *"static-pie linked"*) ;;
            *) echo "FAIL: $bin is not statically linked" >&2; exit 1 ;;
          esac
          size=$(stat -c %s "$bin")
          if [ "$size" -gt $((320 * 1024)) ]; then
            echo "FAIL: $bin is $size bytes (limit 320 KiB)" >&2
            exit 1
          fi
        }
        ${lib.concatStrings (
          lib.mapAttrsToList (arch: drv: ''
            check ${drv}/bin/dockerfuse-satellite ${lib.escapeShellArg satelliteMachine.${arch}}
          '') satellites
        )}
        touch $out
      '';

  # The flags nix/module.nix passes exist in the real CLI (the same test as
  # part (c) of nix/check-offline.sh, here against the built package).
  module-flags =
    pkgs.runCommand "dockerfuse-module-flags"
      {
        module = ./module.nix;
        nativeBuildInputs = [ pkg ];
      }
      ''
        dockerfuse --help > help.txt
        flags=$(grep -oE '"--[a-z][a-z0-9-]*"' "$module" | tr -d '"' | sort -u || true)
        [ -n "$flags" ] || { echo "FAIL: no --flags found in $module" >&2; exit 1; }
        rc=0
        for flag in $flags; do
          if grep -qE -- "(^|[^[:alnum:]-])$flag([^[:alnum:]-]|$)" help.txt; then
            echo "ok: $flag"
          else
            echo "FAIL: module passes $flag, dockerfuse --help does not list it" >&2
            rc=1
          fi
        done
        [ "$rc" = 0 ] && touch $out
        exit $rc
      '';

  shellcheck = pkgs.runCommand "dockerfuse-nix-shellcheck" {
    nativeBuildInputs = [ pkgs.shellcheck ];
  } "shellcheck ${./check-offline.sh} ${./vm-matrix.sh} && touch $out";
}
// lib.optionalAttrs isX86_64Linux {
  # --- NixOS VM tests (need KVM; arm64 containers via binfmt on x86_64) ---

  vm-cli = pkgs.callPackage ./vm-cli.nix {
    dockerfuse = pkg;
    inherit images;
    integration =
      assert lib.assertMsg (builtins.pathExists ../integration/run-matrix.sh)
        "vm-cli runs integration/run-matrix.sh, which is missing from the flake source (git add it).";
      ../integration;
  };

  vm-module = pkgs.callPackage ./vm-module.nix {
    inherit images dockerfuseModule;
  };

  vm-fstab = pkgs.callPackage ./vm-fstab.nix {
    dockerfuse = pkg;
    inherit images;
  };
}
