//! Open files: open, create, read, write, flush, release, fsync,
//! fallocate, lseek and copy_file_range, on handle ids.

use std::borrow::Cow;
use std::os::fd::AsRawFd;

use dockerfuse_proto::{Entry, Response, MAX_IO, MAX_OPEN_DATA};

use super::attrs::{attr_of, key_of};
use super::xattrs::has_no_xattrs;
use super::{reopen, Fs};
use crate::handles::Handle;
use crate::sys::{self, SysResult};

/// Flags that make no sense when reopening an existing inode.
const REOPEN_DROP: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW;

impl Fs {
    /// open(2) of an existing node, `flags` being open(2) flags.
    pub(super) fn open_file(&self, node: u64, flags: i32) -> SysResult<Response<'static>> {
        let n = self.nodes.get(node)?;
        let fd = reopen(&n, flags & !REOPEN_DROP)?;
        let raw = fd.as_raw_fd();
        Ok(crate::channel::opened(
            self.handles.insert(Handle::File(fd)),
            raw,
        ))
    }

    /// open(2) of an existing node that brings the file's whole contents
    /// when it is opened read-only, regular and at most `max` bytes long
    /// (`max` capped at [`MAX_OPEN_DATA`]). The contents are read into
    /// `buf` with one pread of up to `max + 1` bytes at offset 0: getting
    /// at most `max` means that was the whole file at that instant (it may
    /// have changed size since the fstat). Anything in the way of reading
    /// them (a file that refuses reads, O_DIRECT alignment) only leaves
    /// them out: the open itself succeeded.
    pub(super) fn open_small<'b>(
        &self,
        node: u64,
        flags: i32,
        max: u32,
        buf: &'b mut Vec<u8>,
    ) -> SysResult<Response<'b>> {
        let n = self.nodes.get(node)?;
        let fd = reopen(&n, flags & !REOPEN_DROP)?;
        let raw = fd.as_raw_fd();
        let whole = flags & libc::O_ACCMODE == libc::O_RDONLY
            && whole_contents(raw, max.min(MAX_OPEN_DATA) as usize, buf);
        let fh = self.handles.insert(Handle::File(fd));
        Ok(Response::OpenedSmall {
            fh,
            fd: crate::channel::reported_fd(raw),
            data: whole.then_some(Cow::Borrowed(&buf[..])),
        })
    }

    /// Creates and opens `name` in `parent`; the new node gets an `O_PATH`
    /// descriptor of its own, opened through the new file's.
    pub(super) fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> SysResult<Response<'static>> {
        let p = self.nodes.get(parent)?;
        let cname = sys::cstr(name)?;
        // Only a name that is not there yet gets an IN_CREATE to expect.
        // (Asked only with the feed on: without it a create costs no stat.)
        let absent =
            self.watch.is_on() && sys::fstatat(p.raw(), &cname, libc::AT_SYMLINK_NOFOLLOW).is_err();
        let one = [(parent, name, libc::IN_CREATE)];
        let own = self.watch.own_names(if absent { &one[..] } else { &[] });
        let fd = sys::openat(
            p.raw(),
            &cname,
            (flags & !libc::O_NOCTTY) | libc::O_CREAT,
            mode,
        )?;
        own.done();
        let path_fd = sys::openat(
            libc::AT_FDCWD,
            &sys::proc_fd_path(fd.as_raw_fd()),
            libc::O_PATH,
            0,
        )?;
        let st = sys::fstat(fd.as_raw_fd())?;
        let no_xattrs = has_no_xattrs(path_fd.as_raw_fd(), &st);
        let id = self
            .nodes
            .add_ref(key_of(&st), path_fd, false, false, Some((parent, name)));
        // Attributes from after the watch began: nothing is missed.
        let st = match self.note_held(id, libc::S_IFREG, Some((parent, name))) {
            true => sys::fstat(fd.as_raw_fd())?,
            false => st,
        };
        let raw = fd.as_raw_fd();
        let fh = self.handles.insert(Handle::File(fd));
        let entry = Entry {
            node: id,
            attr: attr_of(&st, id),
            no_xattrs,
        };
        Ok(crate::channel::created(entry, fh, raw))
    }

    /// Creates `name` in `parent` exclusively, as node `id` with handle
    /// `fh`, both the host's choice (protocol 8): nothing is made when
    /// either is refused; never answered with a descriptor.
    pub(super) fn create_new(
        &self,
        (parent, name): (u64, &[u8]),
        mode: u32,
        flags: i32,
        (id, fh): (u64, u64),
        time: (i64, u32),
    ) -> SysResult<Response<'static>> {
        self.nodes.check_new(id)?;
        self.handles.check_new(fh)?;
        let p = self.nodes.get(parent)?;
        let cname = sys::cstr(name)?;
        let one = [(parent, name, libc::IN_CREATE)];
        let own = self.watch.own_names(&one);
        let flags = (flags & !libc::O_NOCTTY & !libc::O_TRUNC) | libc::O_CREAT | libc::O_EXCL;
        let fd = sys::openat(p.raw(), &cname, flags, mode)?;
        own.done();
        let made = (|| {
            sys::futimens(fd.as_raw_fd(), &[timespec(time); 2])?;
            self.watch.own_change(fd.as_raw_fd());
            let path_fd = sys::openat(
                libc::AT_FDCWD,
                &sys::proc_fd_path(fd.as_raw_fd()),
                libc::O_PATH,
                0,
            )?;
            let st = sys::stat_fd(fd.as_raw_fd())?;
            let no_xattrs = has_no_xattrs(path_fd.as_raw_fd(), &st);
            self.nodes.add_new(
                id,
                key_of(&st),
                path_fd,
                (false, false),
                Some((parent, name)),
            )?;
            Ok((st, no_xattrs))
        })();
        let (st, no_xattrs) = match made {
            Ok(m) => m,
            Err(e) => {
                // Refused after all (a clash of ids in flight): the name
                // the host was told failed goes.
                let _ = sys::unlinkat(p.raw(), &cname, 0);
                return Err(e);
            }
        };
        let st = match self.note_held(id, libc::S_IFREG, Some((parent, name))) {
            true => sys::stat_fd(fd.as_raw_fd())?,
            false => st,
        };
        self.handles.insert_at(fh, Handle::File(fd))?;
        let entry = Entry {
            node: id,
            attr: attr_of(&st, id),
            no_xattrs,
        };
        Ok(Response::Created { entry, fh })
    }
}

