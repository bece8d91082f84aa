//! The file operations: one method per request, on node and handle ids.
//!
//! Every operation works through the `O_PATH` descriptor of a node with
//! `*at()` calls, or reopens it through `/proc/self/fd/N` when it needs a
//! real descriptor (open, chmod, truncate, xattrs). Errors are the errno of
//! the failing call, forwarded as is.

// libc's stat/statfs field types differ between x86_64 and aarch64 (and
// musl and glibc): casts that are no-ops on one target are needed on the
// other.
#![allow(clippy::unnecessary_cast)]

use std::borrow::Cow;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use dockerfuse_proto::{
    Attr, DirEntry, Entry, Errno, Request, Response, SetAttr, SetTime, StatFs, MAX_IO,
};

use crate::handles::{DirStream, Handle, Handles};
use crate::ident::Identity;
use crate::nodes::{NodeRef, Nodes};
use crate::sys::{self, SysResult};

/// The satellite's file server state.
pub struct Fs {
    pub nodes: Nodes,
    pub handles: Handles,
    pub ident: Identity,
    pub watch: Arc<crate::watch::Watch>,
}

/// Converts a stat to wire attributes, reporting `node` as the inode
/// number (container inode numbers collide across /proc, /sys, /dev...).
pub fn attr_of(st: &libc::stat, node: u64) -> Attr {
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

fn key_of(st: &libc::stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

fn is_symlink(st: &libc::stat) -> bool {
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
            tv_sec: sec as libc::time_t,
            tv_nsec: nsec.min(999_999_999) as _,
        },
    }
}

/// Flags that make no sense when reopening an existing inode.
const REOPEN_DROP: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW;

/// Size the kernel gives a dirent of this name in a readdir(plus) reply.
fn dirent_size(name_len: usize, plus: bool) -> usize {
    let base = (24 + name_len + 7) & !7;
    if plus {
        base + 128
    } else {
        base
    }
}

