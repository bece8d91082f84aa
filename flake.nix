{
  description = "dockerfuse: mount the filesystem of a running Docker container through FUSE";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # crane v0.23.4 has no flake inputs of its own (so no `follows` here).
    crane.url = "github:ipetkov/crane/v0.23.4";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  # Layout after cntr's flake: packages, apps, devShells, formatter, checks
  # (crane lint/format/tests + NixOS VM tests) and a NixOS module, with the
  # pieces under nix/ (see nix/README.md).
  outputs =
    {
      self,
      nixpkgs,
      crane,
      rust-overlay,
      ...
    }:
    # crane v0.23 (flake.lock) documents Nix 2.31.2 as its minimum; stop with
    # a plain sentence instead of an obscure error further in. README.md and
    # nix/README.md say the same.
    let
      minimumNixVersion = "2.31.2";
    in
    assert
      builtins.compareVersions builtins.nixVersion minimumNixVersion >= 0
      || throw "This flake needs Nix ${minimumNixVersion} or newer (crane v0.23 requires it), but this is Nix ${builtins.nixVersion}. Upgrade Nix and try again.";
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      # One nixpkgs instance per system, with rust-overlay's `rust-bin`
      # (the overlay import as in crane's custom-toolchain example).
      perSystem = lib.genAttrs systems (
        system:
        let
          pkgs = import nixpkgs {
            inherit system;
            overlays = [ (import rust-overlay) ];
          };
        in
        {
          inherit pkgs;
          dockerfuse = import ./nix/packages.nix { inherit pkgs crane; };
        }
      );

      forAllSystems = f: lib.genAttrs systems (system: f perSystem.${system});
    in
    {
      packages = forAllSystems (
        { dockerfuse, ... }:
        {
          default = dockerfuse.dockerfuse;
          inherit (dockerfuse) dockerfuse satellite-x86_64 satellite-aarch64;
        }
      );

      # nix run .# -- -id web -mount ./mnt
      apps = forAllSystems (
        { dockerfuse, ... }:
        {
          default = {
            type = "app";
            program = lib.getExe dockerfuse.dockerfuse;
            meta.description = "Mount the filesystem of a running Docker container";
          };
        }
      );

      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.dockerfuse.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      checks = forAllSystems (
        { pkgs, dockerfuse }:
        import ./nix/checks.nix {
          inherit (pkgs) lib;
          inherit pkgs dockerfuse;
          dockerfuseModule = self.nixosModules.default;
        }
      );

      devShells = forAllSystems (
        { pkgs, dockerfuse }:
        {
          # cargo, rustc, clippy and rustfmt come from the crane toolchain
          # (stable + the amd64, arm64 and 386 musl targets); `cargo build`
          # there builds those three satellites through build.rs's stable
          # route, as on a rustup machine without the zig route's tools.
          default = dockerfuse.craneLib.devShell {
            packages = [
              pkgs.docker-client
              pkgs.fuse3
              pkgs.jq
              pkgs.nixfmt-tree
              pkgs.shellcheck
            ];
          };
        }
      );

      # `nix fmt`: nixfmt (RFC 166 style) over the tree, through treefmt.
      formatter = forAllSystems ({ pkgs, ... }: pkgs.nixfmt-tree);
    };
}
