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
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const EIO: Errno = Errno(5);
    pub const EBADF: Errno = Errno(9);
    pub const EACCES: Errno = Errno(13);
    pub const EEXIST: Errno = Errno(17);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const ERANGE: Errno = Errno(34);
    pub const ENODATA: Errno = Errno(61);
    pub const EPROTO: Errno = Errno(71);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const ESTALE: Errno = Errno(116);
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
    fn display_names_the_error_and_its_number() {
        let text = Errno::ENOENT.to_string();
        assert!(text.contains("No such file"), "{text}");
        assert!(text.ends_with("(errno 2)"), "{text}");
    }
}
