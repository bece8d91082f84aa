//! The node table: every inode the kernel currently knows.
//!
//! In the style of a passthrough server, each node holds an `O_PATH`
//! descriptor, so operations use `*at()` calls relative to it and a rename
//! elsewhere never invalidates anything; no path strings are kept. Nodes
//! are keyed by (st_dev, st_ino), so hard links resolve to one node id, and
//! each holds the number of lookups the kernel has not yet forgotten.
//! Node ids are never reused: a forgotten file that is looked up again gets
//! a fresh id.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use dockerfuse_proto::{Errno, ROOT_NODE};

/// One inode known to the kernel.
pub struct Node {
    pub fd: OwnedFd,
    pub is_symlink: bool,
}

impl Node {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
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
}

/// The table, shared by the worker threads.
pub struct Nodes {
    inner: Mutex<Inner>,
}

impl Nodes {
    /// A table holding only the root, which is never forgotten.
    pub fn new(root: OwnedFd, root_key: (u64, u64)) -> Nodes {
        let mut inner = Inner {
            next_id: ROOT_NODE + 1,
            ..Default::default()
        };
        inner.by_key.insert(root_key, ROOT_NODE);
        inner.by_id.insert(
            ROOT_NODE,
            Slot {
                node: Arc::new(Node {
                    fd: root,
                    is_symlink: false,
                }),
                key: root_key,
                refs: u64::MAX / 2,
            },
        );
        Nodes {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A worker that panicked cannot leave the table half-changed: every
        // change below is a single map operation. Keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: u64) -> Result<Arc<Node>, Errno> {
        self.lock()
            .by_id
            .get(&id)
            .map(|s| s.node.clone())
            .ok_or(Errno::ESTALE)
    }

    /// Registers one more lookup of the inode `key`, opened as `fd`; returns
    /// its node id. When the inode is already known, `fd` is dropped.
    pub fn add_ref(&self, key: (u64, u64), fd: OwnedFd, is_symlink: bool) -> u64 {
        let mut t = self.lock();
        if let Some(&id) = t.by_key.get(&key) {
            if let Some(slot) = t.by_id.get_mut(&id) {
                slot.refs = slot.refs.saturating_add(1);
                return id;
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        t.by_key.insert(key, id);
        t.by_id.insert(
            id,
            Slot {
                node: Arc::new(Node { fd, is_symlink }),
                key,
                refs: 1,
            },
        );
        id
    }

    /// Drops `count` lookups of `id`; the node goes when none are left.
    pub fn forget(&self, id: u64, count: u64) {
        if id == ROOT_NODE {
            return;
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
            t.by_id.remove(&id);
            if t.by_key.get(&key) == Some(&id) {
                t.by_key.remove(&key);
            }
        }
    }

    /// Nodes in the table (root included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
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
        let a = t.add_ref((1, 50), fd(), false);
        let b = t.add_ref((1, 50), fd(), false);
        assert_eq!(a, b);
        assert_eq!(t.len(), 2);
        t.forget(a, 1);
        assert!(t.get(a).is_ok());
        t.forget(a, 1);
        assert!(t.get(a).is_err());
        assert_eq!(t.len(), 1);
        let c = t.add_ref((1, 50), fd(), false);
        assert_ne!(c, a, "ids are never reused");
    }

    #[test]
    fn root_is_never_forgotten() {
        let t = Nodes::new(fd(), (1, 1));
        t.forget(ROOT_NODE, u64::MAX);
        assert!(t.get(ROOT_NODE).is_ok());
        assert_eq!(t.add_ref((1, 1), fd(), false), ROOT_NODE);
    }
}
