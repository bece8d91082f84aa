//! The twin: each operation applied directly to a temp dir with libc, as
//! a program on a local filesystem would.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use dockerfuse_proto::Errno;

use super::identity::Ids;
use super::ops::{
    pattern, Group, Op, Out, Outcome, Stat, Then, Third, Time, User, PLANTED_LEN, SLOTS,
};

/// A local directory the operations run in, and the descriptors a
/// sequence keeps open.
pub(super) struct TwinDir {
    root: PathBuf,
    slots: [Option<Fd>; SLOTS],
}

fn last_errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn check(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> Result<usize, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret as usize)
    }
}

/// An open descriptor, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn timespec(t: Time) -> libc::timespec {
    match t {
        Time::Omit => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Time::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Time::At(sec, nsec) => libc::timespec {
            tv_sec: sec as libc::time_t,
            tv_nsec: nsec as _,
        },
    }
}

impl TwinDir {
    pub(super) fn new(root: PathBuf) -> TwinDir {
        TwinDir {
            root,
            slots: Default::default(),
        }
    }

    pub(super) fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn c(&self, path: &str) -> CString {
        CString::new(self.root.join(path).as_os_str().as_bytes()).expect("no NUL in paths")
    }

    fn open_fd(&self, path: &str, flags: i32, mode: u32) -> Result<Fd, Errno> {
        let p = self.c(path);
        // SAFETY: p is a valid C string.
        check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode) }).map(Fd)
    }

    fn stat_raw(&self, path: &str, follow: bool) -> Result<libc::stat, Errno> {
        let p = self.c(path);
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        // SAFETY: p is a valid C string, st a valid out-pointer.
        check(unsafe { libc::fstatat(libc::AT_FDCWD, p.as_ptr(), &mut st, flags) })?;
        Ok(st)
    }

    /// Creates `path` as a directory or an empty file, as a process in
    /// the container would.
    pub(super) fn create_outside(&self, path: &str, dir: bool) -> Result<(), Errno> {
        if dir {
            let p = self.c(path);
            // SAFETY: p is a valid C string.
            check(unsafe { libc::mkdir(p.as_ptr(), 0o755) })?;
        } else {
            self.open_fd(path, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644)?;
        }
        Ok(())
    }

    /// What a third party in the container does to `path` or its parent
    /// while the program's create of `path` is in flight, and how it is
    /// undone once the create is over (a mode or flag left on would
    /// refuse later creates sent behind where the steps that would see
    /// it do not look).
    pub(super) fn third_party(&self, path: &str, third: Third) -> Undo {
        let parent = parent_of(path);
        match third {
            Third::SameName { dir } => {
                let _ = self.create_outside(path, dir);
                Undo::Nothing
            }
            Third::RemoveParent => {
                // The directory the program's walk reached (through
                // symlinks), never the root.
                let at = std::fs::canonicalize(self.root.join(parent));
                let root = std::fs::canonicalize(&self.root);
                if let (Ok(at), Ok(root)) = (at, root) {
                    if at != root && at.starts_with(&root) {
                        remove_tree(&at);
                    }
                }
                Undo::Nothing
            }
            Third::ChmodParent => {
                let Ok(st) = self.stat_raw(parent, true) else {
                    return Undo::Nothing;
                };
                let p = self.c(parent);
                // SAFETY: p is a valid C string.
                match check(unsafe { libc::chmod(p.as_ptr(), 0o555) }) {
                    Ok(_) => Undo::Mode(parent.to_owned(), st.st_mode & 0o7777),
                    Err(_) => Undo::Nothing,
                }
            }
            Third::FreezeParent => match set_immutable(&self.root.join(parent), true) {
                Ok(()) => Undo::Thaw(parent.to_owned()),
                Err(_) => Undo::Nothing,
            },
        }
    }

    /// Undoes what [`TwinDir::third_party`] did.
    pub(super) fn undo(&self, undo: Undo) {
        match undo {
            Undo::Nothing => {}
            Undo::Mode(path, mode) => {
                let p = self.c(&path);
                // SAFETY: p is a valid C string.
                unsafe { libc::chmod(p.as_ptr(), mode) };
            }
            Undo::Thaw(path) => {
                // chattr moves the ctime without an inotify event (the feed
                // cannot report it): the third party's chmod to the same
                // mode after it is one.
                let _ = set_immutable(&self.root.join(&path), false);
                if let Ok(st) = self.stat_raw(&path, true) {
                    let p = self.c(&path);
                    // SAFETY: p is a valid C string.
                    unsafe { libc::chmod(p.as_ptr(), st.st_mode & 0o7777) };
                }
            }
        }
    }

    /// Rewrites the file at `path` (truncated, then `len` bytes from
    /// `byte` on), as a process in the container would.
    pub(super) fn rewrite(&self, path: &str, len: usize, byte: u8) -> Result<(), Errno> {
        let fd = self.open_fd(path, libc::O_WRONLY | libc::O_TRUNC, 0)?;
        let data = pattern(byte, len);
        // SAFETY: data is valid for len bytes.
        check_size(unsafe { libc::write(fd.0, data.as_ptr().cast(), data.len()) }).map(drop)
    }

    /// Why the kernel would refuse to create `path` before asking the file
    /// system: its parent is missing or not a directory, or the name is
    /// taken.
    fn creatable(&self, path: &str) -> Result<(), Errno> {
        if let Some((dir, _)) = path.rsplit_once('/') {
            let st = self.stat_raw(dir, true)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
        }
        match self.stat_raw(path, false) {
            Ok(_) => Err(Errno::EEXIST),
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The create of [`Op::Raced`] and the steps on its descriptor.
    fn create_then(&self, path: &str, dir: bool, mode: u32, then: &[Then]) -> Result<(), Errno> {
        if dir {
            let p = self.c(path);
            // SAFETY: p is a valid C string.
            check(unsafe { libc::mkdir(p.as_ptr(), mode) })?;
            return Ok(());
        }
        let fd = self.open_fd(path, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, mode)?;
        for t in then {
            match *t {
                Then::Write { offset, len, byte } => {
                    let data = pattern(byte, len);
                    // SAFETY: data is valid for len bytes.
                    check_size(unsafe {
                        libc::pwrite(fd.0, data.as_ptr().cast(), data.len(), offset as i64)
                    })?;
                }
                Then::Chmod(mode) => {
                    // SAFETY: plain syscall on our descriptor.
                    check(unsafe { libc::fchmod(fd.0, mode) })?;
                }
                Then::Truncate(size) => {
                    // SAFETY: plain syscall on our descriptor.
                    check(unsafe { libc::ftruncate(fd.0, size as i64) })?;
                }
                Then::Mtime(sec) => {
                    let times = [timespec(Time::Omit), timespec(Time::At(sec, 0))];
                    // SAFETY: times holds two timespecs.
                    check(unsafe { libc::futimens(fd.0, times.as_ptr()) })?;
                }
            }
        }
        Ok(())
    }

    fn raced(&mut self, path: &str, dir: bool, mode: u32, third: Third, then: &[Then]) -> Outcome {
        // The program looked the name up before the third party acted.
        let looked = self.creatable(path);
        let undo = self.third_party(path, third);
        let first = looked
            .and_then(|()| self.create_then(path, dir, mode, then))
            .err();
        self.undo(undo);
        Ok(Out::Raced(first, Box::new(self.stat(path, false))))
    }

    fn rewritten(&mut self, path: &str, len: usize, byte: u8) -> Outcome {
        self.rewrite(path, len, byte)?;
        let listed = self.list(parent_of(path));
        let read = self.read(path, 0);
        Ok(Out::Rewritten(Box::new(listed), Box::new(read)))
    }

    fn copied(&mut self, path: &str, len: usize, byte: u8, third: bool) -> Outcome {
        let n = {
            let fd = self.open_fd(path, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644)?;
            let data = pattern(byte, len);
            // SAFETY: data is valid for len bytes.
            check_size(unsafe { libc::write(fd.0, data.as_ptr().cast(), data.len()) })?
        };
        let stat = self.stat(path, false);
        let after = third.then(|| {
            let r = self.rewrite(path, len + 3, byte);
            Box::new(r.and_then(|()| self.stat(path, false)))
        });
        Ok(Out::Copied(n as u64, Box::new(stat), true, after))
    }

    fn slot(&self, slot: usize) -> Result<libc::c_int, Errno> {
        self.slots[slot].as_ref().map(|f| f.0).ok_or(Errno::EBADF)
    }

    /// Applies `op`: one method per operation below.
    pub(super) fn apply(&mut self, op: &Op) -> Outcome {
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
            // The twin's own O_DIRECT would refuse unaligned buffers: a
            // plain write is what the mount's must match.
            Op::Write {
                path,
                offset,
                len,
                byte,
            }
            | Op::DirectWrite {
                path,
                offset,
                len,
                byte,
            } => self.write(path, offset, len, byte),
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
        self.slots[slot] = None;
        let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
        self.slots[slot] = Some(self.open_fd(path, flags, 0)?);
        Ok(Out::Done)
    }

    fn fd_write(&mut self, slot: usize, offset: u64, len: usize, byte: u8) -> Outcome {
        let fd = self.slot(slot)?;
        let data = pattern(byte, len);
        // SAFETY: data is valid for len bytes.
        let n = check_size(unsafe {
            libc::pwrite(fd, data.as_ptr().cast(), data.len(), offset as i64)
        })?;
        Ok(Out::Count(n as u64))
    }

    fn fd_read(&mut self, slot: usize, offset: u64) -> Outcome {
        let fd = self.slot(slot)?;
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is valid for its length.
        let n = check_size(unsafe {
            libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset as i64)
        })?;
        buf.truncate(n);
        Ok(Out::Bytes(buf))
    }

    fn fd_stat(&mut self, slot: usize) -> Outcome {
        let fd = self.slot(slot)?;
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: st is a valid out-pointer.
        check(unsafe { libc::fstat(fd, &mut st) })?;
        Ok(Out::Stat(Stat::of(&st)))
    }

    fn fd_truncate(&mut self, slot: usize, size: u64) -> Outcome {
        let fd = self.slot(slot)?;
        // SAFETY: plain syscall on our descriptor.
        check(unsafe { libc::ftruncate(fd, size as i64) })?;
        Ok(Out::Done)
    }

    fn close(&mut self, slot: usize) -> Outcome {
        self.slots[slot].take().ok_or(Errno::EBADF)?;
        Ok(Out::Done)
    }

    fn create(&mut self, path: &str, mode: u32) -> Outcome {
        self.open_fd(path, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, mode)?;
        Ok(Out::Done)
    }

    fn write(&mut self, path: &str, offset: u64, len: usize, byte: u8) -> Outcome {
        let fd = self.open_fd(path, libc::O_WRONLY, 0)?;
        let data = pattern(byte, len);
        // SAFETY: data is valid for len bytes.
        let n = check_size(unsafe {
            libc::pwrite(fd.0, data.as_ptr().cast(), data.len(), offset as i64)
        })?;
        Ok(Out::Count(n as u64))
    }

    pub(super) fn read(&mut self, path: &str, offset: u64) -> Outcome {
        let fd = self.open_fd(path, libc::O_RDONLY, 0)?;
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is valid for its length.
        let n = check_size(unsafe {
            libc::pread(fd.0, buf.as_mut_ptr().cast(), buf.len(), offset as i64)
        })?;
        buf.truncate(n);
        Ok(Out::Bytes(buf))
    }

    fn truncate(&mut self, path: &str, size: u64, via_fd: bool) -> Outcome {
        if via_fd {
            let fd = self.open_fd(path, libc::O_WRONLY, 0)?;
            // SAFETY: plain syscall on our descriptor.
            check(unsafe { libc::ftruncate(fd.0, size as i64) })?;
        } else {
            let p = self.c(path);
            // SAFETY: p is a valid C string.
            check(unsafe { libc::truncate(p.as_ptr(), size as i64) })?;
        }
        Ok(Out::Done)
    }

    fn fsync(&mut self, path: &str, datasync: bool) -> Outcome {
        let fd = self.open_fd(path, libc::O_RDONLY, 0)?;
        // SAFETY: plain syscalls on our descriptor.
        check(unsafe {
            if datasync {
                libc::fdatasync(fd.0)
            } else {
                libc::fsync(fd.0)
            }
        })?;
        Ok(Out::Done)
    }

    fn fallocate(&mut self, path: &str, offset: u64, len: u64, keep_size: bool) -> Outcome {
        let fd = self.open_fd(path, libc::O_WRONLY, 0)?;
        let mode = if keep_size {
            libc::FALLOC_FL_KEEP_SIZE
        } else {
            0
        };
        // SAFETY: plain syscall on our descriptor.
        check(unsafe { libc::fallocate(fd.0, mode, offset as i64, len as i64) })?;
        Ok(Out::Done)
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> Outcome {
        let p = self.c(path);
        // SAFETY: p is a valid C string.
        check(unsafe { libc::mkdir(p.as_ptr(), mode) })?;
        Ok(Out::Done)
    }

    fn rmdir(&mut self, path: &str) -> Outcome {
        let p = self.c(path);
        // SAFETY: p is a valid C string.
        check(unsafe { libc::rmdir(p.as_ptr()) })?;
        Ok(Out::Done)
    }

    fn unlink(&mut self, path: &str) -> Outcome {
        let p = self.c(path);
        // SAFETY: p is a valid C string.
        check(unsafe { libc::unlink(p.as_ptr()) })?;
        Ok(Out::Done)
    }

    fn symlink(&mut self, target: &str, path: &str) -> Outcome {
        let (t, p) = (CString::new(target).unwrap(), self.c(path));
        // SAFETY: both are valid C strings.
        check(unsafe { libc::symlink(t.as_ptr(), p.as_ptr()) })?;
        Ok(Out::Done)
    }

    fn link(&mut self, from: &str, to: &str) -> Outcome {
        let (f, t) = (self.c(from), self.c(to));
        // SAFETY: both are valid C strings.
        check(unsafe { libc::linkat(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), 0) })?;
        Ok(Out::Done)
    }

    fn rename(&mut self, from: &str, to: &str, flags: u32) -> Outcome {
        let (f, t) = (self.c(from), self.c(to));
        // SAFETY: both are valid C strings.
        check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                flags,
            )
        })?;
        Ok(Out::Done)
    }

    fn chmod(&mut self, path: &str, mode: u32) -> Outcome {
        let p = self.c(path);
        // SAFETY: p is a valid C string.
        check(unsafe { libc::chmod(p.as_ptr(), mode) })?;
        Ok(Out::Done)
    }

    fn utimens(&mut self, path: &str, atime: Time, mtime: Time, follow: bool) -> Outcome {
        let p = self.c(path);
        let times = [timespec(atime), timespec(mtime)];
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        // SAFETY: p is a valid C string, times two timespecs.
        check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), flags) })?;
        let st = self.stat_raw(path, follow)?;
        Ok(Out::Mtime(match mtime {
            Time::At(..) => Some((st.st_mtime, st.st_mtime_nsec as u32)),
            _ => None,
        }))
    }

    fn set_xattr(&mut self, path: &str, name: &str, value: &[u8], flags: i32) -> Outcome {
        let (p, n) = (self.c(path), CString::new(name).unwrap());
        // SAFETY: valid C strings, value valid for its length.
        check(unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })?;
        Ok(Out::Done)
    }

    fn get_xattr(&mut self, path: &str, name: &str, probe: bool) -> Outcome {
        let (p, n) = (self.c(path), CString::new(name).unwrap());
        let mut buf = vec![0u8; if probe { 0 } else { 256 }];
        // SAFETY: valid C strings, buf valid for its length.
        let got = check_size(unsafe {
            libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })?;
        if probe {
            return Ok(Out::Count(got as u64));
        }
        buf.truncate(got);
        Ok(Out::Bytes(buf))
    }

    fn list_xattr(&mut self, path: &str, probe: bool) -> Outcome {
        let p = self.c(path);
        let mut buf = vec![0u8; if probe { 0 } else { 4096 }];
        // SAFETY: a valid C string, buf valid for its length.
        let got =
            check_size(unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
        if probe {
            return Ok(Out::Count(got as u64));
        }
        Ok(Out::Names(split_names(&buf[..got])))
    }

    fn remove_xattr(&mut self, path: &str, name: &str) -> Outcome {
        let (p, n) = (self.c(path), CString::new(name).unwrap());
        // SAFETY: valid C strings.
        check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) })?;
        Ok(Out::Done)
    }

    fn plant(&mut self, path: &str, dir: bool, mode: u32, owner: User, group: Group) -> Outcome {
        let p = self.c(path);
        if dir {
            // SAFETY: p is a valid C string.
            check(unsafe { libc::mkdir(p.as_ptr(), 0o700) })?;
        } else {
            let fd = self.open_fd(path, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o600)?;
            let data = pattern(0, PLANTED_LEN);
            // SAFETY: data is valid for its length.
            check_size(unsafe { libc::write(fd.0, data.as_ptr().cast(), data.len()) })?;
        }
        let ids = Ids::get();
        let (uid, gid) = (ids.user(owner), ids.group(group));
        // SAFETY: p is a valid C string.
        check(unsafe { libc::lchown(p.as_ptr(), uid, gid) })?;
        // SAFETY: p is a valid C string.
        check(unsafe { libc::chmod(p.as_ptr(), mode) })?;
        Ok(Out::Done)
    }

    fn chown(
        &mut self,
        path: &str,
        owner: Option<User>,
        group: Option<Group>,
        follow: bool,
    ) -> Outcome {
        let p = self.c(path);
        let ids = Ids::get();
        let uid = owner.map_or(u32::MAX, |u| ids.user(u));
        let gid = group.map_or(u32::MAX, |g| ids.group(g));
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        // SAFETY: p is a valid C string.
        check(unsafe { libc::fchownat(libc::AT_FDCWD, p.as_ptr(), uid, gid, flags) })?;
        Ok(Out::Done)
    }

    pub(super) fn stat(&mut self, path: &str, follow: bool) -> Outcome {
        let st = self.stat_raw(path, follow)?;
        Ok(Out::Stat(Stat::of(&st)))
    }

    fn list(&mut self, path: &str) -> Outcome {
        let io = |e: std::io::Error| Errno(e.raw_os_error().unwrap_or(libc::EIO));
        let mut names = Vec::new();
        for e in std::fs::read_dir(self.root.join(path)).map_err(io)? {
            names.push(e.map_err(io)?.file_name().as_bytes().to_vec());
        }
        names.sort();
        Ok(Out::Names(names))
    }

    fn outside(&mut self, path: &str, dir: bool) -> Outcome {
        self.create_outside(path, dir)?;
        let st = self.stat_raw(path, false)?;
        Ok(Out::Stat(Stat::of(&st)))
    }
}

