//! Attributes the host holds for files it created behind
//! ([`super::pending`]): from the create until the handle the create
//! opened is released, the host knows every change made to such a file
//! through the mount (its writes, its setattrs), so its attributes are
//! answered here and a SETATTR is answered at once and sent behind, in
//! order ([`super::write_behind::WriteBehind::hold_after`]).
//!
//! What the host cannot follow ends that: another open of the node, a
//! read of it (atime), a write that clears setuid, an xattr change, a
//! fallocate or copy into it, a refused create or setattr; a link,
//! unlink, rename or rmdir anywhere ends it for every node. Writes after
//! a setattr sent behind wait for it ([`Made::fenced`]). At most
//! [`MAX_MADE`] files at once.

use std::collections::HashMap;
use std::sync::Mutex;

use dockerfuse_proto::{Attr, SetAttr, SetTime};

/// Files followed at once.
pub(super) const MAX_MADE: usize = 4096;

struct Node {
    attr: Attr,
    parent: u64,
    fh: u64,
    /// Setattrs sent behind and not yet done.
    fences: u32,
    /// No longer followed (kept while fenced).
    gone: bool,
}

/// The files of one mount whose attributes the host holds.
#[derive(Default)]
pub(super) struct Made {
    inner: Mutex<HashMap<u64, Node>>,
}

/// The host's clock now, as (seconds, nanoseconds).
pub(super) fn now() -> (i64, u32) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_secs() as i64, t.subsec_nanos())
}

/// Blocks of a file of `size` bytes written densely (4 KiB blocks).
fn blocks(size: u64) -> u64 {
    size.div_ceil(4096).saturating_mul(8)
}

impl Made {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Node>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Regular file `node` was created behind in `parent`, opened as
    /// `fh`, with `attr`.
    pub(super) fn begin(&self, node: u64, parent: u64, fh: u64, attr: Attr) {
        let mut g = self.lock();
        if g.len() >= MAX_MADE {
            g.retain(|_, n| !n.gone || n.fences > 0);
            if g.len() >= MAX_MADE {
                return;
            }
        }
        g.insert(
            node,
            Node {
                attr,
                parent,
                fh,
                fences: 0,
                gone: false,
            },
        );
    }

    /// `node`'s attributes, when the host holds them.
    pub(super) fn attr(&self, node: u64) -> Option<Attr> {
        self.lock().get(&node).filter(|n| !n.gone).map(|n| n.attr)
    }

    /// The directory `node` was created in, when the host holds its
    /// attributes.
    pub(super) fn parent(&self, node: u64) -> Option<u64> {
        self.lock().get(&node).filter(|n| !n.gone).map(|n| n.parent)
    }

    /// Applies `set` to `node` when the host holds its attributes: the
    /// new attributes, the handle and the directory a refusal is reported
    /// on. The node is fenced until [`Made::landed`].
    pub(super) fn set(&self, node: u64, set: &SetAttr) -> Option<(Attr, u64, u64)> {
        let mut g = self.lock();
        let n = g.get_mut(&node).filter(|n| !n.gone)?;
        let (secs, nsec) = now();
        let a = &mut n.attr;
        if let Some(m) = set.mode {
            a.mode = (a.mode & libc::S_IFMT) | (m & 0o7777);
        }
        if let Some(u) = set.uid {
            a.uid = u;
        }
        if let Some(g) = set.gid {
            a.gid = g;
        }
        if let Some(s) = set.size {
            a.size = s;
            a.blocks = blocks(s);
            // A truncation moves mtime (unless set here too).
            (a.mtime, a.mtime_nsec) = (secs, nsec);
        }
        let time = |t: SetTime| match t {
            SetTime::Now => (secs, nsec),
            SetTime::At { sec, nsec } => (sec, nsec),
        };
        if let Some(t) = set.atime {
            (a.atime, a.atime_nsec) = time(t);
        }
        if let Some(t) = set.mtime {
            (a.mtime, a.mtime_nsec) = time(t);
        }
        (a.ctime, a.ctime_nsec) = (secs, nsec);
        n.fences += 1;
        Some((n.attr, n.fh, n.parent))
    }

    /// A setattr of [`Made::set`] is done; with `ok` false the host no
    /// longer holds the node's attributes.
    pub(super) fn landed(&self, node: u64, ok: bool) {
        let mut g = self.lock();
        let Some(n) = g.get_mut(&node) else {
            return;
        };
        n.fences = n.fences.saturating_sub(1);
        n.gone |= !ok;
        if n.gone && n.fences == 0 {
            g.remove(&node);
        }
    }

    /// Whether a setattr of `node` sent behind is not done yet: its
    /// writes wait for it.
    pub(super) fn fenced(&self, node: u64) -> bool {
        self.lock().get(&node).is_some_and(|n| n.fences > 0)
    }

