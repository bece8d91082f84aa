//! Which nodes this mount has open for writing, so that a notification
//! never waits on the mount's own writeback.
//!
//! Asking the kernel to drop a file's cached pages (a data invalidation)
//! makes it write dirty pages back first and wait for them
//! (`invalidate_inode_pages2_range` → launder → `folio_wait_writeback`),
//! in the notifier thread, for WRITE requests only this process answers.
//! Should the process die meanwhile (SIGKILL), that thread never leaves
//! the kernel, /dev/fuse is never closed, and the mount hangs until its
//! connection is aborted by hand.
//!
//! Pages are only dirty, or under writeback, while a handle that may write
//! is open: the kernel writes them back before it releases the last one
//! (at close, and at munmap for a shared mapping). So a node with such a
//! handle gets an attribute-only invalidation instead, and a handle that
//! may write is only handed to the kernel once no data invalidation of its
//! node is under way ([`Writers::opened`] defers it, never blocking).
//!
//! The state lives in the node [`Ledger`] under its one lock;
//! [`Writers`] is the view the core and the feed go through (it never
//! holds the lock while the kernel drops pages or a reply goes out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::ledger::Ledger;

/// Something to run once a node's pages are dropped.
pub(crate) type Then = Box<dyn FnOnce() + Send>;

/// The handles that may write, in the ledger.
#[derive(Default)]
pub(crate) struct Inner {
    /// Handle → node, for the handles that may write.
    handles: HashMap<u64, u64>,
    /// Node → how many of those handles are open on it.
    nodes: HashMap<u64, usize>,
    /// The node whose pages the kernel is dropping now.
    dropping: Option<u64>,
    /// Opens of that node waiting for it.
    deferred: Vec<(u64, u64, Then)>,
}

/// The view of the ledger's handles that may write.
#[derive(Default)]
pub(crate) struct Writers {
    ledger: Arc<Mutex<Ledger>>,
}

/// The ledger, locked, seen as its writers.
struct Locked<'a>(MutexGuard<'a, Ledger>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0.writers
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0.writers
    }
}

impl Writers {
    /// The view of `ledger`'s writers.
    pub(super) fn over(ledger: Arc<Mutex<Ledger>>) -> Self {
        Writers { ledger }
    }

    fn lock(&self) -> Locked<'_> {
        Locked(self.ledger.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Handle `fh`, which may write, was opened on `node`: records it and
    /// runs `then` (which answers the kernel), later when the node's pages
    /// are being dropped right now.
    pub(crate) fn opened(&self, node: u64, fh: u64, then: Then) {
        let mut g = self.lock();
        if g.dropping == Some(node) {
            g.deferred.push((node, fh, then));
            return;
        }
        g.handles.insert(fh, node);
        *g.nodes.entry(node).or_default() += 1;
        drop(g);
        then()
    }

    /// Handle `fh` was released (the kernel wrote its pages back before).
    pub(crate) fn released(&self, fh: u64) {
        let mut g = self.lock();
        let Some(node) = g.handles.remove(&fh) else {
            return;
        };
        if let Some(n) = g.nodes.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                g.nodes.remove(&node);
            }
        }
    }

    /// Runs `drop_pages` (a data invalidation of `node`) unless a handle
    /// that may write is open on it; no such handle reaches the kernel
    /// while it runs. None when it was not run.
    pub(crate) fn dropping_pages<R>(&self, node: u64, drop_pages: impl FnOnce() -> R) -> Option<R> {
        {
            let mut g = self.lock();
            if g.nodes.contains_key(&node) {
                return None;
            }
            g.dropping = Some(node);
        }
        let r = drop_pages();
        let deferred = {
            let mut g = self.lock();
            g.dropping = None;
            std::mem::take(&mut g.deferred)
        };
        for (node, fh, then) in deferred {
            self.opened(node, fh, then);
        }
        Some(r)
    }

    #[cfg(test)]
    pub(crate) fn open_on(&self, node: u64) -> usize {
        self.lock().nodes.get(&node).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn pages_of_a_node_open_for_writing_are_not_dropped() {
        let w = Writers::default();
        let answered = Arc::new(AtomicUsize::new(0));
        let a = answered.clone();
        w.opened(5, 1, Box::new(move || _ = a.fetch_add(1, Ordering::SeqCst)));
        assert_eq!(answered.load(Ordering::SeqCst), 1);
        assert_eq!(w.dropping_pages(5, || ()), None);
        // Another node is fine.
        assert_eq!(w.dropping_pages(6, || 7), Some(7));
        w.released(1);
        assert_eq!(w.open_on(5), 0);
        assert_eq!(w.dropping_pages(5, || 8), Some(8));
        // Unknown handles (read-only ones) are ignored.
        w.released(99);
    }

    #[test]
    fn an_open_during_a_drop_of_its_node_waits_for_it() {
        let w = Arc::new(Writers::default());
        let answered = Arc::new(AtomicUsize::new(0));
        let (w2, a) = (w.clone(), answered.clone());
        let r = w.dropping_pages(5, || {
            let a2 = a.clone();
            w2.opened(
                5,
                1,
                Box::new(move || _ = a2.fetch_add(1, Ordering::SeqCst)),
            );
            // Another node's open goes at once.
            let a3 = a.clone();
            w2.opened(
                6,
                2,
                Box::new(move || _ = a3.fetch_add(10, Ordering::SeqCst)),
            );
            a.load(Ordering::SeqCst)
        });
        assert_eq!(r, Some(10));
        assert_eq!(answered.load(Ordering::SeqCst), 11);
        assert_eq!(w.open_on(5), 1);
        assert_eq!(w.dropping_pages(5, || ()), None);
    }
}
