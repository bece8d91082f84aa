//! The fuser adapter: one method per kernel operation, each a call into
//! the [`Core`] whose callback answers the kernel.
//!
//! Nothing here blocks: every reply is completed later, from the RPC
//! reader, so the session loop goes straight back to reading the next
//! request. This is the only module that knows fuser's types.
//!
//! Every outcome reaches the kernel through one helper, [`answer`], over
//! the [`Answer`] each kind of reply implements (open and create also
//! register backing files, [`OpenReply`]); the policies (caller, KILLPRIV,
//! passthrough) are the core's.
//!
//! With passthrough (the local channel, root, kernel ≥ 6.9), INIT asks
//! for FUSE_PASSTHROUGH with stack depth 2 (the backing files are on the
//! container's overlayfs, itself stacked); the core then decides which
//! opens the kernel serves from the satellite's descriptor, following the
//! rules in [`crate::kernel::passthrough`].

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

use crate::fs::{
    Attr, Caller, Cb, Core, DirItem, Entry, Failure, Fh, Lookup, NodeId, OpenReply, Opened,
    SetAttr, SetTime, StatFs, Transport, Ttl, Who, Xattr,
};
use crate::kernel::groups::CallerGroups;
use crate::mount::waits;

type FuseRequest = fuser::Request;

/// The fuser `Filesystem` of one mount.
pub(crate) struct FuseFs<T: Transport> {
    core: Arc<Core<T, BackingId>>,
    /// Callers' supplementary groups (with `--allow-other` only).
    groups: Option<CallerGroups>,
    /// The groups of callers otherwise (none are read).
    no_groups: Arc<[u32]>,
    /// Ask the kernel for passthrough at INIT.
    want_passthrough: bool,
}

impl<T: Transport> FuseFs<T> {
    pub(crate) fn new(core: Core<T, BackingId>, want_passthrough: bool) -> Self {
        let groups = core.options().per_caller.then(CallerGroups::default);
        FuseFs {
            core: Arc::new(core),
            groups,
            no_groups: Arc::from([]),
            want_passthrough,
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
        self.core.enable_passthrough();
    }

    /// The caller of a kernel request, with its supplementary groups when
    /// the mount performs requests per caller (`--allow-other`). With
    /// `--idmap` the caller who is us acts as the satellite's user.
    fn who(&self, req: &FuseRequest) -> Who {
        let pid = req.pid();
        let (uid, gid) = match crate::mount::idmap::swap() {
            Some(s) => {
                let (u, g) = s.stored(Some(req.uid()), Some(req.gid()));
                (u.unwrap_or(req.uid()), g.unwrap_or(req.gid()))
            }
            None => (req.uid(), req.gid()),
        };
        Who::Caller(match &self.groups {
            Some(groups) => groups.caller(pid, uid, gid),
            None => Caller {
                uid,
                gid,
                groups: self.no_groups.clone(),
                pid,
            },
        })
    }
}

/// The kernel's errno for a failed request; logs the failure with its
/// cause (once per request: every answer goes through here) in the
/// request's span, which names the request's id, operation and node.
pub(crate) fn errno(f: Failure) -> fuser::Errno {
    crate::fs::failure::log(f);
    fuser::Errno::from_i32(f.errno.0)
}

/// The span of one kernel request: its id, operation and node
/// ([`crate::fs::failure`] logs a failure in it).
fn request_span(req: &FuseRequest, op: &'static str, node: INodeNo) -> tracing::span::EnteredSpan {
    let id = req.unique().0;
    tracing::debug_span!("request", id, op, node = node.0).entered()
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
    let (uid, gid) = match crate::mount::idmap::swap() {
        Some(s) => s.shown(a.uid, a.gid),
        None => (a.uid, a.gid),
    };
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
        uid,
        gid,
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

/// A kernel reply that can carry the outcome `T` of a core operation.
trait Answer<T>: Send + 'static {
    fn ok(self, v: T);
    fn fail(self, e: fuser::Errno);
}

/// The core callback that answers `reply` with the operation's outcome.
/// A failure is logged in the request's span, whichever thread answers
/// and whatever span it runs in (a reply may wait behind other writes).
fn answer<T: 'static, R: Answer<T>>(reply: R) -> Cb<T> {
    let span = tracing::Span::current();
    Box::new(move |r| match r {
        Ok(v) => reply.ok(v),
        Err(e) => reply.fail(span.in_scope(|| errno(e))),
    })
}

