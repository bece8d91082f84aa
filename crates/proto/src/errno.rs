//! Linux errno numbers as they travel on the wire.
//!
//! Linux's generic errno table is the one of all eight Docker
//! architectures (x86 both, arm, arm64, riscv64, s390x, powerpc), so a
//! number produced by the satellite in an arm64 container means the same
//! thing to an amd64 host. The one exception is powerpc's EDEADLOCK (58,
//! an alias of EDEADLK 35 everywhere else), which the satellite sends as
//! 35 ([`Errno::from_native`]); 58 is unused in the generic table, so a
//! powerpc host needs nothing back. The values the host itself produces
//! are named here (checked against libc at compile time in
//! [`crate::flags`]); any other value is passed through untouched.

use std::fmt;

/// An errno value (always positive on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const EIO: Errno = Errno(5);
    pub const EBADF: Errno = Errno(9);
    pub const EACCES: Errno = Errno(13);
    pub const EEXIST: Errno = Errno(17);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const ENOSYS: Errno = Errno(38);
    pub const ERANGE: Errno = Errno(34);
    pub const ENODATA: Errno = Errno(61);
    pub const EPROTO: Errno = Errno(71);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const ESTALE: Errno = Errno(116);
}

impl Errno {
    /// The wire value of an errno of the kernel this is compiled for.
    pub fn from_native(errno: i32) -> Errno {
        const POWERPC_EDEADLOCK: i32 = 58;
        if cfg!(any(target_arch = "powerpc", target_arch = "powerpc64"))
            && errno == POWERPC_EDEADLOCK
        {
            return Errno(35);
        }
        Errno(errno)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let io = std::io::Error::from_raw_os_error(self.0);
        write!(f, "{io} (errno {})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_numbers_are_the_wire_numbers_here() {
        assert_eq!(Errno::from_native(libc::ENOENT), Errno::ENOENT);
        assert_eq!(Errno::from_native(libc::EDEADLK), Errno(35));
    }

    #[test]
    fn display_names_the_error_and_its_number() {
        let text = Errno::ENOENT.to_string();
        assert!(text.contains("No such file"), "{text}");
        assert!(text.ends_with("(errno 2)"), "{text}");
    }
}
