//! The node table: every inode the kernel currently knows.
//!
//! In the style of a passthrough server, each node holds an `O_PATH`
//! descriptor, so operations use `*at()` calls relative to it and a rename
//! elsewhere never invalidates anything; no path strings are kept. Nodes
//! are keyed by (st_dev, st_ino), so hard links resolve to one node id, and
//! each holds the number of lookups the kernel has not yet forgotten.
//! Node ids are never reused: a forgotten file that is looked up again gets
//! a fresh id.
//!
//! Descriptors are limited (RLIMIT_NOFILE, 20,000 under some engines) and
//! the kernel keeps every inode of a listed directory. Past a budget, a
//! non-directory node keeps no descriptor: it remembers its parent node and
//! name (updated by each lookup and by renames through the mount) and is
//! reopened `O_PATH` for each operation, checked against its (st_dev,
//! st_ino). Such a node renamed or removed by someone else gives ESTALE
//! until the kernel looks it up again.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use dockerfuse_proto::{Errno, HOST_NODE_BIT, ROOT_NODE};

use crate::sys;

/// One inode known to the kernel.
pub(crate) struct Node {
    fd: Option<OwnedFd>,
    pub(crate) is_symlink: bool,
    key: (u64, u64),
    /// Parent and name of a node without a descriptor.
    place: Mutex<Option<(Arc<Node>, Vec<u8>)>>,
    /// Birth time of a node without a descriptor (see sys::birth_time).
    born: Option<(i64, u32)>,
}

/// A node resolved for one operation: its own descriptor, or a temporary
/// one (closed when this drops: keep it alive while using `raw()`).
pub(crate) struct NodeRef {
    node: Arc<Node>,
    tmp: Option<OwnedFd>,
    pub(crate) is_symlink: bool,
}

impl NodeRef {
    pub(crate) fn raw(&self) -> RawFd {
        match (&self.tmp, &self.node.fd) {
            (Some(fd), _) | (None, Some(fd)) => fd.as_raw_fd(),
            (None, None) => -1,
        }
    }
}

struct Slot {
    node: Arc<Node>,
    key: (u64, u64),
    refs: u64,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<u64, Slot>,
    by_key: HashMap<(u64, u64), u64>,
    next_id: u64,
    /// Nodes holding a descriptor.
    with_fd: usize,
}

/// The table, shared by the worker threads.
pub(crate) struct Nodes {
    inner: Mutex<Inner>,
    /// Nodes that may hold a descriptor; beyond, non-directories hold none.
    fd_budget: usize,
}

/// Where a node was found: parent node id and name.
pub(crate) type Place<'a> = Option<(u64, &'a [u8])>;

impl Nodes {
    /// A table holding only the root, which is never forgotten.
    #[cfg(test)]
    pub(crate) fn new(root: OwnedFd, root_key: (u64, u64)) -> Nodes {
        Nodes::with_budget(root, root_key, usize::MAX)
    }

