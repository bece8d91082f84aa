//! Attributes: getattr, setattr, access and statfs, and the conversion of
//! a stat to wire attributes.

// libc's stat/statfs field types differ between x86_64 and aarch64 (and
// musl and glibc): casts that are no-ops on one target are needed on the
// other.
#![allow(clippy::unnecessary_cast)]

use dockerfuse_proto::{Attr, Errno, Response, SetAttr, SetTime, StatFs};

use super::Fs;
use crate::nodes::NodeRef;
use crate::sys::{self, SysResult};

impl Fs {
    pub(super) fn getattr(&self, node: u64, fh: Option<u64>) -> SysResult<Response<'static>> {
        if let Some(fh) = fh {
            if let Ok(h) = self.handles.get(fh) {
                if let Ok(fd) = h.file() {
                    return Ok(Response::Attr(attr_of(&sys::fstat(fd)?, node)));
                }
            }
        }
        let n = self.nodes.get(node)?;
        Ok(Response::Attr(attr_of(&sys::stat_fd(n.raw())?, node)))
    }

    /// Applies the changes in `a` in a fixed order (mode, owner, size,
    /// times) through the open file when there is one, then answers with
    /// the new attributes.
    pub(super) fn setattr(
        &self,
        node: u64,
        fh: Option<u64>,
        a: &SetAttr,
    ) -> SysResult<Response<'static>> {
        let handle = fh.and_then(|fh| self.handles.get(fh).ok());
        let file_fd = handle.as_ref().and_then(|h| h.file().ok());
        // With an open file, mode, size and times go through it, so an
        // unlinked file whose node keeps no descriptor still works; chown
        // and the path-based fallbacks need the node.
        let n = match file_fd {
            Some(_) if a.uid.is_none() && a.gid.is_none() => self.nodes.get(node).ok(),
            _ => Some(self.nodes.get(node)?),
        };
        let need = || n.as_ref().ok_or(Errno::ESTALE);
        if let Some(mode) = a.mode {
            match file_fd {
                Some(fd) => sys::fchmod(fd, mode & 0o7777)?,
                None if need()?.is_symlink => return Err(Errno::EOPNOTSUPP),
                None => sys::fchmodat(&sys::proc_fd_path(need()?.raw()), mode & 0o7777)?,
            }
        }
        if a.uid.is_some() || a.gid.is_some() {
            sys::fchown_path_fd(
                need()?.raw(),
                a.uid.unwrap_or(u32::MAX),
                a.gid.unwrap_or(u32::MAX),
            )?;
        } else if *a == SetAttr::default() {
            crate::privs::empty_setattr(need()?.raw())?;
        }
        if let Some(size) = a.size {
            match file_fd {
                Some(fd) => sys::ftruncate(fd, size)?,
                None => sys::truncate(&sys::proc_fd_path(need()?.raw()), size)?,
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let times = [timespec(a.atime), timespec(a.mtime)];
            match file_fd {
                Some(fd) => sys::futimens(fd, &times)?,
                None => {
                    let n = need()?;
                    set_node_times(n, &sys::proc_fd_path(n.raw()), &times)?
                }
            }
        }
        self.getattr(node, fh)
    }

    pub(super) fn access(&self, node: u64, mask: i32) -> SysResult<Response<'static>> {
        sys::faccessat(&sys::proc_fd_path(self.nodes.get(node)?.raw()), mask)?;
        Ok(Response::Ok)
    }

    pub(super) fn statfs(&self, node: u64) -> SysResult<Response<'static>> {
        let st = sys::fstatfs(self.nodes.get(node)?.raw())?;
        Ok(Response::StatFs(StatFs {
            blocks: st.f_blocks as u64,
            bfree: st.f_bfree as u64,
            bavail: st.f_bavail as u64,
            files: st.f_files as u64,
            ffree: st.f_ffree as u64,
            bsize: st.f_bsize as u32,
            namelen: st.f_namelen as u32,
            frsize: st.f_frsize as u32,
        }))
    }
}

/// Sets the times of a node without an open file: on the node itself
/// (a symlink's own times), or, for anything but a symlink, through /proc
/// when the kernel refuses the empty path (EINVAL or ENOENT).
fn set_node_times(
    n: &NodeRef,
    proc_path: &std::ffi::CStr,
    times: &[libc::timespec; 2],
) -> SysResult<()> {
    match sys::utimensat(
        n.raw(),
        sys::empty(),
        times,
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::ENOENT) if !n.is_symlink => {
            sys::utimensat(libc::AT_FDCWD, proc_path, times, 0)
        }
        Err(e) => Err(e),
    }
}

/// Converts a stat to wire attributes, reporting `node` as the inode
/// number (container inode numbers collide across /proc, /sys, /dev...).
pub(super) fn attr_of(st: &libc::stat, node: u64) -> Attr {
    Attr {
        ino: node,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: st.st_atime as i64,
        atime_nsec: st.st_atime_nsec as u32,
        mtime: st.st_mtime as i64,
        mtime_nsec: st.st_mtime_nsec as u32,
        ctime: st.st_ctime as i64,
        ctime_nsec: st.st_ctime_nsec as u32,
        mode: st.st_mode as u32,
        nlink: u32::try_from(st.st_nlink as u64).unwrap_or(u32::MAX),
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        rdev: st.st_rdev as u64,
        blksize: st.st_blksize as u32,
    }
}

/// The (st_dev, st_ino) pair that identifies an inode.
pub(super) fn key_of(st: &libc::stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

pub(super) fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

fn timespec(t: Option<SetTime>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(SetTime::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(SetTime::At { sec, nsec }) => libc::timespec {
            tv_sec: sec as _,
            tv_nsec: nsec.min(999_999_999) as _,
        },
    }
}
