//! The worker pool: a queue of request frames, the workers that decode
//! and run them, and the output lock each response frame is written under.
//!
//! The pool starts with [`START_WORKERS`] and grows (up to
//! [`MAX_WORKERS`]) whenever a frame arrives while every worker is busy,
//! so a slow operation — a read from a FIFO, a huge directory — never
//! stalls the others. Frame buffers go back to the reader for reuse.
//!
//! The private channel is served in turns instead ([`Pool::serve_in_turns`]):
//! its workers take turns reading it; the one reading runs each quick
//! request itself (metadata, small I/O on regular files: `Fs::is_quick`)
//! and goes on reading, and lets the next worker read only when a request
//! may wait, which it then runs. So a round trip wakes one thread of the
//! satellite, the one that reads it (the stdin reader's queue costs one
//! more: a worker's).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use dockerfuse_proto::frame;
use dockerfuse_proto::{Errno, Request, Response, MAX_IO};

use crate::ops::Fs;
use crate::output::Output;
use crate::server::{self, Framed};

const START_WORKERS: usize = 4;
const MAX_WORKERS: usize = 32;

/// One request frame waiting for a worker.
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

/// Where responses go: stdout, or the private channel after a switch.
pub(crate) type Out = Box<dyn Write + Send>;

struct Shared {
    fs: Fs,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Shared with the change feed, which sends its frames through it.
    out: Arc<Output<Out>>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every change to the queue is complete under the lock: a panicked
        // holder cannot have left it half-changed.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pool, as a reader sees it (the channel's reader has a clone).
#[derive(Clone)]
pub(crate) struct Pool {
    sh: Arc<Shared>,
}

impl Pool {
    /// A pool with no workers yet, serving `fs` and answering on `out`.
    pub(crate) fn new(fs: Fs, out: Out) -> Pool {
        let queue = Queue {
            jobs: VecDeque::new(),
            idle: 0,
            workers: 0,
            spare: Vec::new(),
        };
        Pool {
            sh: Arc::new(Shared {
                fs,
                queue: Mutex::new(queue),
                ready: Condvar::new(),
                out: Arc::new(Output::new(out)),
            }),
        }
    }

    /// Writes one response frame from the reader's side (the handshake).
    pub(crate) fn reply(&self, id: u64, resp: &Response<'_>) {
        send(&self.sh.out, id, resp, &mut Vec::new());
    }

    /// Runs `f` on the output once everything queued for it is written,
    /// with no response written meanwhile (the switch to the private
    /// channel).
    pub(crate) fn with_output(&self, f: impl FnOnce(&mut Out)) {
        self.sh.out.switch(f)
    }

    /// Lets the change feed send its frames on the output and stat nodes.
    pub(crate) fn connect_feed(&self) {
        let (out, sh) = (self.sh.out.clone(), self.sh.clone());
        self.sh.fs.watch.set_sink(
            Arc::new(move |frames: &[u8]| out.send(frames)),
            Arc::new(move |node| sh.fs.stat_node(node)),
        );
    }

    /// Starts the first workers.
    pub(crate) fn start(&self) {
        for _ in 0..START_WORKERS {
            if spawn_worker(&self.sh) {
                self.sh.queue().workers += 1;
            }
        }
    }

    /// A buffer to read the next frame into.
    pub(crate) fn spare_buffer(&self) -> Vec<u8> {
        self.sh.queue().spare.pop().unwrap_or_default()
    }

