//! The change feed, host side: from the satellite's change frames to the
//! kernel's cache invalidations.
//!
//! The RPC reader hands each change frame to [`Feed::frame`], which maps
//! it to notifications with the core's [`Coherence`] (dropping what names
//! nodes the kernel does not hold) and queues them on a bounded channel.
//! One thread of its own sends them to the kernel: a notification writes
//! to /dev/fuse and may wait on an inode the kernel has locked for a
//! request in flight, so it must never run on the thread that completes
//! requests. A full queue is not waited on: it is counted and the thread
//! then invalidates everything it holds, which is always correct.
//!
//! Under `--reconnect` the kernel holds ids of our own: each connection's
//! frames go through a [`Translate`] of the relink table first. When a new
//! satellite replaces the lost one, [`Feed::resume`] starts its feed and
//! invalidates everything, as the gap may have hidden changes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockerfuse_proto::{Change, Request, Response, MAX_CHANGES};
use fuser::INodeNo;
use tracing::debug;

use crate::fs::{Coherence, Inval, Transport};

/// Batches of notifications waiting for the notifier thread.
const QUEUE: usize = 256;
/// Bytes of change frames whose notifications may wait; past this (or a
/// frame with more than MAX_CHANGES changes) everything is invalidated
/// instead, so a flood costs bounded memory.
const QUEUED_BYTES: usize = 8 << 20;

/// One queued batch: notifications, and the bytes of the frame they came
/// from (counted against [`QUEUED_BYTES`]).
type Batch = (Vec<Inval>, usize);

/// Rewrites the node ids of one connection's changes into the kernel's,
/// dropping those it cannot map (`--reconnect`: the relink table).
pub(crate) type Translate = Box<dyn Fn(&mut Vec<Change<'_>>) + Send + Sync>;

/// What the notifier thread needs of the kernel (fuser's `Notifier`;
/// tests record the calls).
pub(crate) trait Kernel: Send + 'static {
    fn inval_entry(&self, parent: u64, name: &[u8]) -> std::io::Result<()>;
    fn inval_inode(&self, ino: u64, offset: i64, len: i64) -> std::io::Result<()>;
    fn delete(&self, parent: u64, child: u64, name: &[u8]) -> std::io::Result<()>;
}

impl Kernel for fuser::Notifier {
    fn inval_entry(&self, parent: u64, name: &[u8]) -> std::io::Result<()> {
        fuser::Notifier::inval_entry(self, INodeNo(parent), OsStr::from_bytes(name))
    }
    fn inval_inode(&self, ino: u64, offset: i64, len: i64) -> std::io::Result<()> {
        fuser::Notifier::inval_inode(self, INodeNo(ino), offset, len)
    }
    fn delete(&self, parent: u64, child: u64, name: &[u8]) -> std::io::Result<()> {
        fuser::Notifier::delete(
            self,
            INodeNo(parent),
            INodeNo(child),
            OsStr::from_bytes(name),
        )
    }
}

/// The receiving half of one mount's feed.
pub(crate) struct Feed {
    coherence: Arc<Coherence>,
    tx: SyncSender<Batch>,
    rx: Mutex<Option<Receiver<Batch>>>,
    overflowed: Arc<AtomicBool>,
    queued: AtomicUsize,
}

