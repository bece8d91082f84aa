//! The embedded satellites and the architecture names around them.

use std::fmt;

/// CPU architectures a satellite exists for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "amd64", alias = "x86_64")]
    Amd64,
    #[value(name = "arm64", alias = "aarch64")]
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Parses Docker's and the kernel's spellings (amd64/x86_64,
    /// arm64/aarch64, arm64/v8).
    pub fn parse(s: &str) -> Option<Arch> {
        match s
            .split('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
            .as_str()
        {
            "amd64" | "x86_64" | "x86-64" => Some(Arch::Amd64),
            "arm64" | "aarch64" | "arm64v8" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The satellite binary for this architecture.
    pub fn binary(self) -> &'static [u8] {
        match self {
            Arch::Amd64 => X86_64,
            Arch::Arm64 => AARCH64,
        }
    }

    /// What the satellite reports in its hello (`std::env::consts::ARCH`).
    pub fn rust_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        })
    }
}

static X86_64: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/satellite-x86_64"));
static AARCH64: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/satellite-aarch64"));

/// The order in which to try satellites: forced one only; else the
/// engine's native arch (a static binary runs there without emulation
/// whatever the image's arch), then the image's, then the rest.
pub fn candidates(forced: Option<Arch>, engine: Option<Arch>, image: Option<Arch>) -> Vec<Arch> {
    if let Some(a) = forced {
        return vec![a];
    }
    let mut out = Vec::new();
    for a in [engine, image].into_iter().flatten().chain(Arch::ALL) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_parse() {
        assert_eq!(Arch::parse("x86_64"), Some(Arch::Amd64));
        assert_eq!(Arch::parse("arm64/v8"), Some(Arch::Arm64));
        assert_eq!(Arch::parse("s390x"), None);
    }

    #[test]
    fn native_arch_comes_first() {
        assert_eq!(
            candidates(None, Some(Arch::Amd64), Some(Arch::Arm64)),
            vec![Arch::Amd64, Arch::Arm64]
        );
        assert_eq!(
            candidates(None, None, Some(Arch::Arm64)),
            vec![Arch::Arm64, Arch::Amd64]
        );
        assert_eq!(
            candidates(Some(Arch::Arm64), Some(Arch::Amd64), None),
            vec![Arch::Arm64]
        );
    }

    #[test]
    fn both_satellites_are_embedded_and_static() {
        for a in Arch::ALL {
            let b = a.binary();
            assert_eq!(&b[..4], b"\x7fELF", "{a} satellite is an ELF file");
            assert!(b.len() < 600 * 1024, "{a} satellite is {} bytes", b.len());
        }
        // e_machine: 62 = x86-64, 183 = aarch64
        assert_eq!(u16::from_le_bytes([X86_64[18], X86_64[19]]), 62);
        assert_eq!(u16::from_le_bytes([AARCH64[18], AARCH64[19]]), 183);
    }
}
