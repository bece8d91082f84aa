//! Descriptors of the satellite's open files, taken for FUSE passthrough.
//!
//! The satellite reports a number; the transport copies that descriptor
//! (`pidfd_getfd`). What comes back is checked before the kernel may use
//! it as a backing file: it must be a regular file open with exactly the
//! access mode this open asked for. The kernel reopens the backing file
//! with the FUSE file's flags and the mounting process's credentials, so a
//! descriptor the satellite opened read-only must never back a read-write
//! open. Anything else is closed and the open takes the normal path.

use std::os::fd::{AsRawFd, OwnedFd};

use super::Transport;

/// The satellite's descriptor `fd` for an open with `flags`, when it can
/// back the file.
pub(super) fn take<T: Transport>(rpc: &T, fd: u32, flags: i32) -> Option<OwnedFd> {
    let owned = rpc.take_fd(fd)?;
    match check(&owned, flags) {
        Ok(()) => Some(owned),
        Err(why) => {
            tracing::debug!(fd, why, "not a backing file for passthrough");
            None
        }
    }
}

/// `fd` is a regular file open with the access mode of `flags`.
fn check(fd: &OwnedFd, flags: i32) -> Result<(), &'static str> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own and a stat buffer of the right type.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err("fstat failed");
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("not a regular file");
    }
    // SAFETY: F_GETFL on a descriptor we own takes no argument.
    let got = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if got < 0 {
        return Err("fcntl failed");
    }
    if got & libc::O_ACCMODE != flags & libc::O_ACCMODE {
        return Err("open with another access mode");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_with_the_same_access_mode_pass() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let ro: OwnedFd = std::fs::File::open(&p).unwrap().into();
        assert_eq!(check(&ro, libc::O_RDONLY), Ok(()));
        assert!(check(&ro, libc::O_RDWR).is_err());
        assert!(check(&ro, libc::O_WRONLY | libc::O_APPEND).is_err());
        let rw: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap()
            .into();
        assert_eq!(check(&rw, libc::O_RDWR | libc::O_TRUNC), Ok(()));
        assert!(check(&rw, libc::O_RDONLY).is_err());
        let d: OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        assert_eq!(check(&d, libc::O_RDONLY), Err("not a regular file"));
    }
}
