//! Files created behind ([`super::pending`]) whose attributes the host
//! holds: they live in the node ledger ([`super::ledger::Source::Made`])
//! and answer GETATTR there. This is the policy over them.
//!
//! While the handle the create opened is open, the mount's own
//! operations on the file (its writes, its setattrs) change them on the
//! host at once, and a SETATTR is answered at once and sent behind, in
//! order ([`super::write_behind::WriteBehind::hold_after`]). The replies
//! to those operations bring the container's word on the file: the
//! create's entry, each setattr's attributes, and (protocol 10) each
//! write's attributes after it ([`dockerfuse_proto::Response::WrittenAttr`]).
//! Once every write accepted has landed and no setattr is in flight —
//! which FLUSH (every close) waits for — the host's attributes become
//! the container's ([`Made::flushed`]): sizes, blocks, times on the
//! container's clock, bits a write cleared. They outlast the release, so
//! `cp`'s `stat` after `close` is answered on the host, truthfully, with
//! no round trip.
//!
//! What the host cannot follow ends that: another open of the node, a
//! read of it (atime), a write that clears setuid, an xattr change, a
//! fallocate or copy into it, a refused create, write or setattr; a link,
//! unlink, rename or rmdir anywhere ends it for every node; after the
//! release, any operation of the mount on the node; and anything the
//! change feed reports of it (the feed does not echo the mount's own
//! changes: that is a third party's), a lost event, the feed going off,
//! the kernel forgetting the node. At the release the host keeps the
//! attributes only when the container's word holds every write (a
//! satellite before protocol 10 tells nothing of writes) and the feed
//! watches the node. Writes after a setattr sent behind wait for it
//! ([`Made::fenced`]). At most [`super::ledger::MAX_MADE`] files at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dockerfuse_proto::{Attr, SetAttr, SetTime};

use super::coherence::Coherence;

/// The files of one mount made behind, whose attributes the host holds
/// in the ledger.
pub(super) struct Made {
    coh: Arc<Coherence>,
    /// Setattrs sent behind and not done yet, per node.
    fences: Mutex<HashMap<u64, u32>>,
    /// The node each create's handle made, until its release (its writes
    /// may land after the kernel released it, with `--close-behind`).
    handles: Mutex<HashMap<u64, u64>>,
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

/// Applies `set` to `a` as the container would, at `now`.
fn apply(a: &mut Attr, set: &SetAttr, (secs, nsec): (i64, u32)) {
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
}

/// The later of the container's two words on one file: writes in flight
/// together land in any order, each reply's attributes taken after its
/// own; every one moves ctime and none shrinks the file, so the one with
/// the later ctime, then the larger size, saw them all.
fn later(held: Option<Attr>, got: Attr) -> Attr {
    match held {
        Some(h) if (h.ctime, h.ctime_nsec, h.size) > (got.ctime, got.ctime_nsec, got.size) => h,
        _ => got,
    }
}

impl Made {
    pub(super) fn new(coh: Arc<Coherence>) -> Self {
        Made {
            coh,
            fences: Mutex::default(),
            handles: Mutex::default(),
        }
    }

