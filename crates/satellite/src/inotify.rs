//! inotify, wrapped: an instance, its watches, and the parsing of the
//! events read from it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use dockerfuse_proto::Errno;

use crate::sys::SysResult;

/// Events asked for on a directory: names coming and going, and changes
/// of the directory itself.
pub(crate) const DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// Events asked for on anything else: contents and attributes.
pub(crate) const FILE_MASK: u32 =
    libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;

fn errno() -> Errno {
    Errno::from_native(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// One inotify instance.
pub(crate) struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub(crate) fn new() -> SysResult<Inotify> {
        // SAFETY: no pointers; the descriptor returned is fresh and owned
        // by nobody else.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: fd was just returned by inotify_init1 and is not owned
        // elsewhere.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify { fd })
    }

    /// Watches the inode behind `node_fd` (an `O_PATH` descriptor, reached
    /// through /proc/self/fd); returns the watch descriptor.
    pub(crate) fn add(&self, node_fd: RawFd, mask: u32) -> SysResult<i32> {
        let path = CString::new(format!("/proc/self/fd/{node_fd}")).map_err(|_| Errno::EINVAL)?;
        // SAFETY: path is a valid C string that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            Err(errno())
        } else {
            Ok(wd)
        }
    }

    pub(crate) fn remove(&self, wd: i32) {
        // SAFETY: no pointers; a stale wd only gives EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    /// Waits up to `timeout_ms` (-1: forever) for events.
    pub(crate) fn wait(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: p is one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut p, 1, timeout_ms) > 0 }
    }

    /// Reads what is queued into `buf`; 0 when nothing is.
    pub(crate) fn read(&self, buf: &mut [u8]) -> usize {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        n.max(0) as usize
    }
}

/// One parsed event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawEvent<'a> {
    pub(crate) wd: i32,
    pub(crate) mask: u32,
    /// The name within a watched directory, if the event is about one.
    pub(crate) name: Option<&'a [u8]>,
}

/// Parses a buffer of `struct inotify_event`s (header: wd i32, mask u32,
/// cookie u32, len u32; then `len` bytes of NUL-padded name). A truncated
/// tail is ignored.
pub(crate) fn parse(buf: &[u8]) -> impl Iterator<Item = RawEvent<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + 16)?;
        let word = |i: usize| u32::from_ne_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let raw = buf.get(at + 16..at + 16 + len)?;
        at += 16 + len;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let name = (end > 0).then(|| &raw[..end]);
        Some(RawEvent { wd, mask, name })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &[u8]) -> Vec<u8> {
        let len = if name.is_empty() {
            0
        } else {
            (name.len() + 1 + 15) & !15
        };
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        let mut n = name.to_vec();
        n.resize(len, 0);
        v.extend(n);
        v
    }

    #[test]
    fn events_parse_with_and_without_names_and_a_cut_tail_is_dropped() {
        let mut buf = event(3, libc::IN_CREATE, b"new-file");
        buf.extend(event(4, libc::IN_MODIFY, b""));
        buf.extend(event(5, libc::IN_DELETE, b"x")[..20].iter());
        let got: Vec<_> = parse(&buf).collect();
        assert_eq!(
            got,
            vec![
                RawEvent {
                    wd: 3,
                    mask: libc::IN_CREATE,
                    name: Some(b"new-file")
                },
                RawEvent {
                    wd: 4,
                    mask: libc::IN_MODIFY,
                    name: None
                },
            ]
        );
    }

    #[test]
    fn a_real_watch_reports_a_created_name() {
        let dir = tempfile::tempdir().unwrap();
        let ino = Inotify::new().unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        let wd = ino.add(d.as_raw_fd(), DIR_MASK).unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(ino.wait(2000));
        let mut buf = vec![0u8; 4096];
        let n = ino.read(&mut buf);
        let evs: Vec<_> = parse(&buf[..n]).collect();
        assert!(
            evs.iter()
                .any(|e| e.wd == wd && e.mask & libc::IN_CREATE != 0 && e.name == Some(b"f")),
            "{evs:?}"
        );
    }
}
