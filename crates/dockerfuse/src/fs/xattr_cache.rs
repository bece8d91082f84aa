//! Nodes known to have no extended attributes, until when.
//!
//! `ls -l` asks for two xattrs of every file; answered from here, a
//! listing needs no round trip per file. Filled from the entries the
//! satellite sends (lookup, readdirplus, create...), valid for the
//! attribute TTL, dropped by any xattr change made through the mount and
//! by any attribute change the change feed reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dockerfuse_proto::Entry;

/// Bound on remembered nodes; past it the memory starts over.
const NO_XATTRS_MAX: usize = 200_000;

#[derive(Default)]
pub(super) struct NoXattrs {
    until: Mutex<HashMap<u64, Instant>>,
}

impl NoXattrs {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers what an entry says of its node's xattrs, for `ttl`.
    pub(super) fn note(&self, e: &Entry, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut m = self.map();
        if e.no_xattrs {
            if m.len() >= NO_XATTRS_MAX {
                m.clear();
            }
            m.insert(e.node, Instant::now() + ttl);
        } else {
            m.remove(&e.node);
        }
    }

    /// Remembers that `node` has no xattrs, for `ttl`.
    pub(super) fn note_empty(&self, node: u64, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut m = self.map();
        if m.len() >= NO_XATTRS_MAX {
            m.clear();
        }
        m.insert(node, Instant::now() + ttl);
    }

    /// Forgets everything (after lost change events).
    pub(super) fn clear(&self) {
        self.map().clear();
    }

    pub(super) fn known_empty(&self, node: u64) -> bool {
        self.map().get(&node).is_some_and(|t| *t > Instant::now())
    }

    pub(super) fn forget(&self, node: u64) {
        self.map().remove(&node);
    }
}
