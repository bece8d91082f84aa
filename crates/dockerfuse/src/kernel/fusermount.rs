//! Mounting and unmounting as a user other than root, through the setuid
//! `fusermount3` helper, as libfuse does.
//!
//! mount(2) of a FUSE filesystem needs CAP_SYS_ADMIN, and `/dev/fuse` is
//! often `crw-------` (Debian's default): a user cannot open it. fusermount3
//! (setuid root) opens it, mounts, and hands the descriptor back over a
//! unix socket named by `_FUSE_COMMFD` (one SCM_RIGHTS message); it checks
//! on its own that the user may write to the mount point and that
//! `user_allow_other` is set for `allow_other`. The descriptor then
//! carries the session exactly as the one [`sys_mount`] returns.
//! Unmounting is `fusermount3 -u` (`-z` for a lazy detach): umount2 is
//! refused to users.
//!
//! [`sys_mount`]: crate::kernel::sys_mount

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::kernel::sys_mount::Request;

/// The helper's names, newest first (`fusermount` is FUSE 2's).
const NAMES: &[&str] = &["fusermount3", "fusermount"];

/// Where to look when PATH has none (a mount helper runs with no PATH).
const FALLBACK_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

/// The fusermount3 (or fusermount) to use: the first on PATH, else in the
/// usual directories.
pub(crate) fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(FALLBACK_DIRS.iter().map(PathBuf::from));
    NAMES
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
}

/// Why `helper` cannot mount for a user (`None` when it is setuid root).
pub(crate) fn not_setuid(helper: &Path) -> Option<String> {
    match std::fs::metadata(helper) {
        Err(e) => Some(format!("{}: {e}", helper.display())),
        Ok(m) if m.uid() != 0 || m.mode() & libc::S_ISUID == 0 => Some(format!(
            "{} is not setuid root (mode {:o}, owner uid {})",
            helper.display(),
            m.mode() & 0o7777,
            m.uid()
        )),
        Ok(_) => None,
    }
}

/// The `-o` list fusermount3 gets for `req` (it adds nosuid, nodev,
/// rootmode, user_id and group_id itself).
pub(crate) fn options(req: &Request) -> String {
    // fusermount3 splits on commas (a backslash escapes one): a container
    // name has none, but the source is kept plain whatever it holds.
    let fsname: String = req
        .fsname
        .chars()
        .map(|c| if c == ',' || c == '\\' { '_' } else { c })
        .collect();
    let mut o = format!("fsname={fsname},subtype=dockerfuse");
    if req.read_only {
        o.push_str(",ro");
    }
    if req.allow_other {
        o.push_str(",default_permissions,allow_other");
    }
    o
}

/// Mounts through `helper`: returns the `/dev/fuse` descriptor it passes
/// back. On failure the error's text is fusermount3's own message.
pub(crate) fn mount(helper: &Path, req: &Request) -> io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_fd: RawFd = theirs.as_raw_fd();
    let mut cmd = Command::new(helper);
    cmd.arg("-o")
        .arg(options(req))
        .arg("--")
        .arg(req.mountpoint)
        .env("_FUSE_COMMFD", theirs_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls fcntl(2), which is async-signal-safe,
    // on a descriptor that stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(theirs_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(theirs_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(theirs);
    let got = receive_fd(&ours);
    drop(ours);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait()?;
    let said = stderr.trim();
    match got {
        Ok(Some(fd)) if status.success() => Ok(fd),
        Ok(Some(_)) | Ok(None) => Err(mount_error(said, status.code())),
        Err(e) if said.is_empty() => Err(e),
        Err(_) => Err(mount_error(said, status.code())),
    }
}

/// fusermount3's message as an error with the errno its words mean.
fn mount_error(said: &str, code: Option<i32>) -> io::Error {
    let errno = if said.contains("user_allow_other")
        || said.contains("no write access")
        || said.contains("not owned by user")
        || said.contains("Permission denied")
        || said.contains("Operation not permitted")
    {
        libc::EPERM
    } else if said.contains("Device or resource busy") {
        libc::EBUSY
    } else {
        libc::EIO
    };
    let text = if said.is_empty() {
        format!(
            "fusermount3 failed without a message (exit status {})",
            code.map_or("unknown".to_owned(), |c| c.to_string())
        )
    } else {
        said.to_owned()
    };
    io::Error::new(
        io::Error::from_raw_os_error(errno).kind(),
        Errno(errno, text),
    )
}

