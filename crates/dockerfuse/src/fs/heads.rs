//! Whole contents of small files that came with their open.
//!
//! A read-only open of a regular file of at most
//! [`dockerfuse_proto::MAX_OPEN_DATA`] bytes brings the file's contents
//! (`OpenSmall`), so the kernel's reads on that handle are answered here:
//! one round trip per small file instead of two. Held contents are the
//! whole file as the satellite read it during the open, so any read on
//! the handle has an exact answer: the bytes from the offset on, short at
//! the end of file, empty at or past it.
//!
//! What keeps them true to the container:
//! * they live at most until a deadline chosen at the open — the short TTL
//!   for a node the change feed does not watch (or without the feed), the
//!   long one for a watched node — and go with the handle's RELEASE;
//! * a change the feed reports for the node (contents, attributes, its
//!   watch lost) drops them, and "everything changed" drops all;
//! * a change this mount makes to any file's contents (write, truncation,
//!   fallocate, copy_file_range, an open with O_TRUNC) drops all of them,
//!   when it is sent and again when it is done: the feed does not echo
//!   the mount's own changes, and which node a handle writes to is not
//!   known here;
//! * fresh attributes of the node given to the kernel (a lookup, getattr,
//!   setattr or readdirplus reply) drop them: the kernel compares them
//!   with its own and, seeing a new mtime or size, drops its pages and
//!   reads again, and that read must reach the container. Without the
//!   feed this is what bounds them (the kernel refreshes attributes past
//!   the TTL before it reads); with it, the feed's report comes first;
//! * any of those changes also bumps an epoch: contents whose open was in
//!   flight across one are never kept (the satellite may have read them
//!   before the change, which may already have been reported).
//!
//! Memory is bounded: past [`MAX_BYTES`] (each file counted with
//! [`ENTRY_COST`] more, so empty files count too) new contents are not
//! kept and their reads go to the satellite.
//!
//! The state lives in the node [`Ledger`] under its one lock
//! ([`Inner`]), so that a node forgotten, a change and a loss of events
//! touch one structure; [`Heads`] is the view of it the core reads
//! through.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dockerfuse_proto::Change;

use super::ledger::Ledger;

/// Bytes of contents held at once, all handles together.
pub(crate) const MAX_BYTES: usize = 16 << 20;
/// What one held file costs besides its bytes.
pub(crate) const ENTRY_COST: usize = 64;

/// Taken when an open is sent: the contents it brings are kept only if
/// nothing changed in between.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    epoch: u64,
    sent: Instant,
}

struct Held {
    node: u64,
    data: Arc<[u8]>,
    until: Instant,
}

/// The held contents, kept in the ledger.
#[derive(Default)]
pub(crate) struct Inner {
    /// Bumped by every change that may make held contents stale.
    epoch: u64,
    /// Open handle → its file's contents.
    files: HashMap<u64, Held>,
    /// Node → its handles with contents.
    by_node: HashMap<u64, Vec<u64>>,
    /// Bytes counted against the budget.
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, fh: u64) -> bool {
        let Some(h) = self.files.remove(&fh) else {
            return false;
        };
        self.bytes -= h.data.len() + ENTRY_COST;
        if let Some(fhs) = self.by_node.get_mut(&h.node) {
            fhs.retain(|&f| f != fh);
            if fhs.is_empty() {
                self.by_node.remove(&h.node);
            }
        }
        true
    }

    /// `node`'s contents go (also when the kernel forgets it).
    pub(crate) fn drop_node(&mut self, node: u64) {
        for fh in self.by_node.remove(&node).unwrap_or_default() {
            if let Some(h) = self.files.remove(&fh) {
                self.bytes -= h.data.len() + ENTRY_COST;
            }
        }
    }

    /// Changes reported by the feed: the contents of the nodes named go,
    /// all of them for a loss of events.
    pub(crate) fn changed(&mut self, changes: &[Change<'_>]) {
        for c in changes {
            match c {
                Change::Data { node } | Change::Attr { node } | Change::Unwatched { node } => {
                    self.epoch += 1;
                    self.drop_node(*node);
                }
                Change::All => self.clear(),
                // A name's change leaves the contents of the file open
                // under it as they were.
                Change::Entry { .. } | Change::Removed { .. } => {}
            }
        }
    }

    /// The kernel gets fresh attributes of `node`: if they show a change
    /// (a new mtime or size), it drops its cached pages and reads again,
    /// which held contents from before must not answer.
    pub(crate) fn refreshed(&mut self, node: u64) {
        self.epoch += 1;
        self.drop_node(node);
    }

    /// Something may have changed any file's contents: all go.
    pub(crate) fn clear(&mut self) {
        self.epoch += 1;
        self.files.clear();
        self.by_node.clear();
        self.bytes = 0;
    }

    /// Checks of the invariants: the node index and the byte count agree
    /// with the contents held; returns the nodes with contents.
    #[cfg(test)]
    pub(crate) fn checked_nodes(&self) -> Vec<u64> {
        let bytes: usize = self.files.values().map(|h| h.data.len() + ENTRY_COST).sum();
        assert_eq!(bytes, self.bytes, "the bytes held are counted right");
        for (fh, h) in &self.files {
            assert!(
                self.by_node.get(&h.node).is_some_and(|f| f.contains(fh)),
                "handle {fh} is indexed under its node {}",
                h.node
            );
        }
        let indexed: usize = self.by_node.values().map(Vec::len).sum();
        assert_eq!(indexed, self.files.len(), "no handle indexed twice or gone");
        self.by_node.keys().copied().collect()
    }
}

