//! The node ledger: per kernel node id, what the host holds about it.
//!
//! For each node the kernel holds: its lookup count, where it was last
//! found (parent and name), whether the change feed watches it, and the
//! attributes kept on the host for it, with their source and expiry.
//! Names given the long TTL are remembered here too, as (parent, name) →
//! node. The xattr answers ([`super::xattr_cache`]), the listing names
//! ([`super::dir_names`]) and the small files' contents
//! ([`super::heads`]) live here too, under the same lock: forgetting a
//! node, a change event and a loss of events touch this one structure;
//! `NoXattrs`, `DirNames` and `Heads` are views of it, and so is
//! `Writers`, the handles that may write ([`super::writers`]), and
//! `Backings`, passthrough's backing files
//! ([`crate::kernel::passthrough`]), whose registration is the one call
//! made with the lock held (an ioctl that sends no request).
//! [`super::coherence::Coherence`] is the policy over this ledger.
//!
//! Kept attributes answer GETATTR without a round trip. They are kept
//! only for nodes the feed watches (the policy decides), and dropped by
//! the node's changes, by a lost event, and by the mount's own operations
//! that change them. A reply is recorded only if nothing was dropped
//! since its request left ([`Ledger::stamp`]): attributes fetched before a
//! change and arriving after it are not kept.
//!
//! Lock discipline: the ledger lives behind one `Mutex`, shared by
//! `Coherence` and the five views (`NoXattrs`, `DirNames`, `Heads`,
//! `Writers`, `Backings`, which take it for each call and never hold it
//! across one). It is the one
//! lock of the core's node state: nothing sends a request, runs a
//! callback or calls a view with it held (the lock is not reentrant:
//! `Coherence` works on the ledger's fields directly instead).
//!
//! Bounded memory (the container is untrusted): names are bounded by
//! [`MAX_NAMES`], unwatched nodes by [`MAX_UNWATCHED`]; kept attributes
//! and xattr answers exist only for nodes the kernel holds (dropped when
//! it forgets them) and are at most [`MAX_ATTRS`] and
//! `xattr_cache::NO_XATTRS_MAX`; contents at most `heads::MAX_BYTES`;
//! listings as `dir_names` says (`dir_names::MAX_NAMES` and others), and
//! they go with their directory.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dockerfuse_proto::Attr;

/// Names remembered for invalidation (about 100 bytes each).
pub(crate) const MAX_NAMES: usize = 200_000;
/// Unwatched nodes remembered; past this every node gets the short TTL.
pub(crate) const MAX_UNWATCHED: usize = 100_000;
/// Nodes whose attributes are kept at once (about 150 bytes each).
pub(crate) const MAX_ATTRS: usize = 200_000;
/// Files made behind whose attributes the host holds at once
/// ([`Source::Made`]).
pub(crate) const MAX_MADE: usize = 16_384;

/// Which reply brought kept attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// LOOKUP, or a creation (CREATE, MKDIR, LINK...): an entry reply.
    Entry,
    /// A READDIRPLUS entry.
    Listing,
    /// GETATTR or SETATTR.
    Attr,
    /// The node is a file the mount made behind ([`super::made`]): the
    /// host holds its attributes, changed by the mount's own operations
    /// on it, and takes the container's from their replies.
    Made,
}

/// What the host follows of a file it made behind ([`Source::Made`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Followed {
    /// The directory it was made in (a refusal is reported on it).
    pub(crate) parent: u64,
    /// The handle its create opened; `None` once released.
    pub(crate) fh: Option<u64>,
    /// The container's latest word on the file: its attributes after the
    /// create, a write or a setattr, from their replies.
    pub(crate) truth: Option<Attr>,
    /// Bytes the mount accepted to write to it, and those among them whose
    /// write the container answered with the attributes after it: when
    /// equal, `truth` holds every write.
    pub(crate) accepted: u64,
    pub(crate) landed: u64,
}

impl Followed {
    /// The container's word holds every write accepted so far.
    pub(crate) fn current(&self) -> Option<Attr> {
        self.truth.filter(|_| self.landed == self.accepted)
    }
}

/// Attributes kept for a node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kept {
    pub(crate) attr: Attr,
    pub(crate) source: Source,
    pub(crate) until: Instant,
}

