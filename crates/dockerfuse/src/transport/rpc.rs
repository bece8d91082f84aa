//! The pipelined RPC client: the core's [`Transport`] over a satellite
//! connection.
//!
//! [`Rpc::call`] frames a request with a fresh id, records its completion
//! callback and queues the frame; it never blocks, so the FUSE session
//! loop never waits on the network. A writer task drains the queue into
//! the satellite's input, coalescing frames; a reader task reassembles
//! frames from its output (Docker's multiplexed chunks do not line up with
//! frames) and completes each callback with the decoded response, which
//! borrows from the receive buffer. The connection is either an exec's
//! attached streams ([`Rpc::start`]) or any pair of byte streams, such as
//! a child's pipes ([`Rpc::start_bytes`]).
//!
//! The satellite is not trusted: an oversize frame or a broken stream ends
//! the connection; a reply to an unknown id is dropped with a warning; an
//! undecodable reply fails its own request with EIO. When the connection
//! ends, for whatever reason, every pending and every later request fails
//! with EIO at once and the `closed` notification fires.
//!
//! Frames with the reserved id `EVENT_ID` after the hello are not replies
//! but the satellite's change feed: they go to the handler set with
//! [`Rpc::on_events`], on the reader's thread, in stream order with the
//! replies.
//!
//! A satellite that stops answering without closing (a paused container)
//! is caught by a watchdog: when requests have waited longer than the stall
//! limit and nothing at all has arrived for that long, they fail with EIO;
//! the connection stays up, so work resumes once the satellite does. A
//! request that may legitimately wait forever (a read from an empty FIFO)
//! is not mistaken for a stall: before the limit, the watchdog sends a
//! cheap probe, and any frame coming back proves the satellite alive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockerfuse_proto::frame::{self, FrameDecoder};
use dockerfuse_proto::{Errno, Request, Response, SatelliteHello, EVENT_ID, HELLO_ID, ROOT_NODE};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{AsyncRead, AsyncWrite, AsyncWriteExt, Stream, StreamExt};
use smol::channel::{Receiver, Sender};
use tracing::{debug, warn};

use crate::engine::api::{Input, Output};
pub use crate::fs::{Done, Transport};

/// One piece of what the satellite's side sends.
enum Chunk {
    /// Protocol bytes (the exec's stdout).
    Out(Bytes),
    /// Log lines (the exec's stderr).
    Err(Bytes),
    /// Unframed text: the engine's own error when the exec could not start.
    Console(Bytes),
}

type Incoming = Pin<Box<dyn Stream<Item = std::io::Result<Chunk>> + Send>>;
type Outgoing = Pin<Box<dyn AsyncWrite + Send>>;
type Task = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

struct Pending {
    map: HashMap<u64, (Done, Instant)>,
    closed: Option<String>,
}

struct Inner {
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// When the last bytes came from the satellite (ms since `epoch`).
    last_rx: AtomicU64,
    epoch: Instant,
    tx: Sender<Vec<u8>>,
    /// On a socket: frames are written by the thread that sends them.
    inline: Option<InlineWriter>,
    closed_tx: Sender<String>,
    events: Mutex<Option<EventHandler>>,
}

/// A socket the sending thread writes its frame to itself when it can do
/// so at once, saving the hand-off to the writer task (the local channel's
/// round trip). A frame the socket cannot take whole at once goes (the
/// rest of it) to the writer task, and so does every frame after it until
/// the writer has written them: frames never interleave and never block
/// the sender (a paused container stops reading, and the watchdog, not a
/// blocked kernel request, decides then).
struct InlineWriter {
    fd: std::os::fd::OwnedFd,
    /// Bytes handed to the writer task and not yet written.
    queued: Mutex<usize>,
}