impl Feed {
    pub(crate) fn new(coherence: Arc<Coherence>) -> Arc<Feed> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        Arc::new(Feed {
            coherence,
            tx,
            rx: Mutex::new(Some(rx)),
            overflowed: Arc::default(),
            queued: AtomicUsize::new(0),
        })
    }

    /// One change frame from the satellite, its ids as the kernel's.
    #[cfg(test)]
    pub(crate) fn frame(&self, payload: &[u8]) {
        self.frame_in(payload, None)
    }

    /// One change frame from the satellite, its ids rewritten by
    /// `translate` first (on the RPC reader's thread: never blocks).
    fn frame_in(&self, payload: &[u8], translate: Option<&Translate>) {
        let mut changes = match dockerfuse_proto::frame::decode::<Response<'_>>(payload) {
            Ok(Response::Changes(c))
                if c.len() <= MAX_CHANGES
                    && self.queued.load(Ordering::SeqCst) + payload.len() <= QUEUED_BYTES =>
            {
                c
            }
            _ => {
                debug!("change frame undecodable, too large or over the queue's budget: invalidating everything");
                self.resync();
                return;
            }
        };
        if let Some(t) = translate {
            t(&mut changes);
            if changes.is_empty() {
                return;
            }
        }
        let invals = self.coherence.apply(&changes);
        if invals.is_empty() {
            return;
        }
        self.queued.fetch_add(payload.len(), Ordering::SeqCst);
        match self.tx.try_send((invals, payload.len())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(payload.len(), Ordering::SeqCst);
                // The thread will invalidate everything when it gets here.
                if !self.overflowed.swap(true, Ordering::SeqCst) {
                    debug!("change queue full: everything will be invalidated");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Nothing held can be trusted any more: the host's caches go now and
    /// the notifier thread invalidates everything the kernel holds.
    pub(crate) fn resync(&self) {
        // Held file contents go now, not when the notifier gets here.
        self.coherence.heads().clear();
        self.overflowed.store(true, Ordering::SeqCst);
        self.coherence.lost();
        let _ = self.tx.try_send((Vec::new(), 0));
    }

    /// Change frames from `rpc` come to this feed, through `translate`.
    pub(crate) fn listen(
        self: &Arc<Self>,
        rpc: &crate::transport::rpc::Rpc,
        translate: Option<Translate>,
    ) {
        let sink = self.clone();
        rpc.on_events(Box::new(move |payload| {
            sink.frame_in(payload, translate.as_ref())
        }));
    }

    /// A new satellite replaced the lost one (`--reconnect`): its frames
    /// come here through `translate`, it is asked for its feed through
    /// `transport` (before any request reaches it), and everything held
    /// is invalidated, as changes made during the gap were not reported.
    /// Without the new feed the mount keeps to the short TTL. True when
    /// the feed is on.
    pub(crate) fn resume<T: Transport>(
        self: &Arc<Self>,
        rpc: &crate::transport::rpc::Rpc,
        transport: &T,
        translate: Option<Translate>,
    ) -> bool {
        self.listen(rpc, translate);
        self.restart(transport, Duration::from_secs(10))
    }

    /// The feed of a new satellite: asked for through `transport`, then
    /// everything held invalidated. True when the feed is on.
    fn restart<T: Transport>(&self, transport: &T, limit: Duration) -> bool {
        let on = self.enable(transport, limit);
        if on {
            tracing::info!(
                "change feed resumed on the new satellite: invalidating everything held"
            );
        } else {
            tracing::warn!("the new satellite offers no change feed: caching for the TTL only");
            self.coherence.feed_off();
        }
        self.resync();
        on
    }

    /// Asks the satellite for its feed, waiting at most `limit` for the
    /// answer; true when the feed is on.
    pub(crate) fn enable<T: Transport>(&self, rpc: &T, limit: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        rpc.call(
            &Request::Watch,
            Box::new(move |r| {
                let _ = tx.send(matches!(r, Ok(Response::Ok)));
            }),
        );
        let on = rx.recv_timeout(limit).unwrap_or(false);
        if on {
            self.coherence.feed_on();
        }
        on
    }

    /// Wires the feed of a mount: change frames from `rpc` go to a new
    /// feed of `core`, and the satellite is asked to start it. None when
    /// it cannot (the mount then caches for the TTL only).
    pub(crate) fn enable_on<T: Transport, B: Send + Sync + 'static>(
        core: &crate::fs::Core<T, B>,
        rpc: &crate::transport::rpc::Rpc,
        translate: Option<Translate>,
    ) -> Option<Arc<Feed>> {
        let feed = Feed::new(core.coherence());
        feed.listen(rpc, translate);
        if feed.enable(core.transport(), Duration::from_secs(10)) {
            debug!("change feed on");
            Some(feed)
        } else {
            tracing::info!("the satellite offers no change feed: caching for the TTL only");
            None
        }
    }

    /// Starts the thread that sends notifications to `kernel`.
    pub(crate) fn start(self: &Arc<Self>, kernel: impl Kernel) -> std::io::Result<()> {
        let Some(rx) = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let me = self.clone();
        std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || me.run(rx, kernel))
            .map(|_| ())
    }

    fn run(&self, rx: Receiver<Batch>, kernel: impl Kernel) {
        while let Ok((batch, bytes)) = rx.recv() {
            self.deliver(&kernel, &batch);
            self.queued.fetch_sub(bytes, Ordering::SeqCst);
            while let Ok((more, bytes)) = rx.try_recv() {
                self.deliver(&kernel, &more);
                self.queued.fetch_sub(bytes, Ordering::SeqCst);
            }
            if self.overflowed.swap(false, Ordering::SeqCst) {
                let all = self.coherence.everything();
                self.deliver(&kernel, &all);
            }
        }
    }

    fn deliver(&self, kernel: &impl Kernel, batch: &[Inval]) {
        let mut failed = 0usize;
        for i in batch {
            tracing::trace!(inval = ?i, "notification");
            let r = match i {
                Inval::Entry { parent, name } => kernel.inval_entry(*parent, name),
                Inval::Delete {
                    parent,
                    child,
                    name,
                } => kernel
                    .delete(*parent, *child, name)
                    .or_else(|_| kernel.inval_entry(*parent, name)),
                Inval::Attr(ino) => kernel.inval_inode(*ino, -1, 0),
                // Only pages that cannot be dirty are dropped: for a file
                // open for writing the kernel would wait on writeback only
                // this process answers (see fs::writers).
                Inval::Data(ino) => self
                    .coherence
                    .writers()
                    .dropping_pages(*ino, || kernel.inval_inode(*ino, 0, 0))
                    .unwrap_or_else(|| kernel.inval_inode(*ino, -1, 0)),
            };
            if r.is_err() {
                failed += 1;
            }
        }
        let c = &self.coherence.counts;
        debug!(
            notifications = batch.len(),
            failed,
            changes = c.changes.load(Ordering::Relaxed),
            dropped = c.dropped.load(Ordering::Relaxed),
            everything = c.everything.load(Ordering::Relaxed),
            unwatched = c.unwatched.load(Ordering::Relaxed),
            absent_here = c.absent_here.load(Ordering::Relaxed),
            "cache invalidations sent"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockerfuse_proto::frame::{encode, HEADER_LEN};
    use dockerfuse_proto::Change;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Kernel for Recorder {
        fn inval_entry(&self, parent: u64, name: &[u8]) -> std::io::Result<()> {
            let n = String::from_utf8_lossy(name);
            self.0.lock().unwrap().push(format!("entry {parent} {n}"));
            Ok(())
        }
        fn inval_inode(&self, ino: u64, offset: i64, len: i64) -> std::io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("inode {ino} {offset} {len}"));
            Ok(())
        }
        fn delete(&self, parent: u64, child: u64, name: &[u8]) -> std::io::Result<()> {
            let n = String::from_utf8_lossy(name);
            self.0
                .lock()
                .unwrap()
                .push(format!("delete {parent} {child} {n}"));
            // The kernel refuses when the name is bound to another inode.
            Err(std::io::ErrorKind::NotFound.into())
        }
    }

    fn payload(changes: Vec<Change<'static>>) -> Vec<u8> {
        let mut b = Vec::new();
        encode(0, &Response::Changes(changes), &mut b).unwrap();
        b.split_off(HEADER_LEN)
    }

    fn wait_for(rec: &Recorder, n: usize) -> Vec<String> {
        for _ in 0..200 {
            if rec.0.lock().unwrap().len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        rec.0.lock().unwrap().clone()
    }

    fn fed() -> Arc<Coherence> {
        let c = Arc::new(Coherence::new(Duration::from_secs(1), false));
        c.feed_on();
        c
    }

    #[test]
    fn changes_reach_the_kernel_from_their_own_thread() {
        let c = fed();
        c.entry(1, b"f", 2, libc::S_IFREG);
        let feed = Feed::new(c);
        let rec = Recorder::default();
        feed.start(rec.clone()).unwrap();
        feed.frame(&payload(vec![
            Change::Data { node: 2 },
            Change::Attr { node: 1 },
            Change::Removed {
                dir: 1,
                name: b"f".to_vec().into(),
                node: 2,
            },
            Change::Data { node: 12345 },
        ]));
        let got = wait_for(&rec, 6);
        assert_eq!(
            got,
            vec![
                // A file's data change drops its name too: the next open
                // looks it up and learns the new size.
                "entry 1 f",
                "inode 2 0 0",
                "inode 1 -1 0",
                "delete 1 2 f",
                "entry 1 f",
                "inode 1 0 0"
            ]
        );
    }

    /// A satellite that answers the request for its feed.
    struct Watches(bool);

    impl Transport for Watches {
        fn call(&self, req: &Request<'_>, done: crate::fs::Done) {
            assert!(matches!(req, Request::Watch));
            done(Ok(match self.0 {
                true => Response::Ok,
                false => Response::Error(libc::ENOSYS),
            }))
        }
        fn post(&self, _: &Request<'_>) {}
    }

    #[test]
    fn a_new_satellite_drops_everything_held_and_feeds_again() {
        let c = fed();
        c.set_keep_attrs(true);
        c.entry(1, b"f", 2, libc::S_IFREG);
        let attr = dockerfuse_proto::Attr {
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            ..Default::default()
        };
        c.keep_attr(2, attr, crate::fs::Source::Entry, c.attr_stamp());
        assert!(c.kept_attr(2).is_some());
        c.absent(1, b"missing");
        assert!(c.known_absent(1, b"missing").is_some());
        let heads = c.heads();
        assert!(heads.keep(9, 2, b"data", heads.ticket(), Duration::from_secs(60)));
        let feed = Feed::new(c.clone());
        let rec = Recorder::default();
        feed.start(rec.clone()).unwrap();
        assert!(feed.restart(&Watches(true), Duration::from_secs(1)));
        // The host's caches went at once.
        assert!(c.kept_attr(2).is_none());
        assert_eq!(c.known_absent(1, b"missing"), None);
        assert_eq!(heads.bytes(), 0);
        assert!(c.feeding());
        // And the kernel is told to drop what it holds.
        let got = wait_for(&rec, 4);
        for want in ["entry 1 f", "entry 1 missing", "inode 2 0 0", "inode 1 0 0"] {
            assert!(got.contains(&want.to_string()), "{want}: {got:?}");
        }
        // A satellite without a feed: the short TTL from now on.
        assert!(!feed.restart(&Watches(false), Duration::from_secs(1)));
        assert!(!c.feeding());
    }

    #[test]
    fn translated_frames_name_the_kernels_ids() {
        let c = fed();
        c.entry(1, b"f", 2, libc::S_IFREG);
        let feed = Feed::new(c);
        let rec = Recorder::default();
        feed.start(rec.clone()).unwrap();
        // The satellite's 102 is the kernel's 2; its 103 is nothing held.
        let t: Translate = Box::new(|c: &mut Vec<Change<'_>>| {
            c.retain_mut(|c| match c {
                Change::Attr { node } if *node == 102 => {
                    *node = 2;
                    true
                }
                _ => false,
            })
        });
        feed.frame_in(
            &payload(vec![Change::Attr { node: 103 }, Change::Attr { node: 102 }]),
            Some(&t),
        );
        feed.frame_in(&payload(vec![Change::Attr { node: 103 }]), Some(&t));
        feed.frame(&payload(vec![Change::Attr { node: 1 }]));
        assert_eq!(wait_for(&rec, 2), vec!["inode 2 -1 0", "inode 1 -1 0"]);
    }

    #[test]
    fn garbage_or_a_full_queue_invalidates_everything_held() {
        let c = fed();
        c.entry(1, b"f", 2, libc::S_IFREG);
        let feed = Feed::new(c);
        // Fill the queue before the thread runs.
        for _ in 0..QUEUE + 10 {
            feed.frame(&payload(vec![Change::Attr { node: 2 }]));
        }
        assert!(feed.overflowed.load(Ordering::SeqCst));
        let rec = Recorder::default();
        feed.start(rec.clone()).unwrap();
        let got = wait_for(&rec, QUEUE + 3);
        assert!(got.contains(&"entry 1 f".to_string()), "{got:?}");
        assert!(got.contains(&"inode 2 0 0".to_string()));
        assert!(got.contains(&"inode 1 0 0".to_string()));

        let rec2 = Recorder::default();
        let c = fed();
        c.entry(1, b"g", 3, libc::S_IFREG);
        let feed = Feed::new(c);
        feed.start(rec2.clone()).unwrap();
        feed.frame(b"\xff\xff\xff\xffgarbage");
        // A frame with more changes than a batch may hold: the same.
        let big: Vec<Change<'static>> = (0..MAX_CHANGES as u64 + 1)
            .map(|node| Change::Attr { node })
            .collect();
        feed.frame(&payload(big));
        let got = wait_for(&rec2, 3);
        assert!(got.contains(&"entry 1 g".to_string()), "{got:?}");
        assert!(got.contains(&"inode 3 0 0".to_string()));
    }
}