/// What the host holds about the kernel's nodes.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Lookup references the kernel holds on each node.
    pub(super) nodes: HashMap<u64, u64>,
    /// Names given the long TTL: (parent, name) → node (0: absent).
    pub(super) names: HashMap<(u64, Box<[u8]>), u64>,
    /// Where each regular file was last found (its name is dropped with
    /// its data, so that the next open looks it up and learns its size:
    /// the kernel appends at its own idea of the end of file).
    pub(super) place: HashMap<u64, (u64, Box<[u8]>)>,
    /// The file type (`S_IFMT` bits) of each node the kernel holds, from
    /// its entry reply.
    pub(super) kinds: HashMap<u64, u32>,
    /// Nodes the feed said it does not watch (may precede their reply).
    pub(super) unwatched: HashSet<u64>,
    /// Too many unwatched nodes to track: none is kept for long.
    pub(super) degraded: bool,
    /// Attributes kept on the host, answered to GETATTR.
    attrs: HashMap<u64, Kept>,
    /// The nodes among them made behind ([`Source::Made`]), at most
    /// [`MAX_MADE`].
    made: HashMap<u64, Followed>,
    /// Nodes whose attributes are never kept while the kernel holds them
    /// (written through a backing file, which the host does not see).
    bypassed: HashSet<u64>,
    /// Open file handles → their node (a read through one may move the
    /// node's atime in the container); bounded by the kernel's open files.
    handles: HashMap<u64, u64>,
    /// Bumped whenever kept attributes are dropped.
    stamp: u64,
    /// Nodes known to have no xattrs, until when ([`super::xattr_cache`]).
    pub(super) xattrs: super::xattr_cache::Answers,
    /// Small files' contents held for open handles ([`super::heads`]).
    pub(crate) heads: super::heads::Inner,
    /// Complete listings of watched directories ([`super::dir_names`]).
    pub(crate) listings: super::dir_names::Inner,
    /// Handles that may write, and a data invalidation under way
    /// ([`super::writers`]).
    pub(crate) writers: super::writers::Inner,
    /// Passthrough's backing files per node, and the handles open on
    /// them ([`crate::kernel::passthrough`]).
    pub(crate) backings: crate::kernel::passthrough::Inner,
}

impl Ledger {
    /// Whether the feed watches `node`.
    pub(crate) fn watched(&self, node: u64) -> bool {
        !self.degraded && !self.unwatched.contains(&node)
    }

    /// Whether the kernel holds `node` (the root always).
    pub(crate) fn knows(&self, node: u64) -> bool {
        node == dockerfuse_proto::ROOT_NODE || self.nodes.contains_key(&node)
    }

    /// The kernel takes one more reference on `node`.
    pub(crate) fn looked_up(&mut self, node: u64) {
        *self.nodes.entry(node).or_default() += 1;
    }

    /// The kernel dropped `count` references; true when it holds none now
    /// (everything about the node is then gone).
    pub(crate) fn forgotten(&mut self, node: u64, count: u64) -> bool {
        let Some(c) = self.nodes.get_mut(&node) else {
            return false;
        };
        *c = c.saturating_sub(count);
        if *c > 0 {
            return false;
        }
        self.nodes.remove(&node);
        self.unwatched.remove(&node);
        self.place.remove(&node);
        self.kinds.remove(&node);
        self.bypassed.remove(&node);
        self.xattrs.remove(&node);
        self.heads.drop_node(node);
        self.listings.forgotten(node);
        self.drop_attr(node);
        true
    }

    /// A mark to pass to [`Ledger::keep`] for a reply to a request sent now.
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Keeps `attr` for `node` until `until`, if nothing was dropped since
    /// `stamp` and the kernel holds the node. The caller checked the
    /// policy (feed on, node watched, not a symlink).
    pub(crate) fn keep(
        &mut self,
        node: u64,
        attr: Attr,
        source: Source,
        stamp: u64,
        ttl: Duration,
    ) {
        if stamp != self.stamp || !self.knows(node) || self.bypassed.contains(&node) {
            return;
        }
        // A file made behind: its own replies change what is held.
        if self.made.contains_key(&node) {
            return;
        }
        self.insert(node, attr, source, ttl);
    }

    fn insert(&mut self, node: u64, attr: Attr, source: Source, ttl: Duration) {
        if self.attrs.len() >= MAX_ATTRS && !self.attrs.contains_key(&node) {
            // Past the bound, the oldest memory starts over.
            self.attrs.clear();
            self.made.clear();
        }
        let until = Instant::now() + ttl;
        self.attrs.insert(
            node,
            Kept {
                attr,
                source,
                until,
            },
        );
    }

    /// Removes what is kept of `node`, and what is followed of it.
    fn remove(&mut self, node: u64) -> Option<Followed> {
        self.attrs.remove(&node);
        self.made.remove(&node)
    }

