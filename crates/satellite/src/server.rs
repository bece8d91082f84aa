//! The request loop: one reader, a small pool of workers, one output lock.
//!
//! The reader thread decodes frame headers from stdin and queues whole
//! frames; workers decode and run them and write each response as one
//! frame under the output lock. The pool grows (up to [`MAX_WORKERS`])
//! when every worker is busy, so a slow operation — a read from a FIFO,
//! a huge directory — never stalls the others.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex};

use dockerfuse_proto::frame::{self, read_frame};
use dockerfuse_proto::{
    Errno, HostHello, Request, Response, SatelliteHello, HELLO_ID, MAX_IO, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};

use crate::ops::Fs;
use crate::output::Output;

const START_WORKERS: usize = 4;
pub const MAX_WORKERS: usize = 32;

struct Job {
    id: u64,
    frame: Vec<u8>,
}

struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    workers: usize,
    /// Frame buffers handed back by workers, reused by the reader.
    spare: Vec<Vec<u8>>,
}

struct Shared<W> {
    fs: Fs,
    queue: Mutex<Queue>,
    ready: Condvar,
    out: Arc<Output<W>>,
}

/// Writes one response frame; a failed write means the host is gone.
fn send<W: Write>(out: &Output<W>, id: u64, resp: &Response<'_>, scratch: &mut Vec<u8>) {
    scratch.clear();
    if let Err(e) = frame::encode(id, resp, scratch) {
        eprintln!("dockerfuse-satellite: cannot encode reply {id}: {e}");
        scratch.clear();
        frame::encode(id, &Response::Error(Errno::EIO.0), scratch).expect("a small frame encodes");
    }
    if !out.send(scratch) {
        std::process::exit(0);
    }
}

fn worker<W: Write>(sh: Arc<Shared<W>>) {
    let mut data = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let job = {
            let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.idle += 1;
            while q.jobs.is_empty() {
                q = sh.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            q.idle -= 1;
            q.jobs.pop_front().expect("not empty")
        };
        let resp = match frame::decode::<Request<'_>>(&job.frame) {
            Ok(Request::Forget { nodes }) => {
                for (id, n) in nodes {
                    sh.fs.forget(id, n);
                }
                None
            }
            Ok(req) => Some(sh.fs.handle(req, &mut data)),
            Err(e) => {
                eprintln!("dockerfuse-satellite: bad request {}: {e}", job.id);
                Some(Response::Error(Errno::EPROTO.0))
            }
        };
        if let Some(resp) = resp {
            send(&sh.out, job.id, &resp, &mut scratch);
        }
        sh.fs.watch.replied();
        // Keep big buffers from growing without bound across requests.
        if data.capacity() > 2 * MAX_IO as usize {
            data = Vec::new();
        }
        let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.spare.len() < 2 * MAX_WORKERS {
            q.spare.push(job.frame);
        }
    }
}

fn spawn_worker<W: Write + Send + 'static>(sh: &Arc<Shared<W>>) -> bool {
    let sh2 = sh.clone();
    std::thread::Builder::new()
        .name("worker".into())
        .stack_size(256 * 1024)
        .spawn(move || worker(sh2))
        .is_ok()
}

/// Serves requests until the input ends or a shutdown frame arrives.
pub fn serve<R: Read, W: Write + Send + 'static>(
    fs: Fs,
    mut input: R,
    output: W,
) -> io::Result<()> {
    let (uid, gid) = crate::sys::getuid_gid();
    let hello = SatelliteHello {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        arch: std::env::consts::ARCH.into(),
        uid,
        gid,
        pid: std::process::id(),
        max_io: MAX_IO,
    };
    let sh = Arc::new(Shared {
        fs,
        queue: Mutex::new(Queue {
            jobs: VecDeque::new(),
            idle: 0,
            workers: 0,
            spare: Vec::new(),
        }),
        ready: Condvar::new(),
        out: Arc::new(Output::new(output)),
    });
    let (feed_out, feed_fs) = (sh.out.clone(), sh.clone());
    sh.fs.watch.set_sink(
        Arc::new(move |frames: &[u8]| feed_out.send(frames)),
        Arc::new(move |node| feed_fs.fs.stat_node(node)),
    );
    let mut scratch = Vec::new();
    send(&sh.out, HELLO_ID, &Response::Hello(hello), &mut scratch);

    let mut buf = Vec::new();
    match read_frame(&mut input, &mut buf)? {
        Some(HELLO_ID) => match frame::decode::<Request<'_>>(&buf) {
            Ok(Request::Hello(HostHello { protocol, .. }))
                if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol) => {}
            Ok(Request::Hello(h)) => {
                send(
                    &sh.out,
                    HELLO_ID,
                    &Response::Error(Errno::EPROTO.0),
                    &mut scratch,
                );
                return Err(io::Error::other(format!(
                    "host speaks protocol {}, this satellite {PROTOCOL_VERSION}",
                    h.protocol
                )));
            }
            _ => return Err(io::Error::other("first frame is not a hello")),
        },
        Some(_) => return Err(io::Error::other("first frame is not a hello")),
        None => return Ok(()),
    }

    for _ in 0..START_WORKERS {
        if spawn_worker(&sh) {
            sh.queue.lock().unwrap_or_else(|p| p.into_inner()).workers += 1;
        }
    }
    loop {
        let mut frame = sh
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spare
            .pop()
            .unwrap_or_default();
        let id = match read_frame(&mut input, &mut frame)? {
            None => return Ok(()),
            Some(id) => id,
        };
        if matches!(frame::decode::<Request<'_>>(&frame), Ok(Request::Shutdown)) {
            return Ok(());
        }
        let grow = {
            let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.jobs.push_back(Job { id, frame });
            let grow = q.idle < q.jobs.len() && q.workers < MAX_WORKERS;
            if grow {
                q.workers += 1;
            }
            grow
        };
        sh.ready.notify_one();
        if grow && !spawn_worker(&sh) {
            sh.queue.lock().unwrap_or_else(|p| p.into_inner()).workers -= 1;
        }
    }
}
