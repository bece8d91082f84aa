//! Extended attributes: getxattr, listxattr, setxattr and removexattr,
//! made through `/proc/self/fd/N` (the calls take no `O_PATH`
//! descriptor), and the "has none at all" check that rides on lookups.

use std::borrow::Cow;
use std::os::fd::RawFd;

use dockerfuse_proto::{Response, MAX_IO};

use super::attrs::is_symlink;
use super::Fs;
use crate::sys::{self, SysResult};

impl Fs {
    /// The value of `name`, or with `size` 0 the size it needs.
    pub(super) fn getxattr<'b>(
        &self,
        node: u64,
        name: &[u8],
        size: u32,
        buf: &'b mut Vec<u8>,
    ) -> SysResult<Response<'b>> {
        let n = self.nodes.get(node)?;
        let path = sys::proc_fd_path(n.raw());
        let name = sys::cstr(name)?;
        if size == 0 {
            return Ok(Response::XattrSize(
                sys::getxattr(&path, &name, &mut [])? as u32
            ));
        }
        buf.resize(size.min(MAX_IO) as usize, 0);
        let n = sys::getxattr(&path, &name, buf)?;
        buf.truncate(n);
        Ok(Response::Data(Cow::Borrowed(&buf[..])))
    }

    /// The list of names, or with `size` 0 the size it needs.
    pub(super) fn listxattr<'b>(
        &self,
        node: u64,
        size: u32,
        buf: &'b mut Vec<u8>,
    ) -> SysResult<Response<'b>> {
        let n = self.nodes.get(node)?;
        let path = sys::proc_fd_path(n.raw());
        if size == 0 {
            return Ok(Response::XattrSize(sys::listxattr(&path, &mut [])? as u32));
        }
        buf.resize(size.min(MAX_IO) as usize, 0);
        let n = sys::listxattr(&path, buf)?;
        buf.truncate(n);
        Ok(Response::Data(Cow::Borrowed(&buf[..])))
    }

    pub(super) fn setxattr(
        &self,
        node: u64,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> SysResult<Response<'static>> {
        let n = self.nodes.get(node)?;
        let path = sys::proc_fd_path(n.raw());
        sys::setxattr(&path, &sys::cstr(name)?, value, flags)?;
        Ok(Response::Ok)
    }

    pub(super) fn removexattr(&self, node: u64, name: &[u8]) -> SysResult<Response<'static>> {
        let n = self.nodes.get(node)?;
        let path = sys::proc_fd_path(n.raw());
        sys::removexattr(&path, &sys::cstr(name)?)?;
        Ok(Response::Ok)
    }
}

/// True when the inode certainly has no extended attributes. One local
/// listxattr here saves the host a round trip for each getxattr that
/// `ls -l` makes per file. Symlinks are not asked (the call would follow).
pub(super) fn has_no_xattrs(fd: RawFd, st: &libc::stat) -> bool {
    !is_symlink(st) && sys::listxattr(&sys::proc_fd_path(fd), &mut []) == Ok(0)
}