    /// `node` was made behind with `attr` (the host's guess of it) by
    /// handle `fh` in `parent`: the host holds its attributes from now.
    /// False when it may not (the kernel does not hold the node, or too
    /// many are followed, none of them released).
    pub(crate) fn follow(
        &mut self,
        node: u64,
        attr: Attr,
        parent: u64,
        fh: u64,
        ttl: Duration,
    ) -> bool {
        if !self.knows(node) || self.bypassed.contains(&node) {
            return false;
        }
        if self.made.len() >= MAX_MADE && !self.made.contains_key(&node) {
            // The released go first.
            let done: Vec<u64> = (self.made.iter())
                .filter(|(_, f)| f.fh.is_none())
                .map(|(&n, _)| n)
                .collect();
            for n in done {
                self.remove(n);
            }
            if self.made.len() >= MAX_MADE {
                return false;
            }
        }
        self.insert(node, attr, Source::Made, ttl);
        let followed = Followed {
            parent,
            fh: Some(fh),
            truth: None,
            accepted: 0,
            landed: 0,
        };
        self.made.insert(node, followed);
        true
    }

    /// `node`'s attributes and what is followed of it, when it was made
    /// behind and is followed.
    pub(crate) fn followed(&self, node: u64) -> Option<(Attr, Followed)> {
        let f = *self.made.get(&node)?;
        Some((self.kept(node)?.attr, f))
    }

    /// Changes a node followed with `change`; its expiry starts over.
    /// The new state.
    pub(crate) fn follow_change(
        &mut self,
        node: u64,
        ttl: Duration,
        change: impl FnOnce(&mut Attr, &mut Followed),
    ) -> Option<(Attr, Followed)> {
        let now = Instant::now();
        let f = self.made.get_mut(&node)?;
        let k = self.attrs.get_mut(&node).filter(|k| k.until > now)?;
        change(&mut k.attr, f);
        k.until = now + ttl;
        Some((k.attr, *f))
    }

    /// The host stops following `node`: its attributes go. Whether it
    /// followed it.
    pub(crate) fn unfollow(&mut self, node: u64) -> bool {
        if !self.made.contains_key(&node) {
            return false;
        }
        self.stamp += 1;
        self.remove(node).is_some()
    }

    /// Every node followed.
    pub(crate) fn followed_nodes(&self) -> Vec<u64> {
        self.made.keys().copied().collect()
    }

    /// The attributes kept for `node`, if still valid.
    pub(crate) fn kept(&self, node: u64) -> Option<Kept> {
        self.attrs
            .get(&node)
            .filter(|k| k.until > Instant::now())
            .copied()
    }

    /// `node`'s attributes changed (or may have), whoever changed them: a
    /// file made behind is no longer followed.
    pub(crate) fn drop_attr(&mut self, node: u64) {
        self.stamp += 1;
        self.remove(node);
    }

    /// The mount's own operation changes `node`'s attributes: what was
    /// kept of them goes, unless the node is a file made behind whose
    /// create's handle is open (the operation changed them here).
    pub(crate) fn touch(&mut self, node: u64) {
        self.stamp += 1;
        match self.made.get(&node) {
            Some(f) if f.fh.is_some() => {}
            _ => {
                self.remove(node);
            }
        }
    }

    /// Changes came from the container: replies in flight may be older.
    pub(crate) fn changes_came(&mut self) {
        self.stamp += 1;
    }

    /// Any node's attributes may have changed.
    pub(crate) fn drop_attrs(&mut self) {
        self.stamp += 1;
        self.attrs.clear();
        self.made.clear();
    }

    /// `name` in `parent` was removed, replaced or moved by the mount: the
    /// parent's times and the named node's link count or ctime changed.
    /// A name the ledger does not know may be any node's: all go.
    pub(crate) fn name_changed(&mut self, parent: u64, name: &[u8]) {
        self.drop_attr(parent);
        match self.names.get(&(parent, Box::from(name))) {
            Some(&node) if node != 0 => self.drop_attr(node),
            // Known absent: nothing of anyone's changed by it.
            Some(_) => {}
            None => self.drop_attrs(),
        }
    }

    /// `node` is written through a backing file: its attributes change
    /// without the host seeing it, until the kernel forgets it.
    pub(crate) fn bypass(&mut self, node: u64) {
        self.bypassed.insert(node);
        self.drop_attr(node);
    }

    /// `fh` is an open file of `node`.
    pub(crate) fn opened(&mut self, fh: u64, node: u64) {
        self.handles.insert(fh, node);
    }

