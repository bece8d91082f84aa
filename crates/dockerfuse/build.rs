//! Builds the static satellites and embeds them, LZMA-compressed, in the
//! host binary.
//!
//! Every satellite of [`SATELLITES`] is taken, in this order of
//! preference:
//!
//! * from `DOCKERFUSE_SATELLITE_<NAME>` (a prebuilt file, taken as it is:
//!   the Nix build passes its own derivations this way);
//! * else built here, all targets in ONE cargo invocation (cargo builds
//!   them in parallel) with the `satellite` profile, in a target directory
//!   of its own, shared by every profile and command (build, test,
//!   clippy), so each satellite is compiled once and later builds find
//!   it fresh. Two routes:
//!
//!   - the **zig route** (all eight): the pinned nightly of
//!     `satellite-toolchain.txt` with rust-src rebuilds the standard
//!     library for each target (`-Zbuild-std`, with `optimize_for_size`:
//!     no backtrace support, half the size; `-Zlocation-detail=none`:
//!     no source locations in panics) and cargo-zigbuild links with
//!     zig, which ships musl for every target. `-Ztrim-paths` makes the
//!     files the same wherever they are built. Taken when the nightly
//!     (with rust-src) and cargo-zigbuild are installed
//!     (`.ci/satellite-toolchain.sh` installs them);
//!   - else the **stable route**: the toolchain in use with rustup's musl
//!     standard library, for the targets that have one (amd64, arm64,
//!     386; larger files), the others left out with a warning.
//!
//!   `DOCKERFUSE_SATELLITE_ROUTE=stable` (or `zig`) chooses. The
//!   `required` satellites (amd64, arm64) stop the build with a plain
//!   message when they cannot be had; `DOCKERFUSE_REQUIRE_ALL_SATELLITES=1`
//!   makes every one required (CI sets it).
//!
//! Each file is compressed once here (`.lzma`, preset 9) and decompressed
//! at run time the first time it is needed. The list of what was embedded
//! goes to `$OUT_DIR/embedded.rs`, included by `src/satellites/embedded.rs`.

use std::env;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One satellite: the name used in file and variable names, the Rust
/// target, whether the build fails without it, and whether rustup has a
/// musl standard library for it (the stable route can build it).
struct Satellite {
    name: &'static str,
    triple: &'static str,
    required: bool,
    rustup_std: bool,
}

const SATELLITES: &[Satellite] = &[
    Satellite {
        name: "x86_64",
        triple: "x86_64-unknown-linux-musl",
        required: true,
        rustup_std: true,
    },
    Satellite {
        name: "aarch64",
        triple: "aarch64-unknown-linux-musl",
        required: true,
        rustup_std: true,
    },
    Satellite {
        name: "i686",
        triple: "i686-unknown-linux-musl",
        required: false,
        rustup_std: true,
    },
    Satellite {
        name: "armv7",
        triple: "armv7-unknown-linux-musleabihf",
        required: false,
        rustup_std: false,
    },
    Satellite {
        name: "armv6",
        triple: "arm-unknown-linux-musleabihf",
        required: false,
        rustup_std: false,
    },
    Satellite {
        name: "powerpc64le",
        triple: "powerpc64le-unknown-linux-musl",
        required: false,
        rustup_std: false,
    },
    Satellite {
        name: "riscv64",
        triple: "riscv64gc-unknown-linux-musl",
        required: false,
        rustup_std: false,
    },
    Satellite {
        name: "s390x",
        triple: "s390x-unknown-linux-musl",
        required: false,
        rustup_std: false,
    },
];

impl Satellite {
    fn var(&self) -> String {
        format!("DOCKERFUSE_SATELLITE_{}", self.name.to_uppercase())
    }
}

/// The pinned tools of the zig route (`satellite-toolchain.txt`).
struct Pins {
    /// The rustup toolchain name, `nightly-YYYY-MM-DD`.
    nightly: String,
    ziglang: String,
    cargo_zigbuild: String,
}

