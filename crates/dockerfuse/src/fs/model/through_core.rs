//! The operations run through the filesystem core, as the kernel would
//! issue them on a mount: paths resolved by lookups from the root (symlinks
//! followed as the VFS does), files opened and released around I/O, and
//! every lookup reference forgotten once the operation is over.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

use dockerfuse_proto::{Attr, Entry, Errno, SetAttr, SetTime, ROOT_NODE};

use super::identity::Ids;
use super::ops::{
    pattern, Group, Op, Out, Outcome, Stat, Then, Third, Time, User, PLANTED_LEN, SLOTS,
};
use super::twin::{parent_of, split_names, TwinDir};
use crate::fs::{Cb, Core, Failure, Fh, Lookup, NodeId, Who, Xattr};
use crate::transport::rpc::Rpc;

/// How many symlinks one path walk may follow (the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: u32 = 40;

/// How long one call may take before the test calls it a hang.
const CALL_LIMIT: Duration = Duration::from_secs(20);

/// How long a change made in the container may take to show through the
/// core (the feed gathers events for a few milliseconds).
const CHANGE_LIMIT: Duration = Duration::from_secs(5);

/// Entries the kernel takes from one readdirplus reply (a page's worth).
const PAGE_ENTRIES: usize = 25;

/// Runs one core call and waits for its callback.
pub(super) fn wait<T: Send + 'static>(start: impl FnOnce(Cb<T>)) -> Result<T, Errno> {
    let (tx, rx) = mpsc::sync_channel(1);
    start(Box::new(move |r: Result<T, Failure>| {
        let _ = tx.send(r.map_err(|f| f.errno));
    }));
    rx.recv_timeout(CALL_LIMIT)
        .expect("the core answers every call")
}

/// Runs a getxattr/listxattr and copies its outcome out.
fn wait_xattr(start: impl FnOnce(crate::fs::XattrCb)) -> Outcome {
    let (tx, rx) = mpsc::sync_channel(1);
    start(Box::new(move |r: Result<Xattr<'_>, Failure>| {
        let r = r.map_err(|f| f.errno);
        let _ = tx.send(r.map(|x| match x {
            Xattr::Size(n) => Err(n),
            Xattr::Data(d) => Ok(d.to_vec()),
        }));
    }));
    match rx
        .recv_timeout(CALL_LIMIT)
        .expect("the core answers every call")?
    {
        Err(n) => Ok(Out::Count(n.into())),
        Ok(d) => Ok(Out::Bytes(d)),
    }
}

fn is(attr: &Attr, kind: u32) -> bool {
    attr.mode & libc::S_IFMT == kind
}

fn set_time(t: Time) -> Option<SetTime> {
    match t {
        Time::Omit => None,
        Time::Now => Some(SetTime::Now),
        Time::At(sec, nsec) => Some(SetTime::At { sec, nsec }),
    }
}

/// The kernel's own permission check on a mount with
/// `default_permissions` (`mask`: 4 read, 2 write, 1 search), for the
/// caller the current thread sends as, or the test's own user.
fn may(who: &Who, attr: &Attr, mask: u32) -> Result<(), Errno> {
    // Without a caller, the test process's own user asks.
    let caller = match who {
        Who::Caller(c) => Some(c.clone()),
        Who::Mount => Ids::get().own(),
    };
    let Some(c) = caller else {
        return Ok(());
    };
    let bits = if c.uid == attr.uid {
        attr.mode >> 6
    } else if c.gid == attr.gid || c.groups.contains(&attr.gid) {
        attr.mode >> 3
    } else {
        attr.mode
    };
    if c.uid == 0 || bits & mask == mask {
        Ok(())
    } else {
        Err(Errno(libc::EACCES))
    }
}

/// This process's umask (read without changing it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .expect("a Umask line in /proc/self/status")
}

/// A file or directory the sequence keeps open, as the kernel holds it:
/// one lookup reference on its node and one handle.
struct Open {
    node: u64,
    fh: u64,
    dir: bool,
    write: bool,
}

/// Drives one core; holds the lookup references of the current operation
/// (or of the whole sequence, as the kernel keeps cached entries: the
/// satellite then serves nodes renamed or unlinked since their lookup).
pub(super) struct Driver<'a> {
    core: &'a Core<Rpc>,
    held: Vec<u64>,
    keep: bool,
    slots: [Option<Open>; SLOTS],
    /// Applied to creation modes here, as the kernel does before sending
    /// them (the mount does not ask for FUSE_DONT_MASK).
    umask: u32,
    /// The served directory itself, for changes made in the container.
    container: TwinDir,
    /// Who the current step is sent for.
    pub(super) who: Who,
    /// The satellite's process, held stopped while a third party races
    /// a create ([`Op::Raced`]).
    pub(super) satellite: Option<u32>,
}

