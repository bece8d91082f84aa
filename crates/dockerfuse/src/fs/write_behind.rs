//! Write-behind: the kernel's WRITE requests are answered at once and
//! reach the satellite in batches.
//!
//! Without the kernel's writeback cache (which would make it ignore size
//! and mtime changes made in the container), every `write(2)` through the
//! mount is one WRITE request, and waiting for the satellite's answer to
//! each costs a round trip: `dd bs=4k` crawls. Here a WRITE is accepted
//! into a per-handle queue (contiguous writes merged, up to [`BATCH`]
//! bytes) and answered. A handle sends its batches in order, up to
//! [`IN_FLIGHT`] at once as long as none overlaps one in flight (so
//! overlapping writes land in order); a handle opened `O_APPEND`, or one
//! not known to be otherwise, has one in flight at a time (the satellite
//! appends each where the file ends then).
//!
//! What keeps this correct:
//! * every other request waits until the writes accepted before it were
//!   acknowledged ([`WriteBehind::after_writes`]): a read, stat, rename or
//!   truncation sees them all, in the container too;
//! * an error of a batch is kept on its handle and reported by the next
//!   write or FLUSH/FSYNC of it (close(2) returns it), as with the kernel's
//!   own writeback cache;
//! * bytes held are bounded ([`LIMIT`]): past it a write waits for the
//!   queues to drain and goes through as before;
//! * a handle opened `O_DIRECT` writes through: each write is answered
//!   when the container has it (after the writes before it), as the
//!   caller of O_DIRECT expects of a completed write.
//!
//! With `--close-behind` a FLUSH does not wait either ([`WriteBehind::close`]):
//! the handle is marked closed, and an error of its writes or create that
//! comes back later is owed to its node ([`WriteBehind::take_owed`]: the
//! next write, open, stat or setattr of the file reports it) and logged.
//! At most [`MAX_CLOSED`] handles are closed with work behind; past it a
//! close waits as without the option. At most [`MAX_OWED`] nodes are owed
//! an error; past it the log (and the directory's fsync, for a create)
//! are all that report it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use dockerfuse_proto::{Errno, MAX_IO};

/// Largest batch (the satellite's largest write).
pub(super) const BATCH: usize = MAX_IO as usize;
/// Bytes accepted and not yet acknowledged, across all handles.
pub(super) const LIMIT: usize = 32 << 20;
/// Batches of one handle in flight at once (when they do not overlap).
pub(super) const IN_FLIGHT: usize = 3;
/// Handles closed with writes or a create still behind (`--close-behind`).
pub(super) const MAX_CLOSED: usize = 1024;
/// Nodes owed the error of a write or create refused after their close.
pub(super) const MAX_OWED: usize = 4096;

/// Something to run once earlier writes are acknowledged.
pub(super) type Then = Box<dyn FnOnce() + Send>;
/// Sends one batch (handle, offset, bytes); calls back with the bytes the
/// satellite says it wrote, or its error.
pub(super) type SendBatch =
    Arc<dyn Fn(u64, u64, &[u8], Box<dyn FnOnce(Result<u32, Errno>) + Send>) + Send + Sync>;

/// What became of a write offered to [`WriteBehind::write`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Accepted {
    /// Queued: answer the kernel with this count now.
    Queued(u32),
    /// An earlier batch of this handle failed.
    Failed(Errno),
    /// Too much is held, or the handle writes through (`O_DIRECT`):
    /// send this write the old way, after the others.
    Full,
}

/// What a FLUSH with `--close-behind` does ([`WriteBehind::close`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Closed {
    /// Nothing of the handle is behind, or it is marked closed: answer now.
    Now,
    /// An earlier batch (or the create) of the handle failed: close reports it.
    Failed(Errno),
    /// Too many handles are closed with work behind: wait as without it.
    Wait,
}

/// One run of contiguous bytes waiting to be sent, and the sequence
/// numbers of the writes in it.
struct Run {
    offset: u64,
    data: Vec<u8>,
    seqs: Vec<u64>,
}