    /// Queues a request frame, adding a worker if none is idle.
    pub(crate) fn submit(&self, id: u64, frame: Vec<u8>) {
        let grow = {
            let mut q = self.sh.queue();
            q.jobs.push_back(Job { id, frame });
            let grow = q.idle < q.jobs.len() && q.workers < MAX_WORKERS;
            if grow {
                q.workers += 1;
            }
            grow
        };
        self.sh.ready.notify_one();
        if grow && !spawn_worker(&self.sh) {
            self.sh.queue().workers -= 1;
        }
    }
}

/// An input read in turns by the workers that serve it.
///
/// One worker at a time holds the turn: it alone reads the input, and
/// runs each quick request itself. It gives the turn up at a request that
/// may wait, waking a worker that waits for it (or starting one). A quick
/// request that waits after all (a lookup on a hung network filesystem)
/// loses the turn to the watchdog thread after a [`STUCK`] tick or two, so
/// the channel goes on; the stuck worker waits for a turn again once done.
struct Turns<R> {
    /// Locked only by the worker holding the turn (so never contended).
    input: Mutex<R>,
    state: Mutex<TurnState>,
    /// Signalled when the turn is free.
    free: Condvar,
    /// The watchdog, once started.
    watchdog: std::sync::OnceLock<std::thread::Thread>,
}

struct TurnState {
    /// Nobody holds the turn.
    free: bool,
    /// Counts the turns taken: the holder's number tells it whether the
    /// watchdog took its turn away.
    turn: u64,
    /// The quick request being run by the holder, by serial number.
    running: Option<u64>,
    serial: u64,
    /// Workers waiting for the turn.
    waiting: usize,
    /// Workers serving this input.
    workers: usize,
    /// The watchdog sleeps until the next quick request (idle channel).
    watchdog_parked: bool,
}

/// How long a quick request may run before the watchdog may hand the turn
/// on (it checks every tick: a request stuck one to two ticks).
const STUCK: std::time::Duration = std::time::Duration::from_millis(10);
/// Ticks without a quick request running after which the watchdog sleeps.
const IDLE_TICKS: u32 = 100;

impl<R> Turns<R> {
    fn state(&self) -> MutexGuard<'_, TurnState> {
        // Every change to the state is complete under the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Pool {
    /// Serves `input` (the private channel) with workers that take turns
    /// reading it; the process exits when it ends or a shutdown arrives.
    /// False when not even one worker could start.
    pub(crate) fn serve_in_turns<R: Read + Send + 'static>(&self, input: R) -> bool {
        let turns = Arc::new(Turns {
            input: Mutex::new(input),
            state: Mutex::new(TurnState {
                free: true,
                turn: 0,
                running: None,
                serial: 0,
                waiting: 0,
                workers: 0,
                watchdog_parked: false,
            }),
            free: Condvar::new(),
            watchdog: std::sync::OnceLock::new(),
        });
        let watchdog = {
            let (pool, turns) = (self.clone(), turns.clone());
            std::thread::Builder::new()
                .name("channel-watch".into())
                .stack_size(64 * 1024)
                .spawn(move || watch_turns(&pool, &turns))
        };
        match watchdog {
            Ok(t) => {
                let _ = turns.watchdog.set(t.thread().clone());
            }
            Err(_) => return false,
        }
        let mut started = false;
        for _ in 0..START_WORKERS {
            started |= spawn_turn(self, &turns);
        }
        started
    }
}

fn spawn_turn<R: Read + Send + 'static>(pool: &Pool, turns: &Arc<Turns<R>>) -> bool {
    let (pool, turns) = (pool.clone(), turns.clone());
    turns.state().workers += 1;
    let spawned = std::thread::Builder::new()
        .name("channel".into())
        .stack_size(256 * 1024)
        .spawn({
            let turns = turns.clone();
            move || take_turns(&pool, &turns)
        });
    if spawned.is_err() {
        turns.state().workers -= 1;
    }
    spawned.is_ok()
}

/// Frees the turn (its holder runs a request that may wait, or is stuck):
/// wakes a worker waiting for it, or starts one, so a slow operation never
/// stalls the channel.
fn hand_on<R: Read + Send + 'static>(
    pool: &Pool,
    turns: &Arc<Turns<R>>,
    mut st: MutexGuard<'_, TurnState>,
) {
    st.free = true;
    // The holder's number is void: stuck, it sees it lost the turn.
    st.turn += 1;
    st.running = None;
    let spawn = st.waiting == 0 && st.workers < MAX_WORKERS;
    drop(st);
    if spawn {
        spawn_turn(pool, turns);
    } else {
        turns.free.notify_one();
    }
}

/// A channel worker's life: wait for the turn, read frames and run the
/// quick ones (see `Fs::is_quick`) until one is not: hand the turn on then,
/// and run that one. So a quick request is read, run and answered by one
/// thread with no other woken (one wake-up per round trip), while one
/// that may wait (a FIFO, big I/O, a sync) never stalls the channel.
fn take_turns<R: Read + Send + 'static>(pool: &Pool, turns: &Arc<Turns<R>>) {
    let mut data = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let mine = {
            let mut st = turns.state();
            st.waiting += 1;
            while !st.free {
                st = turns.free.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.waiting -= 1;
            st.free = false;
            st.turn += 1;
            st.turn
        };
        loop {
            let read = {
                let mut input = turns.input.lock().unwrap_or_else(|p| p.into_inner());
                server::read_request(pool, &mut *input)
            };
            let job = match read {
                Ok(Framed::Request(id, frame)) => Job { id, frame },
                Ok(Framed::Done) => continue,
                // The host closed its end (or asked to stop): it is gone.
                Ok(Framed::End) => std::process::exit(0),
                Err(e) => {
                    eprintln!("dockerfuse-satellite: channel: {e}");
                    std::process::exit(0)
                }
            };
            let req = decode(&job);
            let quick = req.as_ref().is_some_and(|r| pool.sh.fs.is_quick(r));
            let mut st = turns.state();
            if quick {
                st.serial += 1;
                st.running = Some(st.serial);
                if std::mem::take(&mut st.watchdog_parked) {
                    if let Some(t) = turns.watchdog.get() {
                        t.unpark();
                    }
                }
                drop(st);
            } else {
                hand_on(pool, turns, st);
            }
            execute(&pool.sh, job.id, req, &mut data, &mut scratch);
            if data.capacity() > 2 * MAX_IO as usize {
                data = Vec::new();
            }
            {
                let mut q = pool.sh.queue();
                if q.spare.len() < 2 * MAX_WORKERS {
                    q.spare.push(job.frame);
                }
            }
            if !quick {
                break;
            }
            let mut st = turns.state();
            if st.turn != mine {
                // The watchdog handed the turn on while this one was stuck.
                break;
            }
            st.running = None;
        }
    }
}

