//! Releases of handles whose reads were answered on the host, sent to the
//! satellite in batches.
//!
//! A small file read whole from what its open brought costs one round trip
//! (the open); its RELEASE, though not waited for, would still be a request
//! and a reply through the engine, as much work again. Such releases wait
//! here and go as one `ReleaseMany`, which has no reply, when [`BATCH`] are
//! waiting or [`DELAY`] after the first of them, whichever comes first: the
//! satellite closes those read-only descriptors that much later, and holds
//! at most [`BATCH`] of them meanwhile. A thread of its own sends the late
//! batches; it starts with the first deferred release and ends soon after
//! the mount's core is dropped.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use dockerfuse_proto::Request;

use super::Transport;

/// Releases sent together.
pub(crate) const BATCH: usize = 64;
/// Longest a release waits for others.
pub(crate) const DELAY: Duration = Duration::from_millis(50);
/// How often the sending thread checks that the mount is still there.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    fhs: Vec<u64>,
    /// When the first of `fhs` came.
    since: Option<Instant>,
    started: bool,
}

impl Pending {
    fn take(&mut self) -> Vec<u64> {
        self.since = None;
        std::mem::take(&mut self.fhs)
    }
}

/// The deferred releases of one mount.
#[derive(Default)]
pub(crate) struct Releases {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Releases {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Defers the release of `fh`; a full batch is posted on `rpc` at once.
    pub(crate) fn defer<T: Transport>(self: &Arc<Self>, fh: u64, rpc: &Arc<T>) {
        let mut p = self.lock();
        if !p.started {
            p.started = true;
            if !self.start(rpc) {
                tracing::debug!("no thread for batched releases: releasing each at once");
                p.started = false;
                drop(p);
                return rpc.post(&Request::ReleaseMany { fhs: vec![fh] });
            }
        }
        p.fhs.push(fh);
        if p.fhs.len() >= BATCH {
            let fhs = p.take();
            drop(p);
            return rpc.post(&Request::ReleaseMany { fhs });
        }
        if p.since.is_none() {
            p.since = Some(Instant::now());
            self.wake.notify_one();
        }
    }

    /// The releases waiting since [`DELAY`] or more, once there are such;
    /// `None` after `limit` without any.
    fn due(&self, limit: Duration) -> Option<Vec<u64>> {
        let mut p = self.lock();
        let until = Instant::now() + limit;
        loop {
            let now = Instant::now();
            let wait = match p.since {
                Some(t) if now >= t + DELAY => return Some(p.take()),
                Some(t) => t + DELAY - now,
                None if now >= until => return None,
                None => until - now,
            };
            p = self
                .wake
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Starts the thread that posts batches as they fall due; false when
    /// it cannot be started.
    fn start<T: Transport>(self: &Arc<Self>, rpc: &Arc<T>) -> bool {
        let (me, rpc): (Weak<Self>, Weak<T>) = (Arc::downgrade(self), Arc::downgrade(rpc));
        std::thread::Builder::new()
            .name("releases".into())
            .spawn(move || loop {
                let Some(batch) = me.upgrade().map(|r| r.due(IDLE)) else {
                    return;
                };
                let Some(rpc) = rpc.upgrade() else {
                    return;
                };
                if let Some(fhs) = batch.filter(|f| !f.is_empty()) {
                    rpc.post(&Request::ReleaseMany { fhs });
                }
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Done;

    #[derive(Default)]
    struct Posts(Mutex<Vec<(Instant, Vec<u64>)>>);

    impl Transport for Posts {
        fn call(&self, _req: &Request<'_>, done: Done) {
            done(Err(dockerfuse_proto::Errno::ENOSYS))
        }
        fn post(&self, req: &Request<'_>) {
            if let Request::ReleaseMany { fhs } = req {
                self.0.lock().unwrap().push((Instant::now(), fhs.clone()));
            }
        }
    }

    fn posted(t: &Posts) -> Vec<Vec<u64>> {
        t.0.lock().unwrap().iter().map(|(_, f)| f.clone()).collect()
    }

    #[test]
    fn a_full_batch_goes_at_once_and_the_rest_after_the_delay() {
        let (r, t) = (Arc::new(Releases::default()), Arc::new(Posts::default()));
        let start = Instant::now();
        for fh in 1..=BATCH as u64 + 2 {
            r.defer(fh, &t);
        }
        assert_eq!(posted(&t), vec![(1..=BATCH as u64).collect::<Vec<_>>()]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while posted(&t).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let got = t.0.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "the rest is posted");
        assert_eq!(got[1].1, vec![BATCH as u64 + 1, BATCH as u64 + 2]);
        assert!(got[1].0 >= start + DELAY, "not before the delay");
        // Nothing is posted twice, and later releases start a new batch.
        r.defer(99, &t);
        let deadline = Instant::now() + Duration::from_secs(5);
        while posted(&t).len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(posted(&t)[2..], [vec![99]]);
    }

    #[test]
    fn the_thread_ends_with_the_mount() {
        let (r, t) = (Arc::new(Releases::default()), Arc::new(Posts::default()));
        r.defer(1, &t);
        let weak = Arc::downgrade(&r);
        drop(r);
        drop(t);
        // The thread holds the releases only while it waits (at most IDLE).
        let deadline = Instant::now() + IDLE * 3;
        while weak.strong_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(weak.strong_count(), 0);
    }
}