impl Fs {
    /// Opens the tree to serve.
    pub fn open(root: &[u8]) -> SysResult<Fs> {
        let path = sys::cstr(root)?;
        let fd = sys::openat(libc::AT_FDCWD, &path, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let st = sys::stat_fd(fd.as_raw_fd())?;
        // Nodes may hold half the descriptors; the rest are for open
        // files, directory streams and temporary reopenings.
        let budget = (sys::raise_nofile() / 2).max(64) as usize;
        Ok(Fs {
            nodes: Nodes::with_budget(fd, key_of(&st), budget),
            handles: Handles::default(),
            ident: Identity::current(),
            watch: Arc::default(),
        })
    }

    /// Runs one request. `buf` is the worker's reusable buffer; data
    /// replies borrow from it.
    pub fn handle<'b>(&self, req: Request<'_>, buf: &'b mut Vec<u8>) -> Response<'b> {
        match self.dispatch(req, buf) {
            Ok(r) => r,
            Err(e) => Response::Error(e.0),
        }
    }

    fn dispatch<'b>(&self, req: Request<'_>, buf: &'b mut Vec<u8>) -> SysResult<Response<'b>> {
        use Request as R;
        Ok(match req {
            R::Lookup { parent, name } => Response::Entry(self.lookup(parent, &name)?),
            R::Forget { nodes } => {
                for (id, n) in nodes {
                    self.forget(id, n);
                }
                Response::Ok
            }
            R::GetAttr { node, fh } => Response::Attr(self.getattr(node, fh)?),
            R::SetAttr { node, fh, attr } => {
                let a = self.setattr(node, fh, &attr)?;
                if let Ok(n) = self.nodes.get(node) {
                    self.watch.own_change(n.raw());
                }
                Response::Attr(a)
            }
            R::ReadLink { node } => {
                let n = self.nodes.get(node)?;
                sys::readlinkat(n.raw(), buf)?;
                Response::Data(Cow::Borrowed(&buf[..]))
            }
            R::Symlink {
                parent,
                name,
                target,
            } => {
                let p = self.nodes.get(parent)?;
                sys::symlinkat(&sys::cstr(&target)?, p.raw(), &sys::cstr(&name)?)?;
                Response::Entry(self.lookup(parent, &name)?)
            }
            R::Mknod {
                parent,
                name,
                mode,
                rdev,
            } => {
                let p = self.nodes.get(parent)?;
                sys::mknodat(p.raw(), &sys::cstr(&name)?, mode, rdev)?;
                Response::Entry(self.lookup(parent, &name)?)
            }
            R::Mkdir { parent, name, mode } => {
                let p = self.nodes.get(parent)?;
                sys::mkdirat(p.raw(), &sys::cstr(&name)?, mode)?;
                Response::Entry(self.lookup(parent, &name)?)
            }
            R::Unlink { parent, name } => {
                sys::unlinkat(self.nodes.get(parent)?.raw(), &sys::cstr(&name)?, 0)?;
                Response::Ok
            }
            R::Rmdir { parent, name } => {
                sys::unlinkat(
                    self.nodes.get(parent)?.raw(),
                    &sys::cstr(&name)?,
                    libc::AT_REMOVEDIR,
                )?;
                Response::Ok
            }
            R::Rename {
                parent,
                name,
                new_parent,
                new_name,
                flags,
            } => {
                let (p, np) = (self.nodes.get(parent)?, self.nodes.get(new_parent)?);
                let (old, new) = (sys::cstr(&name)?, sys::cstr(&new_name)?);
                let nofollow = libc::AT_SYMLINK_NOFOLLOW;
                let moving = sys::fstatat(p.raw(), &old, nofollow).map(|st| key_of(&st));
                let other = sys::fstatat(np.raw(), &new, nofollow).map(|st| key_of(&st));
                sys::renameat2(p.raw(), &old, np.raw(), &new, flags)?;
                // Descriptor-less nodes follow renames made through the mount.
                if let Ok(k) = moving {
                    self.nodes.moved(k, new_parent, &new_name);
                }
                if let (Ok(k), true) = (other, flags & libc::RENAME_EXCHANGE != 0) {
                    self.nodes.moved(k, parent, &name);
                }
                Response::Ok
            }
            R::Link {
                node,
                new_parent,
                new_name,
            } => {
                let (n, np) = (self.nodes.get(node)?, self.nodes.get(new_parent)?);
                let new = sys::cstr(&new_name)?;
                let via_proc = sys::linkat(
                    libc::AT_FDCWD,
                    &sys::proc_fd_path(n.raw()),
                    np.raw(),
                    &new,
                    libc::AT_SYMLINK_FOLLOW,
                );
                if let Err(e) = via_proc {
                    if e == Errno::EEXIST {
                        return Err(e);
                    }
                    sys::linkat(n.raw(), sys::empty(), np.raw(), &new, libc::AT_EMPTY_PATH)?;
                }
                Response::Entry(self.lookup(new_parent, &new_name)?)
            }
            R::Open { node, flags } => {
                let n = self.nodes.get(node)?;
                let fd = reopen(&n, flags & !REOPEN_DROP)?;
                Response::Opened {
                    fh: self.handles.insert(Handle::File(fd)),
                }
            }
            R::Create {
                parent,
                name,
                mode,
                flags,
            } => {
                let p = self.nodes.get(parent)?;
                let fd = sys::openat(
                    p.raw(),
                    &sys::cstr(&name)?,
                    (flags & !libc::O_NOCTTY) | libc::O_CREAT,
                    mode,
                )?;
                let path_fd = sys::openat(
                    libc::AT_FDCWD,
                    &sys::proc_fd_path(fd.as_raw_fd()),
                    libc::O_PATH,
                    0,
                )?;
                let st = sys::fstat(fd.as_raw_fd())?;
                let no_xattrs = has_no_xattrs(path_fd.as_raw_fd(), &st);
                let id =
                    self.nodes
                        .add_ref(key_of(&st), path_fd, false, false, Some((parent, &name)));
                // Attributes from after the watch began: nothing is missed.
                let st = match self.note_held(id, libc::S_IFREG, Some((parent, &name))) {
                    true => sys::fstat(fd.as_raw_fd())?,
                    false => st,
                };
                let fh = self.handles.insert(Handle::File(fd));
                Response::Created {
                    entry: Entry {
                        node: id,
                        attr: attr_of(&st, id),
                        no_xattrs,
                    },
                    fh,
                }
            }
            R::Read { fh, offset, size } => {
                let h = self.handles.get(fh)?;
                let fd = h.file()?;
                let want = size.min(MAX_IO) as usize;
                buf.resize(want, 0);
                let mut got = 0;
                while got < want {
                    let n = sys::pread(fd, &mut buf[got..want], offset + got as u64)?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                Response::Data(Cow::Borrowed(&buf[..got]))
            }
            R::Write { fh, offset, data } => {
                let h = self.handles.get(fh)?;
                let fd = h.file()?;
                let mut done = 0;
                while done < data.len() {
                    let n = sys::pwrite(fd, &data[done..], offset + done as u64)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                self.watch.own_change(fd);
                Response::Written(done as u32)
            }
            // FLUSH comes on every close() of every duplicate: it must not
            // close anything. Only RELEASE does.
            R::Flush { fh } => {
                self.handles.get(fh)?;
                Response::Ok
            }
            R::Release { fh } | R::ReleaseDir { fh } => {
                self.handles.remove(fh)?;
                Response::Ok
            }
            R::Fsync { fh, datasync } => {
                sys::fsync(self.handles.get(fh)?.file()?, datasync)?;
                Response::Ok
            }
            R::FsyncDir { fh, datasync } => {
                sys::fsync(self.handles.get(fh)?.dir()?.fd.as_raw_fd(), datasync)?;
                Response::Ok
            }
            R::OpenDir { node } => {
                let n = self.nodes.get(node)?;
                let fd = reopen(&n, libc::O_RDONLY | libc::O_DIRECTORY)?;
                Response::Opened {
                    fh: self.handles.insert(Handle::Dir(DirStream {
                        fd,
                        node,
                        lock: Default::default(),
                    })),
                }
            }
            R::ReadDir {
                fh,
                offset,
                size,
                plus,
            } => {
                let h = self.handles.get(fh)?;
                Response::Dir(self.readdir(h.dir()?, offset, size as usize, plus, buf)?)
            }
            R::StatFs { node } => {
                let st = sys::fstatfs(self.nodes.get(node)?.raw())?;
                Response::StatFs(StatFs {
                    blocks: st.f_blocks as u64,
                    bfree: st.f_bfree as u64,
                    bavail: st.f_bavail as u64,
                    files: st.f_files as u64,
                    ffree: st.f_ffree as u64,
                    bsize: st.f_bsize as u32,
                    namelen: st.f_namelen as u32,
                    frsize: st.f_frsize as u32,
                })
            }
            R::Access { node, mask } => {
                sys::faccessat(&sys::proc_fd_path(self.nodes.get(node)?.raw()), mask)?;
                Response::Ok
            }
            R::GetXattr { node, name, size } => {
                let n = self.nodes.get(node)?;
                let path = sys::proc_fd_path(n.raw());
                let name = sys::cstr(&name)?;
                if size == 0 {
                    Response::XattrSize(sys::getxattr(&path, &name, &mut [])? as u32)
                } else {
                    buf.resize(size.min(MAX_IO) as usize, 0);
                    let n = sys::getxattr(&path, &name, buf)?;
                    Response::Data(Cow::Borrowed(&buf[..n]))
                }
            }
            R::ListXattr { node, size } => {
                let n = self.nodes.get(node)?;
                let path = sys::proc_fd_path(n.raw());
                if size == 0 {
                    Response::XattrSize(sys::listxattr(&path, &mut [])? as u32)
                } else {
                    buf.resize(size.min(MAX_IO) as usize, 0);
                    let n = sys::listxattr(&path, buf)?;
                    Response::Data(Cow::Borrowed(&buf[..n]))
                }
            }
            R::SetXattr {
                node,
                name,
                value,
                flags,
            } => {
                let n = self.nodes.get(node)?;
                let path = sys::proc_fd_path(n.raw());
                sys::setxattr(&path, &sys::cstr(&name)?, &value, flags)?;
                Response::Ok
            }
            R::RemoveXattr { node, name } => {
                let n = self.nodes.get(node)?;
                let path = sys::proc_fd_path(n.raw());
                sys::removexattr(&path, &sys::cstr(&name)?)?;
                Response::Ok
            }
            R::Fallocate {
                fh,
                offset,
                length,
                mode,
            } => {
                let fd = self.handles.get(fh)?.file()?;
                sys::fallocate(fd, mode, offset, length)?;
                self.watch.own_change(fd);
                Response::Ok
            }
            R::Lseek { fh, offset, whence } => {
                Response::Offset(sys::lseek(self.handles.get(fh)?.file()?, offset, whence)?)
            }
            R::CopyFileRange {
                fh_in,
                offset_in,
                fh_out,
                offset_out,
                len,
                flags,
            } => {
                let (a, b) = (self.handles.get(fh_in)?, self.handles.get(fh_out)?);
                let n = sys::copy_file_range(
                    a.file()?,
                    offset_in,
                    b.file()?,
                    offset_out,
                    len.min(u32::MAX as u64),
                    flags,
                )?;
                self.watch.own_change(b.file()?);
                Response::Written(n as u32)
            }
            R::RemovePaths { paths } => {
                for p in paths {
                    if let Ok(c) = sys::cstr(&p) {
                        let _ = sys::unlinkat(libc::AT_FDCWD, &c, 0);
                    }
                }
                Response::Ok
            }
            R::As { uid, gid, req } => {
                if matches!(*req, R::As { .. } | R::Forget { .. }) {
                    return Err(Errno::EINVAL);
                }
                let _as = self.ident.switch(uid, gid)?;
                return self.dispatch(*req, buf);
            }
            R::Watch => {
                self.start_watch()?;
                Response::Ok
            }
            R::Hello(_) | R::Shutdown => return Err(Errno::EINVAL),
        })
    }

    /// Looks `name` up in `parent` and takes one reference on the result.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> SysResult<Entry> {
        let p = self.nodes.get(parent)?;
        self.lookup_at(parent, p.raw(), name)
    }

    /// Looks `name` up in the directory `dir_fd` of node `dir`.
    fn lookup_at(&self, dir: u64, dir_fd: RawFd, name: &[u8]) -> SysResult<Entry> {
        if name.contains(&b'/') || name.is_empty() {
            return Err(Errno::EINVAL);
        }
        let fd = sys::openat(
            dir_fd,
            &sys::cstr(name)?,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )?;
        let mut st = sys::stat_fd(fd.as_raw_fd())?;
        let no_xattrs = has_no_xattrs(fd.as_raw_fd(), &st);
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let id = self
            .nodes
            .add_ref(key_of(&st), fd, is_symlink(&st), is_dir, Some((dir, name)));
        if self.note_held(id, st.st_mode as u32 & libc::S_IFMT, Some((dir, name))) {
            // Attributes from after the watch began: nothing is missed.
            st = sys::stat_fd(self.nodes.get(id)?.raw())?;
        }
        Ok(Entry {
            node: id,
            attr: attr_of(&st, id),
            no_xattrs,
        })
    }

    fn getattr(&self, node: u64, fh: Option<u64>) -> SysResult<Attr> {
        if let Some(fh) = fh {
            if let Ok(h) = self.handles.get(fh) {
                if let Ok(fd) = h.file() {
                    return Ok(attr_of(&sys::fstat(fd)?, node));
                }
            }
        }
        let n = self.nodes.get(node)?;
        Ok(attr_of(&sys::stat_fd(n.raw())?, node))
    }

    fn setattr(&self, node: u64, fh: Option<u64>, a: &SetAttr) -> SysResult<Attr> {
        let n = self.nodes.get(node)?;
        let handle = fh.and_then(|fh| self.handles.get(fh).ok());
        let file_fd = handle.as_ref().and_then(|h| h.file().ok());
        let proc_path = sys::proc_fd_path(n.raw());
        if let Some(mode) = a.mode {
            match file_fd {
                Some(fd) => sys::fchmod(fd, mode & 0o7777)?,
                None if n.is_symlink => return Err(Errno::EOPNOTSUPP),
                None => sys::fchmodat(&proc_path, mode & 0o7777)?,
            }
        }
        if a.uid.is_some() || a.gid.is_some() {
            sys::fchown_path_fd(
                n.raw(),
                a.uid.unwrap_or(u32::MAX),
                a.gid.unwrap_or(u32::MAX),
            )?;
        }
        if let Some(size) = a.size {
            match file_fd {
                Some(fd) => sys::ftruncate(fd, size)?,
                None => sys::truncate(&proc_path, size)?,
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let times = [timespec(a.atime), timespec(a.mtime)];
            match file_fd {
                Some(fd) => sys::futimens(fd, &times)?,
                None => match sys::utimensat(
                    n.raw(),
                    sys::empty(),
                    &times,
                    libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(()) => {}
                    Err(Errno::EINVAL) | Err(Errno::ENOENT) if !n.is_symlink => {
                        sys::utimensat(libc::AT_FDCWD, &proc_path, &times, 0)?
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        self.getattr(node, fh)
    }

    fn readdir(
        &self,
        d: &DirStream,
        offset: u64,
        size: usize,
        plus: bool,
        buf: &mut Vec<u8>,
    ) -> SysResult<Vec<DirEntry<'static>>> {
        let _serial = d.lock.lock().unwrap_or_else(|p| p.into_inner());
        let fd = d.fd.as_raw_fd();
        sys::lseek(fd, offset as i64, libc::SEEK_SET)?;
        let mut out = Vec::new();
        let mut used = 0usize;
        // Read about twice what the reply can hold: each call seeks and
        // reads afresh, and what does not fit is read again next time.
        buf.resize((size * 2).clamp(4096, 32 * 1024), 0);
        'fill: loop {
            let n = sys::getdents64(fd, buf)?;
            if n == 0 {
                break;
            }
            for e in sys::parse_dirents(&buf[..n]) {
                let need = dirent_size(e.name.len(), plus);
                if used + need > size {
                    break 'fill;
                }
                used += need;
                let dot = e.name == b"." || e.name == b"..";
                let entry = if plus && !dot {
                    self.lookup_at(d.node, fd, e.name).ok()
                } else {
                    None
                };
                out.push(DirEntry {
                    name: Cow::Owned(e.name.to_vec()),
                    offset: e.next_offset,
                    kind: (e.dtype as u32) << 12,
                    ino: e.ino,
                    entry,
                });
            }
        }
        Ok(out)
    }
}

/// True when the inode certainly has no extended attributes. One local
/// listxattr here saves the host a round trip for each getxattr that
/// `ls -l` makes per file. Symlinks are not asked (the call would follow).
fn has_no_xattrs(fd: RawFd, st: &libc::stat) -> bool {
    !is_symlink(st) && sys::listxattr(&sys::proc_fd_path(fd), &mut []) == Ok(0)
}

/// A real descriptor for the inode behind an O_PATH one.
fn reopen(n: &NodeRef, flags: i32) -> SysResult<OwnedFd> {
    sys::openat(libc::AT_FDCWD, &sys::proc_fd_path(n.raw()), flags, 0)
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
