//! The setattr without attributes that FUSE sends to clear setuid/setgid.
//!
//! With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves the clearing of
//! setuid/setgid to the file server: writes, truncations and chowns are
//! performed as the caller, whose missing CAP_FSETID makes the container's
//! kernel apply its own rules. Two host-side calls reach the satellite as
//! a setattr that changes nothing: `chown(f, -1, -1)` (which clears the
//! bits on Linux) and the privilege removal the kernel makes before a
//! write (the write clears them anyway). Both are performed as
//! `chown(f, -1, -1)` by the caller, which clears them by the kernel's
//! chown rules. For a caller who does not own a file with bits to clear,
//! that chown is refused (EPERM): then nothing is done and the request
//! succeeds, since before a write the write itself will clear them.

use std::os::fd::RawFd;

use dockerfuse_proto::Errno;

use crate::sys::{self, SysResult};

/// Handles a setattr that changes nothing on the inode of `fd`.
pub(crate) fn empty_setattr(fd: RawFd) -> SysResult<()> {
    match sys::fchown_path_fd(fd, u32::MAX, u32::MAX) {
        Err(Errno::EPERM) => Ok(()),
        other => other,
    }
}