    /// Same, with at most `fd_budget` nodes holding a descriptor.
    pub(crate) fn with_budget(root: OwnedFd, root_key: (u64, u64), fd_budget: usize) -> Nodes {
        let mut inner = Inner {
            next_id: ROOT_NODE + 1,
            ..Default::default()
        };
        inner.by_key.insert(root_key, ROOT_NODE);
        inner.by_id.insert(
            ROOT_NODE,
            Slot {
                node: Arc::new(Node {
                    fd: Some(root),
                    is_symlink: false,
                    key: root_key,
                    place: Mutex::new(None),
                    born: None,
                }),
                key: root_key,
                refs: u64::MAX / 2,
            },
        );
        inner.with_fd = 1;
        Nodes {
            inner: Mutex::new(inner),
            fd_budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A worker that panicked cannot leave the table half-changed: every
        // change below is a single map operation. Keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, id: u64) -> Result<NodeRef, Errno> {
        let node = self
            .lock()
            .by_id
            .get(&id)
            .map(|s| s.node.clone())
            .ok_or(Errno::ESTALE)?;
        let is_symlink = node.is_symlink;
        if node.fd.is_some() {
            return Ok(NodeRef {
                node,
                tmp: None,
                is_symlink,
            });
        }
        let place = node.place.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (parent, name) = place.ok_or(Errno::ESTALE)?;
        let dir = parent.fd.as_ref().ok_or(Errno::ESTALE)?;
        let fd = sys::openat(
            dir.as_raw_fd(),
            &sys::cstr(&name)?,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )
        .map_err(|_| Errno::ESTALE)?;
        let st = sys::stat_fd(fd.as_raw_fd())?;
        if (st.st_dev as u64, st.st_ino as u64) != node.key
            || sys::birth_time(fd.as_raw_fd()) != node.born
        {
            return Err(Errno::ESTALE);
        }
        Ok(NodeRef {
            node,
            tmp: Some(fd),
            is_symlink,
        })
    }

    /// The (st_dev, st_ino) of node `id`, if known.
    pub(crate) fn key(&self, id: u64) -> Option<(u64, u64)> {
        self.lock().by_id.get(&id).map(|s| s.key)
    }

    /// Registers one more lookup of the inode `key`, opened as `fd` and
    /// found as `place`; returns its node id. When the inode is already
    /// known, `fd` is dropped (a descriptor-less node learns the new place).
    pub(crate) fn add_ref(
        &self,
        key: (u64, u64),
        fd: OwnedFd,
        is_symlink: bool,
        is_dir: bool,
        place: Place<'_>,
    ) -> u64 {
        let mut t = self.lock();
        let parent = place.and_then(|(p, n)| {
            let node = t.by_id.get(&p)?.node.clone();
            node.fd.is_some().then(|| (node, n.to_vec()))
        });
        // A node without a descriptor is the same file only if it was born
        // at the same time: a new file may reuse a deleted one's inode
        // number at once (ext4 does), and must then get a node of its own.
        // Read only when it decides something (a statx per lookup otherwise).
        let mut born = None;
        let mut fresh_born = || *born.get_or_insert_with(|| sys::birth_time(fd.as_raw_fd()));
        if let Some(&id) = t.by_key.get(&key) {
            if let Some(slot) = t
                .by_id
                .get_mut(&id)
                .filter(|s| s.node.fd.is_some() || s.node.born == fresh_born())
            {
                slot.refs = slot.refs.saturating_add(1);
                if slot.node.fd.is_none() && parent.is_some() {
                    *slot.node.place.lock().unwrap_or_else(|p| p.into_inner()) = parent;
                }
                return id;
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        self.insert(&mut t, id, key, fd, (is_symlink, is_dir), parent, born);
        id
    }

    /// Whether `id` may name a node the host is about to make (protocol
    /// 8): it has [`HOST_NODE_BIT`] (EINVAL) and is not in use (EEXIST).
    pub(crate) fn check_new(&self, id: u64) -> Result<(), Errno> {
        Self::check_free(&self.lock(), id)
    }

    fn check_free(t: &Inner, id: u64) -> Result<(), Errno> {
        if id & HOST_NODE_BIT == 0 || id == ROOT_NODE {
            return Err(Errno::EINVAL);
        }
        match t.by_id.contains_key(&id) {
            true => Err(Errno::EEXIST),
            false => Ok(()),
        }
    }

    /// Registers the inode `key`, just made by the mount (so no other
    /// node can be the same file), under `id`, the host's choice, with
    /// one lookup, a symlink and a directory as `kind` says; refused as
    /// [`Nodes::check_new`] says.
    pub(crate) fn add_new(
        &self,
        id: u64,
        key: (u64, u64),
        fd: OwnedFd,
        kind: (bool, bool),
        place: Place<'_>,
    ) -> Result<(), Errno> {
        let mut t = self.lock();
        Self::check_free(&t, id)?;
        let parent = place.and_then(|(p, n)| {
            let node = t.by_id.get(&p)?.node.clone();
            node.fd.is_some().then(|| (node, n.to_vec()))
        });
        self.insert(&mut t, id, key, fd, kind, parent, None);
        Ok(())
    }

    /// Adds a node with one lookup (the newest node of `key`).
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        t: &mut Inner,
        id: u64,
        key: (u64, u64),
        fd: OwnedFd,
        (is_symlink, is_dir): (bool, bool),
        parent: Option<(Arc<Node>, Vec<u8>)>,
        fresh_born: Option<Option<(i64, u32)>>,
    ) {
        let keep_fd = is_dir || parent.is_none() || t.with_fd < self.fd_budget;
        let born = match keep_fd {
            true => None,
            false => fresh_born.unwrap_or_else(|| sys::birth_time(fd.as_raw_fd())),
        };
        let node = Node {
            born,
            fd: keep_fd.then_some(fd),
            is_symlink,
            key,
            place: Mutex::new(if keep_fd { None } else { parent }),
        };
        if keep_fd {
            t.with_fd += 1;
        }
        t.by_key.insert(key, id);
        t.by_id.insert(
            id,
            Slot {
                node: Arc::new(node),
                key,
                refs: 1,
            },
        );
    }

    /// After a rename through the mount: a descriptor-less node found at
    /// (parent, name) is now at (new_parent, new_name).
    pub(crate) fn moved(&self, key: (u64, u64), new_parent: u64, new_name: &[u8]) {
        let t = self.lock();
        let Some(slot) = t.by_key.get(&key).and_then(|id| t.by_id.get(id)) else {
            return;
        };
        if slot.node.fd.is_some() {
            return;
        }
        if let Some(p) = t.by_id.get(&new_parent) {
            if p.node.fd.is_some() {
                *slot.node.place.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((p.node.clone(), new_name.to_vec()));
            }
        }
    }

    /// Drops `count` lookups of `id`; the node goes when none are left
    /// (then true).
    pub(crate) fn forget(&self, id: u64, count: u64) -> bool {
        if id == ROOT_NODE {
            return false;
        }
        let mut t = self.lock();
        let gone = match t.by_id.get_mut(&id) {
            Some(slot) => {
                slot.refs = slot.refs.saturating_sub(count);
                (slot.refs == 0).then_some(slot.key)
            }
            None => None,
        };
        if let Some(key) = gone {
            if let Some(slot) = t.by_id.remove(&id) {
                if slot.node.fd.is_some() {
                    t.with_fd -= 1;
                }
            }
            if t.by_key.get(&key) == Some(&id) {
                t.by_key.remove(&key);
            }
            return true;
        }
        false
    }

    /// Nodes in the table (root included).
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.lock().by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn fd() -> OwnedFd {
        File::open("/").unwrap().into()
    }

    #[test]
    fn hard_links_share_a_node_and_forget_drops_it() {
        let t = Nodes::new(fd(), (1, 1));
        let a = t.add_ref((1, 50), fd(), false, false, None);
        let b = t.add_ref((1, 50), fd(), false, false, None);
        assert_eq!(a, b);
        assert_eq!(t.count(), 2);
        t.forget(a, 1);
        assert!(t.get(a).is_ok());
        t.forget(a, 1);
        assert!(t.get(a).is_err());
        assert_eq!(t.count(), 1);
        let c = t.add_ref((1, 50), fd(), false, false, None);
        assert_ne!(c, a, "ids are never reused");
    }

    #[test]
    fn host_chosen_ids_are_checked() {
        let t = Nodes::new(fd(), (1, 1));
        // Outside the host's range, or the root: refused.
        assert_eq!(t.check_new(5), Err(Errno::EINVAL));
        assert_eq!(t.check_new(ROOT_NODE), Err(Errno::EINVAL));
        assert_eq!(
            t.add_new(7, (1, 9), fd(), (false, false), None),
            Err(Errno::EINVAL)
        );
        let id = HOST_NODE_BIT | 3;
        assert_eq!(t.check_new(id), Ok(()));
        assert_eq!(t.add_new(id, (1, 9), fd(), (false, false), None), Ok(()));
        // A clash is refused and leaves the first node alone.
        assert_eq!(t.check_new(id), Err(Errno::EEXIST));
        assert_eq!(
            t.add_new(id, (1, 10), fd(), (false, false), None),
            Err(Errno::EEXIST)
        );
        assert!(t.get(id).is_ok());
        // A lookup of the same inode finds the host's node.
        assert_eq!(t.add_ref((1, 9), fd(), false, false, None), id);
        assert!(!t.forget(id, 1));
        assert!(t.forget(id, 1));
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn root_is_never_forgotten() {
        let t = Nodes::new(fd(), (1, 1));
        t.forget(ROOT_NODE, u64::MAX);
        assert!(t.get(ROOT_NODE).is_ok());
        assert_eq!(t.add_ref((1, 1), fd(), false, true, None), ROOT_NODE);
    }
}
