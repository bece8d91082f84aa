//! Flags whose numbers depend on the CPU architecture, in the protocol's
//! own terms.
//!
//! The host and the satellite may run on different architectures (an
//! arm64 container on an amd64 host, under qemu-user), and Linux numbers
//! some open(2) flags differently on arm, arm64 and powerpc than on x86,
//! s390x and riscv (x86's O_DIRECT is arm's O_DIRECTORY). Open flags
//! therefore travel as an [`OpenFlags`] bitset of this crate's own, which
//! each side translates from and to its own kernel's numbers.
//!
//! Every other number on the wire means the same on the eight Docker
//! architectures (amd64, arm64, 386, arm/v7, arm/v6, ppc64le, riscv64,
//! s390x), checked at compile time below for the architecture being
//! built: mode and file type bits, access masks, xattr flags, lseek
//! whence, fallocate modes and rename flags are Linux's generic numbers
//! everywhere, and errno values are the generic table (see
//! [`crate::errno`] for the one exception). Linux has no arch-specific
//! numbers for the rest (uids, times, device numbers in the user-space
//! encoding).

use speedy::{Readable, Writable};

/// open(2) flags as the protocol numbers them (protocol 6 on; before it,
/// the satellite's own numbers travelled, see [`Abi`]). Bits this crate
/// does not name are never sent.
#[derive(Readable, Writable, Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OpenFlags(pub u32);

/// How a kernel numbers the open flags that differ between architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Abi {
    /// Linux's generic numbers: x86 (both), s390x, riscv64.
    Generic,
    /// arm and arm64.
    Arm,
    /// powerpc (32 and 64 bits).
    Power,
}

impl OpenFlags {
    /// The access mode (O_RDONLY 0, O_WRONLY 1, O_RDWR 2, and 3), the same
    /// two bits on every architecture.
    pub const ACCMODE: u32 = 0b11;
    pub const WRONLY: u32 = 1;
    pub const RDWR: u32 = 2;
    pub const CREAT: u32 = 1 << 2;
    pub const EXCL: u32 = 1 << 3;
    pub const NOCTTY: u32 = 1 << 4;
    pub const TRUNC: u32 = 1 << 5;
    pub const APPEND: u32 = 1 << 6;
    pub const NONBLOCK: u32 = 1 << 7;
    pub const DSYNC: u32 = 1 << 8;
    /// FASYNC.
    pub const ASYNC: u32 = 1 << 9;
    pub const DIRECT: u32 = 1 << 10;
    pub const LARGEFILE: u32 = 1 << 11;
    pub const DIRECTORY: u32 = 1 << 12;
    pub const NOFOLLOW: u32 = 1 << 13;
    pub const NOATIME: u32 = 1 << 14;
    pub const CLOEXEC: u32 = 1 << 15;
    /// The kernel's `__O_SYNC` (O_SYNC is it with DSYNC).
    pub const SYNC: u32 = 1 << 16;
    pub const PATH: u32 = 1 << 17;
    /// The kernel's `__O_TMPFILE` (O_TMPFILE is it with DIRECTORY).
    pub const TMPFILE: u32 = 1 << 18;

    /// Translates this kernel's (or libc's) open flags. Bits without a
    /// name here (the kernel's internal FMODE_EXEC, say) are left out.
    pub fn from_native(flags: i32) -> OpenFlags {
        OpenFlags::from_abi(Abi::NATIVE, flags)
    }

    /// These flags in this kernel's numbers.
    pub fn to_native(self) -> i32 {
        self.to_abi(Abi::NATIVE)
    }

    /// Translates flags numbered as `abi` numbers them.
    pub fn from_abi(abi: Abi, flags: i32) -> OpenFlags {
        let flags = flags as u32;
        let mut bits = flags & Self::ACCMODE;
        for &(wire, native) in abi.table() {
            if flags & native != 0 {
                bits |= wire;
            }
        }
        OpenFlags(bits)
    }

    /// These flags numbered as `abi` numbers them (bits unknown to this
    /// crate are dropped).
    pub fn to_abi(self, abi: Abi) -> i32 {
        let mut flags = self.0 & Self::ACCMODE;
        for &(wire, native) in abi.table() {
            if self.0 & wire != 0 {
                flags |= native;
            }
        }
        flags as i32
    }