/// [`answer`] for outcomes that borrow the receive buffer (the core's
/// callback types name their lifetime, one type each).
fn answer_data(reply: ReplyData) -> crate::fs::BytesCb {
    let span = tracing::Span::current();
    Box::new(move |r| match r {
        Ok(v) => Answer::ok(reply, v),
        Err(e) => Answer::fail(reply, span.in_scope(|| errno(e))),
    })
}

fn answer_xattr(reply: ReplyXattr) -> crate::fs::XattrCb {
    let span = tracing::Span::current();
    Box::new(move |r| match r {
        Ok(v) => Answer::ok(reply, v),
        Err(e) => Answer::fail(reply, span.in_scope(|| errno(e))),
    })
}

fn answer_dir(reply: ReplyDirectory) -> crate::fs::DirCb {
    let span = tracing::Span::current();
    Box::new(move |r| match r {
        Ok(v) => Answer::ok(reply, v),
        Err(e) => Answer::fail(reply, span.in_scope(|| errno(e))),
    })
}

impl Answer<()> for ReplyEmpty {
    fn ok(self, (): ()) {
        ReplyEmpty::ok(self)
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

impl Answer<(Entry, Ttl)> for ReplyEntry {
    fn ok(self, (e, t): (Entry, Ttl)) {
        self.entry_with_ttls(&t.attr, &t.entry, &file_attr(&e.attr), Generation(0))
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

impl Answer<Lookup> for ReplyEntry {
    fn ok(self, l: Lookup) {
        match l {
            Lookup::Found(e, t) => Answer::ok(self, (e, t)),
            // A negative entry: the kernel remembers the name is absent.
            Lookup::Absent(ttl) => self.entry(&ttl, &file_attr(&Attr::default()), Generation(0)),
        }
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

impl Answer<(Attr, Duration)> for ReplyAttr {
    fn ok(self, (a, ttl): (Attr, Duration)) {
        self.attr(&ttl, &file_attr(&a))
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

impl<'a> Answer<&'a [u8]> for ReplyData {
    fn ok(self, d: &'a [u8]) {
        self.data(d)
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

impl Answer<u32> for ReplyWrite {
    fn ok(self, n: u32) {
        self.written(n)
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

impl Answer<i64> for ReplyLseek {
    fn ok(self, o: i64) {
        self.offset(o)
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

impl Answer<StatFs> for ReplyStatfs {
    fn ok(self, s: StatFs) {
        self.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        )
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

/// getxattr/listxattr: a size probe or the data.
impl<'a> Answer<Xattr<'a>> for ReplyXattr {
    fn ok(self, x: Xattr<'a>) {
        match x {
            Xattr::Size(n) => self.size(n),
            Xattr::Data(d) => self.data(d),
        }
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

/// opendir: a watched directory's listing stays in the kernel's readdir
/// cache until the feed invalidates the directory.
impl Answer<(Fh, bool)> for ReplyOpen {
    fn ok(self, (fh, cached): (Fh, bool)) {
        let flags = match cached {
            true => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            false => FopenFlags::empty(),
        };
        self.opened(FileHandle(fh.0), flags)
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

/// A plain readdir: as many items as the kernel's buffer holds.
impl<'a> Answer<Vec<DirItem<'a>>> for ReplyDirectory {
    fn ok(mut self, items: Vec<DirItem<'a>>) {
        for i in items {
            let name = OsStr::from_bytes(&i.name);
            if self.add(INodeNo(i.ino), i.offset, kind(i.kind), name) {
                break;
            }
        }
        ReplyDirectory::ok(self)
    }
    fn fail(self, e: fuser::Errno) {
        self.error(e)
    }
}

/// The reply to an open, and whether the file was opened read-only.
struct FileOpen {
    reply: ReplyOpen,
    read_only: bool,
}

/// open: served by the kernel from the backing file, or through us,
/// keeping the cached pages (the kernel drops them itself when it sees
/// size or mtime change, FUSE_AUTO_INVAL_DATA). A read-only handle has
/// no writes whose errors its close(2) could report: the kernel sends no
/// FLUSH for it (FOPEN_NOFLUSH; locks are the kernel's own).
impl OpenReply<BackingId, Opened<BackingId>> for FileOpen {
    fn register(&self, fd: &std::os::fd::OwnedFd) -> std::io::Result<BackingId> {
        self.reply.open_backing(fd)
    }
    fn answer(self, r: Result<Opened<BackingId>, Failure>) {
        let noflush = match self.read_only {
            true => FopenFlags::FOPEN_NOFLUSH,
            false => FopenFlags::empty(),
        };
        match r {
            Ok(Opened {
                fh,
                passthrough: Some(b),
            }) => self.reply.opened_passthrough(FileHandle(fh.0), noflush, &b),
            Ok(Opened { fh, .. }) => self
                .reply
                .opened(FileHandle(fh.0), FopenFlags::FOPEN_KEEP_CACHE | noflush),
            Err(e) => self.reply.error(errno(e)),
        }
    }
}

impl OpenReply<BackingId, (Entry, Ttl, Opened<BackingId>)> for ReplyCreate {
    fn register(&self, fd: &std::os::fd::OwnedFd) -> std::io::Result<BackingId> {
        self.open_backing(fd)
    }
    fn answer(self, r: Result<(Entry, Ttl, Opened<BackingId>), Failure>) {
        let (e, ttl, o) = match r {
            Ok(v) => v,
            Err(e) => return self.error(errno(e)),
        };
        let (ttl, attr, fh) = (ttl.min(), file_attr(&e.attr), FileHandle(o.fh.0));
        match o.passthrough {
            Some(b) => {
                self.created_passthrough(&ttl, &attr, Generation(0), fh, FopenFlags::empty(), &b)
            }
            None => self.created(&ttl, &attr, Generation(0), fh, FopenFlags::empty()),
        }
    }
}

impl<T: Transport> Filesystem for FuseFs<T> {
    /// The session ends (unmounted): what is still behind (with
    /// `--close-behind`, closed files' writes and creates) goes to the
    /// container before the mount's process does.
    fn destroy(&mut self) {
        self.core.drain(Duration::from_secs(30));
    }

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
        if self.core.options().kernel_acls {
            // The kernel keeps each inode's ACLs and answers the
            // `system.posix_acl_*` probes (`ls -l` makes one per file)
            // itself; it also checks permissions (default_permissions).
            wanted |= InitFlags::FUSE_POSIX_ACL;
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
        let _span = request_span(req, "lookup", parent);
        let who = self.who(req);
        self.core
            .lookup(&who, NodeId(parent.0), bytes(name), answer(reply));
    }

    fn forget(&self, _req: &FuseRequest, ino: INodeNo, nlookup: u64) {
        let _w = waits::kernel(waits::Op::Forget);
        self.core.forget(vec![(NodeId(ino.0), nlookup)]);
    }

    fn getattr(&self, req: &FuseRequest, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let _w = waits::kernel(waits::Op::GetAttr);
        let _span = request_span(req, "getattr", ino);
        let who = self.who(req);
        self.core
            .getattr(&who, NodeId(ino.0), fh.map(|f| Fh(f.0)), answer(reply));
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
        let _span = request_span(req, "setattr", ino);
        let who = self.who(req);
        let (uid, gid) = match crate::mount::idmap::swap() {
            Some(s) => s.stored(uid, gid),
            None => (uid, gid),
        };
        let attr = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        self.core.setattr(
            &who,
            NodeId(ino.0),
            fh.map(|f| Fh(f.0)),
            attr,
            answer(reply),
        );
    }

    fn readlink(&self, req: &FuseRequest, ino: INodeNo, reply: ReplyData) {
        let _w = waits::kernel(waits::Op::ReadLink);
        let _span = request_span(req, "readlink", ino);
        let who = self.who(req);
        self.core.readlink(&who, NodeId(ino.0), answer_data(reply));
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
        let _span = request_span(req, "mknod", parent);
        let who = self.who(req);
        self.core.mknod(
            &who,
            NodeId(parent.0),
            bytes(name),
            mode,
            u64::from(rdev),
            answer(reply),
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
        let _span = request_span(req, "mkdir", parent);
        let who = self.who(req);
        self.core
            .mkdir(&who, NodeId(parent.0), bytes(name), mode, answer(reply));
    }

    fn unlink(&self, req: &FuseRequest, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::Unlink);
        let _span = request_span(req, "unlink", parent);
        let who = self.who(req);
        self.core
            .unlink(&who, NodeId(parent.0), bytes(name), answer(reply));
    }

    fn rmdir(&self, req: &FuseRequest, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::Rmdir);
        let _span = request_span(req, "rmdir", parent);
        let who = self.who(req);
        self.core
            .rmdir(&who, NodeId(parent.0), bytes(name), answer(reply));
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
        let _span = request_span(req, "symlink", parent);
        let who = self.who(req);
        self.core.symlink(
            &who,
            NodeId(parent.0),
            bytes(link_name),
            target.as_os_str().as_bytes(),
            answer(reply),
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
        let _span = request_span(req, "rename", parent);
        let who = self.who(req);
        self.core.rename(
            &who,
            (NodeId(parent.0), bytes(name)),
            (NodeId(newparent.0), bytes(newname)),
            flags.bits(),
            answer(reply),
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
        let _span = request_span(req, "link", ino);
        let who = self.who(req);
        self.core.link(
            &who,
            NodeId(ino.0),
            NodeId(newparent.0),
            bytes(newname),
            answer(reply),
        );
    }

    fn open(&self, req: &FuseRequest, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _w = waits::kernel(waits::Op::Open);
        let _span = request_span(req, "open", ino);
        let who = self.who(req);
        let reply = FileOpen {
            reply,
            read_only: flags.0 & libc::O_ACCMODE == libc::O_RDONLY,
        };
        self.core.open(&who, NodeId(ino.0), flags.0, reply);
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
        let _span = request_span(req, "read", _ino);
        let who = self.who(req);
        self.core
            .read(&who, Fh(fh.0), offset, size, answer_data(reply));
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
        let _span = request_span(req, "write", ino);
        let who = self.who(req);
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        self.core.write(
            &who,
            NodeId(ino.0),
            Fh(fh.0),
            offset,
            data,
            kill,
            answer(reply),
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
        let _span = request_span(req, "flush", _ino);
        self.core.flush(Fh(fh.0), answer(reply));
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
        let _span = request_span(req, "release", _ino);
        self.core.release(Fh(fh.0), answer(reply));
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
        let _span = request_span(req, "fsync", _ino);
        let who = self.who(req);
        self.core.fsync(&who, Fh(fh.0), datasync, answer(reply));
    }

    fn opendir(&self, req: &FuseRequest, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _w = waits::kernel(waits::Op::OpenDir);
        let _span = request_span(req, "opendir", ino);
        let who = self.who(req);
        self.core.opendir(&who, NodeId(ino.0), answer(reply));
    }

    fn readdir(
        &self,
        req: &FuseRequest,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let _w = waits::kernel(waits::Op::ReadDir);
        let _span = request_span(req, "readdir", _ino);
        let who = self.who(req);
        // fuser sizes the reply buffer from the kernel's request; ask the
        // satellite for what a 4 KiB page holds at least.
        self.core
            .readdir(&who, Fh(fh.0), offset, 4096, answer_dir(reply));
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
        let _span = request_span(req, "readdirplus", ino);
        let who = self.who(req);
        self.core.readdirplus(
            &who,
            NodeId(ino.0),
            Fh(fh.0),
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
        let _span = request_span(req, "releasedir", _ino);
        self.core.releasedir(Fh(fh.0), answer(reply));
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
        let _span = request_span(req, "fsyncdir", _ino);
        let who = self.who(req);
        self.core
            .fsyncdir(&who, NodeId(_ino.0), Fh(fh.0), datasync, answer(reply));
    }

    fn statfs(&self, req: &FuseRequest, ino: INodeNo, reply: ReplyStatfs) {
        let _w = waits::kernel(waits::Op::StatFs);
        let _span = request_span(req, "statfs", ino);
        let who = self.who(req);
        self.core.statfs(&who, NodeId(ino.0), answer(reply));
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
        let _span = request_span(req, "setxattr", ino);
        let who = self.who(req);
        self.core.setxattr(
            &who,
            NodeId(ino.0),
            bytes(name),
            value,
            flags,
            answer(reply),
        );
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
        let _span = request_span(req, "getxattr", ino);
        let who = self.who(req);
        self.core
            .getxattr(&who, NodeId(ino.0), bytes(name), size, answer_xattr(reply));
    }

    fn listxattr(&self, req: &FuseRequest, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _w = waits::kernel(waits::Op::ListXattr);
        let _span = request_span(req, "listxattr", ino);
        let who = self.who(req);
        self.core
            .listxattr(&who, NodeId(ino.0), size, answer_xattr(reply));
    }

    fn removexattr(&self, req: &FuseRequest, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::RemoveXattr);
        let _span = request_span(req, "removexattr", ino);
        let who = self.who(req);
        self.core
            .removexattr(&who, NodeId(ino.0), bytes(name), answer(reply));
    }

    fn access(&self, req: &FuseRequest, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let _w = waits::kernel(waits::Op::Access);
        let _span = request_span(req, "access", ino);
        let who = self.who(req);
        self.core
            .access(&who, NodeId(ino.0), mask.bits(), answer(reply));
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
        let _span = request_span(req, "create", parent);
        let who = self.who(req);
        self.core
            .create(&who, NodeId(parent.0), bytes(name), mode, flags, reply);
    }

    fn fallocate(
        &self,
        req: &FuseRequest,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _w = waits::kernel(waits::Op::Fallocate);
        let _span = request_span(req, "fallocate", ino);
        let who = self.who(req);
        self.core.fallocate(
            &who,
            NodeId(ino.0),
            Fh(fh.0),
            offset,
            length,
            mode,
            answer(reply),
        );
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
        let _span = request_span(req, "lseek", _ino);
        let who = self.who(req);
        self.core
            .lseek(&who, Fh(fh.0), offset, whence, answer(reply));
    }

    fn copy_file_range(
        &self,
        req: &FuseRequest,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _w = waits::kernel(waits::Op::CopyFileRange);
        let _span = request_span(req, "copy_file_range", _ino_in);
        let who = self.who(req);
        self.core.copy_file_range(
            &who,
            (Fh(fh_in.0), offset_in),
            (NodeId(ino_out.0), Fh(fh_out.0), offset_out),
            len,
            flags.bits() as u32,
            answer(reply),
        );
    }

    /// Not supported (ENOSYS, as fuser answers), but counted: the kernel
    /// asks again for every ioctl (`isatty` on each file python opens).
    fn ioctl(
        &self,
        _req: &FuseRequest,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        let _w = waits::kernel(waits::Op::Ioctl);
        reply.error(fuser::Errno::ENOSYS);
    }

    /// Not supported, counted (the kernel stops asking after ENOSYS).
    fn poll(
        &self,
        _req: &FuseRequest,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        let _w = waits::kernel(waits::Op::Poll);
        reply.error(fuser::Errno::ENOSYS);
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