/// The satellite held stopped (SIGSTOP) until dropped: requests sent
/// meanwhile reach the container after what is done there now.
struct Stopped(libc::pid_t);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        let pid = pid as libc::pid_t;
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
                .unwrap_or(true)
        };
        let until = std::time::Instant::now() + CALL_LIMIT;
        while !stopped() {
            assert!(std::time::Instant::now() < until, "the satellite stops");
            std::thread::sleep(Duration::from_millis(1));
        }
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

impl<'a> Driver<'a> {
    /// `keep`: forget lookups only when the driver drops; `served`: the
    /// directory the core's satellite serves.
    pub(super) fn new(core: &'a Core<Rpc>, keep: bool, served: std::path::PathBuf) -> Self {
        Driver {
            core,
            held: Vec::new(),
            keep,
            slots: Default::default(),
            umask: umask(),
            container: TwinDir::new(served),
            who: Who::Mount,
            satellite: None,
        }
    }

    /// The lookup references the model's kernel holds, per node: those of
    /// the current step (or sequence) and one per open slot.
    pub(super) fn references(&self) -> std::collections::HashMap<u64, u64> {
        let mut refs = std::collections::HashMap::new();
        let slots = self.slots.iter().flatten().map(|o| o.node);
        for n in self.held.iter().copied().chain(slots) {
            *refs.entry(n).or_default() += 1;
        }
        refs
    }

    /// Forgets every node looked up since the last call.
    fn settle(&mut self) {
        let nodes = self.held.drain(..).map(|n| (NodeId(n), 1)).collect();
        self.core.forget(nodes);
    }

    /// Closes what the slots hold and forgets every lookup still held.
    pub(super) fn forget_all(&mut self) {
        for slot in 0..SLOTS {
            let _ = self.close_slot(slot);
        }
        self.settle();
    }

    /// Releases a slot's handle and forgets its node.
    fn close_slot(&mut self, slot: usize) -> Result<(), Errno> {
        let o = self.slots[slot].take().ok_or(Errno::EBADF)?;
        // As close(2) through the kernel: FLUSH (a write's error shows
        // here), then RELEASE.
        let flushed = if o.dir {
            wait(|cb| self.core.releasedir(Fh(o.fh), cb))
        } else {
            let f = wait(|cb| self.core.flush(Fh(o.fh), cb));
            wait(|cb| self.core.release(Fh(o.fh), cb))?;
            f
        };
        self.core.forget(vec![(NodeId(o.node), 1)]);
        flushed
    }

    fn slot(&self, slot: usize) -> Result<&Open, Errno> {
        self.slots[slot].as_ref().ok_or(Errno::EBADF)
    }

    /// Opens `path` into `slot`, as open(2) through the kernel: a
    /// directory with opendir (never for writing), a file with open.
    fn open_slot(&mut self, slot: usize, path: &str, write: bool) -> Result<(), Errno> {
        if self.slots[slot].is_some() {
            self.close_slot(slot)?;
        }
        let e = self.walk(path, true)?;
        let dir = is(&e.attr, libc::S_IFDIR);
        let fh = if dir {
            if write {
                return Err(Errno::EISDIR);
            }
            wait(|cb| self.core.opendir(&self.who, NodeId(e.node), cb))?
                .0
                 .0
        } else {
            let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
            wait(|cb| self.core.open(&self.who, NodeId(e.node), flags, cb))?
                .fh
                .0
        };
        // The slot takes over the final lookup's reference.
        let at = self
            .held
            .iter()
            .rposition(|&n| n == e.node)
            .expect("the walk holds its entry");
        self.held.remove(at);
        self.slots[slot] = Some(Open {
            node: e.node,
            fh,
            dir,
            write,
        });
        Ok(())
    }

    fn hold(&mut self, e: Entry) -> Entry {
        self.held.push(e.node);
        e
    }

    fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<Entry, Errno> {
        match wait(|cb| self.core.lookup(&self.who, NodeId(parent), name, cb))? {
            Lookup::Found(e, _) => Ok(self.hold(e)),
            Lookup::Absent(_) => Err(Errno::ENOENT),
        }
    }