    /// `fh` was released.
    pub(crate) fn released(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    /// Data is read through `fh` in the container: its node's atime may
    /// move (the satellite reads without O_NOATIME).
    pub(crate) fn read_through(&mut self, fh: u64) {
        match self.handles.get(&fh) {
            Some(&node) => self.drop_attr(node),
            None => self.drop_attrs(),
        }
    }

    /// Nodes with kept attributes, for checks.
    #[cfg(test)]
    pub(crate) fn kept_nodes(&self) -> Vec<u64> {
        self.attrs.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(size: u64) -> Attr {
        Attr {
            ino: 0,
            size,
            blocks: 0,
            atime: 0,
            atime_nsec: 0,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
        }
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn attributes_are_kept_for_held_nodes_and_go_with_them() {
        let mut l = Ledger::default();
        let s = l.stamp();
        l.keep(5, attr(1), Source::Entry, s, LONG);
        assert!(l.kept(5).is_none(), "not held");
        l.looked_up(5);
        l.looked_up(5);
        l.keep(5, attr(1), Source::Entry, s, LONG);
        assert_eq!(
            l.kept(5).map(|k| (k.attr.size, k.source)),
            Some((1, Source::Entry))
        );
        assert!(!l.forgotten(5, 1));
        assert!(l.kept(5).is_some());
        assert!(l.forgotten(5, 1));
        assert!(l.kept(5).is_none());
        assert!(!l.forgotten(5, 1), "unknown now");
    }

    #[test]
    fn a_reply_from_before_a_drop_is_not_kept() {
        let mut l = Ledger::default();
        l.looked_up(5);
        l.looked_up(6);
        let before = l.stamp();
        l.drop_attr(6);
        l.keep(5, attr(1), Source::Attr, before, LONG);
        assert!(l.kept(5).is_none());
        l.keep(5, attr(2), Source::Attr, l.stamp(), LONG);
        assert_eq!(l.kept(5).unwrap().attr.size, 2);
        l.keep(6, attr(3), Source::Listing, l.stamp(), Duration::ZERO);
        assert!(l.kept(6).is_none(), "expired");
    }

    #[test]
    fn a_changed_name_drops_its_node_and_parent_or_everything() {
        let mut l = Ledger::default();
        for n in [1, 5, 6, 7] {
            l.looked_up(n);
            l.keep(n, attr(n), Source::Entry, l.stamp(), LONG);
        }
        l.names.insert((1, Box::from(&b"a"[..])), 5);
        l.name_changed(1, b"a");
        assert!(l.kept(1).is_none() && l.kept(5).is_none());
        assert!(l.kept(6).is_some());
        l.name_changed(1, b"unknown");
        assert!(l.kept_nodes().is_empty());
        // Written through a backing file: never kept while held.
        l.bypass(7);
        l.keep(7, attr(7), Source::Attr, l.stamp(), LONG);
        assert!(l.kept(7).is_none());
    }

    #[test]
    fn a_file_made_behind_is_held_until_someone_else_changes_it() {
        let mut l = Ledger::default();
        assert!(!l.follow(5, attr(0), 1, 7, LONG), "not held");
        l.looked_up(5);
        assert!(l.follow(5, attr(0), 1, 7, LONG));
        // The mount's own changes keep it while its handle is open; a
        // reply does not replace it.
        l.touch(5);
        l.keep(5, attr(9), Source::Attr, l.stamp(), LONG);
        assert_eq!(
            l.kept(5).map(|k| (k.attr.size, k.source)),
            Some((0, Source::Made))
        );
        let got = l.follow_change(5, LONG, |a, f| {
            a.size = 3;
            f.accepted = 3;
        });
        assert_eq!(got.map(|(a, f)| (a.size, f.current())), Some((3, None)));
        l.follow_change(5, LONG, |_, f| {
            f.landed = 3;
            f.truth = Some(attr(3));
        });
        assert_eq!(
            l.followed(5).and_then(|(_, f)| f.current()).map(|a| a.size),
            Some(3)
        );
        // Released: the mount's own change ends it, as anyone's does.
        l.follow_change(5, LONG, |_, f| f.fh = None);
        l.touch(5);
        assert!(l.followed(5).is_none() && l.kept(5).is_none());
        assert!(l.follow(5, attr(0), 1, 7, LONG));
        l.drop_attr(5);
        assert!(l.followed(5).is_none());
        assert!(l.follow(5, attr(0), 1, 7, LONG));
        assert!(l.unfollow(5));
        assert!(!l.unfollow(5));
        // Bounded: past the bound the released go first, else none is
        // followed.
        for n in 0..MAX_MADE as u64 {
            l.looked_up(100 + n);
            assert!(l.follow(100 + n, attr(0), 1, n, LONG));
        }
        l.looked_up(6);
        assert!(!l.follow(6, attr(0), 1, 7, LONG));
        l.follow_change(100, LONG, |_, f| f.fh = None);
        assert!(l.follow(6, attr(0), 1, 7, LONG));
        assert!(l.followed(100).is_none());
    }

    #[test]
    fn kept_attributes_are_bounded() {
        let mut l = Ledger::default();
        for n in 0..MAX_ATTRS as u64 + 1 {
            l.looked_up(n + 10);
            l.keep(n + 10, attr(0), Source::Listing, l.stamp(), LONG);
        }
        assert!(l.attrs.len() <= MAX_ATTRS);
    }
}