/// An error text that keeps its errno (see [`errno_of`]).
#[derive(Debug)]
struct Errno(i32, String);

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Errno {}

/// The errno of an error from this module (or of any io error).
pub(crate) fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<Errno>())
            .map(|x| x.0)
    })
}

/// Reads the one message fusermount3 sends: a byte with the descriptor
/// attached. `Ok(None)` when the socket closed without one (it failed).
fn receive_fd(sock: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // Room for a few descriptors (only the first is kept; the rest are
    // closed), aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: msg points at buffers that live through the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let mut kept = None;
    // SAFETY: msg was filled by recvmsg; the CMSG macros walk its control
    // buffer within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: c points at a header inside the control buffer.
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a constant computation.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (h.cmsg_len as usize).saturating_sub(header) / size_of::<libc::c_int>();
            // SAFETY: the data of an SCM_RIGHTS message is `count` ints.
            let data = unsafe { libc::CMSG_DATA(c) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: i < count, inside the message; possibly unaligned.
                let fd = unsafe { data.add(i).read_unaligned() };
                if fd < 0 {
                    continue;
                }
                // SAFETY: the kernel installed fd in this process for us;
                // nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if kept.is_none() {
                    kept = Some(owned);
                }
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Ok(kept)
}

/// `fusermount3 -u [-z] MOUNTPOINT`; the error's text is its message.
pub(crate) fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let helper = find().unwrap_or_else(|| PathBuf::from(NAMES[0]));
    let mut args: Vec<OsString> = vec!["-u".into()];
    if lazy {
        args.push("-z".into());
    }
    args.push("--".into());
    args.push(mountpoint.into());
    let out = Command::new(&helper)
        .args(&args)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let errno = if said.contains("busy") {
        libc::EBUSY
    } else if said.contains("not found in") || said.contains("not mounted") {
        libc::EINVAL
    } else {
        libc::EPERM
    };
    Err(io::Error::new(
        io::Error::from_raw_os_error(errno).kind(),
        Errno(errno, said),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(mnt: &'a Path, name: &'a str, ro: bool, other: bool) -> Request<'a> {
        Request {
            mountpoint: mnt,
            fsname: name,
            read_only: ro,
            allow_other: other,
        }
    }

    #[test]
    fn options_carry_the_source_the_type_and_the_flags() {
        let m = Path::new("/m");
        assert_eq!(
            options(&req(m, "dockerfuse:web", false, false)),
            "fsname=dockerfuse:web,subtype=dockerfuse"
        );
        assert_eq!(
            options(&req(m, "dockerfuse:a,b\\c", true, true)),
            "fsname=dockerfuse:a_b_c,subtype=dockerfuse,ro,default_permissions,allow_other"
        );
    }

    #[test]
    fn fusermount_messages_keep_an_errno() {
        let e = mount_error(
            "fusermount3: option allow_other only allowed if 'user_allow_other' is set in /etc/fuse.conf",
            Some(1),
        );
        assert_eq!(errno_of(&e), Some(libc::EPERM));
        assert!(e.to_string().contains("user_allow_other"));
        let e = mount_error("", Some(1));
        assert_eq!(errno_of(&e), Some(libc::EIO));
        assert!(e.to_string().contains("exit status 1"), "{e}");
    }

    #[test]
    fn a_helper_that_is_not_setuid_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fusermount3");
        std::fs::write(&f, "").unwrap();
        let why = not_setuid(&f).unwrap();
        assert!(why.contains("not setuid root"), "{why}");
        assert!(not_setuid(&d.path().join("none")).is_some());
    }

    #[test]
    fn a_closed_socket_brings_no_descriptor() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        assert!(receive_fd(&a).unwrap().is_none());
    }
}
