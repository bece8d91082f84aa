//! Nodes known to have no extended attributes, until when.
//!
//! `ls -l` asks for two xattrs of every file; answered from here, a
//! listing needs no round trip per file. Filled from the entries the
//! satellite sends (lookup, readdirplus, create...), valid for the
//! attribute TTL, dropped by any xattr change made through the mount, by
//! any attribute change the change feed reports and when the kernel
//! forgets the node.
//!
//! The answers live in the node [`Ledger`] under its one lock, only for
//! nodes the kernel holds; [`NoXattrs`] is the view the core reads
//! through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dockerfuse_proto::Entry;

use super::ledger::Ledger;

/// Bound on remembered nodes; past it the memory starts over.
pub(super) const NO_XATTRS_MAX: usize = 200_000;

/// Node → until when it is known to have no xattrs (in the ledger).
pub(super) type Answers = HashMap<u64, Instant>;

/// The view of the ledger's xattr answers.
#[derive(Default)]
pub(super) struct NoXattrs {
    ledger: Arc<Mutex<Ledger>>,
}

impl NoXattrs {
    /// The view of `ledger`'s answers.
    pub(super) fn over(ledger: Arc<Mutex<Ledger>>) -> Self {
        NoXattrs { ledger }
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers what an entry says of its node's xattrs, for `ttl`.
    pub(super) fn note(&self, e: &Entry, ttl: Duration) {
        if e.no_xattrs {
            self.note_empty(e.node, ttl);
        } else {
            self.forget(e.node);
        }
    }

    /// Remembers that `node` has no xattrs, for `ttl` (if the kernel
    /// holds it: the answer goes when it forgets the node).
    pub(super) fn note_empty(&self, node: u64, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut l = self.lock();
        if !l.knows(node) {
            return;
        }
        let m = &mut l.xattrs;
        if m.len() >= NO_XATTRS_MAX && !m.contains_key(&node) {
            m.clear();
        }
        m.insert(node, Instant::now() + ttl);
    }

    pub(super) fn known_empty(&self, node: u64) -> bool {
        self.lock()
            .xattrs
            .get(&node)
            .is_some_and(|t| *t > Instant::now())
    }

    pub(super) fn forget(&self, node: u64) {
        self.lock().xattrs.remove(&node);
    }
}