/// The contents held for open handles of one mount: a view of the
/// ledger's [`Inner`].
pub(crate) struct Heads {
    ledger: Arc<Mutex<Ledger>>,
    budget: usize,
}

impl Default for Heads {
    fn default() -> Self {
        Heads::with_budget(MAX_BYTES)
    }
}

/// The ledger's contents, locked.
struct Locked<'a>(MutexGuard<'a, Ledger>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0.heads
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0.heads
    }
}

impl Heads {
    /// Contents in a ledger of their own (tests).
    pub(crate) fn with_budget(budget: usize) -> Self {
        Heads::over(Arc::default(), budget)
    }

    /// The view of `ledger`'s contents, at most `budget` bytes.
    pub(crate) fn over(ledger: Arc<Mutex<Ledger>>, budget: usize) -> Self {
        Heads { ledger, budget }
    }

    fn lock(&self) -> Locked<'_> {
        Locked(self.ledger.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Taken before an open that may bring contents is sent.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket {
            epoch: self.lock().epoch,
            sent: Instant::now(),
        }
    }

    /// Keeps `data`, the whole contents of `node` read by the open `fh`,
    /// for `lifetime` from when the open was sent. False when it is not
    /// kept: something changed since the ticket, the budget is spent, or
    /// the lifetime is over already.
    pub(crate) fn keep(
        &self,
        fh: u64,
        node: u64,
        data: &[u8],
        ticket: Ticket,
        lifetime: Duration,
    ) -> bool {
        let Some(until) = ticket.sent.checked_add(lifetime) else {
            return false;
        };
        let mut t = self.lock();
        let cost = data.len() + ENTRY_COST;
        if t.epoch != ticket.epoch || t.bytes + cost > self.budget || Instant::now() >= until {
            return false;
        }
        // A handle id is never reused; this only guards the counts.
        t.remove(fh);
        t.bytes += cost;
        t.files.insert(
            fh,
            Held {
                node,
                data: data.into(),
                until,
            },
        );
        t.by_node.entry(node).or_default().push(fh);
        true
    }

