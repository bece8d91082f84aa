//! Directory streams: opendir, readdir(plus) and fsyncdir (releasedir is
//! the release of [`super::file_data`]).

use std::borrow::Cow;
use std::os::fd::{AsRawFd, RawFd};

use dockerfuse_proto::{DirEntry, Errno, Response};

use super::{reopen, Fs};
use crate::handles::{DirStream, Handle};
use crate::sys::{self, SysResult};

impl Fs {
    pub(super) fn opendir(&self, node: u64) -> SysResult<Response<'static>> {
        Ok(Response::Opened {
            fh: self.open_dir_handle(node)?,
        })
    }

    fn open_dir_handle(&self, node: u64) -> SysResult<u64> {
        let n = self.nodes.get(node)?;
        let fd = reopen(&n, libc::O_RDONLY | libc::O_DIRECTORY)?;
        Ok(self.handles.insert(Handle::Dir(DirStream {
            fd,
            node,
            lock: Default::default(),
        })))
    }

    /// Opens directory `node` and reads its first entries: one round trip
    /// where a listing took two.
    pub(super) fn open_read_dir(
        &self,
        node: u64,
        size: u32,
        plus: bool,
        buf: &mut Vec<u8>,
    ) -> SysResult<Response<'static>> {
        let fh = self.open_dir_handle(node)?;
        let read = self
            .handles
            .get(fh)
            .and_then(|h| self.read_entries(h.dir()?, 0, size as usize, plus, buf));
        match read {
            Ok((entries, end)) => Ok(Response::DirOpened { fh, entries, end }),
            Err(e) => {
                let _ = self.handles.remove(fh);
                Err(e)
            }
        }
    }

    pub(super) fn fsyncdir(&self, fh: u64, datasync: bool) -> SysResult<Response<'static>> {
        sys::fsync(self.handles.get(fh)?.dir()?.fd.as_raw_fd(), datasync)?;
        Ok(Response::Ok)
    }

    /// The entries from `offset` on that fit the kernel's `size`-byte
    /// buffer; with `plus`, each name but `.` and `..` is looked up too.
    pub(super) fn readdir(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        plus: bool,
        buf: &mut Vec<u8>,
    ) -> SysResult<Response<'static>> {
        let h = self.handles.get(fh)?;
        let (entries, end) = self.read_entries(h.dir()?, offset, size as usize, plus, buf)?;
        // Saying so spares the host a readdirplus that would bring
        // nothing (protocol 7).
        Ok(match end && plus && crate::server::host_protocol() >= 7 {
            true => Response::DirEnd(entries),
            false => Response::Dir(entries),
        })
    }

    pub(super) fn read_entries(
        &self,
        d: &DirStream,
        offset: u64,
        size: usize,
        plus: bool,
        buf: &mut Vec<u8>,
    ) -> SysResult<(Vec<DirEntry<'static>>, bool)> {
        let _serial = d.lock.lock().unwrap_or_else(|p| p.into_inner());
        let fd = d.fd.as_raw_fd();
        sys::lseek(fd, offset as i64, libc::SEEK_SET)?;
        let mut out = Vec::new();
        let mut used = 0usize;
        // Read about twice what the reply can hold: each call seeks and
        // reads afresh, and what does not fit is read again next time.
        buf.resize((size * 2).clamp(4096, 32 * 1024), 0);
        'fill: loop {
            let filled = sys::getdents64(fd, buf)?;
            if filled.is_empty() {
                // The end of the directory: everything from `offset` on
                // is in `out`.
                return Ok((out, true));
            }
            for e in sys::parse_dirents(filled) {
                let need = dirent_size(e.name.len(), plus);
                if used + need > size {
                    break 'fill;
                }
                used += need;
                out.push(self.dir_entry(d.node, fd, &e, plus, true));
            }
        }
        Ok((out, false))
    }

    /// The record of name `e` in directory `dir` (open as `fd`); with
    /// `plus`, looked up (one reference) unless it is `.` or `..`, its
    /// extended attributes probed if `probe`.
    pub(super) fn dir_entry(
        &self,
        dir: u64,
        fd: RawFd,
        e: &sys::RawDirent<'_>,
        plus: bool,
        probe: bool,
    ) -> DirEntry<'static> {
        let dot = e.name == b"." || e.name == b"..";
        let lookup = || self.lookup_probing(dir, fd, e.name, probe);
        let entry = if plus && !dot {
            match lookup() {
                Err(Errno::EACCES) => self.ident.as_self(lookup).ok(),
                r => r.ok(),
            }
        } else {
            None
        };
        DirEntry {
            name: Cow::Owned(e.name.to_vec()),
            offset: e.next_offset,
            kind: (e.dtype as u32) << 12,
            ino: e.ino,
            entry,
        }
    }
}

/// Size the kernel gives a dirent of this name in a readdir(plus) reply.
pub(super) fn dirent_size(name_len: usize, plus: bool) -> usize {
    let base = (24 + name_len + 7) & !7;
    if plus {
        base + 128
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirent_sizes_match_the_kernel_layout() {
        assert_eq!(dirent_size(1, false), 32);
        assert_eq!(dirent_size(8, false), 32);
        assert_eq!(dirent_size(9, false), 40);
        assert_eq!(dirent_size(1, true), 160);
    }
}
