//! The embedded satellites (LZMA-compressed by `build.rs`, decompressed
//! on first use), the architecture names around them, and the order in
//! which to try them.

use std::fmt;
use std::io::Read;
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// CPU architectures a satellite can exist for. Which ones this build
/// carries: [`Arch::embedded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Arch {
    #[value(name = "amd64", alias = "x86_64")]
    Amd64,
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
    #[value(name = "arm/v7", alias = "armv7", alias = "armhf")]
    ArmV7,
    #[value(name = "arm/v6", alias = "armv6", alias = "armel")]
    ArmV6,
    #[value(name = "386", alias = "i386", alias = "i686")]
    I386,
    #[value(name = "ppc64le")]
    Ppc64le,
    #[value(name = "riscv64")]
    Riscv64,
    #[value(name = "s390x")]
    S390x,
}

impl Arch {
    pub(crate) const ALL: [Arch; 8] = [
        Arch::Amd64,
        Arch::Arm64,
        Arch::ArmV7,
        Arch::ArmV6,
        Arch::I386,
        Arch::Ppc64le,
        Arch::Riscv64,
        Arch::S390x,
    ];

    /// Parses an architecture as Docker (`amd64`, `arm64/v8`, `arm/v7`,
    /// `386`) or the kernel (`x86_64`, `aarch64`, `armv7l`, `i686`) spells
    /// it. A bare `arm` is taken as v7, as Docker does.
    pub(crate) fn parse(s: &str) -> Option<Arch> {
        let s = s.to_ascii_lowercase();
        let (arch, variant) = match s.split_once('/') {
            Some((a, v)) => (a, Some(v)),
            None => (s.as_str(), None),
        };
        Self::parse_with_variant(arch, variant)
    }

    /// Parses Docker's `Architecture` and `Variant` image fields.
    pub(crate) fn parse_with_variant(arch: &str, variant: Option<&str>) -> Option<Arch> {
        let arch = arch.to_ascii_lowercase();
        let variant = variant.map(str::to_ascii_lowercase);
        Some(match arch.as_str() {
            "amd64" | "x86_64" | "x86-64" => Arch::Amd64,
            "arm64" | "aarch64" | "arm64v8" => Arch::Arm64,
            "arm" | "arm32" => match variant.as_deref() {
                Some("v5" | "v6") => Arch::ArmV6,
                _ => Arch::ArmV7,
            },
            "armhf" | "armv7" | "armv7l" | "armv8l" | "arm32v7" => Arch::ArmV7,
            "armel" | "armv6" | "armv6l" | "armv5l" | "armv5tel" | "arm32v6" | "arm32v5" => {
                Arch::ArmV6
            }
            "386" | "i386" | "i486" | "i586" | "i686" | "x86" => Arch::I386,
            "ppc64le" | "ppc64el" | "powerpc64le" => Arch::Ppc64le,
            "riscv64" => Arch::Riscv64,
            "s390x" => Arch::S390x,
            _ => return None,
        })
    }

