//! Thin, safe wrappers over the system calls the satellite makes.
//!
//! Every function returns `Result<_, Errno>` with the errno of the failed
//! call, so the operations above can forward it to the host unchanged.
//! Names are byte strings from the wire; a name holding a NUL byte is
//! refused with EINVAL before it reaches the kernel.
//!
//! What makes the `unsafe` blocks sound is the same throughout: path and
//! name arguments are `CStr`s (NUL-terminated, alive for the whole call),
//! buffers are passed as the pointer and length of one live Rust slice or
//! value the kernel may write, and descriptors are plain integers (a stale
//! one fails with EBADF, it cannot touch memory). Each block says which of
//! these it relies on.

// libc's stat/statfs field types differ between x86_64 and aarch64 (and
// musl and glibc): casts that are no-ops on one target are needed on the
// other.
#![allow(clippy::unnecessary_cast)]

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use dockerfuse_proto::Errno;

pub(crate) type SysResult<T> = Result<T, Errno>;

fn last_errno() -> Errno {
    Errno::from_native(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> SysResult<usize> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret as usize)
    }
}

/// A name from the wire as a C string.
pub(crate) fn cstr(bytes: &[u8]) -> SysResult<CString> {
    CString::new(bytes).map_err(|_| Errno::EINVAL)
}

/// The path through which an O_PATH descriptor can be reopened.
pub(crate) fn proc_fd_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number")
}

pub(crate) fn openat(dir: RawFd, name: &CString, flags: i32, mode: u32) -> SysResult<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    let fd = check(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: a successful openat returns a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn empty() -> &'static std::ffi::CStr {
    c""
}

pub(crate) fn fstatat(dir: RawFd, name: &std::ffi::CStr, flags: i32) -> SysResult<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `name` is a NUL-terminated string alive for the call; `st`
    // is writable memory the size of a `stat`.
    check(unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: `stat` is plain integers, valid zeroed, and the kernel
    // filled it in.
    Ok(unsafe { st.assume_init() })
}

/// stat of what an O_PATH descriptor refers to, not following symlinks.
pub(crate) fn stat_fd(fd: RawFd) -> SysResult<libc::stat> {
    fstatat(fd, empty(), libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
}

pub(crate) fn mkdirat(dir: RawFd, name: &CString, mode: u32) -> SysResult<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) }).map(drop)
}

pub(crate) fn mknodat(dir: RawFd, name: &CString, mode: u32, rdev: u64) -> SysResult<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe { libc::mknodat(dir, name.as_ptr(), mode, rdev as libc::dev_t) }).map(drop)
}

pub(crate) fn symlinkat(target: &CString, dir: RawFd, name: &CString) -> SysResult<()> {
    // SAFETY: `target` and `name` are NUL-terminated strings alive for
    // the call.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

pub(crate) fn unlinkat(dir: RawFd, name: &CString, flags: i32) -> SysResult<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
}

pub(crate) fn renameat2(
    old_dir: RawFd,
    old: &CString,
    new_dir: RawFd,
    new: &CString,
    flags: u32,
) -> SysResult<()> {
    if flags == 0 {
        // SAFETY: `old` and `new` are NUL-terminated strings alive for
        // the call.
        return check(unsafe { libc::renameat(old_dir, old.as_ptr(), new_dir, new.as_ptr()) })
            .map(drop);
    }
    // Called through syscall(): older musl builds have no renameat2 wrapper.
    // SAFETY: renameat2 takes (int, const char *, int, const char *,
    // unsigned int): these are those, the strings NUL-terminated and alive
    // for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            old_dir,
            old.as_ptr(),
            new_dir,
            new.as_ptr(),
            flags as libc::c_uint,
        )
    };
    check(r as libc::c_int).map(drop)
}

pub(crate) fn linkat(
    old_dir: RawFd,
    old: &std::ffi::CStr,
    new_dir: RawFd,
    new: &CString,
    flags: i32,
) -> SysResult<()> {
    // SAFETY: `old` and `new` are NUL-terminated strings alive for the
    // call.
    check(unsafe { libc::linkat(old_dir, old.as_ptr(), new_dir, new.as_ptr(), flags) }).map(drop)
}