/// A time as utimensat takes it.
pub(super) fn timespec((sec, nsec): (i64, u32)) -> libc::timespec {
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec.min(999_999_999) as _,
    }
}

impl Fs {
    /// Reads up to `size` bytes (at most [`MAX_IO`]) into `buf`; short
    /// only at the end of the file.
    pub(super) fn read<'b>(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        buf: &'b mut Vec<u8>,
    ) -> SysResult<Response<'b>> {
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
        Ok(Response::Data(Cow::Borrowed(&buf[..got])))
    }

    pub(super) fn write(&self, fh: u64, offset: u64, data: &[u8]) -> SysResult<Response<'static>> {
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
        // A file the host made behind (its handle is the host's choice):
        // the host holds its attributes and takes the container's from
        // here (protocol 10), so that what it answers after the close is
        // what the file has. The host sets the inode number.
        if fh & dockerfuse_proto::HOST_FH_BIT != 0 && crate::server::host_protocol() >= 10 {
            if let Ok(st) = sys::fstat(fd) {
                let attr = attr_of(&st, 0);
                return Ok(Response::WrittenAttr {
                    n: done as u32,
                    attr,
                });
            }
        }
        Ok(Response::Written(done as u32))
    }

    /// FLUSH comes on every close() of every duplicate: it must not close
    /// anything. Only RELEASE does.
    pub(super) fn flush(&self, fh: u64) -> SysResult<Response<'static>> {
        self.handles.get(fh)?;
        Ok(Response::Ok)
    }

    /// Release of a file or a directory stream.
    pub(super) fn release(&self, fh: u64) -> SysResult<Response<'static>> {
        self.handles.remove(fh)?;
        Ok(Response::Ok)
    }

    pub(super) fn fsync(&self, fh: u64, datasync: bool) -> SysResult<Response<'static>> {
        sys::fsync(self.handles.get(fh)?.file()?, datasync)?;
        Ok(Response::Ok)
    }

    pub(super) fn fallocate(
        &self,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> SysResult<Response<'static>> {
        let fd = self.handles.get(fh)?.file()?;
        sys::fallocate(fd, mode, offset, length)?;
        self.watch.own_change(fd);
        Ok(Response::Ok)
    }

    pub(super) fn lseek(&self, fh: u64, offset: i64, whence: i32) -> SysResult<Response<'static>> {
        let fd = self.handles.get(fh)?.file()?;
        Ok(Response::Offset(sys::lseek(fd, offset, whence)?))
    }

    /// Copies up to `len` bytes (at most `u32::MAX`, what a reply can
    /// count) between two open files, each given as (handle, offset).
    pub(super) fn copy_file_range(
        &self,
        (fh_in, offset_in): (u64, u64),
        (fh_out, offset_out): (u64, u64),
        len: u64,
        flags: u32,
    ) -> SysResult<Response<'static>> {
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
        Ok(Response::Written(n as u32))
    }
}

/// Reads the whole of the regular file `fd` into `buf` if it holds at
/// most `max` bytes: reads from offset 0 up to the end of file, asking for
/// one byte more than fstat's size so that the end is seen, and on up to
/// `max + 1` bytes if the file grew meanwhile. False (and `buf` of no use)
/// when it is larger than `max` or cannot be read.
pub(super) fn whole_contents(fd: libc::c_int, max: usize, buf: &mut Vec<u8>) -> bool {
    let size = match sys::fstat(fd) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => st.st_size.max(0) as u64,
        _ => return false,
    };
    if size > max as u64 {
        return false;
    }
    // An open is not a read: the container's atime must not move because
    // the contents came along (an open that is never read would show it).
    // Read with O_NOATIME, or not at all when that is not allowed (not
    // the owner, no CAP_FOWNER); the descriptor's flags are put back.
    let Some(_noatime) = NoAtime::set(fd) else {
        return false;
    };
    let mut want = size as usize + 1;
    let mut got = 0;
    loop {
        buf.resize(want, 0);
        while got < want {
            match sys::pread(fd, &mut buf[got..want], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => return false,
            }
        }
        if got < want || want > max {
            break;
        }
        want = max + 1;
    }
    buf.truncate(got);
    got <= max
}

/// O_NOATIME on a descriptor while this lives.
struct NoAtime {
    fd: libc::c_int,
    flags: libc::c_int,
}

impl NoAtime {
    fn set(fd: libc::c_int) -> Option<NoAtime> {
        // SAFETY: F_GETFL takes no pointer; a bad fd only gives -1.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return None;
        }
        // SAFETY: F_SETFL takes an int; the kernel checks the permission.
        let r = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NOATIME) };
        (r == 0).then_some(NoAtime { fd, flags })
    }
}

impl Drop for NoAtime {
    fn drop(&mut self) {
        // SAFETY: as in `set`; restores the flags read there.
        unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
    }
}