    /// Whether every bit of `bits` is set.
    pub fn contains(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    /// The access mode bits (compare with 0, [`Self::WRONLY`],
    /// [`Self::RDWR`]).
    pub fn access(self) -> u32 {
        self.0 & Self::ACCMODE
    }
}

/// Kernel numbers (octal, as in Linux's `fcntl.h` files) that are the
/// same on every architecture dockerfuse runs on.
const COMMON: [(u32, u32); 13] = [
    (OpenFlags::CREAT, 0o100),
    (OpenFlags::EXCL, 0o200),
    (OpenFlags::NOCTTY, 0o400),
    (OpenFlags::TRUNC, 0o1000),
    (OpenFlags::APPEND, 0o2000),
    (OpenFlags::NONBLOCK, 0o4000),
    (OpenFlags::DSYNC, 0o10000),
    (OpenFlags::ASYNC, 0o20000),
    (OpenFlags::NOATIME, 0o1000000),
    (OpenFlags::CLOEXEC, 0o2000000),
    (OpenFlags::SYNC, 0o4000000),
    (OpenFlags::PATH, 0o10000000),
    (OpenFlags::TMPFILE, 0o20000000),
];

/// One architecture's (wire bit, kernel number) pairs: the common numbers
/// and its own O_DIRECT, O_LARGEFILE, O_DIRECTORY and O_NOFOLLOW.
type Table = [(u32, u32); 17];

const fn table(direct: u32, largefile: u32, directory: u32, nofollow: u32) -> Table {
    let mut t = [(0, 0); 17];
    let mut i = 0;
    while i < COMMON.len() {
        t[i] = COMMON[i];
        i += 1;
    }
    t[13] = (OpenFlags::DIRECT, direct);
    t[14] = (OpenFlags::LARGEFILE, largefile);
    t[15] = (OpenFlags::DIRECTORY, directory);
    t[16] = (OpenFlags::NOFOLLOW, nofollow);
    t
}

/// x86, s390x, riscv (asm-generic/fcntl.h).
static GENERIC: Table = table(0o40000, 0o100000, 0o200000, 0o400000);
/// arch/arm and arch/arm64 uapi/asm/fcntl.h.
static ARM: Table = table(0o200000, 0o400000, 0o40000, 0o100000);
/// arch/powerpc uapi/asm/fcntl.h.
static POWER: Table = table(0o400000, 0o200000, 0o40000, 0o100000);

impl Abi {
    /// The numbering of the architecture this is compiled for.
    pub const NATIVE: Abi = if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
        Abi::Arm
    } else if cfg!(any(target_arch = "powerpc", target_arch = "powerpc64")) {
        Abi::Power
    } else {
        Abi::Generic
    };

    /// The numbering of a satellite that reports `arch` in its hello
    /// (Rust's `std::env::consts::ARCH`).
    pub fn of_arch(arch: &str) -> Abi {
        match arch {
            "arm" | "aarch64" => Abi::Arm,
            "powerpc" | "powerpc64" => Abi::Power,
            _ => Abi::Generic,
        }
    }

    fn table(self) -> &'static Table {
        match self {
            Abi::Generic => &GENERIC,
            Abi::Arm => &ARM,
            Abi::Power => &POWER,
        }
    }
}