    /// A write of `node` ending at `end` was accepted.
    pub(super) fn wrote(&self, node: u64, end: u64) {
        let mut g = self.lock();
        let Some(n) = g.get_mut(&node).filter(|n| !n.gone) else {
            return;
        };
        let (secs, nsec) = now();
        let a = &mut n.attr;
        if end > a.size {
            a.size = end;
            a.blocks = blocks(end);
        }
        (a.mtime, a.mtime_nsec) = (secs, nsec);
        (a.ctime, a.ctime_nsec) = (secs, nsec);
    }

    /// The host stops following `node`.
    pub(super) fn forget(&self, node: u64) {
        let mut g = self.lock();
        if let Some(n) = g.get_mut(&node) {
            n.gone = true;
            if n.fences == 0 {
                g.remove(&node);
            }
        }
    }

    /// Handle `fh` is read or released: the file it created is no longer
    /// followed. The node if it was, whose attributes the kernel got from
    /// the host (times on the host's clock).
    pub(super) fn handle_done(&self, fh: u64) -> Option<u64> {
        let mut g = self.lock();
        if g.is_empty() {
            return None;
        }
        let mut was = None;
        for (&node, n) in g.iter_mut().filter(|(_, n)| n.fh == fh && !n.gone) {
            n.gone = true;
            was = Some(node);
        }
        g.retain(|_, n| !n.gone || n.fences > 0);
        was
    }

    /// Names moved or went: no node is followed.
    pub(super) fn forget_all(&self) {
        let mut g = self.lock();
        for n in g.values_mut() {
            n.gone = true;
        }
        g.retain(|_, n| n.fences > 0);
    }
}

/// The permission bits a POSIX access ACL (`system.posix_acl_access`)
/// stands for when it has only the owner, group and other entries: such
/// an ACL is a chmod (the file system stores none, only the mode).
pub(super) fn trivial_acl(value: &[u8]) -> Option<u32> {
    let (head, rest) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != 2 || rest.len() != 24 {
        return None;
    }
    let mut mode = 0;
    for (e, (tag, shift)) in rest.chunks_exact(8).zip([(1u16, 6), (4, 3), (0x20, 0)]) {
        let perm = u16::from_le_bytes([e[2], e[3]]);
        if u16::from_le_bytes([e[0], e[1]]) != tag || perm > 7 {
            return None;
        }
        mode |= u32::from(perm) << shift;
    }
    Some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Attr {
        Attr {
            ino: 9,
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            ..Default::default()
        }
    }

    #[test]
    fn changes_apply_and_fence_until_landed() {
        let m = Made::default();
        m.begin(9, 1, 7, file());
        m.wrote(9, 10);
        m.wrote(9, 4);
        assert_eq!(m.attr(9).unwrap().size, 10);
        let set = SetAttr {
            mode: Some(0o100600),
            uid: Some(5),
            mtime: Some(SetTime::At { sec: 3, nsec: 4 }),
            ..Default::default()
        };
        let (a, fh, parent) = m.set(9, &set).unwrap();
        assert_eq!(
            (a.mode, a.uid, a.mtime, a.mtime_nsec),
            (libc::S_IFREG | 0o600, 5, 3, 4)
        );
        assert_eq!((a.size, a.blocks, fh, parent), (10, 8, 7, 1));
        assert!(m.fenced(9));
        assert_eq!(m.handle_done(7), Some(9));
        assert_eq!(m.handle_done(7), None);
        assert!(m.attr(9).is_none(), "released: not followed");
        assert!(m.fenced(9), "still fenced");
        m.landed(9, true);
        assert!(!m.fenced(9));
        assert!(m.set(9, &set).is_none());
    }

    #[test]
    fn a_refusal_ends_following() {
        let m = Made::default();
        m.begin(9, 1, 7, file());
        m.set(9, &SetAttr::default()).unwrap();
        m.landed(9, false);
        assert!(m.attr(9).is_none());
        assert!(!m.fenced(9));
        m.begin(10, 1, 8, file());
        m.forget_all();
        assert!(m.attr(10).is_none());
    }

    #[test]
    fn a_trivial_acl_is_a_mode() {
        // What GNU cp -a sets on a file of mode 0644.
        let v = b"\x02\0\0\0\x01\0\x06\0\xff\xff\xff\xff\x04\0\x04\0\xff\xff\xff\xff\x20\0\x04\0\xff\xff\xff\xff";
        assert_eq!(trivial_acl(v), Some(0o644));
        // A named user, a mask, a bad version or length: not a mode.
        let mut named = v.to_vec();
        named[12] = 0x02;
        assert_eq!(trivial_acl(&named), None);
        assert_eq!(trivial_acl(&v[..20]), None);
        let mut version = v.to_vec();
        version[0] = 1;
        assert_eq!(trivial_acl(&version), None);
        assert_eq!(trivial_acl(b""), None);
    }
}