    /// The answer to a read of `size` bytes at `offset` on `fh`, when its
    /// contents are held: the contents and the range to hand over.
    pub(crate) fn read(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Option<(Arc<[u8]>, Range<usize>)> {
        let mut t = self.lock();
        let h = t.files.get(&fh)?;
        if Instant::now() >= h.until {
            t.remove(fh);
            return None;
        }
        let len = h.data.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = start.saturating_add(size as usize).min(len);
        Some((h.data.clone(), start..end))
    }

    /// The handle is released; true if its contents were held.
    pub(crate) fn release(&self, fh: u64) -> bool {
        self.lock().remove(fh)
    }

    /// Changes reported by the feed: the contents of the nodes named go,
    /// all of them for a loss of events (`Coherence::apply` does it on
    /// the ledger it holds).
    #[cfg(test)]
    pub(crate) fn changed(&self, changes: &[Change<'_>]) {
        self.lock().changed(changes);
    }

    /// The kernel gets fresh attributes of `node`: if they show a change
    /// (a new mtime or size), it drops its cached pages and reads again,
    /// which held contents from before must not answer
    /// (`Coherence::attr_ttl` does it on the ledger it holds).
    #[cfg(test)]
    pub(crate) fn refreshed(&self, node: u64) {
        self.lock().refreshed(node);
    }

    /// Something may have changed any file's contents: all go.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Bytes held (with the per-file cost).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn read(h: &Heads, fh: u64, offset: u64, size: u32) -> Option<Vec<u8>> {
        h.read(fh, offset, size).map(|(d, r)| d[r].to_vec())
    }

    #[test]
    fn reads_are_answered_exactly_as_the_file_would() {
        let h = Heads::default();
        assert!(h.keep(7, 2, b"0123456789", h.ticket(), LONG));
        assert_eq!(read(&h, 7, 0, 4096).unwrap(), b"0123456789");
        assert_eq!(read(&h, 7, 3, 4).unwrap(), b"3456");
        assert_eq!(read(&h, 7, 8, 4).unwrap(), b"89");
        // At or past the end of file: empty, the EOF the satellite gives.
        assert_eq!(read(&h, 7, 10, 4).unwrap(), b"");
        assert_eq!(read(&h, 7, u64::MAX, u32::MAX).unwrap(), b"");
        assert_eq!(read(&h, 7, 0, 0).unwrap(), b"");
        // Another handle (of the same node) has nothing held.
        assert_eq!(read(&h, 8, 0, 10), None);
        let empty = Heads::default();
        assert!(empty.keep(1, 2, b"", empty.ticket(), LONG));
        assert_eq!(read(&empty, 1, 0, 10).unwrap(), b"");
    }

    #[test]
    fn release_and_expiry_drop_the_contents() {
        let h = Heads::default();
        assert!(h.keep(1, 2, b"abc", h.ticket(), LONG));
        assert!(h.release(1));
        assert!(!h.release(1));
        assert_eq!(read(&h, 1, 0, 3), None);
        assert_eq!(h.bytes(), 0);
        // Without the feed, contents live for the short TTL from the open.
        assert!(h.keep(2, 2, b"abc", h.ticket(), Duration::from_millis(30)));
        assert!(read(&h, 2, 0, 3).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(read(&h, 2, 0, 3), None);
        assert_eq!(h.bytes(), 0);
        // A zero lifetime keeps nothing.
        assert!(!h.keep(3, 2, b"abc", h.ticket(), Duration::ZERO));
    }

    #[test]
    fn changes_drop_the_nodes_named_and_a_loss_drops_all() {
        let h = Heads::default();
        for (fh, node) in [(1, 10), (2, 10), (3, 11), (4, 12)] {
            assert!(h.keep(fh, node, b"x", h.ticket(), LONG));
        }
        h.changed(&[Change::Entry {
            dir: 1,
            name: b"a".to_vec().into(),
        }]);
        assert!(read(&h, 1, 0, 1).is_some());
        h.changed(&[Change::Data { node: 10 }]);
        assert_eq!(read(&h, 1, 0, 1), None);
        assert_eq!(read(&h, 2, 0, 1), None);
        assert!(read(&h, 3, 0, 1).is_some());
        h.changed(&[Change::Attr { node: 11 }]);
        assert_eq!(read(&h, 3, 0, 1), None);
        assert!(read(&h, 4, 0, 1).is_some());
        h.changed(&[Change::All]);
        assert_eq!(read(&h, 4, 0, 1), None);
        assert_eq!(h.bytes(), 0);
        assert!(h.keep(5, 13, b"y", h.ticket(), LONG));
        h.changed(&[Change::Unwatched { node: 13 }]);
        assert_eq!(read(&h, 5, 0, 1), None);
        assert!(h.keep(6, 13, b"y", h.ticket(), LONG));
        h.clear();
        assert_eq!(read(&h, 6, 0, 1), None);
        // Fresh attributes for the kernel: that node's contents go.
        assert!(h.keep(7, 14, b"z", h.ticket(), LONG));
        assert!(h.keep(8, 15, b"z", h.ticket(), LONG));
        let before = h.ticket();
        h.refreshed(14);
        assert_eq!(read(&h, 7, 0, 1), None);
        assert!(read(&h, 8, 0, 1).is_some());
        assert!(!h.keep(9, 15, b"z", before, LONG));
    }

    #[test]
    fn contents_whose_open_crossed_a_change_are_not_kept() {
        let h = Heads::default();
        let before = h.ticket();
        h.changed(&[Change::Data { node: 99 }]);
        assert!(!h.keep(1, 2, b"old", before, LONG));
        assert_eq!(read(&h, 1, 0, 3), None);
        let before = h.ticket();
        h.clear();
        assert!(!h.keep(1, 2, b"old", before, LONG));
        // A name's change says nothing of contents.
        let before = h.ticket();
        h.changed(&[Change::Removed {
            dir: 1,
            name: b"f".to_vec().into(),
            node: 2,
        }]);
        assert!(h.keep(1, 2, b"new", before, LONG));
    }

    #[test]
    fn the_bytes_held_are_bounded() {
        let h = Heads::with_budget(3 * (100 + ENTRY_COST));
        let data = [1u8; 100];
        for fh in 1..=3 {
            assert!(h.keep(fh, fh, &data, h.ticket(), LONG));
        }
        // Full: the next contents are not kept, and its reads go on.
        assert!(!h.keep(4, 4, &data, h.ticket(), LONG));
        assert!(!h.keep(5, 5, b"", h.ticket(), LONG));
        assert_eq!(read(&h, 4, 0, 10), None);
        assert_eq!(h.bytes(), 3 * (100 + ENTRY_COST));
        // A release makes room again.
        h.release(2);
        assert!(h.keep(4, 4, &data, h.ticket(), LONG));
        // Empty files cost too: the count of entries is bounded as well.
        let few = Heads::with_budget(2 * ENTRY_COST);
        assert!(few.keep(1, 1, b"", few.ticket(), LONG));
        assert!(few.keep(2, 2, b"", few.ticket(), LONG));
        assert!(!few.keep(3, 3, b"", few.ticket(), LONG));
    }
}
