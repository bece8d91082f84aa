//! Creates sent behind: nodes the host named and answered the kernel
//! for (protocol 8, `CreateNew`/`MkdirNew`; protocol 9 `SymlinkNew`)
//! before the container made them. Also the removals and renames
//! answered before the container did them (`Core::remove_behind`,
//! `Core::rename_behind`): a create in their directories waits for them
//! ([`Pending::removing`]), as do the kernel's forgets.
//!
//! The host chooses the new node's id (with [`HOST_NODE_BIT`], a range
//! the satellite never uses) and the new file's handle (with
//! [`HOST_FH_BIT`]). What is sent after such a create and names the new
//! node waits for it on the host, since the satellite may take requests
//! in any order: a create or mkdir inside a new directory waits here for
//! the directory ([`Pending::after`]); everything else waits in the
//! write-behind queue, where the create counts as a write
//! ([`super::write_behind::WriteBehind::hold`]).
//!
//! A create the container refused fails what waited for it with its
//! error, and the error is kept for the next `fsync` of the directory
//! ([`Pending::take_failed`]). At most [`MAX_PENDING`] creates are in
//! flight; past it a create waits for the container as before.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Failure;
use dockerfuse_proto::{HOST_FH_BIT, HOST_NODE_BIT};

/// Creates in flight at once.
pub(super) const MAX_PENDING: usize = 4096;
/// Directories whose refused creates are remembered for their fsync.
const MAX_FAILED: usize = 1024;

/// Runs once the node waited for is made (or refused: its error).
pub(super) type After = Box<dyn FnOnce(Result<(), Failure>) + Send>;

#[derive(Default)]
struct Inner {
    /// Nodes named and not yet made, with what waits for them.
    waiting: HashMap<u64, Vec<After>>,
    /// Directories with removals sent behind and not yet done, and the
    /// creates waiting for them (a name removed and made again is made
    /// after the removal).
    removing: HashMap<u64, Removing>,
    /// Numbers the removals.
    next_removal: u64,
    /// Directories with a create refused since their last fsync.
    failed: HashMap<u64, Failure>,
    /// Size, blocks, link count and block size of the last directory the
    /// container made, the provisional ones of the next.
    empty_dir: Option<(u64, u64, u32, u32)>,
    next: u64,
}

/// The removals in flight in one directory.
#[derive(Default)]
struct Removing {
    open: std::collections::BTreeSet<u64>,
    /// What waits for the removals numbered below its number.
    waiters: Vec<(u64, After)>,
}

/// The creates of one mount sent behind.
#[derive(Default)]
pub(super) struct Pending {
    inner: Mutex<Inner>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh (node id, handle) pair for a create, registered as pending;
    /// None when too many are in flight.
    pub(super) fn begin(&self) -> Option<(u64, u64)> {
        let mut g = self.lock();
        if g.waiting.len() >= MAX_PENDING {
            return None;
        }
        g.next += 1;
        // Handles keep 46 bits of their own; ids are never reused.
        let n = g.next & (HOST_FH_BIT - 1);
        let node = HOST_NODE_BIT | g.next;
        g.waiting.insert(node, Vec::new());
        Some((node, HOST_FH_BIT | n))
    }

    /// Runs `then` once directory `node` is made (at once unless it is
    /// pending) and the removals sent behind in it so far are done (which
    /// come after it is made; not those sent after: they may wait for
    /// what `then` sends).
    pub(super) fn after(&self, node: u64, then: After) {
        let mut g = self.lock();
        let upto = g.next_removal;
        if let Some(r) = g.removing.get_mut(&node) {
            return r.waiters.push((upto, then));
        }
        match g.waiting.get_mut(&node) {
            Some(w) => w.push(then),
            None => {
                drop(g);
                then(Ok(()))
            }
        }
    }

    /// A removal in directory `dir` is sent behind: creates in `dir` wait
    /// for it ([`Pending::after`]) until [`Pending::removed`] with the
    /// number returned.
    pub(super) fn removing(&self, dir: u64) -> u64 {
        let mut g = self.lock();
        let id = g.next_removal;
        g.next_removal += 1;
        g.removing.entry(dir).or_default().open.insert(id);
        id
    }

