//! Coalescing of changes between two batches sent to the host.
//!
//! Within one batch each change is kept once (per directory and name, per
//! node), a data change covers an attribute change of the same node, and
//! past [`MAX_PENDING`] distinct changes — or after a lost event — the
//! batch becomes a single "everything" change. So a flood of events in the
//! container costs a bounded batch, never memory in proportion to it.

use std::collections::HashSet;

use dockerfuse_proto::{Change, MAX_CHANGES};

/// Distinct changes held before the batch collapses into `All`.
pub(crate) const MAX_PENDING: usize = MAX_CHANGES;

#[derive(Hash, PartialEq, Eq)]
enum Key {
    Entry(u64, Vec<u8>),
    Attr(u64),
    Data(u64),
    Unwatched(u64),
}

/// The changes of the batch being gathered.
#[derive(Default)]
pub(crate) struct Coalescer {
    seen: HashSet<Key>,
    out: Vec<Change<'static>>,
    all: bool,
}

impl Coalescer {
    pub(crate) fn is_empty(&self) -> bool {
        !self.all && self.out.is_empty()
    }

    /// Adds one change.
    pub(crate) fn push(&mut self, c: Change<'static>) {
        if self.all {
            return;
        }
        let key = match &c {
            Change::All => {
                self.lost();
                return;
            }
            Change::Entry { dir, name } | Change::Removed { dir, name, .. } => {
                Key::Entry(*dir, name.to_vec())
            }
            // Kept apart from a data change of the same node: only an
            // attribute change may have touched its xattrs.
            Change::Attr { node } => Key::Attr(*node),
            Change::Data { node } => Key::Data(*node),
            Change::Unwatched { node } => Key::Unwatched(*node),
        };
        if !self.seen.insert(key) {
            return;
        }
        if self.seen.len() > MAX_PENDING {
            self.lost();
            return;
        }
        self.out.push(c);
    }

    /// Events were lost: the batch says "everything".
    pub(crate) fn lost(&mut self) {
        self.all = true;
        self.seen.clear();
        self.out.clear();
    }

    /// The changes that may leave now: those not about a node for which
    /// `waiting` holds stay for the next batch (an overflow leaves at once).
    pub(crate) fn take_ready(&mut self, waiting: impl Fn(u64) -> bool) -> Vec<Change<'static>> {
        if self.all {
            return self.take();
        }
        let (stay, go): (Vec<_>, Vec<_>) = self.take().into_iter().partition(|c| match c {
            Change::Entry { dir, .. } => waiting(*dir),
            Change::Removed { dir, node, .. } => waiting(*dir) || waiting(*node),
            Change::Attr { node } | Change::Data { node } | Change::Unwatched { node } => {
                waiting(*node)
            }
            Change::All => false,
        });
        for c in stay {
            self.push(c);
        }
        go
    }

    /// The batch to send (empty when nothing happened); starts a new one.
    pub(crate) fn take(&mut self) -> Vec<Change<'static>> {
        let out = if self.all {
            vec![Change::All]
        } else {
            std::mem::take(&mut self.out)
        };
        self.all = false;
        self.seen.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: u64, name: &str) -> Change<'static> {
        Change::Entry {
            dir,
            name: name.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn duplicates_are_sent_once_and_data_keeps_attr_apart() {
        let mut c = Coalescer::default();
        assert!(c.is_empty());
        c.push(entry(1, "a"));
        c.push(entry(1, "a"));
        c.push(entry(2, "a"));
        c.push(Change::Attr { node: 5 });
        c.push(Change::Data { node: 5 });
        c.push(Change::Attr { node: 5 });
        c.push(Change::Data { node: 5 });
        c.push(Change::Attr { node: 6 });
        assert_eq!(
            c.take(),
            vec![
                entry(1, "a"),
                entry(2, "a"),
                Change::Attr { node: 5 },
                Change::Data { node: 5 },
                Change::Attr { node: 6 }
            ]
        );
        assert!(c.is_empty());
        assert!(c.take().is_empty());
    }

    #[test]
    fn changes_of_nodes_still_being_introduced_wait() {
        let mut c = Coalescer::default();
        c.push(Change::Data { node: 5 });
        c.push(entry(6, "x"));
        c.push(Change::Attr { node: 7 });
        let go = c.take_ready(|n| n == 5 || n == 6);
        assert_eq!(go, vec![Change::Attr { node: 7 }]);
        assert!(!c.is_empty());
        assert_eq!(
            c.take_ready(|_| false),
            vec![Change::Data { node: 5 }, entry(6, "x")]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn a_removal_and_an_entry_change_of_one_name_are_one_change() {
        let mut c = Coalescer::default();
        c.push(Change::Removed {
            dir: 1,
            name: b"x".to_vec().into(),
            node: 7,
        });
        c.push(entry(1, "x"));
        assert_eq!(c.take().len(), 1);
    }

    #[test]
    fn a_flood_collapses_into_everything_and_loss_wins() {
        let mut c = Coalescer::default();
        for i in 0..(MAX_PENDING as u64 + 10) {
            c.push(Change::Data { node: i });
        }
        assert_eq!(c.take(), vec![Change::All]);
        c.push(Change::Attr { node: 1 });
        c.push(Change::All);
        c.push(Change::Attr { node: 2 });
        assert_eq!(c.take(), vec![Change::All]);
        c.push(Change::Attr { node: 3 });
        assert_eq!(c.take(), vec![Change::Attr { node: 3 }]);
    }
}
