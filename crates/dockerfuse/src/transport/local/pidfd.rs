//! Process descriptors: a stable handle on the satellite's process, and
//! copies of its descriptors (`pidfd_open`, `pidfd_getfd`, Linux ≥ 5.6).
//!
//! A pidfd names one process for good: once it is open, a later reuse of
//! the pid number cannot redirect it, and `pidfd_getfd` on a process that
//! has exited fails (ESRCH) instead of reaching another one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A process, held by a pidfd.
#[derive(Debug)]
pub(crate) struct Pidfd {
    fd: OwnedFd,
    pid: u32,
}

impl Pidfd {
    /// Opens the process `pid` (a pid of this host's pid namespace).
    pub(crate) fn open(pid: u32) -> io::Result<Pidfd> {
        let pid_t =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; no memory is passed.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_t, 0 as libc::c_uint) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
        Ok(Pidfd { fd, pid })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// A copy of the process's descriptor `target` (close-on-exec). It
    /// refers to the same open file description as the original.
    pub(crate) fn take(&self, target: u32) -> io::Result<OwnedFd> {
        let target =
            libc::c_int::try_from(target).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: pidfd_getfd takes a pidfd we own, a descriptor number of
        // the other process and flags (0); it returns a new descriptor or
        // -1 and touches no memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_getfd,
                self.fd.as_raw_fd(),
                target,
                0 as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn takes_a_descriptor_of_this_process() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = Pidfd::open(std::process::id()).unwrap();
        let copy = me.take(b.as_raw_fd() as u32).unwrap();
        assert_ne!(copy.as_raw_fd(), b.as_raw_fd());
        drop(b);
        // The copy is the same socket: what goes in at `a` comes out of it.
        a.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        std::os::unix::net::UnixStream::from(copy)
            .read_exact(&mut got)
            .unwrap();
        assert_eq!(&got, b"x");
    }

    #[test]
    fn a_closed_number_is_refused() {
        let me = Pidfd::open(std::process::id()).unwrap();
        let e = me.take(1_000_000).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
}
