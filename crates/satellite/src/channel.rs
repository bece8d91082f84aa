//! The private channel to a host on the same machine, and the descriptor
//! numbers that let its kernel reach open files directly.
//!
//! On request (`OpenChannel`, over the exec's stdin) the satellite makes a
//! connected, anonymous `AF_UNIX` socket pair and reports the descriptor
//! number of one end. A host on the same machine with the right to trace
//! this process takes that end with `pidfd_getfd`; `UseChannel` then makes
//! the satellite close its copy of the host's end, answer on stdin once
//! more, send a hello on its own end and answer everything there from then
//! on. Stdin stays the lifeline: the satellite still exits when it ends.
//!
//! Why nobody else can use the channel: a socket pair has no name, so
//! nothing can connect to it; after the switch the host's end exists only
//! in the host (the satellite closed its copy), and the satellite's end
//! only here. A process that could take a descriptor from this one (with
//! ptrace rights over it) could as well write into its stdout pipe or
//! take it over entirely: the channel is exactly as private as the exec's
//! own stdio, and the host treats what comes over it as untrusted as ever.
//!
//! With `fds`, open and create replies carry the descriptor number of the
//! open file, which the host takes the same way and hands to its kernel
//! as a FUSE passthrough backing file. The number stays valid until the
//! host releases the handle, and the host takes it before it tells the
//! kernel about the handle, so the number cannot be reused in between.

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use dockerfuse_proto::{frame, Entry, Errno, Response, HELLO_ID};

use crate::pool::{Out, Pool};
use crate::server;

/// Open and create replies carry descriptor numbers.
static REPORT_FDS: AtomicBool = AtomicBool::new(false);

/// The pair made by `OpenChannel`: (our end, the host's end), until the
/// switch.
static PENDING: Mutex<Option<(OwnedFd, OwnedFd)>> = Mutex::new(None);

/// The conversation has moved to the channel (it moves only once).
static SWITCHED: AtomicBool = AtomicBool::new(false);

/// Bytes of socket buffer asked for each direction (the kernel caps it).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// The reply to an open.
pub(crate) fn opened(fh: u64, fd: RawFd) -> Response<'static> {
    if REPORT_FDS.load(Ordering::Relaxed) {
        Response::OpenedFd { fh, fd: fd as u32 }
    } else {
        Response::Opened { fh }
    }
}

/// The descriptor number an open reply reports, when it reports one.
pub(crate) fn reported_fd(fd: RawFd) -> Option<u32> {
    REPORT_FDS.load(Ordering::Relaxed).then_some(fd as u32)
}

/// The reply to a create.
pub(crate) fn created(entry: Entry, fh: u64, fd: RawFd) -> Response<'static> {
    if REPORT_FDS.load(Ordering::Relaxed) {
        Response::CreatedFd {
            entry,
            fh,
            fd: fd as u32,
        }
    } else {
        Response::Created { entry, fh }
    }
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two ints, as socketpair wants.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(Errno::from_native(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    // SAFETY: socketpair succeeded: both descriptors are new and ours.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&pair.0, &pair.1] {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            // SAFETY: a valid socket and a pointer to an int of the given size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&SOCKET_BUFFER as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
    Ok(pair)
}

/// Writes one frame to `out` (already locked); a failure means the host
/// is gone.
fn write_frame(out: &mut Out, id: u64, resp: &Response<'_>) {
    let mut buf = Vec::new();
    if frame::encode(id, resp, &mut buf).is_err()
        || out.write_all(&buf).and_then(|_| out.flush()).is_err()
    {
        std::process::exit(0);
    }
}

/// `OpenChannel`: makes the pair and reports the host's end.
pub(crate) fn open_channel(pool: &Pool, id: u64) {
    let resp = if SWITCHED.load(Ordering::Relaxed) {
        Response::Error(Errno::EINVAL.0)
    } else {
        match socket_pair() {
            Ok((ours, theirs)) => {
                let fd = theirs.as_raw_fd() as u32;
                *PENDING.lock().unwrap_or_else(|p| p.into_inner()) = Some((ours, theirs));
                Response::Channel { fd }
            }
            Err(e) => Response::Error(e.0),
        }
    };
    pool.reply(id, &resp);
}

/// `UseChannel`: answers on the old stream, says hello on the channel,
/// sends every later response there and starts serving its requests.
pub(crate) fn use_channel(pool: &Pool, id: u64, fds: bool) {
    let pair = PENDING.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some((ours, theirs)) = pair else {
        return pool.reply(id, &Response::Error(Errno::EINVAL.0));
    };
    // The host holds its own copy by now.
    drop(theirs);
    let reader = match ours.try_clone() {
        Ok(r) => r,
        Err(e) => {
            let e = e.raw_os_error().unwrap_or(libc::EIO);
            return pool.reply(id, &Response::Error(e));
        }
    };
    REPORT_FDS.store(fds, Ordering::Relaxed);
    pool.with_output(|out| {
        write_frame(out, id, &Response::Ok);
        let mut channel: Out = Box::new(File::from(ours));
        write_frame(&mut channel, HELLO_ID, &Response::Hello(server::hello()));
        *out = channel;
        SWITCHED.store(true, Ordering::Relaxed);
    });
    let input = BufReader::with_capacity(256 * 1024, File::from(reader));
    if !pool.serve_in_turns(input) {
        eprintln!("dockerfuse-satellite: cannot start the channel's workers");
        std::process::exit(1);
    }
}
