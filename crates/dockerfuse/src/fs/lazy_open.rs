//! File handles opened on the host, and in the container only when a
//! read actually reaches the mount.
//!
//! The kernel keeps a file's pages across opens (`FOPEN_KEEP_CACHE`) and
//! the change feed drops them when the file changes in the container, so
//! a read-only open of a watched file is often followed by no READ at
//! all: `tar` and `grep` of a tree read once are served by the page cache.
//! Such an open is answered here with a handle of our own ([`Fh::host`]),
//! without a round trip; the file is opened in the container on the
//! handle's first READ (or other request that needs the satellite's
//! handle), and a RELEASE of a handle never opened there sends nothing.
//!
//! The satellite opens a node by reopening its `O_PATH` descriptor, so an
//! open made later reaches the same inode an open made at once would
//! have, renamed or removed since included; what the core allows to be
//! opened lazily is decided in [`super::Core::open`] (read-only, watched,
//! the satellite root, not per caller, no passthrough).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::Failure;

use super::ids::Fh;

/// Continuation with the satellite's handle of a file.
pub(super) type Then = Box<dyn FnOnce(Result<u64, Failure>) + Send>;

enum State {
    /// Not opened in the container yet: the node and the open's flags.
    Unopened { node: u64, flags: i32 },
    /// The open is in flight; these wait for its outcome.
    Opening(Vec<Then>),
    /// The satellite's handle.
    Open(u64),
}

/// What [`LazyFiles::with_remote`] found.
pub(super) enum Remote {
    /// Opened already: the satellite's handle.
    Open(u64),
    /// The caller must open `node` with `flags` and report with
    /// [`LazyFiles::opened`].
    ToOpen { node: u64, flags: i32 },
    /// An open is in flight; the continuation runs when it is done.
    Waiting,
    /// Not a handle of ours (released, or never given).
    Unknown,
}

/// The host-made file handles of one mount.
#[derive(Default)]
pub(super) struct LazyFiles {
    next: AtomicU64,
    map: Mutex<HashMap<u64, State>>,
}

impl LazyFiles {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, State>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A host handle for `node`, to be opened with `flags` when needed.
    pub(super) fn open(&self, node: u64, flags: i32) -> u64 {
        let Fh(fh) = Fh::host(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        self.lock().insert(fh, State::Unopened { node, flags });
        fh
    }

    /// Whether `fh` is one of ours (opened or not).
    #[cfg(test)]
    pub(super) fn knows(&self, fh: u64) -> bool {
        self.lock().contains_key(&fh)
    }

    /// The satellite's handle of `fh`, or what to do to get it. With
    /// [`Remote::ToOpen`] the handle is marked as opening and `then`
    /// waits with the others; with [`Remote::Waiting`] it waits.
    pub(super) fn with_remote(&self, fh: u64, then: Then) -> (Remote, Option<Then>) {
        let mut m = self.lock();
        match m.get_mut(&fh) {
            None => (Remote::Unknown, Some(then)),
            Some(State::Open(r)) => (Remote::Open(*r), Some(then)),
            Some(State::Opening(waiting)) => {
                waiting.push(then);
                (Remote::Waiting, None)
            }
            Some(s @ State::Unopened { .. }) => {
                let State::Unopened { node, flags } =
                    std::mem::replace(s, State::Opening(vec![then]))
                else {
                    unreachable!("matched above")
                };
                (Remote::ToOpen { node, flags }, None)
            }
        }
    }

    /// The open of `fh` in the container is done. Runs the waiting
    /// continuations; returns the satellite's handle to close when `fh`
    /// was released meanwhile. A failed open leaves `fh` unopened: the
    /// next read tries again.
    pub(super) fn opened(
        &self,
        fh: u64,
        node: u64,
        flags: i32,
        r: Result<u64, Failure>,
    ) -> Option<u64> {
        let waiting = {
            let mut m = self.lock();
            let Some(State::Opening(_)) = m.get(&fh) else {
                return r.ok();
            };
            let next = match r {
                Ok(remote) => State::Open(remote),
                Err(_) => State::Unopened { node, flags },
            };
            match m.insert(fh, next) {
                Some(State::Opening(w)) => w,
                _ => Vec::new(),
            }
        };
        for then in waiting {
            then(r);
        }
        None
    }

    /// The handles not opened in the container (yet).
    pub(super) fn unopened(&self) -> Vec<u64> {
        self.lock()
            .iter()
            .filter(|(_, s)| !matches!(s, State::Open(_)))
            .map(|(&fh, _)| fh)
            .collect()
    }

    /// Forgets `fh`; the satellite's handle to close, if it was opened.
    /// An open in flight closes its handle when it is done.
    pub(super) fn release(&self, fh: u64) -> Option<u64> {
        match self.lock().remove(&fh) {
            Some(State::Open(r)) => Some(r),
            _ => None,
        }
    }

    /// Handles given and not released.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockerfuse_proto::Errno;
    use std::sync::Arc;

    fn noting(seen: &Arc<Mutex<Vec<Result<u64, Failure>>>>) -> Then {
        let seen = seen.clone();
        Box::new(move |r| seen.lock().unwrap().push(r))
    }

    #[test]
    fn one_open_in_the_container_serves_every_waiter() {
        let l = LazyFiles::default();
        let fh = l.open(5, libc::O_RDONLY);
        assert!(Fh(fh).is_host());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, t) = l.with_remote(fh, noting(&seen));
        assert!(matches!(r, Remote::ToOpen { node: 5, flags: 0 }) && t.is_none());
        let (r, t) = l.with_remote(fh, noting(&seen));
        assert!(matches!(r, Remote::Waiting) && t.is_none());
        assert_eq!(l.opened(fh, 5, 0, Ok(42)), None);
        assert_eq!(*seen.lock().unwrap(), vec![Ok(42), Ok(42)]);
        let (r, t) = l.with_remote(fh, noting(&seen));
        assert!(matches!(r, Remote::Open(42)) && t.is_some());
        assert_eq!(l.release(fh), Some(42));
        assert!(!l.knows(fh));
        let (r, _) = l.with_remote(fh, noting(&seen));
        assert!(matches!(r, Remote::Unknown));
    }

    #[test]
    fn a_failed_open_is_tried_again_and_a_release_meanwhile_closes_it() {
        let l = LazyFiles::default();
        let fh = l.open(5, 0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let _ = l.with_remote(fh, noting(&seen));
        assert_eq!(l.opened(fh, 5, 0, Err(Errno::ESTALE.into())), None);
        assert_eq!(*seen.lock().unwrap(), vec![Err(Errno::ESTALE.into())]);
        let (r, _) = l.with_remote(fh, noting(&seen));
        assert!(matches!(r, Remote::ToOpen { node: 5, .. }));
        // Released while the open is in flight: its handle must be closed.
        assert_eq!(l.release(fh), None);
        assert_eq!(l.opened(fh, 5, 0, Ok(9)), Some(9));
        assert_eq!(l.len(), 0);
        // Never opened: nothing to close.
        let fh = l.open(6, 0);
        assert_eq!(l.release(fh), None);
    }
}