    /// Whether removals sent behind are not done yet.
    pub(super) fn removals(&self) -> bool {
        !self.lock().removing.is_empty()
    }

    /// Removal `id` of [`Pending::removing`] in `dir` is done (whatever
    /// the outcome: a create of a name still there is refused, EEXIST):
    /// what waited for the removals up to it runs.
    pub(super) fn removed(&self, dir: u64, id: u64) {
        let mut g = self.lock();
        let Some(r) = g.removing.get_mut(&dir) else {
            return;
        };
        r.open.remove(&id);
        let first = r.open.first().copied().unwrap_or(u64::MAX);
        let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut r.waiters)
            .into_iter()
            .partition(|(upto, _)| *upto <= first);
        r.waiters = rest;
        if r.open.is_empty() {
            // (No waiter is left: all were ready.)
            g.removing.remove(&dir);
        }
        drop(g);
        for (_, w) in ready {
            w(Ok(()));
        }
    }

    /// Whether `node` is named and not made yet.
    pub(super) fn is_pending(&self, node: u64) -> bool {
        self.lock().waiting.contains_key(&node)
    }

    /// The create of `node` in `parent` is done: what waited runs with
    /// its outcome; a refusal is kept for `parent`'s fsync.
    pub(super) fn done(&self, node: u64, parent: u64, r: Result<(), Failure>) {
        let mut g = self.lock();
        let waiters = g.waiting.remove(&node).unwrap_or_default();
        if let Err(e) = r {
            if g.failed.len() < MAX_FAILED || g.failed.contains_key(&parent) {
                g.failed.entry(parent).or_insert(e);
            }
        }
        drop(g);
        for w in waiters {
            w(r);
        }
    }

    /// An operation sent behind on a node in `parent` was refused: kept
    /// for `parent`'s fsync.
    pub(super) fn fail(&self, parent: u64, e: Failure) {
        let mut g = self.lock();
        if g.failed.len() < MAX_FAILED || g.failed.contains_key(&parent) {
            g.failed.entry(parent).or_insert(e);
        }
    }

    /// The container made an empty directory with these size, blocks,
    /// link count and block size.
    pub(super) fn learn_empty_dir(&self, a: &dockerfuse_proto::Attr) {
        self.lock().empty_dir = Some((a.size, a.blocks, a.nlink, a.blksize));
    }

    /// Size, blocks, link count and block size of an empty directory as
    /// the container made the last one (ext4's until one is seen).
    pub(super) fn empty_dir(&self) -> (u64, u64, u32, u32) {
        self.lock().empty_dir.unwrap_or((4096, 8, 2, 4096))
    }

    /// The error of a create refused in `dir` since its last fsync.
    pub(super) fn take_failed(&self, dir: u64) -> Option<Failure> {
        self.lock().failed.remove(&dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockerfuse_proto::Errno;
    use std::sync::Arc;

    #[test]
    fn ids_are_in_the_host_range_and_bounded() {
        let p = Pending::default();
        let (node, fh) = p.begin().unwrap();
        assert_ne!(node & HOST_NODE_BIT, 0);
        assert_ne!(fh & HOST_FH_BIT, 0);
        assert_eq!(fh >> 47, 0);
        assert!(p.is_pending(node));
        for _ in 1..MAX_PENDING {
            assert!(p.begin().is_some());
        }
        assert_eq!(p.begin(), None);
        p.done(node, 1, Ok(()));
        assert!(p.begin().is_some());
    }

    #[test]
    fn waiters_run_after_the_node_with_its_outcome() {
        let p = Pending::default();
        let (dir, _) = p.begin().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        p.after(dir, Box::new(move |r| s.lock().unwrap().push(r)));
        assert!(seen.lock().unwrap().is_empty());
        p.done(dir, 1, Err(Errno(libc::ENOSPC).into()));
        assert_eq!(*seen.lock().unwrap(), vec![Err(Errno(libc::ENOSPC).into())]);
        assert_eq!(p.take_failed(1), Some(Errno(libc::ENOSPC).into()));
        assert_eq!(p.take_failed(1), None);
        // Not pending: at once.
        let s = seen.clone();
        p.after(dir, Box::new(move |r| s.lock().unwrap().push(r)));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
