//! Write-only opens with the writeback cache and `--allow-other`.
//!
//! With the writeback cache the kernel reads back the rest of a page it
//! writes partly, so a write-only open is sent read-write. A caller who
//! may write a file but not read it (mode 0222 and the like) would then be
//! refused, where direct access lets it open the file. When the
//! read-write open as the caller is refused with EACCES, the file is
//! opened write-only as the caller (which checks the caller's right to
//! write, and truncates as the caller when asked), and the read-write
//! descriptor the kernel's reads back need is then opened as the
//! satellite's own identity; the write-only handle is closed. The
//! caller's reads go through the host kernel's permission check
//! (`default_permissions`), which refuses an O_RDONLY or O_RDWR open of
//! such a file before it reaches us; only the page cache reads through
//! this descriptor.

use std::sync::Arc;

use dockerfuse_proto::{Abi, Errno, Request};

use super::caller::Caller;
use super::replies;
use super::{wire_flags, Cb, Failure, Transport};

/// `req` as the caller's, when there is one.
fn as_caller(caller: Option<&Caller>, req: Request<'static>) -> Request<'static> {
    match caller {
        Some(c) => Request::As {
            uid: c.uid,
            gid: c.gid,
            groups: c.groups.to_vec(),
            req: Box::new(req),
        },
        None => req,
    }
}

/// Opens `node` with `flags` (read-write, the writeback cache's form of
/// the caller's write-only open) as `caller`, falling back as described
/// above on EACCES. Answers the handle and the satellite's descriptor
/// number.
pub(super) fn open<T: Transport>(
    rpc: &Arc<T>,
    caller: Option<Caller>,
    node: u64,
    flags: i32,
    legacy: Option<Abi>,
    cb: Cb<(u64, Option<u32>)>,
) {
    let open = |flags| Request::Open {
        node,
        flags: wire_flags(legacy, flags),
    };
    let first = as_caller(caller.as_ref(), open(flags));
    let rpc2 = rpc.clone();
    rpc.call(
        &first,
        Box::new(
            move |r| match r.map_err(Failure::transport).and_then(replies::opened) {
                Ok(o) => cb(Ok((o.fh, o.fd))),
                Err(Failure {
                    errno: Errno::EACCES,
                    ..
                }) if caller.is_some() => write_then_read(rpc2, caller, node, flags, legacy, cb),
                Err(e) => cb(Err(e)),
            },
        ),
    )
}

fn write_then_read<T: Transport>(
    rpc: Arc<T>,
    caller: Option<Caller>,
    node: u64,
    flags: i32,
    legacy: Option<Abi>,
    cb: Cb<(u64, Option<u32>)>,
) {
    let write_only = (flags & !libc::O_ACCMODE) | libc::O_WRONLY;
    let req = as_caller(
        caller.as_ref(),
        Request::Open {
            node,
            flags: wire_flags(legacy, write_only),
        },
    );
    let rpc2 = rpc.clone();
    rpc.call(
        &req,
        Box::new(move |r| {
            let checked = match r.map_err(Failure::transport).and_then(replies::opened) {
                Ok(o) => o.fh,
                Err(e) => return cb(Err(e)),
            };
            // Created and truncated already: the second open only opens.
            let plain = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
            let rpc3 = rpc2.clone();
            rpc2.call(
                &Request::Open {
                    node,
                    flags: wire_flags(legacy, plain),
                },
                Box::new(move |r| {
                    let r = r
                        .map_err(Failure::transport)
                        .and_then(replies::opened)
                        .map(|o| (o.fh, o.fd));
                    rpc3.call(&Request::Release { fh: checked }, Box::new(|_| {}));
                    tracing::debug!(
                        node,
                        ok = r.is_ok(),
                        "write-only open: the caller may write, the read side is the satellite's"
                    );
                    cb(r)
                }),
            )
        }),
    )
}
