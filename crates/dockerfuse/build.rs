//! Embeds the two static satellites (x86_64 and aarch64 musl) in the host
//! binary.
//!
//! `DOCKERFUSE_SATELLITE_X86_64` / `DOCKERFUSE_SATELLITE_AARCH64` name
//! prebuilt satellite files to take as they are (the Nix build passes its
//! own derivations this way). Without them, the satellite crate is built
//! here with cargo's `satellite` profile for both musl targets, in a
//! target directory of its own so it never waits on the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SATELLITES: [(&str, &str, &str); 2] = [
    (
        "x86_64",
        "x86_64-unknown-linux-musl",
        "DOCKERFUSE_SATELLITE_X86_64",
    ),
    (
        "aarch64",
        "aarch64-unknown-linux-musl",
        "DOCKERFUSE_SATELLITE_AARCH64",
    ),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest.join("../..");
    for dir in [
        "crates/satellite/src",
        "crates/satellite/Cargo.toml",
        "crates/proto/src",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for (arch, triple, var) in SATELLITES {
        println!("cargo:rerun-if-env-changed={var}");
        let dest = out.join(format!("satellite-{arch}"));
        let src = match env::var_os(var) {
            Some(p) => PathBuf::from(p),
            None => build(&workspace, &out, triple),
        };
        // A copy of a read-only store file is read-only: remove the old
        // copy first so a rebuild can replace it.
        let _ = std::fs::remove_file(&dest);
        std::fs::copy(&src, &dest).unwrap_or_else(|e| {
            panic!(
                "cannot copy satellite {} to {}: {e}",
                src.display(),
                dest.display()
            )
        });
        let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        println!(
            "cargo:rustc-env=DOCKERFUSE_SATELLITE_SIZE_{}={size}",
            arch.to_uppercase()
        );
    }
}

/// Where nested satellite builds go: next to the outer target directory,
/// shared by every profile so each target is compiled once.
fn satellite_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|b| b.parent()?.parent())
        .map(|t| t.join("satellites"))
        .unwrap_or_else(|| out.join("satellites"))
}

fn build(workspace: &Path, out: &Path, triple: &str) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = satellite_target_dir(out);
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--profile",
            "satellite",
            "-p",
            "dockerfuse-satellite",
            "--target",
            triple,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the outer build (coverage, sanitizers, the host
    // target) must not leak into the static cross build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the satellite: {e}"));
    if !status.success() {
        panic!(
            "building the {triple} satellite failed. Add the target with \
             `rustup target add {triple}`, or point DOCKERFUSE_SATELLITE_{} at a prebuilt satellite.",
            triple.split('-').next().unwrap_or("").to_uppercase()
        );
    }
    target_dir
        .join(triple)
        .join("satellite")
        .join("dockerfuse-satellite")
}