/// The native table must agree with libc's numbers for the target being
/// compiled (every satellite build checks its own architecture). libc
/// says 0 for O_LARGEFILE where user space needs no flag (glibc on 64-bit
/// targets); the kernel's number stands then.
#[cfg(target_os = "linux")]
const _: () = {
    const fn native(wire: u32) -> u32 {
        let t = match Abi::NATIVE {
            Abi::Generic => &GENERIC,
            Abi::Arm => &ARM,
            Abi::Power => &POWER,
        };
        let mut i = 0;
        while i < t.len() {
            if t[i].0 == wire {
                return t[i].1;
            }
            i += 1;
        }
        panic!("every flag is in the table")
    }
    // (musl counts O_PATH in O_ACCMODE: only the two numbers are checked.)
    assert!(libc::O_RDONLY == 0 && libc::O_WRONLY == 1 && libc::O_RDWR == 2);
    assert!(native(OpenFlags::CREAT) == libc::O_CREAT as u32);
    assert!(native(OpenFlags::EXCL) == libc::O_EXCL as u32);
    assert!(native(OpenFlags::NOCTTY) == libc::O_NOCTTY as u32);
    assert!(native(OpenFlags::TRUNC) == libc::O_TRUNC as u32);
    assert!(native(OpenFlags::APPEND) == libc::O_APPEND as u32);
    assert!(native(OpenFlags::NONBLOCK) == libc::O_NONBLOCK as u32);
    assert!(native(OpenFlags::DSYNC) == libc::O_DSYNC as u32);
    assert!(native(OpenFlags::ASYNC) == libc::O_ASYNC as u32);
    assert!(native(OpenFlags::DIRECT) == libc::O_DIRECT as u32);
    assert!(libc::O_LARGEFILE == 0 || native(OpenFlags::LARGEFILE) == libc::O_LARGEFILE as u32);
    assert!(native(OpenFlags::DIRECTORY) == libc::O_DIRECTORY as u32);
    assert!(native(OpenFlags::NOFOLLOW) == libc::O_NOFOLLOW as u32);
    assert!(native(OpenFlags::NOATIME) == libc::O_NOATIME as u32);
    assert!(native(OpenFlags::CLOEXEC) == libc::O_CLOEXEC as u32);
    assert!(native(OpenFlags::SYNC) | native(OpenFlags::DSYNC) == libc::O_SYNC as u32);
    assert!(native(OpenFlags::PATH) == libc::O_PATH as u32);
    assert!(native(OpenFlags::TMPFILE) | native(OpenFlags::DIRECTORY) == libc::O_TMPFILE as u32);
};

