//! The mount(2) call itself, as root: filesystem type `fuse.dockerfuse`.
//!
//! fuser mounts as root with type `fuse` whatever subtype it is given (only
//! fusermount3, used for other users, applies `subtype=`). mount(8),
//! findmnt and `dockerfuse list` know a dockerfuse mount by its type, so as
//! root the mount is made here, with the options fuser would use, and the
//! session is built on the returned `/dev/fuse` descriptor. Any other
//! user mounts through [`fusermount`](crate::kernel::fusermount) (setuid
//! fusermount3) and gets the same kind of descriptor; unmounting goes the
//! same two ways.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The filesystem type of a dockerfuse mount.
pub(crate) const FSTYPE: &str = "fuse.dockerfuse";

/// What to mount and how.
pub(crate) struct Request<'a> {
    pub mountpoint: &'a Path,
    /// Shown as the source (`dockerfuse:web`).
    pub fsname: &'a str,
    pub read_only: bool,
    pub allow_other: bool,
}

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Mounts the way this process may: mount(2) as root (also root in a user
/// namespace, `podman unshare`), else through fusermount3. Returns the
/// session's descriptor and which way it went, for the log.
pub(crate) fn mount_any(req: &Request) -> io::Result<(OwnedFd, &'static str)> {
    if is_root() {
        match mount(req) {
            Ok(fd) => return Ok((fd, "mount(2)")),
            // Root of a user namespace without the right to mount FUSE.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                tracing::debug!(error = %e, "mount(2) refused, trying fusermount3")
            }
            Err(e) => return Err(e),
        }
    }
    let helper = crate::kernel::fusermount::find()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "fusermount3 not found"))?;
    crate::kernel::fusermount::mount(&helper, req).map(|fd| (fd, "fusermount3"))
}

/// Opens `/dev/fuse` and mounts it on the mount point; the descriptor
/// then carries the session (the kernel's INIT request is already queued).
pub(crate) fn mount(req: &Request) -> io::Result<OwnedFd> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")?;
    let root_mode = std::fs::metadata(req.mountpoint)?.mode() & libc::S_IFMT;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={}",
        dev.as_raw_fd(),
        root_mode,
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        unsafe { libc::getuid() },
        // SAFETY: as above.
        unsafe { libc::getgid() },
    );
    if req.allow_other {
        data.push_str(",default_permissions,allow_other");
    }
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if req.read_only {
        flags |= libc::MS_RDONLY;
    }
    let source = cstring(req.fsname.as_bytes())?;
    let target = cstring(req.mountpoint.as_os_str().as_encoded_bytes())?;
    let fstype = cstring(FSTYPE.as_bytes())?;
    let data = cstring(data.as_bytes())?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; mount(2) reads them and keeps none.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dev.into())
}

/// Unmounts `mountpoint`, failing with EBUSY when it is in use.
pub(crate) fn unmount_strict(mountpoint: &Path) -> io::Result<()> {
    if !is_root() {
        return crate::kernel::fusermount::unmount(mountpoint, false);
    }
    umount2(mountpoint, 0)
}

fn umount2(mountpoint: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstring(mountpoint.as_os_str().as_encoded_bytes())?;
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmounts `mountpoint`; a busy mount (a shell's cwd inside) is detached
/// lazily instead.
pub(crate) fn unmount(mountpoint: &Path) -> io::Result<()> {
    let err = match unmount_strict(mountpoint) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // A user's mount made by root's fusermount3 (or root's mount seen
    // from a user namespace): fall back to the other way too.
    let busy = crate::kernel::fusermount::errno_of(&err) == Some(libc::EBUSY);
    if is_root() {
        if !busy && err.raw_os_error() != Some(libc::EPERM) {
            return Err(err);
        }
        return umount2(mountpoint, libc::MNT_DETACH)
            .or_else(|_| crate::kernel::fusermount::unmount(mountpoint, true));
    }
    // fusermount3's words for EBUSY vary: detach lazily on any failure
    // but "not mounted".
    if !busy && crate::kernel::fusermount::errno_of(&err) == Some(libc::EINVAL) {
        return Err(err);
    }
    crate::kernel::fusermount::unmount(mountpoint, true)
}