/// The zig route's tools, found.
struct ZigTools {
    nightly: String,
    /// The nightly's `bin` directory (its cargo and rustc).
    toolchain_bin: PathBuf,
    /// cargo-zigbuild.
    zigbuild: PathBuf,
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest.join("../..");
    for dir in [
        "crates/satellite/src",
        "crates/satellite/Cargo.toml",
        "crates/proto/src",
        "crates/proto/Cargo.toml",
        "crates/dockerfuse/satellite-toolchain.txt",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for var in [
        "DOCKERFUSE_REQUIRE_ALL_SATELLITES",
        "DOCKERFUSE_SATELLITE_ROUTE",
        "DOCKERFUSE_SATELLITE_TOOLS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let require_all = env::var_os("DOCKERFUSE_REQUIRE_ALL_SATELLITES").is_some_and(|v| v == "1");
    let route = env::var("DOCKERFUSE_SATELLITE_ROUTE").unwrap_or_default();

    let mut files: Vec<(&Satellite, PathBuf)> = Vec::new();
    let mut to_build: Vec<&Satellite> = Vec::new();
    for s in SATELLITES {
        let var = s.var();
        println!("cargo:rerun-if-env-changed={var}");
        match env::var_os(&var) {
            Some(p) => files.push((s, PathBuf::from(p))),
            None => to_build.push(s),
        }
    }
    let pins = pins(&manifest.join("satellite-toolchain.txt"));
    let zig = match route.as_str() {
        "stable" => Err("DOCKERFUSE_SATELLITE_ROUTE=stable".to_owned()),
        _ if to_build.is_empty() => Err("nothing to build".to_owned()),
        _ => zig_tools(&pins),
    };
    match zig {
        Ok(tools) => {
            let dir = build_zig(&workspace, &out, &tools, &to_build);
            for s in to_build {
                files.push((s, dir.join(s.triple).join("satellite/dockerfuse-satellite")));
            }
        }
        Err(why) => {
            if route == "zig" {
                panic!(
                    "DOCKERFUSE_SATELLITE_ROUTE=zig, but {why}. `bash .ci/satellite-toolchain.sh` installs \
                     the pinned nightly and cargo-zigbuild."
                );
            }
            let (stable, other): (Vec<&Satellite>, Vec<&Satellite>) =
                to_build.into_iter().partition(|s| s.rustup_std);
            for s in other {
                if s.required || require_all {
                    panic!(
                        "the {} satellite ({}) needs the zig route, and {why}. \
                         `bash .ci/satellite-toolchain.sh` installs {} with rust-src and \
                         cargo-zigbuild {} (zig {}); or set {} to a prebuilt static satellite.",
                        s.name,
                        s.triple,
                        pins.nightly,
                        pins.cargo_zigbuild,
                        pins.ziglang,
                        s.var()
                    );
                }
                println!(
                    "cargo:warning=the {} satellite is left out: it needs the zig route, and {why} \
                     (`bash .ci/satellite-toolchain.sh` installs it). This build mounts containers \
                     on such engines only when another satellite runs there.",
                    s.name
                );
            }
            let available = targets_with_std(&stable, require_all);
            if !available.is_empty() {
                let dir = build_stable(&workspace, &out, &available);
                for s in available {
                    files.push((s, dir.join(s.triple).join("satellite/dockerfuse-satellite")));
                }
            }
        }
    }
    files.sort_by_key(|(s, _)| SATELLITES.iter().position(|x| x.name == s.name));
    embed(&out, &files);
}

/// Reads `satellite-toolchain.txt`: `nightly DATE`, `ziglang VERSION`,
/// `cargo-zigbuild VERSION` lines (`#` starts a comment).
fn pins(path: &Path) -> Pins {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let get = |key: &str| {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::trim))
            .unwrap_or_else(|| panic!("{} has no `{key}` line", path.display()))
            .to_owned()
    };
    Pins {
        nightly: format!("nightly-{}", get("nightly")),
        ziglang: get("ziglang"),
        cargo_zigbuild: get("cargo-zigbuild"),
    }
}

/// Where `.ci/satellite-toolchain.sh` puts zig and cargo-zigbuild (a
/// Python virtual environment per version pair).
fn tools_dir(pins: &Pins) -> Option<PathBuf> {
    let base = match env::var_os("DOCKERFUSE_SATELLITE_TOOLS") {
        Some(d) => PathBuf::from(d),
        None => match env::var_os("XDG_CACHE_HOME") {
            Some(c) => PathBuf::from(c).join("dockerfuse/satellite-tools"),
            None => PathBuf::from(env::var_os("HOME")?).join(".cache/dockerfuse/satellite-tools"),
        },
    };
    Some(base.join(format!(
        "zig-{}-zigbuild-{}",
        pins.ziglang, pins.cargo_zigbuild
    )))
}