    /// This build's satellite for the architecture, if it has one.
    fn entry(self) -> Option<&'static (&'static str, &'static str, usize, &'static [u8])> {
        EMBEDDED.iter().find(|e| e.0 == self.file_name())
    }

    /// The architectures this build has a satellite for.
    pub(crate) fn embedded() -> Vec<Arch> {
        Arch::ALL
            .into_iter()
            .filter(|a| a.entry().is_some())
            .collect()
    }

    /// The satellite binary for this architecture, decompressed once.
    /// `None` when this build has none (or it cannot be decompressed,
    /// which only a broken build can cause).
    pub(crate) fn binary(self) -> Option<&'static [u8]> {
        static CACHE: [OnceLock<Option<Vec<u8>>>; 8] = [const { OnceLock::new() }; 8];
        let i = Arch::ALL.iter().position(|a| *a == self)?;
        CACHE[i]
            .get_or_init(|| {
                let (_, _, raw_len, packed) = self.entry()?;
                match unpack(packed, *raw_len) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        tracing::error!(arch = %self, error = %e, "cannot decompress the embedded satellite");
                        None
                    }
                }
            })
            .as_deref()
    }

    /// Sizes of this build's satellite: (raw, embedded).
    pub(crate) fn sizes(self) -> Option<(usize, usize)> {
        self.entry().map(|e| (e.2, e.3.len()))
    }

    /// The Rust target the satellite was built for.
    pub(crate) fn target(self) -> Option<&'static str> {
        self.entry().map(|e| e.1)
    }

    /// The name `build.rs` files the satellite under.
    fn file_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::ArmV7 => "armv7",
            Arch::ArmV6 => "armv6",
            Arch::I386 => "i686",
            Arch::Ppc64le => "powerpc64le",
            Arch::Riscv64 => "riscv64",
            Arch::S390x => "s390x",
        }
    }

    /// What the satellite reports in its hello (`std::env::consts::ARCH`).
    pub(crate) fn rust_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::ArmV7 | Arch::ArmV6 => "arm",
            Arch::I386 => "x86",
            Arch::Ppc64le => "powerpc64",
            Arch::Riscv64 => "riscv64",
            Arch::S390x => "s390x",
        }
    }

    /// Architectures whose binaries this one's CPUs usually also run,
    /// best first: tried right after it.
    fn compatible(self) -> &'static [Arch] {
        match self {
            Arch::Amd64 => &[Arch::I386],
            Arch::Arm64 => &[Arch::ArmV7, Arch::ArmV6],
            Arch::ArmV7 => &[Arch::ArmV6],
            _ => &[],
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::ArmV7 => "arm/v7",
            Arch::ArmV6 => "arm/v6",
            Arch::I386 => "386",
            Arch::Ppc64le => "ppc64le",
            Arch::Riscv64 => "riscv64",
            Arch::S390x => "s390x",
        })
    }
}

