//! The file server: its state, and the dispatcher that hands each request
//! to the method of the same name.
//!
//! The methods live by concern in the submodules: [`entries`] (names in
//! directories), [`attrs`] (attributes, access checks and filesystem
//! statistics), [`file_data`] (open files), [`dirs`] (directory streams)
//! [`xattrs`] (extended attributes) and [`stream`] (subtrees in one
//! reply). Every operation works through
//! the `O_PATH` descriptor of a node with `*at()` calls, or reopens it
//! through `/proc/self/fd/N` when it needs a real descriptor (open,
//! chmod, truncate, xattrs). Errors are the errno of the failing call,
//! forwarded as is.

mod attrs;
mod dirs;
mod entries;
mod file_data;
mod stream;
mod xattrs;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dockerfuse_proto::{Errno, OpenFlags, Request, Response};

use crate::handles::Handles;
use crate::ident::Identity;
use crate::nodes::{NodeRef, Nodes};
use crate::sys::{self, SysResult};

/// The satellite's file server state.
pub(crate) struct Fs {
    pub(crate) nodes: Nodes,
    pub(crate) handles: Handles,
    pub(crate) ident: Identity,
    /// The change feed: inotify on what the kernel holds.
    pub(crate) watch: Arc<crate::watch::Watch>,
}

impl Fs {
    /// Opens the tree to serve.
    pub(crate) fn open(root: &[u8]) -> SysResult<Fs> {
        let path = sys::cstr(root)?;
        let fd = sys::openat(libc::AT_FDCWD, &path, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let st = sys::stat_fd(fd.as_raw_fd())?;
        // Nodes may hold half the descriptors; the rest are for open
        // files, directory streams and temporary reopenings.
        let budget = (sys::raise_nofile() / 2).max(64) as usize;
        Ok(Fs {
            nodes: Nodes::with_budget(fd, attrs::key_of(&st), budget),
            handles: Handles::default(),
            ident: Identity::current(),
            watch: Arc::default(),
        })
    }

    /// Drops `count` lookups of each `(node, count)`.
    pub(crate) fn forget(&self, nodes: &[(u64, u64)]) {
        for &(id, n) in nodes {
            // The node's watch goes with its last lookup.
            if self.nodes.forget(id, n) {
                self.watch.dropped(id);
            }
        }
    }

    /// Closes each handle of `fhs` that is open (a batch of releases has
    /// no reply, so nothing to say of the others).
    pub(crate) fn release_many(&self, fhs: &[u64]) {
        for &fh in fhs {
            let _ = self.handles.remove(fh);
        }
    }

    /// Whether `req` is quick: it waits on nothing outside this process
    /// but the local filesystem's metadata and page cache (the metadata of
    /// known nodes, directory pages, small I/O on open regular files),
    /// so the channel's reader may run it itself, with no hand-off, while
    /// the next request waits in the socket. Opens of anything but a
    /// regular file (a FIFO's waits for a writer), other I/O, syncs,
    /// subtrees and changes are not: they go to another worker.
    pub(crate) fn is_quick(&self, req: &Request<'_>) -> bool {
        use Request as R;
        match req {
            R::Lookup { .. }
            | R::GetAttr { .. }
            | R::ReadLink { .. }
            | R::Access { .. }
            | R::GetXattr { .. }
            | R::ListXattr { .. }
            | R::StatFs { .. }
            | R::OpenDir { .. }
            | R::Release { .. }
            | R::ReleaseDir { .. }
            | R::ReleaseMany { .. }
            | R::Forget { .. } => true,
            R::ReadDir { size, .. } | R::OpenReadDir { size, .. } => *size <= QUICK_IO,
            R::Read { fh, size, .. } => *size <= QUICK_IO && self.regular_handle(*fh),
            R::Write { fh, data, .. } => {
                data.len() <= QUICK_IO as usize && self.regular_handle(*fh)
            }
            R::Lseek { fh, .. } => self.regular_handle(*fh),
            R::Open { node, .. } | R::OpenSmall { node, .. } => self.regular_node(*node),
            R::As { req, .. } => self.is_quick(req),
            _ => false,
        }
    }

    /// The open handle `fh` is a regular file.
    fn regular_handle(&self, fh: u64) -> bool {
        self.handles
            .get(fh)
            .is_ok_and(|h| h.file().is_ok_and(is_regular))
    }

    /// The node `node` is a regular file.
    fn regular_node(&self, node: u64) -> bool {
        self.nodes.get(node).is_ok_and(|n| is_regular(n.raw()))
    }

    /// Runs one request. `buf` is the worker's reusable buffer; data
    /// replies borrow from it.
    pub(crate) fn handle<'b>(&self, req: Request<'_>, buf: &'b mut Vec<u8>) -> Response<'b> {
        match self.dispatch(req, buf) {
            Ok(r) => r,
            Err(e) => Response::Error(e.0),
        }
    }

    /// Hands a request to its method. Forget and ReleaseMany never get
    /// here: the worker runs them, as they have no reply. (A table, one request a line, kept
    /// from rustfmt's one-field-a-line layout of long patterns.)
    #[rustfmt::skip]
    fn dispatch<'b>(&self, req: Request<'_>, buf: &'b mut Vec<u8>) -> SysResult<Response<'b>> {
        use Request as R;
        match req {
            R::Lookup { parent, name } => self.lookup(parent, &name),
            R::GetAttr { node, fh } => self.getattr(node, fh),
            R::SetAttr { node, fh, attr } => self.setattr(node, fh, &attr),
            R::ReadLink { node } => self.readlink(node, buf),
            R::Symlink { parent, name, target } => self.symlink(parent, &name, &target),
            R::Mknod { parent, name, mode, rdev } => self.mknod(parent, &name, mode, rdev),
            R::Mkdir { parent, name, mode } => self.mkdir(parent, &name, mode),
            R::Unlink { parent, name } => self.unlink(parent, &name, 0),
            R::Rmdir { parent, name } => self.unlink(parent, &name, libc::AT_REMOVEDIR),
            R::Rename { parent, name, new_parent, new_name, flags } => {
                self.rename(parent, &name, new_parent, &new_name, flags)
            }
            R::Link { node, new_parent, new_name } => self.link(node, new_parent, &new_name),
            R::Open { node, flags } => self.open_file(node, native_flags(flags)),
            R::OpenSmall { node, flags, max } => self.open_small(node, native_flags(flags), max, buf),
            R::Create { parent, name, mode, flags } => self.create(parent, &name, mode, native_flags(flags)),
            R::CreateNew { parent, name, mode, flags, node, fh, time } => {
                self.create_new((parent, &name), mode, native_flags(flags), (node, fh), time)
            }
            R::MkdirNew { parent, name, mode, node, time } => {
                self.mkdir_new((parent, &name), mode, node, time)
            }
            R::SymlinkNew { parent, name, target, node, time } => {
                self.symlink_new((parent, &name), &target, node, time)
            }
            R::Read { fh, offset, size } => self.read(fh, offset, size, buf),
            R::Write { fh, offset, data } => self.write(fh, offset, &data),
            R::Flush { fh } => self.flush(fh),
            R::Release { fh } | R::ReleaseDir { fh } => self.release(fh),
            R::Fsync { fh, datasync } => self.fsync(fh, datasync),
            R::FsyncDir { fh, datasync } => self.fsyncdir(fh, datasync),
            R::OpenDir { node } => self.opendir(node),
            R::OpenReadDir { node, size, plus } => self.open_read_dir(node, size, plus, buf),
            R::ReadDir { fh, offset, size, plus } => self.readdir(fh, offset, size, plus, buf),
            R::StatFs { node } => self.statfs(node),
            R::Access { node, mask } => self.access(node, mask),
            R::GetXattr { node, name, size } => self.getxattr(node, &name, size, buf),
            R::ListXattr { node, size } => self.listxattr(node, size, buf),
            R::SetXattr { node, name, value, flags } => self.setxattr(node, &name, &value, flags),
            R::RemoveXattr { node, name } => self.removexattr(node, &name),
            R::Fallocate { fh, offset, length, mode } => self.fallocate(fh, offset, length, mode),
            R::Lseek { fh, offset, whence } => self.lseek(fh, offset, whence),
            R::CopyFileRange { fh_in, offset_in, fh_out, offset_out, len, flags } => {
                self.copy_file_range((fh_in, offset_in), (fh_out, offset_out), len, flags)
            }
            R::RemovePaths { paths } => Ok(remove_paths(&paths)),
            R::As { uid, gid, groups, req } => self.as_user((uid, gid, &groups), *req, buf),
            R::Hello(_) | R::Shutdown | R::Forget { .. } | R::ReleaseMany { .. } => {
                Err(Errno::EINVAL)
            }
            R::OpenChannel | R::UseChannel { .. } => Err(Errno::EINVAL),
            R::Watch => self.start_watch().map(|()| Response::Ok),
            R::Stream { node, budget } => self.stream(node, budget, buf),
        }
    }

    /// Runs `req` as host user `uid`/`gid` with supplementary `groups`;
    /// never nested, never a forget.
    fn as_user<'b>(
        &self,
        (uid, gid, groups): (u32, u32, &[u32]),
        req: Request<'_>,
        buf: &'b mut Vec<u8>,
    ) -> SysResult<Response<'b>> {
        if matches!(req, Request::As { .. } | Request::Forget { .. }) {
            return Err(Errno::EINVAL);
        }
        let _as = self.ident.switch(uid, gid, groups)?;
        self.dispatch(req, buf)
    }
}