impl InlineWriter {
    /// Writes what the socket takes of `buf` now: how many bytes.
    fn try_write(&self, buf: &[u8]) -> usize {
        use std::os::fd::AsRawFd;
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: the pointer and length describe the live slice
            // `buf[done..]`; the descriptor is owned by `self`.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    buf[done..].as_ptr().cast(),
                    buf.len() - done,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            match n {
                n if n > 0 => done += n as usize,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                // Full, or broken: the writer task waits, or reports it.
                _ => break,
            }
        }
        done
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, usize> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Receives the payload of each change frame (must not block).
pub type EventHandler = Box<dyn Fn(&[u8]) + Send + Sync>;

/// The client end of one satellite connection.
#[derive(Clone)]
pub struct Rpc {
    inner: Arc<Inner>,
}

/// Handles returned by [`Rpc::start`].
pub struct Started {
    pub rpc: Rpc,
    /// Yields the satellite's hello, or nothing if the stream ended first.
    pub hello: Receiver<SatelliteHello>,
    /// Fires once with the reason when the connection ends.
    pub closed: Receiver<String>,
    /// Satellite stderr lines collected before the hello (start failures).
    pub early_stderr: Arc<Mutex<String>>,
    /// The reader and writer tasks; run them on an executor.
    pub tasks: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Rpc {
    /// Wires a client to an exec's attached streams. Requests that wait
    /// longer than `stall` on a silent satellite fail with EIO.
    pub fn start(output: Output, input: Input, stall: Duration) -> Started {
        use bollard::container::LogOutput as L;
        let incoming = output.map(|c| {
            c.map(|c| match c {
                L::StdOut { message } => Chunk::Out(message),
                L::StdErr { message } => Chunk::Err(message),
                L::Console { message } => Chunk::Console(message),
                L::StdIn { .. } => Chunk::Out(Bytes::new()),
            })
            .map_err(std::io::Error::other)
        });
        Self::start_chunks(
            Box::pin(incoming),
            Box::pin(async_compat::Compat::new(input)),
            stall,
        )
    }

    /// Wires a client to plain byte streams (a child's pipes, a socket):
    /// everything read is protocol, there is no log channel.
    pub fn start_bytes(
        reader: impl AsyncRead + Send + 'static,
        writer: impl AsyncWrite + Send + 'static,
        stall: Duration,
    ) -> Started {
        Self::start_chunks(Self::byte_chunks(reader), Box::pin(writer), stall)
    }

    /// A byte stream as protocol chunks.
    fn byte_chunks(reader: impl AsyncRead + Send + 'static) -> Incoming {
        let incoming = futures_util::stream::unfold(
            (Box::pin(reader), vec![0u8; 256 * 1024]),
            |(mut r, mut buf)| async move {
                use futures_util::AsyncReadExt;
                match r.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        let chunk = Bytes::copy_from_slice(&buf[..n]);
                        Some((Ok(Chunk::Out(chunk)), (r, buf)))
                    }
                    Err(e) => Some((Err(e), (r, buf))),
                }
            },
        );
        Box::pin(incoming)
    }

    /// Wires a client to a connected stream socket (the local channel):
    /// like [`Rpc::start_bytes`], and frames are written by the thread
    /// that sends them whenever the socket takes them at once; replies
    /// are read, and their callbacks run, on a thread of their own that
    /// the kernel wakes when the socket has data (no reactor in between:
    /// on an executor, the thread that polls the reactor is often another
    /// one, which then wakes the reader's, a second hand-off per reply).
    pub fn start_socket(
        socket: std::os::unix::net::UnixStream,
        stall: Duration,
    ) -> std::io::Result<Started> {
        let fd = std::os::fd::OwnedFd::from(socket.try_clone()?);
        let reader = std::os::fd::OwnedFd::from(socket.try_clone()?);
        let writer = smol::Async::new(socket)?;
        let inline = InlineWriter {
            fd,
            queued: Mutex::new(0),
        };
        let (started, reader) = Self::start_with(
            Self::socket_chunks(reader),
            Box::pin(writer),
            stall,
            Some(inline),
        );
        std::thread::Builder::new()
            .name("rpc-reader".into())
            .spawn(move || smol::future::block_on(reader))?;
        Ok(started)
    }