pub(crate) fn readlinkat(fd: RawFd, buf: &mut Vec<u8>) -> SysResult<()> {
    buf.resize(libc::PATH_MAX as usize + 1, 0);
    // SAFETY: the empty path is a NUL-terminated static string; the
    // kernel writes at most `buf.len()` bytes into `buf`.
    let n = check_size(unsafe {
        libc::readlinkat(fd, empty().as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })?;
    buf.truncate(n);
    Ok(())
}

pub(crate) fn fchmodat(path: &CString, mode: u32) -> SysResult<()> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    check(unsafe { libc::fchmodat(libc::AT_FDCWD, path.as_ptr(), mode, 0) }).map(drop)
}

pub(crate) fn fchmod(fd: RawFd, mode: u32) -> SysResult<()> {
    // SAFETY: only integers are passed; a bad descriptor gives EBADF.
    check(unsafe { libc::fchmod(fd, mode) }).map(drop)
}

pub(crate) fn fchown_path_fd(fd: RawFd, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: the empty path is a NUL-terminated static string.
    check(unsafe {
        libc::fchownat(
            fd,
            empty().as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub(crate) fn ftruncate(fd: RawFd, size: u64) -> SysResult<()> {
    // SAFETY: only integers are passed; a bad descriptor gives EBADF.
    check(unsafe { libc::ftruncate(fd, size as libc::off_t) }).map(drop)
}

pub(crate) fn truncate(path: &CString, size: u64) -> SysResult<()> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    check(unsafe { libc::truncate(path.as_ptr(), size as libc::off_t) }).map(drop)
}

pub(crate) fn utimensat(
    dir: RawFd,
    path: &std::ffi::CStr,
    times: &[libc::timespec; 2],
    flags: i32,
) -> SysResult<()> {
    // SAFETY: `path` is a NUL-terminated string and `times` an array of
    // two timespecs, both alive for the call.
    check(unsafe { libc::utimensat(dir, path.as_ptr(), times.as_ptr(), flags) }).map(drop)
}

pub(crate) fn futimens(fd: RawFd, times: &[libc::timespec; 2]) -> SysResult<()> {
    // SAFETY: `times` is an array of two timespecs alive for the call.
    check(unsafe { libc::futimens(fd, times.as_ptr()) }).map(drop)
}

pub(crate) fn fstat(fd: RawFd) -> SysResult<libc::stat> {
    // Through fstatat, as `stat_fd`: musl turns a bare fstat (and an
    // fstatat with AT_EMPTY_PATH alone) into the old fstat system call,
    // whose times lose their nanoseconds under qemu's s390x emulation;
    // both calls must give the same times for one inode.
    fstatat(fd, empty(), libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
}

pub(crate) fn pread(fd: RawFd, buf: &mut [u8], offset: u64) -> SysResult<usize> {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let r = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        match check_size(r) {
            Err(Errno(libc::EINTR)) => continue,
            other => return other,
        }
    }
}

pub(crate) fn pwrite(fd: RawFd, buf: &[u8], offset: u64) -> SysResult<usize> {
    loop {
        // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
        let r = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as libc::off_t) };
        match check_size(r) {
            Err(Errno(libc::EINTR)) => continue,
            other => return other,
        }
    }
}

pub(crate) fn fsync(fd: RawFd, datasync: bool) -> SysResult<()> {
    // SAFETY: only integers are passed; a bad descriptor gives EBADF.
    check(unsafe {
        if datasync {
            libc::fdatasync(fd)
        } else {
            libc::fsync(fd)
        }
    })
    .map(drop)
}

pub(crate) fn fstatfs(fd: RawFd) -> SysResult<libc::statfs> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is writable memory the size of a `statfs`.
    check(unsafe { libc::fstatfs(fd, st.as_mut_ptr()) })?;
    // SAFETY: `statfs` is plain integers, valid zeroed, and the kernel
    // filled it in.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn faccessat(path: &CString, mask: i32) -> SysResult<()> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    check(unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), mask, 0) }).map(drop)
}

pub(crate) fn lseek(fd: RawFd, offset: i64, whence: i32) -> SysResult<u64> {
    // SAFETY: only integers are passed; a bad descriptor gives EBADF.
    let r = unsafe { libc::lseek(fd, offset as libc::off_t, whence) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as u64)
    }
}