/// Most bytes of I/O a quick request moves (see [`Fs::is_quick`]).
const QUICK_IO: u32 = 128 * 1024;

/// `fd` (`O_PATH` or not) is a regular file's.
fn is_regular(fd: std::os::fd::RawFd) -> bool {
    sys::stat_fd(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// Removes files by absolute path (left-overs of failed uploads), quietly:
/// each may well be gone already.
fn remove_paths(paths: &[std::borrow::Cow<'_, [u8]>]) -> Response<'static> {
    for p in paths {
        if let Ok(c) = sys::cstr(p) {
            let _ = sys::unlinkat(libc::AT_FDCWD, &c, 0);
        }
    }
    Response::Ok
}

/// The host spoke protocol 6 or later (the default): open flags come in
/// the protocol's numbering. Before, they came in this kernel's.
static PORTABLE_FLAGS: AtomicBool = AtomicBool::new(true);

/// Notes the protocol version the host's hello named.
pub(crate) fn set_host_protocol(protocol: u32) {
    PORTABLE_FLAGS.store(protocol >= 6, Ordering::Relaxed);
}

/// Open flags of a request in this kernel's numbers.
pub(crate) fn native_flags(flags: OpenFlags) -> i32 {
    if PORTABLE_FLAGS.load(Ordering::Relaxed) {
        flags.to_native()
    } else {
        flags.0 as i32
    }
}

/// A real descriptor for the inode behind an O_PATH one.
fn reopen(n: &NodeRef, flags: i32) -> SysResult<OwnedFd> {
    sys::openat(libc::AT_FDCWD, &sys::proc_fd_path(n.raw()), flags, 0)
}
