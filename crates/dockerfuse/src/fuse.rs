//! The fuser adapter: one method per kernel operation, each a call into
//! the [`Core`] whose callback answers the kernel.
//!
//! Nothing here blocks: every reply is completed later, from the RPC
//! reader, so the session loop goes straight back to reading the next
//! request. This is the only module that knows fuser's types.
//!
//! With passthrough (the local channel, root, kernel ≥ 6.9), INIT asks
//! for FUSE_PASSTHROUGH with stack depth 2 (the backing files are on the
//! container's overlayfs, itself stacked), and opens of regular files are
//! answered with the satellite's descriptor as backing file, following the
//! rules in [`crate::passthrough`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, CopyFileRangeFlags, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, CallerGuard, Core, Errno, Lookup, SetAttr, SetTime, Transport, Ttl, Xattr};
use crate::groups::CallerGroups;
use crate::passthrough::{Backings, Mode};
use crate::waits;

type FuseRequest = fuser::Request;

/// The fuser `Filesystem` of one mount.
pub(crate) struct FuseFs<T: Transport> {
    core: Arc<Core<T>>,
    /// Callers' supplementary groups (with `--allow-other` only).
    groups: Option<CallerGroups>,
    /// Ask the kernel for passthrough at INIT.
    want_passthrough: bool,
    /// Set at INIT when the kernel agreed.
    passthrough: Option<Arc<Backings<BackingId>>>,
}

impl<T: Transport> FuseFs<T> {
    pub(crate) fn new(core: Core<T>, want_passthrough: bool) -> Self {
        let groups = core.options().per_caller.then(CallerGroups::default);
        FuseFs {
            core: Arc::new(core),
            groups,
            want_passthrough,
            passthrough: None,
        }
    }

    /// Turns passthrough on when the kernel offers it.
    fn init_passthrough(&mut self, config: &mut KernelConfig) {
        if !self.want_passthrough {
            return;
        }
        if !config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH) {
            tracing::info!("passthrough off: the kernel does not offer FUSE_PASSTHROUGH");
            return;
        }
        // The container's overlayfs is stacked already: depth 2, the most.
        if let Err(max) = config.set_max_stack_depth(2) {
            tracing::info!(max, "passthrough off: stack depth 2 refused");
            return;
        }
        if config
            .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
            .is_err()
        {
            return;
        }
        tracing::info!("passthrough on: open files are read and written by the kernel directly");
        self.passthrough = Some(Arc::default());
    }

    /// Makes the kernel request's user the caller of what this thread
    /// sends next (only used with `--allow-other`; see fs::with_caller).
    fn caller(&self, req: &FuseRequest) -> Option<CallerGuard> {
        let groups = self.groups.as_ref()?;
        Some(crate::fs::with_caller(groups.caller(
            req.pid(),
            req.uid(),
            req.gid(),
        )))
    }
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn time(sec: i64, nsec: u32) -> SystemTime {
    let nsec = Duration::from_nanos(u64::from(nsec.min(999_999_999)));
    let t = if sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(sec as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(sec.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(nsec)).unwrap_or(UNIX_EPOCH)
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// The core's attributes as fuser's.
fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: time(a.atime, a.atime_nsec),
        mtime: time(a.mtime, a.mtime_nsec),
        ctime: time(a.ctime, a.ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: kind(a.mode),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: if a.blksize == 0 { 4096 } else { a.blksize },
        flags: 0,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => SetTime::At {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                // Before the epoch: floor the seconds, keep nanos positive.
                let (mut sec, mut nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                SetTime::At { sec, nsec }
            }
        },
    })
}

fn bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}

/// Answers a getxattr/listxattr: a size probe or the data.
fn xattr_reply(reply: ReplyXattr) -> crate::fs::XattrCb {
    Box::new(move |r| match r {
        Ok(Xattr::Size(n)) => reply.size(n),
        Ok(Xattr::Data(d)) => reply.data(d),
        Err(e) => reply.error(errno(e)),
    })
}

macro_rules! empty_reply {
    ($reply:ident) => {
        Box::new(move |r: Result<(), Errno>| match r {
            Ok(()) => $reply.ok(),
            Err(e) => $reply.error(errno(e)),
        })
    };
}

macro_rules! entry_reply {
    ($self:ident, $reply:ident) => {{
        Box::new(move |r: Result<(crate::fs::Entry, Ttl), Errno>| match r {
            Ok((e, t)) => {
                $reply.entry_with_ttls(&t.attr, &t.entry, &file_attr(&e.attr), Generation(0))
            }
            Err(e) => $reply.error(errno(e)),
        })
    }};
}