/// Decompresses a `.lzma` satellite of `raw_len` bytes.
fn unpack(packed: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    // The dictionary is at most the size of the file (build.rs): 64 MiB
    // is far more than any satellite needs.
    let mut r = lzma_rust2::LzmaReader::new_mem_limit(packed, 64 * 1024, None)?;
    let mut out = Vec::with_capacity(raw_len);
    r.read_to_end(&mut out)?;
    if out.len() != raw_len {
        return Err(std::io::Error::other(format!(
            "{} bytes instead of {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

/// One line per architecture for `-version -debug`: its target and sizes,
/// or that this build has none.
pub(crate) fn report() -> String {
    let mut s = String::new();
    for a in Arch::ALL {
        match (a.sizes(), a.target()) {
            (Some((raw, packed)), Some(t)) => s.push_str(&format!(
                "satellite {a} ({t}): {raw} bytes, {packed} embedded\n"
            )),
            _ => s.push_str(&format!("satellite {a}: not in this build\n")),
        }
    }
    s
}

/// The order in which to try satellites, among those this build has:
///
/// * `forced` (`--satellite-arch`): that one only;
/// * else the engine's native arch (a static binary runs there without
///   emulation whatever the image's arch) and the ones its CPU also runs,
///   then the image's and its compatible ones, then the rest.
///
/// Fails, saying why, when no satellite of this build fits.
pub(crate) fn candidates(
    forced: Option<Arch>,
    engine: Option<Arch>,
    image: Option<Arch>,
) -> Result<Vec<Arch>, String> {
    order(&Arch::embedded(), forced, engine, image)
}

/// [`candidates`] for a given set of embedded satellites.
fn order(
    have: &[Arch],
    forced: Option<Arch>,
    engine: Option<Arch>,
    image: Option<Arch>,
) -> Result<Vec<Arch>, String> {
    let names = || {
        have.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(a) = forced {
        return if have.contains(&a) {
            Ok(vec![a])
        } else {
            Err(format!(
                "this dockerfuse has no {a} satellite (it has: {})",
                names()
            ))
        };
    }
    if engine.is_none() && image.is_none() {
        return Err(format!(
            "unsupported architecture: neither the engine's nor the image's is one dockerfuse has a satellite for ({})",
            names()
        ));
    }
    let mut out = Vec::new();
    let preferred = [engine, image]
        .into_iter()
        .flatten()
        .flat_map(|a| std::iter::once(a).chain(a.compatible().iter().copied()));
    for a in preferred.chain(Arch::ALL) {
        if have.contains(&a) && !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_parse() {
        assert_eq!(Arch::parse("x86_64"), Some(Arch::Amd64));
        assert_eq!(Arch::parse("arm64/v8"), Some(Arch::Arm64));
        assert_eq!(Arch::parse("arm/v7"), Some(Arch::ArmV7));
        assert_eq!(Arch::parse("arm/v6"), Some(Arch::ArmV6));
        assert_eq!(Arch::parse("arm/v5"), Some(Arch::ArmV6));
        assert_eq!(Arch::parse("arm"), Some(Arch::ArmV7));
        assert_eq!(Arch::parse("armv7l"), Some(Arch::ArmV7));
        assert_eq!(Arch::parse("armv6l"), Some(Arch::ArmV6));
        assert_eq!(Arch::parse("i686"), Some(Arch::I386));
        assert_eq!(Arch::parse("386"), Some(Arch::I386));
        assert_eq!(Arch::parse("ppc64le"), Some(Arch::Ppc64le));
        assert_eq!(Arch::parse("riscv64"), Some(Arch::Riscv64));
        assert_eq!(Arch::parse("s390x"), Some(Arch::S390x));
        assert_eq!(Arch::parse("mips64le"), None);
        assert_eq!(Arch::parse(""), None);
    }

    #[test]
    fn the_command_line_takes_docker_and_kernel_names() {
        use clap::ValueEnum;
        for (name, arch) in [
            ("amd64", Arch::Amd64),
            ("x86_64", Arch::Amd64),
            ("arm64", Arch::Arm64),
            ("arm/v7", Arch::ArmV7),
            ("armv7", Arch::ArmV7),
            ("arm/v6", Arch::ArmV6),
            ("armv6", Arch::ArmV6),
            ("386", Arch::I386),
            ("i686", Arch::I386),
            ("ppc64le", Arch::Ppc64le),
            ("riscv64", Arch::Riscv64),
            ("s390x", Arch::S390x),
        ] {
            assert_eq!(Arch::from_str(name, false), Ok(arch), "{name}");
        }
        assert!(Arch::from_str("mips", false).is_err());
    }

    #[test]
    fn docker_variants_choose_the_arm_satellite() {
        assert_eq!(
            Arch::parse_with_variant("arm", Some("v7")),
            Some(Arch::ArmV7)
        );
        assert_eq!(
            Arch::parse_with_variant("arm", Some("v6")),
            Some(Arch::ArmV6)
        );
        assert_eq!(Arch::parse_with_variant("arm", None), Some(Arch::ArmV7));
        assert_eq!(
            Arch::parse_with_variant("arm64", Some("v8")),
            Some(Arch::Arm64)
        );
    }

    #[test]
    fn every_name_round_trips() {
        for a in Arch::ALL {
            assert_eq!(Arch::parse(&a.to_string()), Some(a), "{a}");
        }
    }

    const ALL: &[Arch] = &Arch::ALL;

    #[test]
    fn native_arch_comes_first_then_the_image_then_the_rest() {
        let o = order(ALL, None, Some(Arch::Amd64), Some(Arch::ArmV7)).unwrap();
        assert_eq!(
            &o[..4],
            &[Arch::Amd64, Arch::I386, Arch::ArmV7, Arch::ArmV6]
        );
        assert_eq!(o.len(), 8);
        let o = order(ALL, None, None, Some(Arch::Arm64)).unwrap();
        assert_eq!(&o[..3], &[Arch::Arm64, Arch::ArmV7, Arch::ArmV6]);
        let o = order(ALL, None, Some(Arch::ArmV6), Some(Arch::ArmV7)).unwrap();
        assert_eq!(&o[..2], &[Arch::ArmV6, Arch::ArmV7]);
    }

    #[test]
    fn missing_satellites_are_skipped() {
        let have = [Arch::Amd64, Arch::Arm64, Arch::I386];
        // An s390x engine: only the image's arch can run (under emulation).
        assert_eq!(
            order(&have, None, Some(Arch::S390x), Some(Arch::I386)).unwrap(),
            vec![Arch::I386, Arch::Amd64, Arch::Arm64]
        );
        let e = order(&have, Some(Arch::Riscv64), Some(Arch::Amd64), None).unwrap_err();
        assert!(e.contains("no riscv64 satellite"), "{e}");
        assert!(e.contains("amd64, arm64, 386"), "{e}");
        assert!(order(&have, None, None, None).is_err());
    }

    #[test]
    fn forced_is_the_only_candidate() {
        assert_eq!(
            order(ALL, Some(Arch::Arm64), Some(Arch::Amd64), None).unwrap(),
            vec![Arch::Arm64]
        );
    }

    #[test]
    fn embedded_satellites_decompress_to_static_elf_files() {
        // e_machine of each: x86-64 62, aarch64 183, arm 40, i386 3,
        // ppc64 21, riscv 243, s390 22.
        let machine = |a| match a {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
            Arch::ArmV7 | Arch::ArmV6 => 40,
            Arch::I386 => 3,
            Arch::Ppc64le => 21,
            Arch::Riscv64 => 243,
            Arch::S390x => 22,
        };
        assert!(Arch::embedded().contains(&Arch::Amd64));
        assert!(Arch::embedded().contains(&Arch::Arm64));
        for a in Arch::embedded() {
            let b = a.binary().expect("decompresses");
            let (raw, packed) = a.sizes().unwrap();
            assert_eq!(b.len(), raw);
            assert!(packed < raw, "{a} is compressed");
            assert_eq!(&b[..4], b"\x7fELF", "{a} satellite is an ELF file");
            let m = if a == Arch::S390x {
                u16::from_be_bytes([b[18], b[19]])
            } else {
                u16::from_le_bytes([b[18], b[19]])
            };
            assert_eq!(m, machine(a), "{a}");
            assert!(!has_interpreter(b), "{a} satellite is static");
            // The size profile keeps a musl satellite near half a megabyte
            // (x86_64 533,152 bytes with the change feed and the local
            // channel); this bound catches a dependency or a formatting
            // path that would add tens of kilobytes.
            if a != Arch::S390x {
                assert!(b.len() <= 560 * 1024, "{a} satellite is {} bytes", b.len());
            }
        }
        for a in Arch::ALL {
            assert_eq!(a.binary().is_some(), Arch::embedded().contains(&a));
        }
    }

    /// True when the ELF file has a PT_INTERP program header (is dynamic).
    fn has_interpreter(b: &[u8]) -> bool {
        let be = b[5] == 2;
        let n = |at: usize, len: usize| -> usize {
            let mut v = 0usize;
            for i in 0..len {
                let byte = b[at + if be { i } else { len - 1 - i }] as usize;
                v = (v << 8) | byte;
            }
            v
        };
        let (phoff, phentsize, phnum) = if b[4] == 2 {
            (n(0x20, 8), n(0x36, 2), n(0x38, 2))
        } else {
            (n(0x1c, 4), n(0x2a, 2), n(0x2c, 2))
        };
        (0..phnum).any(|i| n(phoff + i * phentsize, 4) == 3)
    }

    #[test]
    fn a_corrupt_satellite_is_an_error() {
        let (_, _, raw, packed) = Arch::Amd64.entry().unwrap();
        let mut bad = packed.to_vec();
        bad.truncate(bad.len() / 2);
        assert!(unpack(&bad, *raw).is_err());
        assert!(unpack(packed, raw + 1).is_err());
    }
}