pub(crate) fn fallocate(fd: RawFd, mode: i32, offset: u64, len: u64) -> SysResult<()> {
    // SAFETY: only integers are passed; a bad descriptor gives EBADF.
    check(unsafe { libc::fallocate(fd, mode, offset as libc::off_t, len as libc::off_t) }).map(drop)
}

pub(crate) fn copy_file_range(
    fd_in: RawFd,
    off_in: u64,
    fd_out: RawFd,
    off_out: u64,
    len: u64,
    flags: u32,
) -> SysResult<usize> {
    let mut oi = off_in as libc::loff_t;
    let mut oo = off_out as libc::loff_t;
    // SAFETY: copy_file_range takes (int, loff_t *, int, loff_t *, size_t,
    // unsigned int): these are those, the offsets pointing to live locals
    // the kernel may update.
    let r = unsafe {
        libc::syscall(
            libc::SYS_copy_file_range,
            fd_in,
            &mut oi as *mut libc::loff_t,
            fd_out,
            &mut oo as *mut libc::loff_t,
            len as libc::size_t,
            flags as libc::c_uint,
        )
    };
    check_size(r as libc::ssize_t)
}

pub(crate) fn getxattr(path: &CString, name: &CString, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `path` and `name` are NUL-terminated strings alive for the
    // call; the kernel writes at most `buf.len()` bytes into `buf`.
    check_size(unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

pub(crate) fn listxattr(path: &CString, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `path` is a NUL-terminated string alive for the call; the
    // kernel writes at most `buf.len()` bytes into `buf`.
    check_size(unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// listxattr of an open (not O_PATH) descriptor.
pub(crate) fn flistxattr(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    check_size(unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

pub(crate) fn setxattr(path: &CString, name: &CString, value: &[u8], flags: i32) -> SysResult<()> {
    // SAFETY: `path` and `name` are NUL-terminated strings alive for the
    // call; the kernel reads `value.len()` bytes from `value`.
    check(unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub(crate) fn removexattr(path: &CString, name: &CString) -> SysResult<()> {
    // SAFETY: `path` and `name` are NUL-terminated strings alive for the
    // call.
    check(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }).map(drop)
}

/// Reads raw `linux_dirent64` records into `buf`; returns the part filled
/// (empty at the end of the directory).
pub(crate) fn getdents64(fd: RawFd, buf: &mut [u8]) -> SysResult<&[u8]> {
    // SAFETY: getdents64 takes (unsigned int, void *, unsigned int): the
    // kernel writes at most `buf.len()` bytes into `buf`.
    let r = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
    let n = check_size(r as libc::ssize_t)?;
    Ok(&buf[..n])
}

/// One record parsed out of a getdents64 buffer.
pub(crate) struct RawDirent<'a> {
    pub(crate) ino: u64,
    pub(crate) next_offset: u64,
    pub(crate) dtype: u8,
    pub(crate) name: &'a [u8],
}

/// Iterates over the records of a getdents64 buffer. A malformed record
/// (which the kernel never produces) ends the iteration.
pub(crate) fn parse_dirents(buf: &[u8]) -> impl Iterator<Item = RawDirent<'_>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos + 19 > buf.len() {
            return None;
        }
        let rec = &buf[pos..];
        let ino = u64::from_ne_bytes(rec[0..8].try_into().ok()?);
        let next_offset = u64::from_ne_bytes(rec[8..16].try_into().ok()?);
        let reclen = u16::from_ne_bytes(rec[16..18].try_into().ok()?) as usize;
        if reclen < 19 || reclen > rec.len() {
            return None;
        }
        let dtype = rec[18];
        let raw = &rec[19..reclen];
        let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        pos += reclen;
        Some(RawDirent {
            ino,
            next_offset,
            dtype,
            name,
        })
    })
}

pub(crate) fn set_umask_zero() {
    // SAFETY: umask takes an integer and cannot fail.
    unsafe {
        libc::umask(0);
    }
}

pub(crate) fn getuid_gid() -> (u32, u32) {
    // SAFETY: geteuid and getegid take nothing and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The calling thread's supplementary groups.
pub(crate) fn getgroups() -> Vec<libc::gid_t> {
    // SAFETY: with a size of 0 the kernel only counts, writing nothing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut v = vec![0 as libc::gid_t; n as usize];
    // SAFETY: the kernel writes at most `n` gids, the length of `v`.
    let n = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    v.truncate(n.max(0) as usize);
    v
}

/// The identity system calls with 32-bit ids. On i386 and 32-bit ARM,
/// `SYS_setgroups`, `SYS_setfsuid` and `SYS_setfsgid` are the legacy
/// 16-bit calls, which cut ids above 65535; the `*32` ones are the real
/// ones there. Every other architecture has only the 32-bit calls.
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
mod id_calls {
    pub(super) const SETGROUPS: libc::c_long = libc::SYS_setgroups32;
    pub(super) const SETFSUID: libc::c_long = libc::SYS_setfsuid32;
    pub(super) const SETFSGID: libc::c_long = libc::SYS_setfsgid32;
}
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
mod id_calls {
    pub(super) const SETGROUPS: libc::c_long = libc::SYS_setgroups;
    pub(super) const SETFSUID: libc::c_long = libc::SYS_setfsuid;
    pub(super) const SETFSGID: libc::c_long = libc::SYS_setfsgid;
}

/// Sets the supplementary groups of the calling THREAD only. The raw
/// system call is per thread; libc's wrapper would apply it to every
/// thread of the process.
pub(crate) fn set_thread_groups(groups: &[libc::gid_t]) -> SysResult<()> {
    // SAFETY: setgroups takes (size_t, const gid_t *): the kernel reads
    // `groups.len()` gids from `groups`.
    let r = unsafe { libc::syscall(id_calls::SETGROUPS, groups.len(), groups.as_ptr()) };
    check(r as libc::c_int).map(drop)
}

/// Sets the calling thread's filesystem uid and gid (both per thread, as
/// system calls) and checks that they took: setfsuid reports no error, it
/// only returns the previous value, so ask again with an invalid id.
pub(crate) fn set_thread_fs_ids(uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: setfsuid and setfsgid take one integer and touch no memory.
    unsafe {
        libc::syscall(id_calls::SETFSGID, gid);
        libc::syscall(id_calls::SETFSUID, uid);
        let now_gid = libc::syscall(id_calls::SETFSGID, u32::MAX) as u32;
        let now_uid = libc::syscall(id_calls::SETFSUID, u32::MAX) as u32;
        if now_uid == uid && now_gid == gid {
            Ok(())
        } else {
            Err(Errno(libc::EPERM))
        }
    }
}

/// The calling thread's filesystem uid and gid (an invalid id changes
/// nothing and returns the current one).
pub(crate) fn thread_fs_ids() -> (u32, u32) {
    // SAFETY: setfsuid/setfsgid take plain integers; -1 is refused by the
    // kernel, which then only reports the current value.
    unsafe {
        let uid = libc::syscall(id_calls::SETFSUID, u32::MAX) as u32;
        let gid = libc::syscall(id_calls::SETFSGID, u32::MAX) as u32;
        (uid, gid)
    }
}

/// Raises the soft limit of open descriptors to the hard one (every node
/// the kernel knows holds one); returns the soft limit now in force.
pub(crate) fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` and `want` are `rlimit`s alive for the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur as u64
}

/// The birth time of what an O_PATH descriptor refers to, where the
/// filesystem records one: with (st_dev, st_ino) it tells an inode from a
/// later one that reuses its number.
pub(crate) fn birth_time(fd: RawFd) -> Option<(i64, u32)> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // Called through syscall(): older musl builds have no statx wrapper.
    // SAFETY: statx takes (int, const char *, int, unsigned int, struct
    // statx *): the empty path is a NUL-terminated static string and `stx`
    // writable memory the size of a `statx`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_statx,
            fd,
            empty().as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BTIME,
            stx.as_mut_ptr(),
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: `statx` is plain integers, valid zeroed, and the kernel
    // filled it in.
    let stx = unsafe { stx.assume_init() };
    (stx.stx_mask & libc::STATX_BTIME != 0).then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec))
}