    fn readlink(&self, node: u64) -> Result<Vec<u8>, Errno> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.core.readlink(
            &self.who,
            NodeId(node),
            Box::new(move |r: Result<&[u8], Failure>| {
                let r = r.map_err(|f| f.errno);
                let _ = tx.send(r.map(<[u8]>::to_vec));
            }),
        );
        rx.recv_timeout(CALL_LIMIT)
            .expect("the core answers every call")
    }

    /// Resolves `path` from the root: symlinks met on the way are followed
    /// (their targets are relative to the directory holding them), the
    /// last one only when `follow`. Returns the entry of the last name.
    fn walk(&mut self, path: &str, follow: bool) -> Result<Entry, Errno> {
        let mut todo: VecDeque<Vec<u8>> = path.split('/').map(|c| c.as_bytes().to_vec()).collect();
        let (mut dir, mut links) = (ROOT_NODE, 0);
        loop {
            let name = todo.pop_front().expect("paths are not empty");
            let e = self.lookup(dir, &name)?;
            let last = todo.is_empty();
            if is(&e.attr, libc::S_IFLNK) && (!last || follow) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno(libc::ELOOP));
                }
                let target = self.readlink(e.node)?;
                for c in target.split(|&b| b == b'/').rev() {
                    if !c.is_empty() {
                        todo.push_front(c.to_vec());
                    }
                }
                continue;
            }
            if last {
                return Ok(e);
            }
            if !is(&e.attr, libc::S_IFDIR) {
                return Err(Errno::ENOTDIR);
            }
            dir = e.node;
        }
    }

    /// The parent directory's node and the last name of `path` for a
    /// creation: the name is looked up first, as the kernel does (this
    /// is the lookup a complete listing answers on the host).
    fn new_name<'p>(&mut self, path: &'p str) -> Result<(u64, &'p [u8]), Errno> {
        let (parent, name) = self.parent(path)?;
        match self.lookup(parent, name) {
            Ok(_) => Err(Errno::EEXIST),
            Err(Errno::ENOENT) => Ok((parent, name)),
            Err(e) => Err(e),
        }
    }

    /// Lists directory `dir` through handle `fh` as the kernel does:
    /// readdirplus chunks of a page, each continuing after the last entry
    /// taken, to the empty one. Holds the entries' lookups.
    fn list_dir(&mut self, dir: u64, fh: u64) -> Result<Vec<Vec<u8>>, Errno> {
        let (mut offset, mut names) = (0, Vec::new());
        loop {
            let (tx, rx) = mpsc::sync_channel(1);
            self.core.readdirplus(
                &self.who,
                NodeId(dir),
                Fh(fh),
                offset,
                4096,
                Box::new(move |r| match r {
                    Ok(items) => {
                        let n = items.len().min(PAGE_ENTRIES);
                        let taken: Vec<_> = items[..n]
                            .iter()
                            .map(|i| (i.counted.then_some(i.node), i.name.to_vec(), i.offset))
                            .collect();
                        let _ = tx.send(Ok(taken));
                        n
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.errno));
                        0
                    }
                }),
            );
            let taken = rx
                .recv_timeout(CALL_LIMIT)
                .expect("the core answers every call")?;
            if taken.is_empty() {
                return Ok(names);
            }
            for (node, name, next) in taken {
                self.held.extend(node);
                if name != b"." && name != b".." {
                    names.push(name);
                }
                offset = next;
            }
        }
    }

    /// Stats `path` (not following) through the core until it shows,
    /// for at most [`CHANGE_LIMIT`].
    fn stat_when_shown(&mut self, path: &str) -> Outcome {
        let until = std::time::Instant::now() + CHANGE_LIMIT;
        loop {
            match self.walk(path, false) {
                Ok(e) => {
                    let (a, _) = wait(|cb| self.core.getattr(&self.who, NodeId(e.node), None, cb))?;
                    return Ok(Out::Stat(Stat::of_attr(&a)));
                }
                Err(Errno::ENOENT) if std::time::Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The parent directory's node and the last name of `path`.
    fn parent<'p>(&mut self, path: &'p str) -> Result<(u64, &'p [u8]), Errno> {
        match path.rsplit_once('/') {
            None => Ok((ROOT_NODE, path.as_bytes())),
            Some((dir, name)) => {
                let d = self.walk(dir, true)?;
                if !is(&d.attr, libc::S_IFDIR) {
                    return Err(Errno::ENOTDIR);
                }
                // The kernel's path walk needs search permission in the
                // parent before it looks at the last name.
                may(&self.who, &d.attr, 0o1)?;
                Ok((d.node, name.as_bytes()))
            }
        }
    }

    /// Opens the file at `path` (following symlinks), runs `f` on its
    /// node and handle, releases it.
    fn with_open<T>(
        &mut self,
        path: &str,
        flags: i32,
        f: impl FnOnce(&Core<Rpc>, u64, u64) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let e = self.walk(path, true)?;
        let fh = wait(|cb| self.core.open(&self.who, NodeId(e.node), flags, cb))?
            .fh
            .0;
        let r = f(self.core, e.node, fh);
        let flushed = wait(|cb| self.core.flush(Fh(fh), cb));
        wait(|cb| self.core.release(Fh(fh), cb))?;
        r.and_then(|r| flushed.map(|()| r))
    }

    fn setattr(&mut self, path: &str, follow: bool, attr: SetAttr) -> Result<Attr, Errno> {
        let e = self.walk(path, follow)?;
        wait(|cb| self.core.setattr(&self.who, NodeId(e.node), None, attr, cb)).map(|(a, _)| a)
    }

    pub(super) fn apply(&mut self, op: &Op) -> Outcome {
        let r = self.apply_held(op);
        if !self.keep {
            self.settle();
        }
        r
    }

    /// Applies `op`: one method per operation below.
    fn apply_held(&mut self, op: &Op) -> Outcome {
        match *op {
            Op::Open { slot, path, write } => self.open(slot, path, write),
            Op::FdWrite {
                slot,
                offset,
                len,
                byte,
            } => self.fd_write(slot, offset, len, byte),
            Op::FdRead { slot, offset } => self.fd_read(slot, offset),
            Op::FdStat { slot } => self.fd_stat(slot),
            Op::FdTruncate { slot, size } => self.fd_truncate(slot, size),
            Op::Close { slot } => self.close(slot),
            Op::Create { path, mode } => self.create(path, mode),
            Op::Write {
                path,
                offset,
                len,
                byte,
            } => self.write(path, libc::O_WRONLY, offset, len, byte),
            Op::DirectWrite {
                path,
                offset,
                len,
                byte,
            } => self.write(path, libc::O_WRONLY | libc::O_DIRECT, offset, len, byte),
            Op::Read { path, offset } => self.read(path, offset),
            Op::Truncate { path, size, via_fd } => self.truncate(path, size, via_fd),
            Op::Fsync { path, datasync } => self.fsync(path, datasync),
            Op::Fallocate {
                path,
                offset,
                len,
                keep_size,
            } => self.fallocate(path, offset, len, keep_size),
            Op::Mkdir { path, mode } => self.mkdir(path, mode),
            Op::Rmdir { path } => self.rmdir(path),
            Op::Unlink { path } => self.unlink(path),
            Op::Symlink { target, path } => self.symlink(target, path),
            Op::Link { from, to } => self.link(from, to),
            Op::Rename { from, to, flags } => self.rename(from, to, flags),
            Op::Chmod { path, mode } => self.chmod(path, mode),
            Op::Utimens {
                path,
                atime,
                mtime,
                follow,
            } => self.utimens(path, atime, mtime, follow),
            Op::SetXattr {
                path,
                name,
                ref value,
                flags,
            } => self.set_xattr(path, name, value, flags),
            Op::GetXattr { path, name, probe } => self.get_xattr(path, name, probe),
            Op::ListXattr { path, probe } => self.list_xattr(path, probe),
            Op::RemoveXattr { path, name } => self.remove_xattr(path, name),
            Op::Plant {
                path,
                dir,
                mode,
                owner,
                group,
            } => self.plant(path, dir, mode, owner, group),
            Op::Chown {
                path,
                owner,
                group,
                follow,
            } => self.chown(path, owner, group, follow),
            Op::Stat { path, follow } => self.stat(path, follow),
            Op::List { path } => self.list(path),
            Op::Outside { path, dir } => self.outside(path, dir),
            Op::Raced {
                path,
                dir,
                mode,
                third,
                ref then,
            } => self.raced(path, dir, mode, third, then),
            Op::Rewritten { path, len, byte } => self.rewritten(path, len, byte),
            Op::Copied {
                path,
                len,
                byte,
                third,
            } => self.copied(path, len, byte, third),
        }
    }

    fn open(&mut self, slot: usize, path: &str, write: bool) -> Outcome {
        self.open_slot(slot, path, write)?;
        Ok(Out::Done)
    }

    // What the VFS refuses itself: writes on a read-only descriptor
    // (EBADF), reads of a directory (EISDIR), ftruncate of anything but a
    // file open for writing (EINVAL).

    fn fd_write(&mut self, slot: usize, offset: u64, len: usize, byte: u8) -> Outcome {
        let o = self.slot(slot)?;
        if !o.write {
            return Err(Errno::EBADF);
        }
        let data = pattern(byte, len);
        let n = wait(|cb| {
            self.core.write(
                &self.who,
                NodeId(o.node),
                Fh(o.fh),
                offset,
                &data,
                false,
                cb,
            )
        })?;
        Ok(Out::Count(n.into()))
    }

    fn fd_read(&mut self, slot: usize, offset: u64) -> Outcome {
        let o = self.slot(slot)?;
        if o.dir {
            return Err(Errno::EISDIR);
        }
        read_bytes(self.core, &self.who, o.fh, offset)
    }

    fn fd_stat(&mut self, slot: usize) -> Outcome {
        let o = self.slot(slot)?;
        // The kernel passes the handle for regular files only.
        let fh = (!o.dir).then_some(o.fh);
        let (a, _) = wait(|cb| self.core.getattr(&self.who, NodeId(o.node), fh.map(Fh), cb))?;
        Ok(Out::Stat(Stat::of_attr(&a)))
    }

    fn fd_truncate(&mut self, slot: usize, size: u64) -> Outcome {
        let o = self.slot(slot)?;
        if o.dir || !o.write {
            return Err(Errno::EINVAL);
        }
        let attr = SetAttr {
            size: Some(size),
            ..Default::default()
        };
        wait(|cb| {
            self.core
                .setattr(&self.who, NodeId(o.node), Some(Fh(o.fh)), attr, cb)
        })?;
        Ok(Out::Done)
    }

    fn close(&mut self, slot: usize) -> Outcome {
        self.close_slot(slot)?;
        Ok(Out::Done)
    }

    fn create(&mut self, path: &str, mode: u32) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let (parent, name) = self.new_name(path)?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
        let (e, _, opened) =
            wait(|cb| core.create(&who, NodeId(parent), name, mode & !self.umask, flags, cb))?;
        let fh = opened.fh.0;
        self.hold(e);
        // close(2): FLUSH (a create refused behind shows here), then
        // RELEASE.
        let flushed = wait(|cb| core.flush(Fh(fh), cb));
        wait(|cb| core.release(Fh(fh), cb))?;
        flushed.map(|()| Out::Done)
    }

    /// A write through a handle opened with `flags` (O_DIRECT or not).
    fn write(&mut self, path: &str, flags: i32, offset: u64, len: usize, byte: u8) -> Outcome {
        let who = self.who.clone();
        self.with_open(path, flags, |core, node, fh| {
            let data = pattern(byte, len);
            let n = wait(|cb| core.write(&who, NodeId(node), Fh(fh), offset, &data, false, cb))?;
            Ok(Out::Count(n.into()))
        })
    }

    fn read(&mut self, path: &str, offset: u64) -> Outcome {
        let who = self.who.clone();
        self.with_open(path, libc::O_RDONLY, |core, _, fh| {
            read_bytes(core, &who, fh, offset)
        })
    }

    fn truncate(&mut self, path: &str, size: u64, via_fd: bool) -> Outcome {
        let attr = SetAttr {
            size: Some(size),
            ..Default::default()
        };
        if via_fd {
            let who = self.who.clone();
            self.with_open(path, libc::O_WRONLY, |core, node, fh| {
                wait(|cb| core.setattr(&who, NodeId(node), Some(Fh(fh)), attr, cb))
            })?;
        } else {
            self.setattr(path, true, attr)?;
        }
        Ok(Out::Done)
    }

    fn fsync(&mut self, path: &str, datasync: bool) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let e = self.walk(path, true)?;
        // The kernel opens a directory with opendir and syncs it with
        // fsyncdir.
        if is(&e.attr, libc::S_IFDIR) {
            let (Fh(fh), _) = wait(|cb| core.opendir(&who, NodeId(e.node), cb))?;
            let r = wait(|cb| core.fsyncdir(&who, NodeId(e.node), Fh(fh), datasync, cb));
            wait(|cb| core.releasedir(Fh(fh), cb))?;
            r?;
        } else {
            let fh = wait(|cb| core.open(&who, NodeId(e.node), libc::O_RDONLY, cb))?
                .fh
                .0;
            let r = wait(|cb| core.fsync(&who, Fh(fh), datasync, cb));
            wait(|cb| core.release(Fh(fh), cb))?;
            r?;
        }
        Ok(Out::Done)
    }

    fn fallocate(&mut self, path: &str, offset: u64, len: u64, keep_size: bool) -> Outcome {
        let who = self.who.clone();
        self.with_open(path, libc::O_WRONLY, |core, node, fh| {
            let mode = if keep_size {
                libc::FALLOC_FL_KEEP_SIZE
            } else {
                0
            };
            wait(|cb| core.fallocate(&who, NodeId(node), Fh(fh), offset, len, mode, cb))?;
            Ok(Out::Done)
        })
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let (parent, name) = self.new_name(path)?;
        let (e, _) = wait(|cb| core.mkdir(&who, NodeId(parent), name, mode & !self.umask, cb))?;
        self.hold(e);
        Ok(Out::Done)
    }

    fn rmdir(&mut self, path: &str) -> Outcome {
        let (parent, name) = self.parent(path)?;
        wait(|cb| self.core.rmdir(&self.who, NodeId(parent), name, cb))?;
        Ok(Out::Done)
    }

    fn unlink(&mut self, path: &str) -> Outcome {
        let (parent, name) = self.parent(path)?;
        wait(|cb| self.core.unlink(&self.who, NodeId(parent), name, cb))?;
        Ok(Out::Done)
    }

    fn symlink(&mut self, target: &str, path: &str) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let (parent, name) = self.parent(path)?;
        let (e, _) = wait(|cb| core.symlink(&who, NodeId(parent), name, target.as_bytes(), cb))?;
        self.hold(e);
        Ok(Out::Done)
    }

    fn link(&mut self, from: &str, to: &str) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let old = self.walk(from, false)?;
        let (parent, name) = self.parent(to)?;
        let (e, _) = wait(|cb| core.link(&who, NodeId(old.node), NodeId(parent), name, cb))?;
        self.hold(e);
        Ok(Out::Done)
    }

    fn rename(&mut self, from: &str, to: &str, flags: u32) -> Outcome {
        // The VFS refuses contradictory flags before any lookup.
        let both = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
        if flags & both == both {
            return Err(Errno::EINVAL);
        }
        let (core, who) = (self.core, self.who.clone());
        let (p, name) = self.parent(from)?;
        let (np, new_name) = self.parent(to)?;
        wait(|cb| core.rename(&who, (NodeId(p), name), (NodeId(np), new_name), flags, cb))?;
        Ok(Out::Done)
    }

    fn chmod(&mut self, path: &str, mode: u32) -> Outcome {
        let attr = SetAttr {
            mode: Some(mode),
            ..Default::default()
        };
        self.setattr(path, true, attr)?;
        Ok(Out::Done)
    }

    fn utimens(&mut self, path: &str, atime: Time, mtime: Time, follow: bool) -> Outcome {
        let attr = SetAttr {
            atime: set_time(atime),
            mtime: set_time(mtime),
            ..Default::default()
        };
        // utimensat(OMIT, OMIT) returns before anything reaches the
        // filesystem (the walk stands for the twin's stat).
        if attr == SetAttr::default() {
            self.walk(path, follow)?;
            return Ok(Out::Mtime(None));
        }
        let a = self.setattr(path, follow, attr)?;
        Ok(Out::Mtime(match mtime {
            Time::At(..) => Some((a.mtime, a.mtime_nsec)),
            _ => None,
        }))
    }

    fn set_xattr(&mut self, path: &str, name: &str, value: &[u8], flags: i32) -> Outcome {
        let e = self.walk(path, true)?;
        wait(|cb| {
            self.core
                .setxattr(&self.who, NodeId(e.node), name.as_bytes(), value, flags, cb)
        })?;
        Ok(Out::Done)
    }

    fn get_xattr(&mut self, path: &str, name: &str, probe: bool) -> Outcome {
        let e = self.walk(path, true)?;
        // With `default_permissions` the kernel checks read permission for
        // a `user.` xattr before asking (the core answers a node known to
        // have none without asking).
        may(&self.who, &e.attr, 0o4)?;
        let size = if probe { 0 } else { 256 };
        wait_xattr(|cb| {
            self.core
                .getxattr(&self.who, NodeId(e.node), name.as_bytes(), size, cb)
        })
    }

    fn list_xattr(&mut self, path: &str, probe: bool) -> Outcome {
        let e = self.walk(path, true)?;
        let size = if probe { 0 } else { 4096 };
        match wait_xattr(|cb| self.core.listxattr(&self.who, NodeId(e.node), size, cb))? {
            Out::Bytes(d) => Ok(Out::Names(split_names(&d))),
            other => Ok(other),
        }
    }

    fn remove_xattr(&mut self, path: &str, name: &str) -> Outcome {
        let e = self.walk(path, true)?;
        wait(|cb| {
            self.core
                .removexattr(&self.who, NodeId(e.node), name.as_bytes(), cb)
        })?;
        Ok(Out::Done)
    }

    fn plant(&mut self, path: &str, dir: bool, mode: u32, owner: User, group: Group) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let (parent, name) = self.parent(path)?;
        let e = if dir {
            let (e, _) =
                wait(|cb| core.mkdir(&who, NodeId(parent), name, 0o700 & !self.umask, cb))?;
            self.hold(e)
        } else {
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
            let (e, _, opened) =
                wait(|cb| core.create(&who, NodeId(parent), name, 0o600 & !self.umask, flags, cb))?;
            let fh = opened.fh.0;
            self.hold(e);
            let data = pattern(0, PLANTED_LEN);
            let r = wait(|cb| core.write(&who, NodeId(e.node), Fh(fh), 0, &data, false, cb));
            wait(|cb| core.release(Fh(fh), cb))?;
            r?;
            e
        };
        let ids = Ids::get();
        let owned = SetAttr {
            uid: Some(ids.user(owner)),
            gid: Some(ids.group(group)),
            ..Default::default()
        };
        wait(|cb| core.setattr(&who, NodeId(e.node), None, owned, cb))?;
        let mode = SetAttr {
            mode: Some(mode),
            ..Default::default()
        };
        wait(|cb| core.setattr(&who, NodeId(e.node), None, mode, cb))?;
        Ok(Out::Done)
    }

    fn chown(
        &mut self,
        path: &str,
        owner: Option<User>,
        group: Option<Group>,
        follow: bool,
    ) -> Outcome {
        let ids = Ids::get();
        let attr = SetAttr {
            uid: owner.map(|u| ids.user(u)),
            gid: group.map(|g| ids.group(g)),
            ..Default::default()
        };
        self.setattr(path, follow, attr)?;
        Ok(Out::Done)
    }

    fn stat(&mut self, path: &str, follow: bool) -> Outcome {
        let e = self.walk(path, follow)?;
        let (a, _) = wait(|cb| self.core.getattr(&self.who, NodeId(e.node), None, cb))?;
        Ok(Out::Stat(Stat::of_attr(&a)))
    }

    fn list(&mut self, path: &str) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let attr = if path == "." {
            wait(|cb| core.getattr(&who, NodeId(ROOT_NODE), None, cb))?.0
        } else {
            self.walk(path, true)?.attr
        };
        let node = attr.ino;
        if !is(&attr, libc::S_IFDIR) {
            return Err(Errno::ENOTDIR);
        }
        // Opening a directory needs read permission.
        may(&who, &attr, 0o4)?;
        let (Fh(fh), _) = wait(|cb| core.opendir(&who, NodeId(node), cb))?;
        let r = self.list_dir(node, fh);
        wait(|cb| core.releasedir(Fh(fh), cb))?;
        let mut names = r?;
        names.sort();
        Ok(Out::Names(names))
    }

    fn outside(&mut self, path: &str, dir: bool) -> Outcome {
        // The container acts once what the program did reached it (a
        // create sent behind that loses a race with the container is
        // refused: the conflict rule, tested in `fs::tests`).
        wait(|cb| self.core.settle(cb))?;
        self.container.create_outside(path, dir)?;
        self.stat_when_shown(path)
    }
}