macro_rules! attr_reply {
    ($self:ident, $reply:ident) => {{
        Box::new(move |r: Result<(Attr, Duration), Errno>| match r {
            Ok((a, ttl)) => $reply.attr(&ttl, &file_attr(&a)),
            Err(e) => $reply.error(errno(e)),
        })
    }};
}

impl<T: Transport> Filesystem for FuseFs<T> {
    fn init(&mut self, _req: &FuseRequest, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(dockerfuse_proto::MAX_IO);
        let _ = config.set_max_readahead(dockerfuse_proto::MAX_IO);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let mut wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_AUTO_INVAL_DATA
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_ASYNC_DIO;
        if self.core.options().writeback {
            wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if self.core.options().per_caller || root {
            // With --allow-other, writes, truncations and chowns are
            // performed as the caller, whose missing CAP_FSETID makes the
            // container's kernel clear setuid/setgid itself (without this
            // flag the kernel would send a chmod first, which only the
            // owner may make). Otherwise only root uses the mount, and a
            // write flagged to kill the bits clears them here. Either
            // way the kernel stops asking for security.capability before
            // every write(2).
            wanted |= InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        }
        let available = config.capabilities();
        let missing = wanted & !available;
        if !missing.is_empty() {
            tracing::debug!(?missing, "kernel lacks some FUSE capabilities");
        }
        let _ = config.add_capabilities(wanted & available);
        self.init_passthrough(config);
        Ok(())
    }

    fn lookup(&self, req: &FuseRequest, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _w = waits::kernel(waits::Op::Lookup);
        let _as = self.caller(req);
        self.core.lookup(
            parent.0,
            bytes(name),
            Box::new(move |r| match r {
                Ok(Lookup::Found(e, t)) => {
                    reply.entry_with_ttls(&t.attr, &t.entry, &file_attr(&e.attr), Generation(0))
                }
                // A negative entry: the kernel remembers the name is absent.
                Ok(Lookup::Absent(ttl)) => {
                    reply.entry(&ttl, &file_attr(&Attr::default()), Generation(0))
                }
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn forget(&self, _req: &FuseRequest, ino: INodeNo, nlookup: u64) {
        let _w = waits::kernel(waits::Op::Forget);
        self.core.forget(vec![(ino.0, nlookup)]);
    }

    fn getattr(&self, req: &FuseRequest, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let _w = waits::kernel(waits::Op::GetAttr);
        let _as = self.caller(req);
        self.core
            .getattr(ino.0, fh.map(|f| f.0), attr_reply!(self, reply));
    }

    fn setattr(
        &self,
        req: &FuseRequest,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _w = waits::kernel(waits::Op::SetAttr);
        let _as = self.caller(req);
        let attr = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        self.core
            .setattr(ino.0, fh.map(|f| f.0), attr, attr_reply!(self, reply));
    }

    fn readlink(&self, req: &FuseRequest, ino: INodeNo, reply: ReplyData) {
        let _w = waits::kernel(waits::Op::ReadLink);
        let _as = self.caller(req);
        self.core.readlink(
            ino.0,
            Box::new(move |r| match r {
                Ok(d) => reply.data(d),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn mknod(
        &self,
        req: &FuseRequest,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _w = waits::kernel(waits::Op::Mknod);
        let _as = self.caller(req);
        self.core.mknod(
            parent.0,
            bytes(name),
            mode,
            u64::from(rdev),
            entry_reply!(self, reply),
        );
    }

    fn mkdir(
        &self,
        req: &FuseRequest,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _w = waits::kernel(waits::Op::Mkdir);
        let _as = self.caller(req);
        self.core
            .mkdir(parent.0, bytes(name), mode, entry_reply!(self, reply));
    }

    fn unlink(&self, req: &FuseRequest, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::Unlink);
        let _as = self.caller(req);
        self.core.unlink(parent.0, bytes(name), empty_reply!(reply));
    }

    fn rmdir(&self, req: &FuseRequest, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::Rmdir);
        let _as = self.caller(req);
        self.core.rmdir(parent.0, bytes(name), empty_reply!(reply));
    }

    fn symlink(
        &self,
        req: &FuseRequest,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _w = waits::kernel(waits::Op::Symlink);
        let _as = self.caller(req);
        self.core.symlink(
            parent.0,
            bytes(link_name),
            target.as_os_str().as_bytes(),
            entry_reply!(self, reply),
        );
    }

    fn rename(
        &self,
        req: &FuseRequest,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::Rename);
        let _as = self.caller(req);
        self.core.rename(
            (parent.0, bytes(name)),
            (newparent.0, bytes(newname)),
            flags.bits(),
            empty_reply!(reply),
        );
    }

    fn link(
        &self,
        req: &FuseRequest,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _w = waits::kernel(waits::Op::Link);
        let _as = self.caller(req);
        self.core.link(
            ino.0,
            newparent.0,
            bytes(newname),
            entry_reply!(self, reply),
        );
    }

    fn open(&self, req: &FuseRequest, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _w = waits::kernel(waits::Op::Open);
        let _as = self.caller(req);
        let (pt, core, node) = (self.passthrough.clone(), self.core.clone(), ino.0);
        self.core.open(
            node,
            flags.0,
            Box::new(move |r| match r {
                Ok(o) => {
                    let fh = FileHandle(o.fh);
                    let mode = match &pt {
                        Some(pt) => pt.open(node, o.fh, o.backing, |fd| reply.open_backing(fd)),
                        None => Mode::Cached,
                    };
                    match mode {
                        Mode::Passthrough(b) => {
                            core.contents_unused(o.fh);
                            reply.opened_passthrough(fh, FopenFlags::empty(), &b)
                        }
                        // The kernel drops cached pages itself when it sees
                        // size or mtime change (FUSE_AUTO_INVAL_DATA), so
                        // keep them on open.
                        Mode::Cached => reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE),
                        Mode::Refuse => {
                            core.release(o.fh, Box::new(|_| {}));
                            reply.error(errno(Errno::EIO))
                        }
                    }
                }
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn read(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _w = waits::kernel(waits::Op::Read);
        let _as = self.caller(req);
        self.core.read(
            fh.0,
            offset,
            size,
            Box::new(move |r| match r {
                Ok(d) => reply.data(d),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn write(
        &self,
        req: &FuseRequest,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _w = waits::kernel(waits::Op::Write);
        let _as = self.caller(req);
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        if kill && !self.core.options().per_caller {
            // A writer without CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2): the
            // bits go first, then the write.
            let (core, data) = (self.core.clone(), data.to_vec());
            return self.core.drop_suidgid(
                ino.0,
                Box::new(move |r| match r {
                    Ok(()) => core.write(
                        fh.0,
                        offset,
                        &data,
                        Box::new(move |r| match r {
                            Ok(n) => reply.written(n),
                            Err(e) => reply.error(errno(e)),
                        }),
                    ),
                    Err(e) => reply.error(errno(e)),
                }),
            );
        }
        self.core.write(
            fh.0,
            offset,
            data,
            Box::new(move |r| match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn flush(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::Flush);
        let _as = self.caller(req);
        self.core.flush(fh.0, empty_reply!(reply));
    }

    fn release(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::Release);
        let _as = self.caller(req);
        if let Some(pt) = &self.passthrough {
            pt.release(fh.0);
        }
        self.core.release(fh.0, empty_reply!(reply));
    }

    fn fsync(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::Fsync);
        let _as = self.caller(req);
        self.core.fsync(fh.0, datasync, empty_reply!(reply));
    }

    fn opendir(&self, req: &FuseRequest, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _w = waits::kernel(waits::Op::OpenDir);
        let _as = self.caller(req);
        self.core.opendir(
            ino.0,
            Box::new(move |r| match r {
                // A watched directory's listing stays in the kernel's
                // readdir cache until the feed invalidates the directory.
                Ok((fh, true)) => reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                ),
                Ok((fh, false)) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn readdir(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _w = waits::kernel(waits::Op::ReadDir);
        let _as = self.caller(req);
        // fuser sizes the reply buffer from the kernel's request; ask the
        // satellite for what a 4 KiB page holds at least.
        self.core.readdir(
            fh.0,
            offset,
            4096,
            Box::new(move |r| match r {
                Ok(items) => {
                    for i in items {
                        let name = OsStr::from_bytes(&i.name);
                        if reply.add(INodeNo(i.ino), i.offset, kind(i.kind), name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn readdirplus(
        &self,
        req: &FuseRequest,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _w = waits::kernel(waits::Op::ReadDirPlus);
        let _as = self.caller(req);
        self.core.readdirplus(
            ino.0,
            fh.0,
            offset,
            4096,
            Box::new(move |r| match r {
                Ok(items) => {
                    let mut taken = 0;
                    for i in items {
                        let name = OsStr::from_bytes(&i.name);
                        let attr = file_attr(&i.attr);
                        if reply.add(
                            INodeNo(i.node),
                            i.offset,
                            name,
                            &i.ttl,
                            &attr,
                            Generation(0),
                        ) {
                            break;
                        }
                        taken += 1;
                    }
                    reply.ok();
                    taken
                }
                Err(e) => {
                    reply.error(errno(e));
                    0
                }
            }),
        );
    }

    fn releasedir(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::ReleaseDir);
        let _as = self.caller(req);
        self.core.releasedir(fh.0, empty_reply!(reply));
    }

    fn fsyncdir(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::FsyncDir);
        let _as = self.caller(req);
        self.core.fsyncdir(fh.0, datasync, empty_reply!(reply));
    }

    fn statfs(&self, req: &FuseRequest, ino: INodeNo, reply: ReplyStatfs) {
        let _w = waits::kernel(waits::Op::StatFs);
        let _as = self.caller(req);
        self.core.statfs(
            ino.0,
            Box::new(move |r| match r {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
                ),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn setxattr(
        &self,
        req: &FuseRequest,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::SetXattr);
        let _as = self.caller(req);
        self.core
            .setxattr(ino.0, bytes(name), value, flags, empty_reply!(reply));
    }

    fn getxattr(
        &self,
        req: &FuseRequest,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let _w = waits::kernel(waits::Op::GetXattr);
        let _as = self.caller(req);
        self.core
            .getxattr(ino.0, bytes(name), size, xattr_reply(reply));
    }

    fn listxattr(&self, req: &FuseRequest, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _w = waits::kernel(waits::Op::ListXattr);
        let _as = self.caller(req);
        self.core.listxattr(ino.0, size, xattr_reply(reply));
    }

    fn removexattr(&self, req: &FuseRequest, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::RemoveXattr);
        let _as = self.caller(req);
        self.core
            .removexattr(ino.0, bytes(name), empty_reply!(reply));
    }

    fn access(&self, req: &FuseRequest, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::Access);
        let _as = self.caller(req);
        self.core.access(ino.0, mask.bits(), empty_reply!(reply));
    }

    fn create(
        &self,
        req: &FuseRequest,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _w = waits::kernel(waits::Op::Create);
        let _as = self.caller(req);
        let (pt, core) = (self.passthrough.clone(), self.core.clone());
        self.core.create(
            parent.0,
            bytes(name),
            mode,
            flags,
            Box::new(move |r| match r {
                Ok((e, ttl, o)) => {
                    let ttl = ttl.min();
                    let (fh, attr) = (FileHandle(o.fh), file_attr(&e.attr));
                    let mode = match &pt {
                        Some(pt) => pt.open(e.node, o.fh, o.backing, |fd| reply.open_backing(fd)),
                        None => Mode::Cached,
                    };
                    match mode {
                        Mode::Passthrough(b) => reply.created_passthrough(
                            &ttl,
                            &attr,
                            Generation(0),
                            fh,
                            FopenFlags::empty(),
                            &b,
                        ),
                        Mode::Cached => {
                            reply.created(&ttl, &attr, Generation(0), fh, FopenFlags::empty())
                        }
                        Mode::Refuse => {
                            core.release(o.fh, Box::new(|_| {}));
                            core.forget(vec![(e.node, 1)]);
                            reply.error(errno(Errno::EIO))
                        }
                    }
                }
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn fallocate(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::Fallocate);
        let _as = self.caller(req);
        self.core
            .fallocate(fh.0, offset, length, mode, empty_reply!(reply));
    }

    fn lseek(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let _w = waits::kernel(waits::Op::Lseek);
        let _as = self.caller(req);
        self.core.lseek(
            fh.0,
            offset,
            whence,
            Box::new(move |r| match r {
                Ok(o) => reply.offset(o),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }

    fn copy_file_range(
        &self,
        req: &FuseRequest,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _w = waits::kernel(waits::Op::CopyFileRange);
        let _as = self.caller(req);
        self.core.copy_file_range(
            (fh_in.0, offset_in),
            (fh_out.0, offset_out),
            len,
            flags.bits() as u32,
            Box::new(move |r| match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_set_time() {
        for (sec, nsec) in [
            (0i64, 0u32),
            (1_600_000_000, 123_456_789),
            (-5, 250_000_000),
            (-1, 0),
        ] {
            let st = time(sec, nsec);
            assert_eq!(
                set_time(Some(TimeOrNow::SpecificTime(st))),
                Some(SetTime::At { sec, nsec })
            );
        }
    }

    #[test]
    fn hostile_times_do_not_panic() {
        let _ = time(i64::MAX, u32::MAX);
        let _ = time(i64::MIN, u32::MAX);
    }

    #[test]
    fn attrs_keep_type_and_permission_bits() {
        let a = Attr {
            ino: 9,
            mode: libc::S_IFREG | 0o4755,
            nlink: 2,
            ..Default::default()
        };
        let f = file_attr(&a);
        assert_eq!(f.kind, FileType::RegularFile);
        assert_eq!(f.perm, 0o4755);
        assert_eq!(f.ino, INodeNo(9));
        assert_eq!(f.blksize, 4096);
    }
}
