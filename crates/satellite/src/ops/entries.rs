//! Names in directories: lookup, the calls that make or remove a name
//! (symlink, mknod, mkdir, unlink, rmdir, rename, link) and readlink.
//!
//! Each call that makes a name answers with the entry of what it made,
//! looked up afresh, so the kernel gets one reference on it as with a
//! lookup.

use std::borrow::Cow;
use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};

use dockerfuse_proto::{Entry, Errno, Response};

use super::attrs::{attr_of, is_symlink, key_of};
use super::xattrs::has_no_xattrs;
use super::Fs;
use crate::nodes::NodeRef;
use crate::sys::{self, SysResult};

impl Fs {
    pub(super) fn lookup(&self, parent: u64, name: &[u8]) -> SysResult<Response<'static>> {
        Ok(Response::Entry(self.entry(parent, name)?))
    }

    pub(super) fn readlink<'b>(&self, node: u64, buf: &'b mut Vec<u8>) -> SysResult<Response<'b>> {
        let n = self.nodes.get(node)?;
        sys::readlinkat(n.raw(), buf)?;
        Ok(Response::Data(Cow::Borrowed(&buf[..])))
    }

    pub(super) fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> SysResult<Response<'static>> {
        let p = self.nodes.get(parent)?;
        let own = self.watch.own_names(&[(parent, name, libc::IN_CREATE)]);
        sys::symlinkat(&sys::cstr(target)?, p.raw(), &sys::cstr(name)?)?;
        own.done();
        self.lookup(parent, name)
    }

    pub(super) fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
    ) -> SysResult<Response<'static>> {
        let p = self.nodes.get(parent)?;
        let own = self.watch.own_names(&[(parent, name, libc::IN_CREATE)]);
        sys::mknodat(p.raw(), &sys::cstr(name)?, mode, rdev)?;
        own.done();
        self.lookup(parent, name)
    }

    pub(super) fn mkdir(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
    ) -> SysResult<Response<'static>> {
        let p = self.nodes.get(parent)?;
        let own = self.watch.own_names(&[(parent, name, libc::IN_CREATE)]);
        sys::mkdirat(p.raw(), &sys::cstr(name)?, mode)?;
        own.done();
        self.lookup(parent, name)
    }

    /// mkdir as node `id`, the host's choice (protocol 8): nothing is
    /// made when it is refused.
    pub(super) fn mkdir_new(
        &self,
        (parent, name): (u64, &[u8]),
        mode: u32,
        id: u64,
        time: (i64, u32),
    ) -> SysResult<Response<'static>> {
        let (p, cname) = self.new_name(id, parent, name)?;
        let own = self.watch.own_names(&[(parent, name, libc::IN_CREATE)]);
        sys::mkdirat(p.raw(), &cname, mode)?;
        own.done();
        self.adopt_new(New {
            at: (&p, &cname),
            entry: (parent, name),
            id,
            time,
            kind: libc::S_IFDIR,
        })
    }

    /// symlink as node `id`, the host's choice (protocol 9): nothing is
    /// made when it is refused.
    pub(super) fn symlink_new(
        &self,
        (parent, name): (u64, &[u8]),
        target: &[u8],
        id: u64,
        time: (i64, u32),
    ) -> SysResult<Response<'static>> {
        let (p, cname) = self.new_name(id, parent, name)?;
        let own = self.watch.own_names(&[(parent, name, libc::IN_CREATE)]);
        sys::symlinkat(&sys::cstr(target)?, p.raw(), &cname)?;
        own.done();
        self.adopt_new(New {
            at: (&p, &cname),
            entry: (parent, name),
            id,
            time,
            kind: libc::S_IFLNK,
        })
    }

    /// Checks a name to be made as node `id`, the host's choice: the id
    /// is free and in range, the parent known, the name one component.
    fn new_name(&self, id: u64, parent: u64, name: &[u8]) -> SysResult<(NodeRef, CString)> {
        self.nodes.check_new(id)?;
        let p = self.nodes.get(parent)?;
        if name.contains(&b'/') || name.is_empty() {
            return Err(Errno::EINVAL);
        }
        Ok((p, sys::cstr(name)?))
    }

    /// Gives a directory or symlink just made the host's times and
    /// registers it as the host's id; removes it again when that fails,
    /// so that a refusal makes nothing.
    fn adopt_new(&self, n: New<'_>) -> SysResult<Response<'static>> {
        let (p, cname) = n.at;
        let dir = n.kind == libc::S_IFDIR;
        let made = (|| {
            let times = [super::file_data::timespec(n.time); 2];
            sys::utimensat(p.raw(), cname, &times, libc::AT_SYMLINK_NOFOLLOW)?;
            let open = libc::O_PATH | libc::O_NOFOLLOW | if dir { libc::O_DIRECTORY } else { 0 };
            let fd = sys::openat(p.raw(), cname, open, 0)?;
            let st = sys::stat_fd(fd.as_raw_fd())?;
            self.watch.own_change(fd.as_raw_fd());
            let no_xattrs = has_no_xattrs(fd.as_raw_fd(), &st);
            self.nodes
                .add_new(n.id, key_of(&st), fd, (!dir, dir), Some(n.entry))?;
            Ok((st, no_xattrs))
        })();
        let (mut st, no_xattrs) = match made {
            Ok(m) => m,
            Err(e) => {
                let undo = if dir { libc::AT_REMOVEDIR } else { 0 };
                let _ = sys::unlinkat(p.raw(), cname, undo);
                return Err(e);
            }
        };
        if self.note_held(n.id, n.kind, Some(n.entry)) {
            st = sys::stat_fd(self.nodes.get(n.id)?.raw())?;
        }
        Ok(Response::Entry(Entry {
            node: n.id,
            attr: attr_of(&st, n.id),
            no_xattrs,
        }))
    }

    /// unlink, or rmdir with `AT_REMOVEDIR` in `flags`.
    pub(super) fn unlink(
        &self,
        parent: u64,
        name: &[u8],
        flags: i32,
    ) -> SysResult<Response<'static>> {
        let p = self.nodes.get(parent)?;
        let own = self.watch.own_names(&[(parent, name, libc::IN_DELETE)]);
        sys::unlinkat(p.raw(), &sys::cstr(name)?, flags)?;
        own.done();
        Ok(Response::Ok)
    }

    pub(super) fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
    ) -> SysResult<Response<'static>> {
        let (p, np) = (self.nodes.get(parent)?, self.nodes.get(new_parent)?);
        let (old, new) = (sys::cstr(name)?, sys::cstr(new_name)?);
        let nofollow = libc::AT_SYMLINK_NOFOLLOW;
        let moving = sys::fstatat(p.raw(), &old, nofollow).map(|st| key_of(&st));
        let other = sys::fstatat(np.raw(), &new, nofollow).map(|st| key_of(&st));
        // Renaming a name over itself, or over another link of the same
        // file, does nothing and makes no event.
        let noop = matches!((&moving, &other), (Ok(a), Ok(b)) if a == b);
        let names = [
            (parent, name, libc::IN_MOVED_FROM),
            (new_parent, new_name, libc::IN_MOVED_TO),
        ];
        let exchanged = [
            (parent, name, libc::IN_MOVED_TO),
            (new_parent, new_name, libc::IN_MOVED_FROM),
        ];
        let own = match (noop, flags & libc::RENAME_EXCHANGE != 0) {
            (true, _) => self.watch.own_names(&[]),
            (false, false) => self.watch.own_names(&names),
            (false, true) => self.watch.own_names(&[names, exchanged].concat()),
        };
        sys::renameat2(p.raw(), &old, np.raw(), &new, flags)?;
        own.done();
        // Descriptor-less nodes follow renames made through the mount.
        if let Ok(k) = moving {
            self.nodes.moved(k, new_parent, new_name);
        }
        if let (Ok(k), true) = (other, flags & libc::RENAME_EXCHANGE != 0) {
            self.nodes.moved(k, parent, name);
        }
        Ok(Response::Ok)
    }

    /// Links through `/proc/self/fd/N`, or through `AT_EMPTY_PATH` when
    /// that fails for a reason other than EEXIST.
    pub(super) fn link(
        &self,
        node: u64,
        new_parent: u64,
        new_name: &[u8],
    ) -> SysResult<Response<'static>> {
        let (n, np) = (self.nodes.get(node)?, self.nodes.get(new_parent)?);
        let new = sys::cstr(new_name)?;
        let own = self
            .watch
            .own_names(&[(new_parent, new_name, libc::IN_CREATE)]);
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
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which a thread acting
            // as a caller lacks (ENOENT then): the first answer is the real one.
            match sys::linkat(n.raw(), sys::empty(), np.raw(), &new, libc::AT_EMPTY_PATH) {
                Err(Errno::ENOENT) => return Err(e),
                r => r?,
            }
        }
        own.done();
        self.lookup(new_parent, new_name)
    }

    /// Looks `name` up in `parent` and takes one reference on the result.
    pub(super) fn entry(&self, parent: u64, name: &[u8]) -> SysResult<Entry> {
        let p = self.nodes.get(parent)?;
        self.lookup_at(parent, p.raw(), name)
    }

    /// Looks `name` up in the directory `dir_fd` of node `dir`.
    pub(super) fn lookup_at(&self, dir: u64, dir_fd: RawFd, name: &[u8]) -> SysResult<Entry> {
        self.lookup_probing(dir, dir_fd, name, true)
    }

    /// Same; without `probe`, the "no xattrs" note is left false (the
    /// caller finds it out otherwise).
    pub(super) fn lookup_probing(
        &self,
        dir: u64,
        dir_fd: RawFd,
        name: &[u8],
        probe: bool,
    ) -> SysResult<Entry> {
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
        let no_xattrs = probe && has_no_xattrs(fd.as_raw_fd(), &st);
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let id = self
            .nodes
            .add_ref(key_of(&st), fd, is_symlink(&st), is_dir, Some((dir, name)));
        if self.note_held(id, st.st_mode & libc::S_IFMT, Some((dir, name))) {
            // Attributes from after the watch began: nothing is missed.
            st = sys::stat_fd(self.nodes.get(id)?.raw())?;
        }
        Ok(Entry {
            node: id,
            attr: attr_of(&st, id),
            no_xattrs,
        })
    }
}

/// A directory or symlink just made under the host's id, for
/// [`Fs::adopt_new`].
struct New<'a> {
    /// Its parent's descriptor and its name there.
    at: (&'a NodeRef, &'a CString),
    /// Its parent's id and its name, as the host knows them.
    entry: (u64, &'a [u8]),
    id: u64,
    time: (i64, u32),
    /// `S_IFDIR` or `S_IFLNK`.
    kind: u32,
}
