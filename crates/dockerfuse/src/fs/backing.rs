//! Descriptors of the satellite's open files, taken for FUSE passthrough.
//!
//! The satellite reports a number; the transport copies that descriptor
//! (`pidfd_getfd`). What comes back is checked before the kernel may use
//! it as a backing file: it must be a regular file open with exactly the
//! access mode this open asked for. The kernel reopens the backing file
//! with the FUSE file's flags and the mounting process's credentials, so a
//! descriptor the satellite opened read-only must never back a read-write
//! open. Anything else is closed and the open takes the normal path.
//!
//! Whether an open file is then served by the kernel from that backing
//! file (passthrough) is decided here too, with the kernel's rules in
//! [`crate::kernel::passthrough`]: the adapter only registers descriptors and
//! answers ([`OpenReply`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::Failure;
use dockerfuse_proto::{Errno, Request};

use super::heads::Heads;
use super::{Cb, Outbox, Transport, Who};
use crate::kernel::passthrough::{Backings, Mode};

/// The kernel's side of an open or create: it registers a backing file
/// and takes the outcome `T`.
pub(crate) trait OpenReply<B, T>: Send + 'static {
    /// Registers `fd` as a backing file with the kernel.
    fn register(&self, fd: &OwnedFd) -> std::io::Result<B>;
    /// Answers the kernel.
    fn answer(self, r: Result<T, Failure>);
}

/// A plain callback registers nothing (tests, and kernels without
/// passthrough).
impl<B, T: 'static> OpenReply<B, T> for Cb<T> {
    fn register(&self, _fd: &OwnedFd) -> std::io::Result<B> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn answer(self, r: Result<T, Failure>) {
        self(r)
    }
}

/// Decides how the kernel serves the files a mount opens.
pub(super) struct Serving<T, B> {
    pub(super) backings: Option<Arc<Backings<B>>>,
    pub(super) heads: Arc<Heads>,
    pub(super) out: Outbox<T>,
}

impl<T: Transport, B: Send + Sync + 'static> Serving<T, B> {
    /// The backing file the kernel reads and writes open file `fh` of
    /// `node` through (None: through us); EIO when the file must not be
    /// opened (its node is backed and this open has no usable
    /// descriptor), the handle then closed.
    pub(super) fn serve<X, R: OpenReply<B, X>>(
        &self,
        node: u64,
        fh: u64,
        fd: Option<OwnedFd>,
        reply: &R,
    ) -> Result<Option<Arc<B>>, Failure> {
        let Some(backings) = &self.backings else {
            return Ok(None);
        };
        match backings.open(node, fh, fd, |fd| reply.register(fd)) {
            Mode::Passthrough(b) => {
                // The kernel reads the file without us: held contents
                // are of no use.
                self.heads.release(fh);
                Ok(Some(b))
            }
            Mode::Cached => Ok(None),
            Mode::Refuse => {
                self.heads.release(fh);
                let req = Request::Release { fh };
                match self.out.behind.clone() {
                    Some(b) => self
                        .out
                        .send(&Who::Mount, &req, Box::new(move |_| b.forget(fh))),
                    None => self.out.send_and_forget(&Who::Mount, &req),
                }
                Err(Errno::EIO.into())
            }
        }
    }
}

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