    /// What a socket delivers, read by blocking the calling thread (the
    /// descriptor is non-blocking, shared with the writer: wait with
    /// poll(2), then read). The stream is never pending.
    fn socket_chunks(fd: std::os::fd::OwnedFd) -> Incoming {
        let incoming =
            futures_util::stream::unfold((fd, vec![0u8; 256 * 1024]), |(fd, mut buf)| async move {
                match recv_blocking(&fd, &mut buf) {
                    Ok(0) => None,
                    Ok(n) => {
                        let chunk = Bytes::copy_from_slice(&buf[..n]);
                        Some((Ok(Chunk::Out(chunk)), (fd, buf)))
                    }
                    Err(e) => Some((Err(e), (fd, buf))),
                }
            });
        Box::pin(incoming)
    }

    fn start_chunks(output: Incoming, input: Outgoing, stall: Duration) -> Started {
        let (mut started, reader) = Self::start_with(output, input, stall, None);
        let tasks = std::mem::replace(&mut started.tasks, Box::pin(async {}));
        started.tasks = Box::pin(async move {
            futures_util::future::join(reader, tasks).await;
        });
        started
    }

    /// The client, and apart from its other tasks the one that reads
    /// `output`, which ends with the connection.
    fn start_with(
        output: Incoming,
        input: Outgoing,
        stall: Duration,
        inline: Option<InlineWriter>,
    ) -> (Started, Task) {
        let (tx, rx) = smol::channel::unbounded();
        let (closed_tx, closed) = smol::channel::bounded(1);
        let (hello_tx, hello) = smol::channel::bounded(1);
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending {
                map: HashMap::new(),
                closed: None,
            }),
            next_id: AtomicU64::new(HELLO_ID + 1),
            last_rx: AtomicU64::new(0),
            epoch: Instant::now(),
            tx,
            inline,
            closed_tx,
            events: Mutex::new(None),
        });
        let early_stderr = Arc::new(Mutex::new(String::new()));
        let rpc = Rpc { inner };
        let r = rpc.clone();
        let w = rpc.clone();
        let es = early_stderr.clone();
        let watch = rpc.clone();
        let reader = Box::pin(async move {
            let why = read_loop(&r, output, hello_tx, es).await;
            r.close(why);
        });
        let tasks = Box::pin(async move {
            let writer = async move {
                let written = |n: usize| {
                    if let Some(d) = &w.inner.inline {
                        let mut q = d.queued();
                        *q = q.saturating_sub(n);
                    }
                };
                let why = write_loop(rx, input, written).await;
                if let Some(why) = why {
                    w.close(why);
                }
            };
            let watchdog = async move { watch.watchdog(stall).await };
            futures_util::future::join(writer, watchdog).await;
        });
        let started = Started {
            rpc,
            hello,
            closed,
            early_stderr,
            tasks,
        };
        (started, reader)
    }

    /// Routes the satellite's change frames to `handler`.
    pub fn on_events(&self, handler: EventHandler) {
        *self.inner.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    fn event(&self, payload: &[u8]) {
        match &*self.inner.events.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(h) => h(payload),
            None => debug!("change frame without a feed dropped"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a frame with a given id (the hello).
    pub fn send_frame(&self, id: u64, req: &Request<'_>) -> Result<(), Errno> {
        let mut buf = Vec::new();
        frame::encode(id, req, &mut buf).map_err(|_| Errno::EINVAL)?;
        self.send_bytes(buf)
    }

    /// Sends one encoded frame: on a socket straight from this thread
    /// when it can, else through the writer task.
    fn send_bytes(&self, mut buf: Vec<u8>) -> Result<(), Errno> {
        let tx = &self.inner.tx;
        let Some(d) = &self.inner.inline else {
            return tx.try_send(buf).map_err(|_| Errno::EIO);
        };
        if tx.is_closed() {
            return Err(Errno::EIO);
        }
        let mut queued = d.queued();
        if *queued == 0 {
            let n = d.try_write(&buf);
            if n == buf.len() {
                return Ok(());
            }
            buf.drain(..n);
        }
        *queued += buf.len();
        tx.try_send(buf).map_err(|_| Errno::EIO)
    }

    /// Ends the connection: every pending request fails with EIO, later
    /// ones fail at once, and the closed notification fires (once).
    pub fn close(&self, why: String) {
        let drained: Vec<Done> = {
            let mut p = self.lock();
            if p.closed.is_some() {
                return;
            }
            debug!(reason = %why, pending = p.map.len(), "satellite connection closed");
            p.closed = Some(why.clone());
            p.map.drain().map(|(_, (d, _))| d).collect()
        };
        for d in drained {
            d(Err(Errno::EIO));
        }
        self.inner.tx.close();
        let _ = self.inner.closed_tx.try_send(why);
    }

    /// Asks the satellite to exit, then closes its stdin.
    pub fn shutdown(&self) {
        let _ = self.send_frame(u64::MAX, &Request::Shutdown);
        self.inner.tx.close();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    fn saw_traffic(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.last_rx.store(ms, Ordering::Relaxed);
    }

    fn since_traffic(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_rx.load(Ordering::Relaxed));
        self.inner.epoch.elapsed().saturating_sub(last)
    }

    /// Fails the requests that have waited longer than `stall` while the
    /// satellite said nothing; probes it at half that.
    async fn watchdog(&self, stall: Duration) {
        let tick = (stall / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut probing = false;
        loop {
            smol::Timer::after(tick).await;
            let oldest = {
                let p = self.lock();
                if p.closed.is_some() {
                    return;
                }
                p.map.values().map(|(_, t)| t.elapsed()).max()
            };
            let Some(oldest) = oldest else {
                probing = false;
                continue;
            };
            let quiet = self.since_traffic();
            if oldest > stall && quiet > stall {
                let stalled: Vec<Done> = {
                    let mut p = self.lock();
                    let ids: Vec<u64> = p
                        .map
                        .iter()
                        .filter(|(_, (_, t))| t.elapsed() > stall)
                        .map(|(id, _)| *id)
                        .collect();
                    ids.iter()
                        .filter_map(|id| p.map.remove(id))
                        .map(|(d, _)| d)
                        .collect()
                };
                warn!(requests = stalled.len(), waited = ?stall, "the satellite does not answer (container paused?): failing requests with EIO");
                for d in stalled {
                    d(Err(Errno::EIO));
                }
                probing = false;
            } else if oldest > stall / 2 && quiet > stall / 2 && !probing {
                probing = true;
                self.call(
                    &Request::GetAttr {
                        node: ROOT_NODE,
                        fh: None,
                    },
                    Box::new(|_| {}),
                );
            } else if quiet < stall / 2 {
                probing = false;
            }
        }
    }

    fn complete(&self, id: u64, payload: &[u8]) {
        let done = self.lock().map.remove(&id).map(|(d, _)| d);
        match done {
            Some(done) => match frame::decode::<Response<'_>>(payload) {
                Ok(resp) => done(Ok(resp)),
                Err(e) => {
                    warn!(id, error = %e, "undecodable reply");
                    done(Err(Errno::EIO))
                }
            },
            None => warn!(id, "reply to no pending request dropped"),
        }
    }
}

impl Transport for Rpc {
    fn call(&self, req: &Request<'_>, done: Done) {
        crate::mount::waits::sent(req, true);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = Vec::new();
        if frame::encode(id, req, &mut buf).is_err() {
            return done(Err(Errno::EINVAL));
        }
        {
            let mut p = self.lock();
            if p.closed.is_some() {
                drop(p);
                return done(Err(Errno::EIO));
            }
            p.map.insert(id, (done, Instant::now()));
        }
        if self.send_bytes(buf).is_err() {
            if let Some((done, _)) = self.lock().map.remove(&id) {
                done(Err(Errno::EIO));
            }
        }
    }

    fn post(&self, req: &Request<'_>) {
        crate::mount::waits::sent(req, false);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.send_frame(id, req);
    }
}

/// Reads what `fd` (a non-blocking socket) has, waiting for it with
/// poll(2): how many bytes, 0 at its end.
fn recv_blocking(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the pointer and length describe `buf`, which lives
        // across the call; the descriptor is owned by the caller.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {}
            _ => return Err(e),
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Largest write to the exec's stdin in one go.
const MAX_BATCH: usize = 4 << 20;

/// Writes what the senders queued, telling `written` how many bytes each
/// write took.
async fn write_loop(
    rx: Receiver<Vec<u8>>,
    mut input: Outgoing,
    written: impl Fn(usize),
) -> Option<String> {
    let mut batch: Vec<u8> = Vec::new();
    while let Ok(first) = rx.recv().await {
        if rx.is_empty() {
            batch = first;
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
        }
        if let Err(e) = input.write_all(&batch).await {
            return Some(format!("writing to the satellite failed: {e}"));
        }
        if let Err(e) = input.flush().await {
            return Some(format!("writing to the satellite failed: {e}"));
        }
        written(batch.len());
    }
    // Queue closed: shutdown was asked. Half-close stdin as well.
    let _ = input.close().await;
    None
}

fn looks_like_text(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|&c| c == b'\n' || c == b'\r' || c == b'\t' || (0x20..0x7f).contains(&c))
}

/// Longest satellite stderr line kept (the rest is cut).
const MAX_LOG_LINE: usize = 4096;

async fn read_loop(
    rpc: &Rpc,
    mut output: Incoming,
    hello_tx: Sender<SatelliteHello>,
    early: Arc<Mutex<String>>,
) -> String {
    let mut dec = FrameDecoder::new();
    let mut said_hello = false;
    let mut prehello = Vec::new();
    let mut line = Vec::new();
    loop {
        let chunk = match output.next().await {
            None => return "the satellite's output ended".into(),
            Some(Err(e)) => return format!("reading from the satellite failed: {e}"),
            Some(Ok(c)) => c,
        };
        rpc.saw_traffic();
        match chunk {
            Chunk::Out(message) => {
                if !said_hello && prehello.len() < 512 {
                    prehello.extend_from_slice(&message[..message.len().min(512 - prehello.len())]);
                }
                dec.push(&message);
                loop {
                    match dec.next_frame() {
                        Ok(None) => break,
                        Ok(Some((HELLO_ID, payload))) if !said_hello => {
                            said_hello = true;
                            match frame::decode::<Response<'_>>(payload) {
                                Ok(Response::Hello(h)) => {
                                    let _ = hello_tx.try_send(h);
                                }
                                _ => return "the satellite's first frame is not a hello".into(),
                            }
                        }
                        Ok(Some((EVENT_ID, payload))) => rpc.event(payload),
                        Ok(Some((id, payload))) => rpc.complete(id, payload),
                        // Text instead of a hello: the runtime's own error
                        // (exec format error, permission denied...).
                        Err(_) if !said_hello && looks_like_text(&prehello) => {
                            return format!(
                                "the exec failed: {}",
                                String::from_utf8_lossy(&prehello).trim()
                            );
                        }
                        Err(e) => return format!("protocol error from the satellite: {e}"),
                    }
                }
            }
            Chunk::Err(message) => {
                for &b in message.iter() {
                    if b == b'\n' {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        if !said_hello {
                            let mut e = early.lock().unwrap_or_else(|p| p.into_inner());
                            if e.len() < 16 * 1024 {
                                e.push_str(&text);
                                e.push('\n');
                            }
                        }
                        warn!(target: "dockerfuse::satellite", "{text}");
                        line.clear();
                    } else if line.len() < MAX_LOG_LINE {
                        line.push(b);
                    }
                }
            }
            // Unframed output: the engine's own error text when the exec
            // could not start (exec format error, permission denied...).
            Chunk::Console(message) => {
                let text = String::from_utf8_lossy(&message[..message.len().min(MAX_LOG_LINE)])
                    .trim()
                    .to_owned();
                return format!("the exec failed: {text}");
            }
        }
    }
}
