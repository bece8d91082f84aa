//! Linux errno numbers as they travel on the wire.
//!
//! The generic errno table is the same on x86_64 and aarch64, so a number
//! produced by the satellite in an arm64 container means the same thing to
//! an amd64 host. Only the values the host itself has to produce are named
//! here; any other value is passed through untouched.

use std::fmt;

/// An errno value (always positive on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const ENOENT: Errno = Errno(2);
    pub const EIO: Errno = Errno(5);
    pub const EBADF: Errno = Errno(9);
    pub const EEXIST: Errno = Errno(17);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const ERANGE: Errno = Errno(34);
    pub const ENODATA: Errno = Errno(61);
    pub const EPROTO: Errno = Errno(71);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const ESTALE: Errno = Errno(116);

    /// Turns an `io::Error` into the errno it carries, EIO when it has none.
    pub fn from_io(err: &std::io::Error) -> Errno {
        match err.raw_os_error() {
            Some(n) if n > 0 => Errno(n),
            _ => Errno::EIO,
        }
    }

    /// The errno as an `io::Error`.
    pub fn to_io(self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.to_io(), self.0)
    }
}

impl From<std::io::Error> for Errno {
    fn from(err: std::io::Error) -> Errno {
        Errno::from_io(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_round_trip_keeps_the_number() {
        let e = Errno::ENOENT.to_io();
        assert_eq!(Errno::from_io(&e), Errno::ENOENT);
        let other = std::io::Error::other("no errno");
        assert_eq!(Errno::from_io(&other), Errno::EIO);
    }
}