    fn fences(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u32>> {
        self.fences.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Regular file `node` was created behind in `parent`, opened as
    /// `fh`, with `attr` (the host's guess until the container answers).
    pub(super) fn begin(&self, node: u64, parent: u64, fh: u64, attr: Attr) {
        if self.coh.follow(node, attr, parent, fh) {
            self.handles().insert(fh, node);
        }
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node the create of handle `fh` made, while it is open.
    fn node_of(&self, fh: u64) -> Option<u64> {
        self.handles().get(&fh).copied()
    }

    /// `node`'s attributes, when the host holds them as made behind.
    pub(super) fn attr(&self, node: u64) -> Option<Attr> {
        self.coh.followed_attr(node)
    }

    /// The directory `node` was created in, while the host follows its
    /// create's handle.
    pub(super) fn parent(&self, node: u64) -> Option<u64> {
        let (_, f) = self.coh.followed(node)?;
        f.fh.map(|_| f.parent)
    }

    /// Applies `set` to `node` while the host follows its create's handle:
    /// the new attributes, the handle and the directory a refusal is
    /// reported on. The node is fenced until [`Made::landed`].
    pub(super) fn set(&self, node: u64, set: &SetAttr) -> Option<(Attr, u64, u64)> {
        let now = now();
        let mut open = None;
        let (a, _) = self.coh.follow_change(node, |a, f| {
            if let Some(fh) = f.fh {
                apply(a, set, now);
                open = Some((fh, f.parent));
            }
        })?;
        let (fh, parent) = open?;
        *self.fences().entry(node).or_default() += 1;
        Some((a, fh, parent))
    }

    /// A setattr of [`Made::set`] is done, with the container's
    /// attributes after it (its word on the file: writes do not overlap
    /// it); refused, the host no longer holds the node's attributes.
    pub(super) fn landed(&self, node: u64, r: Result<Attr, dockerfuse_proto::Errno>) {
        {
            let mut g = self.fences();
            match g.get_mut(&node) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    g.remove(&node);
                }
            }
        }
        match r {
            Ok(got) => {
                self.coh.follow_change(node, |_, f| f.truth = Some(got));
            }
            Err(_) => self.forget(node),
        }
    }

    /// Whether a setattr of `node` sent behind is not done yet: its
    /// writes wait for it.
    pub(super) fn fenced(&self, node: u64) -> bool {
        self.fences().contains_key(&node)
    }

    /// A write of `n` bytes of `node` ending at `end` was accepted.
    pub(super) fn wrote(&self, node: u64, end: u64, n: u32) {
        let (secs, nsec) = now();
        self.coh.follow_change(node, |a, f| {
            if f.fh.is_none() {
                return;
            }
            if end > a.size {
                a.size = end;
                a.blocks = blocks(end);
            }
            (a.mtime, a.mtime_nsec) = (secs, nsec);
            (a.ctime, a.ctime_nsec) = (secs, nsec);
            f.accepted = f.accepted.saturating_add(n.into());
        });
    }

    /// The container wrote `n` bytes through `fh` and had `attr` after.
    pub(super) fn written(&self, fh: u64, n: u32, attr: Attr) {
        let Some(node) = self.node_of(fh) else {
            return;
        };
        self.coh.follow_change(node, |_, f| {
            if f.fh == Some(fh) {
                f.landed = f.landed.saturating_add(n.into());
                f.truth = Some(later(f.truth, attr));
            }
        });
    }

    /// The container made `node` and had `attr` then.
    pub(super) fn created(&self, node: u64, attr: Attr) {
        self.coh
            .follow_change(node, |_, f| f.truth = Some(later(f.truth, attr)));
    }

    /// Every write through `fh` accepted before landed (a FLUSH): the
    /// container's word on the file it created, if it holds them all and
    /// no setattr is in flight, becomes what the host answers. The node
    /// if that changed what the host answered.
    pub(super) fn flushed(&self, fh: u64) -> Option<u64> {
        let node = self.node_of(fh)?;
        if self.fenced(node) {
            return None;
        }
        let mut changed = false;
        self.coh.follow_change(node, |a, f| {
            if let Some(t) = f.current().filter(|_| f.fh == Some(fh)) {
                let t = Attr { ino: a.ino, ..t };
                changed = *a != t;
                *a = t;
            }
        });
        changed.then_some(node)
    }

    /// Handle `fh` is released: the attributes of the file it created
    /// stay on the host if they are the container's ([`Made::flushed`]);
    /// else they go. The node, if it was followed (the kernel may hold
    /// the host's guess: it asks again).
    pub(super) fn released(&self, fh: u64) -> Option<u64> {
        let node = self.node_of(fh)?;
        let ours = (self.coh.followed(node)).is_some_and(|(_, f)| f.fh == Some(fh));
        if ours {
            self.flushed(fh);
        }
        self.handles().remove(&fh);
        if !ours {
            return None;
        }
        self.coh.follow_released(node, self.fenced(node));
        Some(node)
    }

    /// Handle `fh` is read (the atime moves): the file it created is no
    /// longer followed. The node if it was.
    pub(super) fn read(&self, fh: u64) -> Option<u64> {
        let node = self.node_of(fh)?;
        self.coh.unfollow(node).then_some(node)
    }

    /// The host stops following `node`.
    pub(super) fn forget(&self, node: u64) {
        self.coh.unfollow(node);
    }

    /// Names moved or went: no node is followed.
    pub(super) fn forget_all(&self) {
        for node in self.coh.followed_nodes() {
            self.coh.unfollow(node);
        }
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