/// The watchdog of a channel: every [`STUCK`] tick, hands the turn on when
/// the same quick request still runs as at the last tick; sleeps while no
/// quick request ran for [`IDLE_TICKS`] ticks, until the next one.
fn watch_turns<R: Read + Send + 'static>(pool: &Pool, turns: &Arc<Turns<R>>) {
    let (mut last, mut last_serial, mut idle) = (None, 0, 0);
    loop {
        std::thread::sleep(STUCK);
        let mut st = turns.state();
        if st.running.is_some() && st.running == last {
            last = None;
            hand_on(pool, turns, st);
            continue;
        }
        last = st.running;
        if st.serial != last_serial || st.running.is_some() {
            last_serial = st.serial;
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= IDLE_TICKS {
            st.watchdog_parked = true;
            drop(st);
            // Woken by the next quick request (or spuriously: then this
            // is one more tick).
            std::thread::park();
            idle = 0;
        }
    }
}

fn spawn_worker(sh: &Arc<Shared>) -> bool {
    let sh2 = sh.clone();
    std::thread::Builder::new()
        .name("worker".into())
        .stack_size(256 * 1024)
        .spawn(move || worker(&sh2))
        .is_ok()
}

/// A worker's life: take a job, run it, hand its buffer back.
fn worker(sh: &Shared) {
    let mut data = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let job = next_job(sh);
        run(sh, &job, &mut data, &mut scratch);
        // Keep big buffers from growing without bound across requests.
        if data.capacity() > 2 * MAX_IO as usize {
            data = Vec::new();
        }
        let mut q = sh.queue();
        if q.spare.len() < 2 * MAX_WORKERS {
            q.spare.push(job.frame);
        }
    }
}

/// Waits, counted as idle, for the next job.
fn next_job(sh: &Shared) -> Job {
    let mut q = sh.queue();
    q.idle += 1;
    while q.jobs.is_empty() {
        q = sh.ready.wait(q).unwrap_or_else(|p| p.into_inner());
    }
    q.idle -= 1;
    q.jobs.pop_front().expect("not empty")
}

/// Decodes and runs one request and sends its response.
fn run(sh: &Shared, job: &Job, data: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    execute(sh, job.id, decode(job), data, scratch);
}

/// The request of a frame; None (said on stderr) when it does not decode.
fn decode(job: &Job) -> Option<Request<'_>> {
    match frame::decode::<Request<'_>>(&job.frame) {
        Ok(req) => Some(req),
        Err(e) => {
            eprintln!("dockerfuse-satellite: bad request {}: {e}", job.id);
            None
        }
    }
}

/// Runs a decoded request (None: one that did not decode, EPROTO) and
/// sends its response; a forget or a batch of releases has none.
fn execute(
    sh: &Shared,
    id: u64,
    req: Option<Request<'_>>,
    data: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    let resp = match req {
        Some(Request::Forget { nodes }) => {
            sh.fs.forget(&nodes);
            None
        }
        Some(Request::ReleaseMany { fhs }) => {
            sh.fs.release_many(&fhs);
            None
        }
        Some(req) => Some(sh.fs.handle(req, data)),
        None => Some(Response::Error(Errno::EPROTO.0)),
    };
    if let Some(resp) = resp {
        send(&sh.out, id, &resp, scratch);
    }
    // Changes held back until this reply left may go now.
    sh.fs.watch.replied();
}

/// Writes one response frame; a failed write means the host is gone.
fn send(out: &Output<Out>, id: u64, resp: &Response<'_>, scratch: &mut Vec<u8>) {
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
