//! Directory listings as the kernel takes them, and the lookup references
//! they carry.
//!
//! Each readdirplus entry the satellite sends holds one lookup reference
//! on its node (the satellite counts it as a lookup). The kernel takes a
//! reference only for the entries that fit in its reply buffer; the rest
//! must be forgotten here, or the satellite keeps those nodes forever.
//! `.` and `..` hold none; an entry without attributes (the name vanished
//! between getdents and the lookup) or with node 0 is left out.

use std::borrow::Cow;
use std::time::Duration;

use dockerfuse_proto::{Attr, DirEntry};

/// One entry of a plain readdir.
pub(crate) struct DirItem<'a> {
    /// The container's inode number (never 0: the kernel skips those).
    pub(crate) ino: u64,
    /// Cookie of the entry after this one.
    pub(crate) offset: u64,
    /// File type bits (st_mode & S_IFMT).
    pub(crate) kind: u32,
    pub(crate) name: Cow<'a, [u8]>,
}

/// One entry of a readdirplus, ready for the kernel.
pub(crate) struct PlusItem<'a> {
    /// Node id, also the inode number the kernel sees.
    pub(crate) node: u64,
    /// Cookie of the entry after this one.
    pub(crate) offset: u64,
    pub(crate) name: Cow<'a, [u8]>,
    pub(crate) attr: Attr,
    /// How long the kernel may keep name and attributes.
    pub(crate) ttl: Duration,
    /// The satellite counted a lookup for it (not for `.` and `..`).
    pub(super) counted: bool,
    /// The inode has no extended attributes.
    pub(super) no_xattrs: bool,
}

impl PlusItem<'_> {
    /// Detaches the item from the receive buffer.
    pub(super) fn into_owned(self) -> PlusItem<'static> {
        PlusItem {
            name: Cow::Owned(self.name.into_owned()),
            ..self
        }
    }
}

pub(super) fn plain(v: Vec<DirEntry<'_>>) -> Vec<DirItem<'_>> {
    v.into_iter()
        .map(|e| DirItem {
            ino: if e.ino == 0 { u64::MAX } else { e.ino },
            offset: e.offset,
            kind: e.kind,
            name: e.name,
        })
        .collect()
}

/// The entries of a readdirplus reply the kernel can be given.
pub(super) fn plus(v: Vec<DirEntry<'_>>, ttl: Duration) -> Vec<PlusItem<'_>> {
    v.into_iter()
        .filter_map(|e| match e.entry {
            Some(ent) if ent.node != 0 => {
                let mut attr = ent.attr;
                attr.ino = ent.node;
                Some(PlusItem {
                    node: ent.node,
                    offset: e.offset,
                    name: e.name,
                    attr,
                    ttl,
                    counted: true,
                    no_xattrs: ent.no_xattrs,
                })
            }
            None if &e.name[..] == b"." || &e.name[..] == b".." => {
                let ino = e.ino.max(1);
                Some(PlusItem {
                    node: ino,
                    offset: e.offset,
                    name: e.name,
                    attr: Attr {
                        ino,
                        mode: libc::S_IFDIR,
                        ..Default::default()
                    },
                    ttl: Duration::ZERO,
                    counted: false,
                    no_xattrs: false,
                })
            }
            _ => None,
        })
        .collect()
}

/// The lookups to drop once the kernel took the first `taken` items.
pub(super) fn untaken(items: &[PlusItem<'_>], taken: usize) -> Vec<(u64, u64)> {
    items
        .iter()
        .skip(taken)
        .filter(|i| i.counted)
        .map(|i| (i.node, 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockerfuse_proto::Entry;

    fn ent(name: &'static [u8], node: Option<u64>) -> DirEntry<'static> {
        DirEntry {
            name: name.into(),
            offset: 0,
            kind: libc::S_IFREG,
            ino: 77,
            entry: node.map(|node| Entry {
                node,
                attr: Attr::default(),
                no_xattrs: false,
            }),
        }
    }

    #[test]
    fn dots_hold_no_reference_and_vanished_or_node_zero_entries_are_left_out() {
        let items = plus(
            vec![
                ent(b".", None),
                ent(b"..", None),
                ent(b"a", Some(5)),
                ent(b"gone", None),
                ent(b"zero", Some(0)),
                ent(b"b", Some(6)),
            ],
            Duration::from_secs(1),
        );
        let names: Vec<&[u8]> = items.iter().map(|i| &i.name[..]).collect();
        assert_eq!(names, [&b"."[..], b"..", b"a", b"b"]);
        assert_eq!(items[2].attr.ino, 5, "node id is the inode number");
        assert!(items[0].ttl.is_zero());
        assert_eq!(untaken(&items, 0), vec![(5, 1), (6, 1)]);
        assert_eq!(untaken(&items, 3), vec![(6, 1)]);
        assert!(untaken(&items, 4).is_empty());
        assert!(untaken(&items, 99).is_empty());
    }

    #[test]
    fn plain_entries_never_carry_inode_zero() {
        let mut e = ent(b"x", None);
        e.ino = 0;
        assert_eq!(plain(vec![e])[0].ino, u64::MAX);
    }
}