/// The zig route's tools, or why they are not there.
fn zig_tools(pins: &Pins) -> Result<ZigTools, String> {
    let nightly = pins.nightly.clone();
    let cargo = Command::new("rustup")
        .args(["which", "--toolchain", &nightly, "cargo"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .ok_or_else(|| format!("the toolchain {nightly} is not installed"))?;
    let toolchain_bin = cargo
        .parent()
        .ok_or_else(|| format!("rustup names no directory for {nightly}"))?
        .to_owned();
    let library = toolchain_bin.join("../lib/rustlib/src/rust/library");
    if !library.is_dir() {
        return Err(format!("{nightly} has no rust-src component"));
    }
    let in_tools = tools_dir(pins).map(|d| d.join("bin/cargo-zigbuild"));
    let zigbuild = match in_tools.filter(|p| p.is_file()) {
        Some(p) => p,
        // Elsewhere on PATH (Nix, a user's own install).
        None => env::var_os("PATH")
            .and_then(|path| {
                env::split_paths(&path)
                    .map(|d| d.join("cargo-zigbuild"))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| "cargo-zigbuild is not installed".to_owned())?,
    };
    Ok(ZigTools {
        nightly,
        toolchain_bin,
        zigbuild,
    })
}

/// Flags meant for the outer build (coverage, sanitizers, the host target,
/// the outer toolchain) must not leak into the static cross build.
fn clean_env(cmd: &mut Command) {
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
}

/// Builds `targets` on the zig route in one cargo run; returns the target
/// directory.
fn build_zig(workspace: &Path, out: &Path, tools: &ZigTools, targets: &[&Satellite]) -> PathBuf {
    let target_dir = satellite_target_dir(out, "satellites-zig");
    let mut cmd = Command::new(&tools.zigbuild);
    cmd.current_dir(workspace).args([
        "zigbuild",
        "-Ztrim-paths",
        "--profile",
        "satellite",
        "-p",
        "dockerfuse-satellite",
        "--locked",
        "-Zbuild-std=std,panic_abort",
        "-Zbuild-std-features=optimize_for_size",
    ]);
    for s in targets {
        cmd.args(["--target", s.triple]);
    }
    cmd.arg("--target-dir").arg(&target_dir);
    clean_env(&mut cmd);
    // The nightly's own cargo and rustc, whatever toolchain runs this
    // build; zig (a Python package) is found through the tools' python3.
    for var in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN"] {
        cmd.env_remove(var);
    }
    let mut path = vec![tools.toolchain_bin.clone()];
    if let Some(dir) = tools.zigbuild.parent() {
        path.push(dir.to_owned());
    }
    path.extend(env::var_os("PATH").iter().flat_map(env::split_paths));
    cmd.env(
        "PATH",
        env::join_paths(path).expect("PATH entries have no colon"),
    )
    .env("RUSTUP_TOOLCHAIN", &tools.nightly)
    // zig links against its own musl: no crt files from a rust-std
    // (these targets have none; the others' would clash). No file
    // names and lines in panic messages: a few KB less.
    .env(
        "RUSTFLAGS",
        "-C target-feature=+crt-static -C link-self-contained=no -Zlocation-detail=none",
    )
    .env("CARGO_PROFILE_SATELLITE_TRIM_PATHS", "all");
    run(cmd, targets, "the zig route");
    target_dir
}

fn run(mut cmd: Command, targets: &[&Satellite], route: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the satellites: {e}"));
    if !status.success() {
        let names: Vec<&str> = targets.iter().map(|s| s.triple).collect();
        panic!(
            "building the satellites ({}) on {route} failed; see cargo's messages above. \
             DOCKERFUSE_SATELLITE_<ARCH> can name a prebuilt satellite instead.",
            names.join(", ")
        );
    }
}

/// The sysroot of the compiler cargo uses.
fn sysroot() -> Option<PathBuf> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let o = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

fn has_std(sysroot: &Option<PathBuf>, triple: &str) -> bool {
    match sysroot {
        Some(s) => s.join("lib/rustlib").join(triple).join("lib").is_dir(),
        // Cannot tell: let cargo find out.
        None => true,
    }
}

/// The satellites of `wanted` whose target has a standard library, after
/// adding the missing ones with rustup. Panics when a required one stays
/// missing; warns about the others.
fn targets_with_std<'a>(wanted: &[&'a Satellite], require_all: bool) -> Vec<&'a Satellite> {
    let root = sysroot();
    let missing: Vec<&Satellite> = wanted
        .iter()
        .copied()
        .filter(|s| !has_std(&root, s.triple))
        .collect();
    // Why each missing target could not be added, by triple.
    let mut why_not: Vec<(&str, String)> = Vec::new();
    let mut rustup_missing = false;
    // One at a time: a target the dist server lacks must not keep the
    // others from being added.
    for s in &missing {
        if rustup_missing {
            why_not.push((s.triple, "rustup is not installed".into()));
            continue;
        }
        let mut cmd = Command::new("rustup");
        cmd.args(["target", "add", s.triple]);
        // Set by the rustup proxy that started cargo: add the target to
        // the toolchain in use, not to the default one.
        if let Some(t) = env::var_os("RUSTUP_TOOLCHAIN") {
            cmd.arg("--toolchain").arg(t);
        }
        match cmd.output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stderr);
                let first = text
                    .lines()
                    .find(|l| l.contains("error"))
                    .unwrap_or("failed")
                    .trim()
                    .to_owned();
                why_not.push((s.triple, format!("`rustup target add` said: {first}")));
            }
            Err(e) => {
                rustup_missing = e.kind() == std::io::ErrorKind::NotFound;
                why_not.push((s.triple, format!("cannot run rustup: {e}")));
            }
        }
    }
    let why = |triple: &str| {
        why_not
            .iter()
            .find(|(t, _)| *t == triple)
            .map(|(_, w)| w.clone())
            .unwrap_or_else(|| "not installed".into())
    };
    let root = sysroot();
    let mut ok = Vec::new();
    for s in wanted {
        if has_std(&root, s.triple) {
            ok.push(*s);
        } else if s.required || require_all {
            panic!(
                "the Rust standard library for {t} is not installed and could not be added \
                 ({why}). Install it with `rustup target add {t}` (or your distribution's \
                 rust-std package for {t}), or set {var} to a prebuilt static satellite.",
                t = s.triple,
                why = why(s.triple),
                var = s.var()
            );
        } else {
            println!(
                "cargo:warning=the {} satellite is left out: no standard library for {} ({}). \
                 This build mounts containers on such engines only when another satellite runs there.",
                s.name,
                s.triple,
                why(s.triple),
            );
        }
    }
    ok
}