#[derive(Default)]
struct File {
    queue: VecDeque<Run>,
    /// Byte ranges of the batches in flight.
    in_flight: Vec<(u64, u64)>,
    /// Not opened `O_APPEND`: several batches may be in flight.
    positioned: bool,
    /// Opened `O_DIRECT`: nothing is held for it.
    direct: bool,
    /// The node the handle is open on (for the log).
    node: u64,
    /// Created behind and not yet made in the container: writes queue
    /// and none is sent ([`WriteBehind::hold`]).
    held: bool,
    /// Released from a hold with what it queued meanwhile: one batch in
    /// flight until the first lands (a file system filling up then fails
    /// the writes in order, as it would have without the hold).
    settling: bool,
    error: Option<Errno>,
    /// Closed (FLUSH answered) with work behind: a later error is owed
    /// to the node, counted in [`Inner::closed`].
    closed: bool,
    /// Released by the kernel while work was behind: forgotten once idle.
    released: bool,
}

impl File {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty() && !self.held
    }
}

#[derive(Default)]
struct Inner {
    files: HashMap<u64, File>,
    /// Sequence numbers of the writes accepted and not acknowledged.
    open: BTreeSet<u64>,
    next: u64,
    bytes: usize,
    /// Requests waiting for the writes accepted before them.
    waiting: VecDeque<(u64, Then)>,
    /// Handles marked closed and not forgotten.
    closed: usize,
    /// Nodes owed an error refused after their handle's close.
    owed: HashMap<u64, Errno>,
    /// Names (directory, name) of such nodes whose create was refused:
    /// the kernel forgets the name, and its next lookup reports it.
    owed_names: HashMap<(u64, Vec<u8>), u64>,
    /// Writes and creates refused after their handle's close, since the
    /// mount began (for the unmount's log).
    refused_after_close: u64,
}

impl Inner {
    /// Keeps `e` of handle `fh`: for its next write, flush or fsync, or,
    /// closed, for its node's next operation.
    fn keep(&mut self, fh: u64, e: Errno) {
        let Some(f) = self.files.get_mut(&fh) else {
            return;
        };
        if !f.closed {
            f.error = f.error.or(Some(e));
            return;
        }
        let node = f.node;
        self.refused_after_close += 1;
        tracing::warn!(
            node,
            errno = %e,
            "a write or create sent behind was refused after close returned: the file's next write, open or stat reports it"
        );
        if self.owed.len() < MAX_OWED || self.owed.contains_key(&node) {
            self.owed.entry(node).or_insert(e);
        }
    }

    /// Forgets `fh` if it was released and is idle now.
    fn drop_if_released(&mut self, fh: u64) {
        if self.files.get(&fh).is_some_and(|f| f.released && f.idle()) {
            self.remove(fh);
        }
    }

    fn remove(&mut self, fh: u64) {
        if self.files.remove(&fh).is_some_and(|f| f.closed) {
            self.closed -= 1;
        }
    }

    /// The waiting requests whose writes are all acknowledged, in order.
    fn ready(&mut self) -> Vec<Then> {
        let first_open = self.open.first().copied().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        while self
            .waiting
            .front()
            .is_some_and(|(upto, _)| *upto <= first_open)
        {
            out.extend(self.waiting.pop_front().map(|(_, t)| t));
        }
        out
    }

    /// The next batch of `fh` to send, if it has one and none in flight.
    fn next_batch(&mut self, fh: u64) -> Option<(u64, Vec<u8>, Vec<u64>)> {
        let f = self.files.get_mut(&fh)?;
        if f.held {
            return None;
        }
        let most = if f.positioned && !f.settling {
            IN_FLIGHT
        } else {
            1
        };
        let run = f.queue.front()?;
        let range = (run.offset, run.offset + run.data.len() as u64);
        if f.in_flight.len() >= most || f.in_flight.iter().any(|&(a, b)| a < range.1 && range.0 < b)
        {
            return None;
        }
        let run = f.queue.pop_front()?;
        f.in_flight.push(range);
        Some((run.offset, run.data, run.seqs))
    }
}

