//! The request loop: the handshake, then one reader that queues frames
//! for the worker [`Pool`] until the input ends or a shutdown arrives.
//!
//! The reader parses frame headers only; it tells a shutdown (and the two
//! requests that move the conversation to a private channel, see
//! `channel`) by the request's variant tag, without decoding the payload,
//! which is left to the workers. After a switch, a second reader serves
//! the channel and every response goes there; stdin stays the lifeline.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use dockerfuse_proto::frame::{self, read_frame};
use dockerfuse_proto::{
    variant_tag, Errno, HostHello, Request, Response, SatelliteHello, HELLO_ID, MAX_IO,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

use crate::ops::Fs;
use crate::pool::Pool;

/// The protocol the host's hello said it speaks (the lower of both
/// sides'): replies newer than it are not sent.
static HOST_PROTOCOL: AtomicU32 = AtomicU32::new(0);

/// The protocol the host speaks (0 before its hello).
pub(crate) fn host_protocol() -> u32 {
    HOST_PROTOCOL.load(Ordering::Relaxed)
}

/// Serves requests until the input ends or a shutdown frame arrives.
pub(crate) fn serve<R: Read, W: Write + Send + 'static>(
    fs: Fs,
    mut input: R,
    output: W,
) -> io::Result<()> {
    let pool = Pool::new(fs, Box::new(output));
    pool.connect_feed();
    pool.reply(HELLO_ID, &Response::Hello(hello()));
    if !host_hello(&pool, &mut input)? {
        return Ok(());
    }
    pool.start();
    read_requests(&pool, &mut input)
}

/// The satellite's hello: who and what it is (the first frame on every
/// channel).
pub(crate) fn hello() -> SatelliteHello {
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
fn host_hello<R: Read>(pool: &Pool, input: &mut R) -> io::Result<bool> {
    let mut buf = Vec::new();
    match read_frame(input, &mut buf)? {
        None => return Ok(false),
        Some(HELLO_ID) => {}
        Some(_) => return Err(io::Error::other("first frame is not a hello")),
    }
    match frame::decode::<Request<'_>>(&buf) {
        Ok(Request::Hello(HostHello { protocol, .. }))
            if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol) =>
        {
            HOST_PROTOCOL.store(protocol, Ordering::Relaxed);
            crate::ops::set_host_protocol(protocol);
            Ok(true)
        }
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

/// What a frame read from the host asks of the reader itself.
pub(crate) enum Framed {
    /// An ordinary request, for a worker.
    Request(u64, Vec<u8>),
    /// Served already (the channel requests), or nothing to do.
    Done,
    /// The input ended or a shutdown arrived.
    End,
}

/// Reads one frame into a spare buffer and serves what the reader must
/// serve itself: a shutdown ends, the channel requests are answered here,
/// in order with the others.
pub(crate) fn read_request<R: Read>(pool: &Pool, input: &mut R) -> io::Result<Framed> {
    let mut frame = pool.spare_buffer();
    let Some(id) = read_frame(input, &mut frame)? else {
        return Ok(Framed::End);
    };
    let tag = variant_tag(&frame);
    if tag == Some(Request::shutdown_tag()) {
        return Ok(Framed::End);
    }
    if tag == Some(Request::OpenChannel.tag())
        || tag == Some(Request::UseChannel { fds: false }.tag())
    {
        match frame::decode::<Request<'_>>(&frame) {
            Ok(Request::OpenChannel) => crate::channel::open_channel(pool, id),
            Ok(Request::UseChannel { fds }) => crate::channel::use_channel(pool, id, fds),
            _ => pool.reply(id, &Response::Error(Errno::EPROTO.0)),
        }
        return Ok(Framed::Done);
    }
    Ok(Framed::Request(id, frame))
}

/// Queues every request frame for the workers until the input ends or a
/// shutdown arrives.
pub(crate) fn read_requests<R: Read>(pool: &Pool, input: &mut R) -> io::Result<()> {
    loop {
        match read_request(pool, input)? {
            Framed::Request(id, frame) => pool.submit(id, frame),
            Framed::Done => {}
            Framed::End => return Ok(()),
        }
    }
}