/// Where nested satellite builds go: `name` next to the outer target
/// directory, shared by every profile so each target is compiled once.
fn satellite_target_dir(out: &Path, name: &str) -> PathBuf {
    out.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|b| b.parent()?.parent())
        .map(|t| t.join(name))
        .unwrap_or_else(|| out.join(name))
}

/// Builds the satellites of all `targets` on the stable route in one
/// cargo run; returns the target directory.
fn build_stable(workspace: &Path, out: &Path, targets: &[&Satellite]) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = satellite_target_dir(out, "satellites");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "--profile",
        "satellite",
        "-p",
        "dockerfuse-satellite",
    ]);
    for s in targets {
        cmd.args(["--target", s.triple]);
    }
    cmd.arg("--target-dir").arg(&target_dir);
    clean_env(&mut cmd);
    run(cmd, targets, "the stable route");
    target_dir
}

/// Compresses each satellite into `$OUT_DIR` (reusing the last result when
/// the file did not change) and writes the table `embedded.rs`.
fn embed(out: &Path, files: &[(&Satellite, PathBuf)]) {
    let mut table = String::from(
        "/// The satellites in this build: (name, Rust target, raw size, .lzma data).\n\
         pub(crate) static EMBEDDED: &[(&str, &str, usize, &[u8])] = &[\n",
    );
    for (s, src) in files {
        let raw = std::fs::read(src).unwrap_or_else(|e| {
            panic!(
                "cannot read the {} satellite {}: {e}",
                s.name,
                src.display()
            )
        });
        if raw.get(..4) != Some(b"\x7fELF") {
            panic!(
                "the {} satellite {} is not an ELF file",
                s.name,
                src.display()
            );
        }
        let raw_copy = out.join(format!("satellite-{}", s.name));
        let packed = out.join(format!("satellite-{}.lzma", s.name));
        let unchanged = std::fs::read(&raw_copy).is_ok_and(|old| old == raw) && packed.is_file();
        if !unchanged {
            std::fs::write(&packed, compress(&raw)).unwrap_or_else(|e| {
                panic!("cannot write {}: {e}", packed.display());
            });
            // A copy of a read-only store file is read-only: write the
            // bytes, not a copy of the file.
            let _ = std::fs::remove_file(&raw_copy);
            std::fs::write(&raw_copy, &raw).unwrap_or_else(|e| {
                panic!("cannot write {}: {e}", raw_copy.display());
            });
        }
        let _ = writeln!(
            table,
            "    ({:?}, {:?}, {}, include_bytes!({:?})),",
            s.name,
            s.triple,
            raw.len(),
            packed.display().to_string()
        );
    }
    table.push_str("];\n");
    let dest = out.join("embedded.rs");
    let mut f = std::fs::File::create(&dest)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
    f.write_all(table.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}

/// `.lzma` (LZMA "alone": 13-byte header with the size), preset 9. LZMA
/// is 7-13% smaller than zstd -19 on these binaries, and its pure-Rust
/// decoder is small.
fn compress(raw: &[u8]) -> Vec<u8> {
    let mut opts = lzma_rust2::LzmaOptions::with_preset(9);
    // A dictionary as large as the file finds every match; no larger.
    opts.dict_size = (raw.len() as u32).next_power_of_two().max(4096);
    let mut w = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &opts, Some(raw.len() as u64))
        .expect("LZMA options are valid");
    w.write_all(raw).expect("writing to memory");
    w.finish().expect("writing to memory")
}