/// The write-behind queues of one mount.
pub(super) struct WriteBehind {
    inner: Mutex<Inner>,
    send: SendBatch,
}

impl WriteBehind {
    pub(super) fn new(send: SendBatch) -> Self {
        WriteBehind {
            inner: Mutex::default(),
            send,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `fh` was opened on `node`: with `O_APPEND` its batches go one at
    /// a time, with `O_DIRECT` its writes are not held at all.
    pub(super) fn opened(&self, fh: u64, node: u64, append: bool, direct: bool) {
        let mut g = self.lock();
        let f = g.files.entry(fh).or_default();
        f.positioned = !append;
        f.direct = direct;
        f.node = node;
    }

    /// Offers a write of `data` at `offset` on handle `fh`.
    pub(super) fn write(self: &Arc<Self>, fh: u64, offset: u64, data: &[u8]) -> Accepted {
        let mut g = self.lock();
        if let Some(e) = g.files.get_mut(&fh).and_then(|f| f.error.take()) {
            return Accepted::Failed(e);
        }
        // Written again after a close (a dup of the descriptor): its
        // errors are the handle's again.
        if g.files
            .get_mut(&fh)
            .is_some_and(|f| std::mem::take(&mut f.closed))
        {
            g.closed -= 1;
        }
        if let Some(node) = g.files.get(&fh).map(|f| f.node) {
            if let Some(e) = g.owed.remove(&node) {
                return Accepted::Failed(e);
            }
        }
        let direct = g.files.get(&fh).is_some_and(|f| f.direct);
        if direct || g.bytes + data.len() > LIMIT || data.len() > BATCH {
            return Accepted::Full;
        }
        let seq = g.next;
        g.next += 1;
        g.open.insert(seq);
        g.bytes += data.len();
        let f = g.files.entry(fh).or_default();
        match f.queue.back_mut() {
            Some(r)
                if r.offset + r.data.len() as u64 == offset
                    && r.data.len() + data.len() <= BATCH =>
            {
                r.data.extend_from_slice(data);
                r.seqs.push(seq);
            }
            _ => f.queue.push_back(Run {
                offset,
                data: data.to_vec(),
                seqs: vec![seq],
            }),
        }
        let batch = g.next_batch(fh);
        drop(g);
        if let Some(b) = batch {
            self.dispatch(fh, b);
        }
        Accepted::Queued(data.len() as u32)
    }

    fn dispatch(self: &Arc<Self>, fh: u64, (offset, data, seqs): (u64, Vec<u8>, Vec<u64>)) {
        let me = self.clone();
        let send = self.send.clone();
        let data = Arc::new(data);
        let kept = data.clone();
        send(
            fh,
            offset,
            &data,
            Box::new(move |r| me.landed(fh, offset, kept, seqs, r)),
        );
    }

    /// A batch of `fh` came back.
    fn landed(
        self: &Arc<Self>,
        fh: u64,
        offset: u64,
        data: Arc<Vec<u8>>,
        seqs: Vec<u64>,
        r: Result<u32, Errno>,
    ) {
        let mut g = self.lock();
        let (error, rest) = match r {
            Ok(n) if n as usize >= data.len() => (None, None),
            // A short write (a file system filling up): the rest goes
            // again, as write(2) callers loop, to get the real error.
            Ok(n) if n > 0 => (None, Some(n as usize)),
            Ok(_) => (Some(Errno::EIO), None),
            Err(e) => (Some(e), None),
        };
        g.bytes = g.bytes.saturating_sub(rest.unwrap_or(data.len()));
        // (A handle with a batch in flight is always there.)
        let settled = match g.files.get_mut(&fh) {
            Some(f) => {
                let range = (offset, offset + data.len() as u64);
                if let Some(i) = f.in_flight.iter().position(|&r| r == range) {
                    f.in_flight.swap_remove(i);
                }
                f.settling = false;
                if let Some(e) = error {
                    tracing::debug!(
                        fh,
                        node = f.node,
                        offset,
                        len = data.len(),
                        errno = e.0,
                        "a write sent behind failed: the next write, fsync or close of the file reports it"
                    );
                }
                match rest {
                    Some(n) => {
                        f.queue.push_front(Run {
                            offset: offset + n as u64,
                            data: data[n..].to_vec(),
                            seqs,
                        });
                        Vec::new()
                    }
                    None => seqs,
                }
            }
            None => seqs,
        };
        if let Some(e) = error {
            g.keep(fh, e);
        }
        g.drop_if_released(fh);
        for s in &settled {
            g.open.remove(s);
        }
        let batches: Vec<_> = std::iter::from_fn(|| g.next_batch(fh)).collect();
        let ready = g.ready();
        drop(g);
        for b in batches {
            self.dispatch(fh, b);
        }
        for t in ready {
            t();
        }
    }

    /// An operation answered before the container did it (a create or
    /// mkdir sent behind, [`super::pending`]): it counts as a write
    /// accepted now, so every request sent after waits for it
    /// ([`WriteBehind::after_writes`]); with `fh`, the handle it opens
    /// holds its writes until [`WriteBehind::unhold`].
    pub(super) fn hold(&self, fh: Option<u64>) -> u64 {
        let mut g = self.lock();
        let seq = g.next;
        g.next += 1;
        g.open.insert(seq);
        if let Some(fh) = fh {
            g.files.entry(fh).or_default().held = true;
        }
        seq
    }

    /// The operation of [`WriteBehind::hold`] `seq` is done: the writes
    /// of `fh` go, or with `error` are dropped and the error is kept for
    /// the handle's next write, flush or fsync.
    pub(super) fn unhold(self: &Arc<Self>, seq: u64, fh: Option<u64>, error: Option<Errno>) {
        let mut g = self.lock();
        g.open.remove(&seq);
        let mut batches = Vec::new();
        if let Some(fh) = fh {
            let dropped = match g.files.get_mut(&fh) {
                Some(f) => {
                    f.held = false;
                    f.settling = true;
                    match error {
                        Some(_) => std::mem::take(&mut f.queue),
                        None => VecDeque::new(),
                    }
                }
                None => VecDeque::new(),
            };
            if let Some(e) = error {
                g.keep(fh, e);
            }
            for run in dropped {
                g.bytes = g.bytes.saturating_sub(run.data.len());
                for s in &run.seqs {
                    g.open.remove(s);
                }
            }
            batches.extend(std::iter::from_fn(|| g.next_batch(fh)));
            g.drop_if_released(fh);
            drop(g);
            for b in batches {
                self.dispatch(fh, b);
            }
            g = self.lock();
        }
        let ready = g.ready();
        drop(g);
        for t in ready {
            t();
        }
    }

    /// Runs `then` once every write accepted so far is acknowledged (at
    /// once when none is pending).
    pub(super) fn after_writes(&self, then: Then) {
        let mut g = self.lock();
        let upto = g.next;
        if g.open.first().is_none_or(|&first| first >= upto) {
            drop(g);
            return then();
        }
        g.waiting.push_back((upto, then));
    }

    /// An operation answered before the container did it and sent behind
    /// (a setattr of a file created behind, [`super::made`]): like
    /// [`WriteBehind::hold`] it counts as a write accepted now, and `send`
    /// runs with its number once the writes accepted before it are
    /// acknowledged. Release it with [`WriteBehind::unhold`].
    pub(super) fn hold_after(&self, send: Box<dyn FnOnce(u64) + Send>) {
        let mut g = self.lock();
        let seq = g.next;
        g.next += 1;
        g.open.insert(seq);
        if g.open.first().is_some_and(|&first| first < seq) {
            g.waiting.push_back((seq, Box::new(move || send(seq))));
            return;
        }
        drop(g);
        send(seq)
    }

    /// Keeps `e` for `fh`'s next write, flush or fsync (unless it has
    /// one already).
    pub(super) fn fail(&self, fh: u64, e: Errno) {
        self.lock().keep(fh, e)
    }

    /// FLUSH with `--close-behind`: reports an error already kept for
    /// `fh`; else, with writes or a create of it still behind, marks it
    /// closed (a later error is owed to its node) unless [`MAX_CLOSED`]
    /// are, and answers at once.
    pub(super) fn close(&self, fh: u64) -> Closed {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(f) = g.files.get_mut(&fh) else {
            return Closed::Now;
        };
        if let Some(e) = f.error.take() {
            return Closed::Failed(e);
        }
        if f.closed || f.idle() {
            return Closed::Now;
        }
        if g.closed >= MAX_CLOSED {
            return Closed::Wait;
        }
        f.closed = true;
        g.closed += 1;
        Closed::Now
    }

    /// The error owed to `node` by a write or create refused after its
    /// handle was closed (reported once).
    pub(super) fn take_owed(&self, node: u64) -> Option<Errno> {
        let mut g = self.lock();
        if g.owed.is_empty() {
            return None;
        }
        g.owed.remove(&node)
    }

    /// The create of `node` as `name` in `dir` was refused: if its
    /// handle was closed (the node is owed the error), the next lookup
    /// of the name reports it ([`WriteBehind::take_owed_name`]).
    pub(super) fn name_refused(&self, dir: u64, name: &[u8], node: u64) {
        let mut g = self.lock();
        if g.owed.contains_key(&node) && g.owed_names.len() < MAX_OWED {
            g.owed_names.insert((dir, name.to_vec()), node);
        }
    }

    /// The error owed to the node whose create as `name` in `dir` was
    /// refused after its close (reported once).
    pub(super) fn take_owed_name(&self, dir: u64, name: &[u8]) -> Option<Errno> {
        let mut g = self.lock();
        if g.owed_names.is_empty() {
            return None;
        }
        let node = g.owed_names.remove(&(dir, name.to_vec()))?;
        g.owed.remove(&node)
    }

    /// The kernel forgot `node`: nothing reports its error any more,
    /// but a lookup of its name if its create was refused (the kernel
    /// forgets such a node as soon as its name is dropped).
    pub(super) fn forget_node(&self, node: u64) {
        let mut g = self.lock();
        if g.owed.contains_key(&node) && !g.owed_names.values().any(|&n| n == node) {
            g.owed.remove(&node);
        }
    }

    /// Writes and creates refused after their handle's close so far.
    pub(super) fn refused_after_close(&self) -> u64 {
        self.lock().refused_after_close
    }

    /// No write is waiting or in flight (a request may go at once).
    pub(super) fn is_idle(&self) -> bool {
        self.lock().open.is_empty()
    }

    /// The error kept for `fh` (reported once).
    pub(super) fn take_error(&self, fh: u64) -> Option<Errno> {
        self.lock().files.get_mut(&fh).and_then(|f| f.error.take())
    }

    /// The handle is released (after its writes landed): forget it.
    pub(super) fn forget(&self, fh: u64) {
        let mut g = self.lock();
        if let Some(f) = g.files.get_mut(&fh) {
            f.released = true;
        }
        g.drop_if_released(fh);
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Done = Box<dyn FnOnce(Result<u32, Errno>) + Send>;
    type Sent = Arc<Mutex<Vec<(u64, u64, Vec<u8>, Done)>>>;

    fn wb() -> (Arc<WriteBehind>, Sent) {
        let sent: Sent = Arc::default();
        let s = sent.clone();
        let w = WriteBehind::new(Arc::new(move |fh, off, data, done| {
            s.lock().unwrap().push((fh, off, data.to_vec(), done))
        }));
        (Arc::new(w), sent)
    }

    /// Completes the oldest batch sent with `r` (or its full length).
    fn complete(sent: &Sent, r: Option<Result<u32, Errno>>) -> (u64, u64, Vec<u8>) {
        let (fh, off, data, done) = sent.lock().unwrap().remove(0);
        done(r.unwrap_or(Ok(data.len() as u32)));
        (fh, off, data)
    }

    #[test]
    fn a_held_handle_sends_nothing_until_its_create_is_done() {
        let (w, sent) = wb();
        let seq = w.hold(Some(7));
        assert!(!w.is_idle());
        assert_eq!(w.write(7, 0, b"aa"), Accepted::Queued(2));
        assert_eq!(w.write(7, 2, b"bb"), Accepted::Queued(2));
        let after = Arc::new(Mutex::new(false));
        let a = after.clone();
        w.after_writes(Box::new(move || *a.lock().unwrap() = true));
        assert!(sent.lock().unwrap().is_empty());
        assert!(!*after.lock().unwrap());
        w.unhold(seq, Some(7), None);
        // What comes next waits for the first batch (in order, as the
        // file system fills up).
        assert_eq!(w.write(7, 4, b"cc"), Accepted::Queued(2));
        assert_eq!(sent.lock().unwrap().len(), 1);
        assert_eq!(complete(&sent, None), (7, 0, b"aabb".to_vec()));
        assert!(*after.lock().unwrap());
        assert_eq!(complete(&sent, None), (7, 4, b"cc".to_vec()));
        assert!(w.is_idle());
    }

    #[test]
    fn a_refused_create_drops_its_writes_and_reports_at_the_next() {
        let (w, sent) = wb();
        let seq = w.hold(Some(7));
        assert_eq!(w.write(7, 0, b"aa"), Accepted::Queued(2));
        w.unhold(seq, Some(7), Some(Errno(libc::ENOSPC)));
        assert!(sent.lock().unwrap().is_empty());
        assert!(w.is_idle());
        assert_eq!(w.held(), 0);
        assert_eq!(w.write(7, 2, b"bb"), Accepted::Failed(Errno(libc::ENOSPC)));
        // Reported once.
        assert_eq!(w.take_error(7), None);
    }

    #[test]
    fn contiguous_writes_are_batched_behind_the_one_in_flight() {
        let (w, sent) = wb();
        assert_eq!(w.write(1, 0, b"aa"), Accepted::Queued(2));
        assert_eq!(w.write(1, 2, b"bb"), Accepted::Queued(2));
        assert_eq!(w.write(1, 4, b"cc"), Accepted::Queued(2));
        // Not contiguous: a run of its own.
        assert_eq!(w.write(1, 100, b"zz"), Accepted::Queued(2));
        assert_eq!(sent.lock().unwrap().len(), 1);
        assert_eq!(complete(&sent, None), (1, 0, b"aa".to_vec()));
        assert_eq!(complete(&sent, None), (1, 2, b"bbcc".to_vec()));
        assert_eq!(complete(&sent, None), (1, 100, b"zz".to_vec()));
        assert!(sent.lock().unwrap().is_empty());
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn a_positioned_handle_has_several_batches_in_flight_unless_they_overlap() {
        let (w, sent) = wb();
        w.opened(1, 7, false, false);
        let big = vec![1u8; BATCH];
        for i in 0..5u64 {
            w.write(1, i * BATCH as u64, &big);
        }
        assert_eq!(sent.lock().unwrap().len(), IN_FLIGHT);
        // Overlapping the first, in flight: waits for it.
        w.write(1, 10, b"x");
        complete(&sent, None);
        let offsets: Vec<u64> = sent.lock().unwrap().iter().map(|s| s.1).collect();
        assert_eq!(offsets, [BATCH as u64, 2 * BATCH as u64, 3 * BATCH as u64]);
        complete(&sent, None);
        complete(&sent, None);
        complete(&sent, None);
        let offsets: Vec<u64> = sent.lock().unwrap().iter().map(|s| s.1).collect();
        assert_eq!(offsets, [4 * BATCH as u64, 10]);
        // O_APPEND: one at a time.
        w.opened(2, 7, true, false);
        w.write(2, 0, b"a");
        w.write(2, 100, b"b");
        assert_eq!(sent.lock().unwrap().iter().filter(|s| s.0 == 2).count(), 1);
    }

    #[test]
    fn a_direct_handle_writes_through() {
        let (w, sent) = wb();
        w.opened(1, 7, false, true);
        assert_eq!(w.write(1, 0, b"abc"), Accepted::Full);
        assert!(sent.lock().unwrap().is_empty());
        assert_eq!(w.held(), 0);
        // Its kept error still comes first.
        w.lock().files.get_mut(&1).unwrap().error = Some(Errno(5));
        assert_eq!(w.write(1, 0, b"abc"), Accepted::Failed(Errno(5)));
    }

    #[test]
    fn handles_have_a_batch_in_flight_each() {
        let (w, sent) = wb();
        w.write(1, 0, b"a");
        w.write(2, 0, b"b");
        assert_eq!(sent.lock().unwrap().len(), 2);
    }

    #[test]
    fn other_requests_wait_for_the_writes_before_them_only() {
        let (w, sent) = wb();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let r = ran.clone();
        w.after_writes(Box::new(move || r.lock().unwrap().push("idle")));
        assert_eq!(*ran.lock().unwrap(), ["idle"]);
        w.write(1, 0, b"a");
        w.write(2, 0, b"b");
        let r = ran.clone();
        w.after_writes(Box::new(move || r.lock().unwrap().push("after a, b")));
        // A later write does not hold it back.
        w.write(3, 0, b"c");
        complete(&sent, None);
        assert_eq!(ran.lock().unwrap().len(), 1);
        complete(&sent, None);
        assert_eq!(*ran.lock().unwrap(), ["idle", "after a, b"]);
        complete(&sent, None);
    }

    #[test]
    fn an_error_is_reported_once_by_the_next_write_or_flush() {
        let (w, sent) = wb();
        w.write(1, 0, b"abc");
        complete(&sent, Some(Err(Errno(28))));
        assert_eq!(w.write(1, 3, b"d"), Accepted::Failed(Errno(28)));
        assert_eq!(w.write(1, 3, b"d"), Accepted::Queued(1));
        complete(&sent, Some(Ok(0)));
        assert_eq!(w.take_error(1), Some(Errno::EIO));
        assert_eq!(w.take_error(1), None);
    }

    #[test]
    fn the_rest_of_a_short_write_goes_again_and_brings_its_error() {
        let (w, sent) = wb();
        w.write(1, 10, b"abcdef");
        let done = Arc::new(Mutex::new(false));
        let d = done.clone();
        w.after_writes(Box::new(move || *d.lock().unwrap() = true));
        complete(&sent, Some(Ok(4)));
        assert!(!*done.lock().unwrap());
        let (_, off, data, cb) = sent.lock().unwrap().remove(0);
        assert_eq!((off, data.as_slice()), (14, &b"ef"[..]));
        cb(Err(Errno(28)));
        assert!(*done.lock().unwrap());
        assert_eq!(w.take_error(1), Some(Errno(28)));
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn bytes_held_are_bounded() {
        let (w, sent) = wb();
        let chunk = vec![0u8; BATCH];
        for i in 0..LIMIT / BATCH {
            assert_eq!(
                w.write(1, (i * BATCH) as u64, &chunk),
                Accepted::Queued(BATCH as u32)
            );
        }
        assert_eq!(w.write(1, LIMIT as u64, b"x"), Accepted::Full);
        assert_eq!(w.write(2, 0, &vec![0u8; BATCH + 1]), Accepted::Full);
        complete(&sent, None);
        assert_eq!(w.write(1, LIMIT as u64, b"x"), Accepted::Queued(1));
    }

    #[test]
    fn a_released_handle_is_forgotten_once_idle() {
        let (w, sent) = wb();
        w.write(1, 0, b"a");
        w.forget(1);
        assert!(w.lock().files.contains_key(&1));
        complete(&sent, None);
        w.forget(1);
        assert!(w.lock().files.is_empty());
    }
}
