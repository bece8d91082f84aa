//! Directory handles opened on the host, and in the container only when
//! a listing is actually read.
//!
//! With the change feed, a watched directory's listing stays in the
//! kernel's readdir cache, so most opendir calls are followed by no
//! readdir at all: the kernel lists from its cache and releases the
//! handle. Such an opendir is answered here with a handle of our own
//! ([`Fh::host`], never a satellite handle); the satellite's directory
//! stream is opened on the first readdir (with the first read of the
//! listing, in one round trip, when `Options::open_read_dir`) and closed
//! on release. Used only
//! when requests are not performed per caller (the only error an opendir
//! in the container could then give, the directory vanishing, shows on
//! the first readdir instead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Failure;
use dockerfuse_proto::{Errno, Request};

use super::ids::Fh;
use super::{replies, Transport};

enum State {
    /// Not opened in the container yet: the directory's node.
    Unopened(u64),
    /// The satellite's handle.
    Open(u64),
}

/// Continuation with the satellite's handle of a directory.
pub(super) type Then = Box<dyn FnOnce(Result<u64, Failure>) + Send>;

#[derive(Default)]
pub(super) struct LazyDirs {
    next: AtomicU64,
    map: Mutex<HashMap<u64, State>>,
}

impl LazyDirs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, State>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_host(fh: u64) -> bool {
        Fh(fh).is_host()
    }

    /// A host handle for directory `node`.
    pub(super) fn open(&self, node: u64) -> u64 {
        let Fh(fh) = Fh::host(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        self.lock().insert(fh, State::Unopened(node));
        fh
    }

    /// Runs `then` with the satellite's handle of `fh`, opening the
    /// directory in the container first when needed.
    pub(super) fn with_remote<T: Transport>(self: &Arc<Self>, rpc: &Arc<T>, fh: u64, then: Then) {
        let node = match self.lock().get(&fh) {
            None => return then(Err(Errno::EBADF.into())),
            Some(State::Open(r)) => return then(Ok(*r)),
            Some(State::Unopened(node)) => *node,
        };
        let (me, rpc2) = (self.clone(), rpc.clone());
        rpc.call(
            &Request::OpenDir { node },
            Box::new(
                move |r| match r.map_err(Failure::transport).and_then(replies::fh) {
                    Ok(remote) => {
                        let use_fh = {
                            let mut m = me.lock();
                            match m.get_mut(&fh) {
                                Some(s @ State::Unopened(_)) => {
                                    *s = State::Open(remote);
                                    Ok(remote)
                                }
                                // Opened twice at once: keep the first.
                                Some(State::Open(first)) => Err(Some(*first)),
                                None => Err(None),
                            }
                        };
                        match use_fh {
                            Ok(r) => then(Ok(r)),
                            Err(first) => {
                                rpc2.post(&Request::ReleaseDir { fh: remote });
                                then(first.ok_or(Errno::EBADF.into()))
                            }
                        }
                    }
                    Err(e) => then(Err(e)),
                },
            ),
        );
    }

    /// The node of `fh` while it is not opened in the container.
    pub(super) fn unopened(&self, fh: u64) -> Option<u64> {
        match self.lock().get(&fh) {
            Some(State::Unopened(node)) => Some(*node),
            _ => None,
        }
    }

    /// `fh` was opened in the container as `remote` together with its
    /// first read; the handle to close when it is no longer needed (`fh`
    /// released, or opened meanwhile by another read).
    pub(super) fn opened(&self, fh: u64, remote: u64) -> Option<u64> {
        match self.lock().get_mut(&fh) {
            Some(s @ State::Unopened(_)) => {
                *s = State::Open(remote);
                None
            }
            _ => Some(remote),
        }
    }

    /// Forgets `fh`; the satellite's handle to close, if it was opened.
    pub(super) fn release(&self, fh: u64) -> Option<u64> {
        match self.lock().remove(&fh) {
            Some(State::Open(r)) => Some(r),
            _ => None,
        }
    }
}