impl Driver<'_> {
    fn raced(&mut self, path: &str, dir: bool, mode: u32, third: Third, then: &[Then]) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        // What the program did before reached the container.
        wait(|cb| core.settle(cb))?;
        let (parent, name) = match self.new_name(path) {
            Ok(found) => found,
            Err(e) => {
                let undo = self.container.third_party(path, third);
                self.container.undo(undo);
                return Ok(Out::Raced(Some(e), Box::new(self.agreed_stat(path))));
            }
        };
        let mode = mode & !self.umask;
        let (tx, rx) = mpsc::sync_channel(1);
        let stopped = Stopped::new(self.satellite.expect("the driver knows the satellite"));
        if dir {
            core.mkdir(
                &who,
                NodeId(parent),
                name,
                mode,
                Box::new(move |r: Result<(Entry, _), Failure>| {
                    let _ = tx.send(r.map(|(e, _)| (e, None)).map_err(|f| f.errno));
                }),
            );
        } else {
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
            core.create(
                &who,
                NodeId(parent),
                name,
                mode,
                flags,
                Box::new(
                    move |r: Result<(Entry, _, crate::fs::Opened<_>), Failure>| {
                        let r = r.map_err(|f| f.errno);
                        let _ = tx.send(r.map(|(e, _, opened)| (e, Some(opened.fh.0))));
                    },
                ) as Cb<_>,
            );
        }
        let undo = self.container.third_party(path, third);
        drop(stopped);
        let made = rx
            .recv_timeout(CALL_LIMIT)
            .expect("the core answers every call");
        // The errors of the create, of the writes on its descriptor and of
        // its close (where a create refused behind reports, once), and of
        // the setattrs on it (ESTALE once the refusal arrived: the node
        // was never made).
        let (mut reports, mut setattrs) = (Vec::new(), Vec::new());
        let mut answered = false;
        match made {
            Err(e) => reports.push(e),
            Ok((e, fh)) => {
                answered = fh.is_some();
                let node = self.hold(e).node;
                if let Some(fh) = fh {
                    for t in then {
                        let r = self.then_step(node, fh, *t);
                        match (t, r) {
                            (_, Ok(())) => {}
                            (Then::Write { .. }, Err(e)) => reports.push(e),
                            (_, Err(e)) => setattrs.push(e),
                        }
                    }
                    let flushed = wait(|cb| core.flush(Fh(fh), cb));
                    wait(|cb| core.release(Fh(fh), cb))?;
                    reports.extend(flushed.err());
                }
            }
        }
        let mut first = reports.first().copied();
        // fsync of the parent: it reports a create refused behind too
        // (None: the directory cannot be opened any more).
        let synced = self.fsync_dir(parent);
        if answered {
            // A file's create answered at once and refused behind: its
            // error is the first the descriptor reports (later writes reach
            // a handle the container never opened: EBADF), and the
            // directory's fsync reports it too.
            let agree = setattrs
                .iter()
                .all(|&e| e == Errno::ESTALE && first.is_some())
                && match (first, synced) {
                    (_, None) | (None, Some(Ok(()))) => true,
                    (Some(e), Some(Err(s))) => s == e,
                    _ => false,
                };
            if !agree {
                return Ok(Out::Odd(format!(
                    "create of {path} reported {reports:?} (writes, close), {setattrs:?} \
                     (setattrs), the fsync of its directory {synced:?}"
                )));
            }
        } else if first.is_none() {
            first = synced.and_then(Result::err);
        }
        self.container.undo(undo);
        Ok(Out::Raced(first, Box::new(self.agreed_stat(path))))
    }

    /// One step of [`Op::Raced`] on the new file's descriptor.
    fn then_step(&mut self, node: u64, fh: u64, t: Then) -> Result<(), Errno> {
        let (core, who) = (self.core, self.who.clone());
        let attr = match t {
            Then::Write { offset, len, byte } => {
                let data = pattern(byte, len);
                wait(|cb| core.write(&who, NodeId(node), Fh(fh), offset, &data, false, cb))?;
                return Ok(());
            }
            Then::Chmod(mode) => SetAttr {
                mode: Some(mode),
                ..Default::default()
            },
            Then::Truncate(size) => SetAttr {
                size: Some(size),
                ..Default::default()
            },
            Then::Mtime(sec) => SetAttr {
                mtime: set_time(Time::At(sec, 0)),
                ..Default::default()
            },
        };
        wait(|cb| core.setattr(&who, NodeId(node), Some(Fh(fh)), attr, cb)).map(drop)
    }

    /// opendir, fsyncdir, releasedir of directory `dir`; None when it
    /// cannot be opened.
    fn fsync_dir(&mut self, dir: u64) -> Option<Result<(), Errno>> {
        let (core, who) = (self.core, self.who.clone());
        let (Fh(fh), _) = wait(|cb| core.opendir(&who, NodeId(dir), cb)).ok()?;
        let r = wait(|cb| core.fsyncdir(&who, NodeId(dir), Fh(fh), false, cb));
        let _ = wait(|cb| core.releasedir(Fh(fh), cb));
        Some(r)
    }

    /// lstat of `path` through the core, once it agrees with the
    /// container's (for at most [`CHANGE_LIMIT`]).
    fn agreed_stat(&mut self, path: &str) -> Outcome {
        let until = std::time::Instant::now() + CHANGE_LIMIT;
        loop {
            let got = self.stat(path, false);
            if got == self.container.stat(path, false) || std::time::Instant::now() >= until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn rewritten(&mut self, path: &'static str, len: usize, byte: u8) -> Outcome {
        wait(|cb| self.core.settle(cb))?;
        let container = TwinDir::new(self.container.root().to_path_buf());
        let writer = std::thread::spawn(move || container.rewrite(path, len, byte));
        let listed = self.list(parent_of(path));
        writer.join().expect("the writer thread")?;
        let until = std::time::Instant::now() + CHANGE_LIMIT;
        let read = loop {
            let got = self.read(path, 0);
            if got == self.container.read(path, 0) || std::time::Instant::now() >= until {
                break got;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Ok(Out::Rewritten(Box::new(listed), Box::new(read)))
    }
}

impl Driver<'_> {
    fn copied(&mut self, path: &'static str, len: usize, byte: u8, third: bool) -> Outcome {
        let (core, who) = (self.core, self.who.clone());
        let coh = core.coherence();
        let changes = || coh.counts.changes.load(std::sync::atomic::Ordering::SeqCst);
        let before = changes();
        let (parent, name) = self.new_name(path)?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
        let mode = 0o644 & !self.umask;
        let (e, _, opened) = wait(|cb| core.create(&who, NodeId(parent), name, mode, flags, cb))?;
        let (node, fh) = (e.node, opened.fh.0);
        self.hold(e);
        let data = pattern(byte, len);
        let wrote = match len {
            0 => Ok(0),
            _ => wait(|cb| core.write(&who, NodeId(node), Fh(fh), 0, &data, false, cb)),
        };
        let flushed = wait(|cb| core.flush(Fh(fh), cb));
        wait(|cb| core.release(Fh(fh), cb))?;
        let n = wrote?;
        flushed?;
        // The stat after the close: answered at once on the host when the
        // create went behind (the host chose the handle).
        let behind = fh & dockerfuse_proto::HOST_FH_BIT != 0;
        let (tx, rx) = mpsc::sync_channel(1);
        core.getattr(
            &who,
            NodeId(node),
            None,
            Box::new(move |r| {
                let _ = tx.send(r.map_err(|f| f.errno));
            }),
        );
        let (here, got) = match rx.try_recv() {
            Ok(r) => (true, r),
            // Unless the feed reported a change meanwhile: the satellite
            // may report its own write as one when the event beats its
            // note of it (a wait, never a wrong answer).
            Err(_) => (
                !behind || changes() != before,
                rx.recv_timeout(CALL_LIMIT).expect("the core answers"),
            ),
        };
        let stat = got.map(|(a, _)| Out::Stat(Stat::of_attr(&a)));
        let after = third.then(|| Box::new(self.rewritten_shows(path, len + 3, byte)));
        Ok(Out::Copied(n.into(), Box::new(stat), here, after))
    }

    /// A third party rewrites `path` in the container: a stat through the
    /// mount shows it within [`CHANGE_LIMIT`].
    fn rewritten_shows(&mut self, path: &'static str, len: usize, byte: u8) -> Outcome {
        self.container.rewrite(path, len, byte)?;
        let until = std::time::Instant::now() + CHANGE_LIMIT;
        loop {
            let got = self.stat(path, false);
            let want = self.container.stat(path, false);
            if got == want || std::time::Instant::now() >= until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A read of up to 64 KiB through handle `fh`.
fn read_bytes(core: &Core<Rpc>, who: &Who, fh: u64, offset: u64) -> Outcome {
    let (tx, rx) = mpsc::sync_channel(1);
    core.read(
        who,
        Fh(fh),
        offset,
        64 * 1024,
        Box::new(move |r: Result<&[u8], Failure>| {
            let r = r.map_err(|f| f.errno);
            let _ = tx.send(r.map(<[u8]>::to_vec));
        }),
    );
    let d = rx.recv_timeout(CALL_LIMIT).expect("the core answers")?;
    Ok(Out::Bytes(d))
}