/// The numbers that travel as they are, checked for the target being
/// compiled: if one differed on some architecture, its build fails here.
#[cfg(target_os = "linux")]
const _: () = {
    // File type and mode bits (Attr::mode, DirEntry::kind, mknod, mkdir,
    // create, setattr).
    assert!(libc::S_IFMT == 0o170000 && libc::S_IFDIR == 0o040000);
    assert!(libc::S_IFREG == 0o100000 && libc::S_IFLNK == 0o120000);
    assert!(libc::S_IFCHR == 0o020000 && libc::S_IFBLK == 0o060000);
    assert!(libc::S_IFIFO == 0o010000 && libc::S_IFSOCK == 0o140000);
    assert!(libc::S_ISUID == 0o4000 && libc::S_ISGID == 0o2000 && libc::S_ISVTX == 0o1000);
    // Access masks.
    assert!(libc::F_OK == 0 && libc::R_OK == 4 && libc::W_OK == 2 && libc::X_OK == 1);
    // setxattr flags.
    assert!(libc::XATTR_CREATE == 1 && libc::XATTR_REPLACE == 2);
    // lseek whence.
    assert!(libc::SEEK_SET == 0 && libc::SEEK_CUR == 1 && libc::SEEK_END == 2);
    assert!(libc::SEEK_DATA == 3 && libc::SEEK_HOLE == 4);
    // fallocate modes.
    assert!(libc::FALLOC_FL_KEEP_SIZE == 1 && libc::FALLOC_FL_PUNCH_HOLE == 2);
    assert!(libc::FALLOC_FL_COLLAPSE_RANGE == 8 && libc::FALLOC_FL_ZERO_RANGE == 0x10);
    assert!(libc::FALLOC_FL_INSERT_RANGE == 0x20 && libc::FALLOC_FL_UNSHARE_RANGE == 0x40);
    // renameat2 flags.
    assert!(libc::RENAME_NOREPLACE == 1 && libc::RENAME_EXCHANGE == 2);
    assert!(libc::RENAME_WHITEOUT == 4);
    // The errno values the host names (crate::errno).
    assert!(libc::EPERM == 1 && libc::ENOENT == 2 && libc::EIO == 5 && libc::EBADF == 9);
    assert!(libc::EACCES == 13 && libc::EEXIST == 17 && libc::ENOTDIR == 20);
    assert!(libc::EISDIR == 21 && libc::EINVAL == 22 && libc::ERANGE == 34);
    assert!(libc::ENOSYS == 38 && libc::ENODATA == 61 && libc::EPROTO == 71);
    assert!(libc::EOPNOTSUPP == 95 && libc::ESTALE == 116 && libc::EDEADLK == 35);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every named flag, one at a time.
    const ALL: [u32; 19] = [
        OpenFlags::WRONLY,
        OpenFlags::RDWR,
        OpenFlags::CREAT,
        OpenFlags::EXCL,
        OpenFlags::NOCTTY,
        OpenFlags::TRUNC,
        OpenFlags::APPEND,
        OpenFlags::NONBLOCK,
        OpenFlags::DSYNC,
        OpenFlags::ASYNC,
        OpenFlags::DIRECT,
        OpenFlags::LARGEFILE,
        OpenFlags::DIRECTORY,
        OpenFlags::NOFOLLOW,
        OpenFlags::NOATIME,
        OpenFlags::CLOEXEC,
        OpenFlags::SYNC,
        OpenFlags::PATH,
        OpenFlags::TMPFILE,
    ];

    #[test]
    fn every_flag_survives_every_numbering() {
        for abi in [Abi::Generic, Abi::Arm, Abi::Power] {
            for f in ALL {
                let native = OpenFlags(f).to_abi(abi);
                assert_eq!(
                    OpenFlags::from_abi(abi, native),
                    OpenFlags(f),
                    "{abi:?} {f:#x}"
                );
            }
            let all = ALL.iter().fold(0, |a, f| a | f) & !OpenFlags::WRONLY;
            let native = OpenFlags(all).to_abi(abi);
            assert_eq!(OpenFlags::from_abi(abi, native).0, all, "{abi:?}");
        }
    }

    #[test]
    fn x86_o_direct_is_not_arm_o_directory() {
        // The bug this encoding fixes: x86's O_DIRECT (0o40000) read with
        // arm's numbers is O_DIRECTORY.
        let x86 = 0o40000 | libc::O_RDONLY;
        let wire = OpenFlags::from_abi(Abi::Generic, x86);
        assert_eq!(wire, OpenFlags(OpenFlags::DIRECT));
        assert_eq!(wire.to_abi(Abi::Arm), 0o200000);
        assert_eq!(wire.to_abi(Abi::Power), 0o400000);
        let arm_nofollow = OpenFlags::from_abi(Abi::Arm, 0o100000 | 2);
        assert_eq!(arm_nofollow.0, OpenFlags::NOFOLLOW | OpenFlags::RDWR);
        assert_eq!(arm_nofollow.to_abi(Abi::Generic), 0o400000 | 2);
    }

    #[test]
    fn native_flags_translate_by_this_libc() {
        let f = libc::O_WRONLY | libc::O_DIRECT | libc::O_NOFOLLOW | libc::O_SYNC;
        let wire = OpenFlags::from_native(f);
        assert_eq!(wire.access(), OpenFlags::WRONLY);
        assert!(wire.contains(OpenFlags::DIRECT | OpenFlags::NOFOLLOW | OpenFlags::SYNC));
        assert!(wire.contains(OpenFlags::DSYNC), "O_SYNC includes O_DSYNC");
        assert!(!wire.contains(OpenFlags::DIRECTORY));
        assert_eq!(wire.to_native(), f);
    }

    #[test]
    fn unnamed_bits_are_dropped() {
        // FMODE_EXEC, which the kernel passes in FUSE opens of execve.
        assert_eq!(OpenFlags::from_native(0x20), OpenFlags(0));
        assert_eq!(OpenFlags(1 << 30).to_native(), 0);
    }

    #[test]
    fn a_satellite_arch_names_its_numbering() {
        assert_eq!(Abi::of_arch("aarch64"), Abi::Arm);
        assert_eq!(Abi::of_arch("arm"), Abi::Arm);
        assert_eq!(Abi::of_arch("powerpc64"), Abi::Power);
        for a in ["x86_64", "x86", "s390x", "riscv64"] {
            assert_eq!(Abi::of_arch(a), Abi::Generic, "{a}");
        }
    }
}