/// The names of a listxattr buffer (NUL-terminated), sorted.
pub(super) fn split_names(buf: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    v.sort();
    v
}

/// How a third party's change is undone.
pub(super) enum Undo {
    Nothing,
    /// chmod back to this mode.
    Mode(String, u32),
    /// chattr -i.
    Thaw(String),
}

/// The directory holding `path` ("." at the top).
pub(super) fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(d, _)| d)
}

/// Removes what it can of the tree at `at` (not following symlinks), in
/// any order: what an immutable directory holds stays, and so does every
/// directory above it, on both sides alike.
fn remove_tree(at: &std::path::Path) {
    let Ok(meta) = std::fs::symlink_metadata(at) else {
        return;
    };
    if meta.is_dir() {
        for e in std::fs::read_dir(at).into_iter().flatten().flatten() {
            remove_tree(&e.path());
        }
        let _ = std::fs::remove_dir(at);
    } else {
        let _ = std::fs::remove_file(at);
    }
}

/// Sets or clears the immutable flag (`chattr +i`) of the directory at
/// `at` (followed).
pub(super) fn set_immutable(at: &std::path::Path, on: bool) -> Result<(), Errno> {
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let p = CString::new(at.as_os_str().as_bytes()).expect("no NUL in paths");
    // SAFETY: p is a valid C string.
    let fd = Fd(check(unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    })?);
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one long.
    check(unsafe { libc::ioctl(fd.0, libc::FS_IOC_GETFLAGS, &mut flags) })?;
    let want = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    if want != flags {
        // SAFETY: as above.
        check(unsafe { libc::ioctl(fd.0, libc::FS_IOC_SETFLAGS, &want) })?;
    }
    Ok(())
}

/// Clears the immutable flags and gives the owner back write access to
/// every directory under `root`, so that the temp dir can go.
pub(super) fn thaw(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = set_immutable(root, false);
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode | 0o700));
    }
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        thaw(&e.path());
    }
}
