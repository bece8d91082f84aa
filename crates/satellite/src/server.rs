//! The request loop: the handshake, then one reader that queues frames
//! for the worker [`Pool`] until the input ends or a shutdown arrives.
//!
//! The reader parses frame headers only; it tells a shutdown by the
//! request's variant tag, without decoding the payload, which is left to
//! the workers.

use std::io::{self, Read, Write};

use dockerfuse_proto::frame::{self, read_frame};
use dockerfuse_proto::{
    variant_tag, Errno, HostHello, Request, Response, SatelliteHello, HELLO_ID, MAX_IO,
    PROTOCOL_VERSION,
};

use crate::ops::Fs;
use crate::pool::Pool;

/// Serves requests until the input ends or a shutdown frame arrives.
pub(crate) fn serve<R: Read, W: Write + Send + 'static>(
    fs: Fs,
    mut input: R,
    output: W,
) -> io::Result<()> {
    let pool = Pool::new(fs, output);
    pool.reply(HELLO_ID, &Response::Hello(hello()));
    if !host_hello(&pool, &mut input)? {
        return Ok(());
    }
    pool.start();
    read_requests(&pool, &mut input)
}

/// The satellite's hello: who and what it is.
fn hello() -> SatelliteHello {
    let (uid, gid) = crate::sys::getuid_gid();
    SatelliteHello {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        arch: std::env::consts::ARCH.into(),
        uid,
        gid,
        pid: std::process::id(),
        max_io: MAX_IO,
    }
}

/// Reads the host's hello and checks its protocol version (answering a
/// mismatch with EPROTO). False when the input ends before it.
fn host_hello<R: Read, W: Write + Send + 'static>(
    pool: &Pool<W>,
    input: &mut R,
) -> io::Result<bool> {
    let mut buf = Vec::new();
    match read_frame(input, &mut buf)? {
        None => return Ok(false),
        Some(HELLO_ID) => {}
        Some(_) => return Err(io::Error::other("first frame is not a hello")),
    }
    match frame::decode::<Request<'_>>(&buf) {
        Ok(Request::Hello(HostHello {
            protocol: PROTOCOL_VERSION,
            ..
        })) => Ok(true),
        Ok(Request::Hello(h)) => {
            pool.reply(HELLO_ID, &Response::Error(Errno::EPROTO.0));
            Err(io::Error::other(format!(
                "host speaks protocol {}, this satellite {PROTOCOL_VERSION}",
                h.protocol
            )))
        }
        _ => Err(io::Error::other("first frame is not a hello")),
    }
}

/// Queues every request frame until the input ends or a shutdown arrives.
fn read_requests<R: Read, W: Write + Send + 'static>(
    pool: &Pool<W>,
    input: &mut R,
) -> io::Result<()> {
    let shutdown = Some(Request::shutdown_tag());
    loop {
        let mut frame = pool.spare_buffer();
        let Some(id) = read_frame(input, &mut frame)? else {
            return Ok(());
        };
        if variant_tag(&frame) == shutdown {
            return Ok(());
        }
        pool.submit(id, frame);
    }
}
