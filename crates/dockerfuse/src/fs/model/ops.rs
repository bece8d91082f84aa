//! The operations of the model test and how proptest generates them.
//!
//! Paths come from a namespace of a few names at depth one or two, so that
//! collisions (EEXIST, ENOTEMPTY, EISDIR, ENOTDIR...) and absences
//! (ENOENT) happen often. Symlink targets are relative and never climb
//! out of the tree, so both sides resolve them to the same place.

use proptest::prelude::*;
use proptest::sample::select;

/// Paths at depth one.
const TOP: [&str; 3] = ["a", "b", "c"];
/// Paths at depth two.
const NESTED: [&str; 9] = [
    "a/a", "a/b", "a/c", "b/a", "b/b", "b/c", "c/a", "c/b", "c/c",
];
/// What symlinks point at: names that exist often, and one that never does.
const TARGETS: [&str; 5] = ["a", "b", "c/a", "a/b", "nowhere"];
/// Descriptor slots a sequence can keep open.
pub(super) const SLOTS: usize = 2;
/// Bytes in a file root plants.
pub(super) const PLANTED_LEN: usize = 16;
/// Extended attribute names (the `user.` namespace needs no privilege).
pub(super) const XATTRS: [&str; 2] = ["user.x", "user.y"];

/// Seconds of explicit times: far in the past, so an mtime in this range
/// can only come from an explicit set (any write or entry change stamps
/// the current time).
pub(super) const EXPLICIT_BEFORE: i64 = 100_000_000;

/// A time for utimensat / setattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Time {
    /// UTIME_OMIT (no change).
    Omit,
    /// UTIME_NOW.
    Now,
    /// An explicit time (seconds below [`EXPLICIT_BEFORE`]).
    At(i64, u32),
}

/// One step of a sequence: what a program would do through the mount.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// open(O_CREAT | O_EXCL | O_RDWR, mode), then close.
    Create {
        path: &'static str,
        mode: u32,
    },
    /// open(O_WRONLY), pwrite of `len` bytes from `byte` on, close.
    Write {
        path: &'static str,
        offset: u64,
        len: usize,
        byte: u8,
    },
    /// open(O_WRONLY | O_DIRECT), pwrite, close: the kernel hands such
    /// writes to the mount unaligned and uncached, and they must land as
    /// a plain write does (checked against one: the directory's own
    /// O_DIRECT would refuse unaligned buffers).
    DirectWrite {
        path: &'static str,
        offset: u64,
        len: usize,
        byte: u8,
    },
    /// open(O_RDONLY), pread of up to 64 KiB, close.
    Read {
        path: &'static str,
        offset: u64,
    },
    /// truncate(2) (follows symlinks), or open(O_WRONLY) + ftruncate.
    Truncate {
        path: &'static str,
        size: u64,
        via_fd: bool,
    },
    /// open(O_RDONLY), fsync or fdatasync, close (directories too).
    Fsync {
        path: &'static str,
        datasync: bool,
    },
    /// open(O_WRONLY), fallocate (mode 0 or FALLOC_FL_KEEP_SIZE), close.
    Fallocate {
        path: &'static str,
        offset: u64,
        len: u64,
        keep_size: bool,
    },
    Mkdir {
        path: &'static str,
        mode: u32,
    },
    Rmdir {
        path: &'static str,
    },
    Unlink {
        path: &'static str,
    },
    Symlink {
        target: &'static str,
        path: &'static str,
    },
    /// link(2): the old name is not followed.
    Link {
        from: &'static str,
        to: &'static str,
    },
    /// renameat2 with 0, RENAME_NOREPLACE, RENAME_EXCHANGE (or both).
    Rename {
        from: &'static str,
        to: &'static str,
        flags: u32,
    },
    /// chmod(2) (follows symlinks).
    Chmod {
        path: &'static str,
        mode: u32,
    },
    /// utimensat; `follow: false` is AT_SYMLINK_NOFOLLOW.
    Utimens {
        path: &'static str,
        atime: Time,
        mtime: Time,
        follow: bool,
    },
    /// setxattr(2) with 0, XATTR_CREATE or XATTR_REPLACE.
    SetXattr {
        path: &'static str,
        name: &'static str,
        value: Vec<u8>,
        flags: i32,
    },
    /// getxattr(2); `probe` asks the size only (size 0).
    GetXattr {
        path: &'static str,
        name: &'static str,
        probe: bool,
    },
    /// listxattr(2); `probe` asks the size only (size 0).
    ListXattr {
        path: &'static str,
        probe: bool,
    },
    RemoveXattr {
        path: &'static str,
        name: &'static str,
    },
    /// stat / lstat.
    Stat {
        path: &'static str,
        follow: bool,
    },
    /// open(2) into a descriptor slot (closing what it held first):
    /// O_RDWR when `write`, else O_RDONLY. The descriptor outlives later
    /// renames and unlinks of its name.
    Open {
        slot: usize,
        path: &'static str,
        write: bool,
    },
    /// pwrite on a slot's descriptor.
    FdWrite {
        slot: usize,
        offset: u64,
        len: usize,
        byte: u8,
    },
    /// pread of up to 64 KiB on a slot's descriptor.
    FdRead {
        slot: usize,
        offset: u64,
    },
    /// fstat on a slot's descriptor.
    FdStat {
        slot: usize,
    },
    /// ftruncate on a slot's descriptor.
    FdTruncate {
        slot: usize,
        size: u64,
    },
    /// close(2) of a slot's descriptor.
    Close {
        slot: usize,
    },
    /// Setup by root, even in a caller's sequence: a file (with a few
    /// bytes) or a directory created, then chowned, then chmodded.
    Plant {
        path: &'static str,
        dir: bool,
        mode: u32,
        owner: User,
        group: Group,
    },
    /// A whole directory listed (opendir, getdents to the end): its
    /// names, sorted.
    List {
        path: &'static str,
    },
    /// A file (or directory) created inside the container, not through
    /// the mount, then stat'ed (without following) through the mount:
    /// it must show once the change feed has reported it.
    Outside {
        path: &'static str,
        dir: bool,
    },
    /// chown(2), or lchown(2) when not `follow`; `None` leaves that id.
    Chown {
        path: &'static str,
        owner: Option<User>,
        group: Option<Group>,
        follow: bool,
    },
    /// A create (`dir`: a mkdir) that a third party in the container
    /// races: it acts after the program looked the name up and before the
    /// create reaches the container (the satellite is held stopped
    /// meanwhile). A file's create is followed by `then` on its
    /// descriptor and close(2); then fsync of the parent directory; then
    /// lstat of the path. The outcome is the first error of those steps
    /// (where a create refused behind shows, per docs/SEMANTICS.md) and
    /// what the lstat finds once the host agrees with the container.
    Raced {
        path: &'static str,
        dir: bool,
        mode: u32,
        third: Third,
        then: Vec<Then>,
    },
    /// A file's contents rewritten in the container while the program
    /// lists its parent (the first listing streams the subtree with the
    /// contents of small files); then the file is read through the mount:
    /// it must show what the container has within a few seconds.
    Rewritten {
        path: &'static str,
        len: usize,
        byte: u8,
    },
    /// What GNU cp does to each file: open(O_CREAT | O_EXCL | O_WRONLY,
    /// 0644), write of `len` bytes, close; then stat. A file created
    /// behind answers that stat on the host, with no round trip, and
    /// with what the container has (the ledger check compares every
    /// attribute but the atime). With `third`, a third party then
    /// rewrites the file in the container (`len + 3` bytes): a stat must
    /// show it within a few seconds.
    Copied {
        path: &'static str,
        len: usize,
        byte: u8,
        third: bool,
    },
}

/// What the third party of [`Op::Raced`] does in the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Third {
    /// Creates the same name first (a directory when `dir`).
    SameName { dir: bool },
    /// Removes the parent directory (the one a walk through symlinks
    /// reaches) with all it holds (`rm -rf`).
    RemoveParent,
    /// chmod 0555 of the parent: EACCES for a user without
    /// CAP_DAC_OVERRIDE; root creates anyway.
    ChmodParent,
    /// chattr +i of the parent: EPERM, for root too.
    FreezeParent,
}

/// A step on the descriptor of a raced create, accepted on the host
/// while the create is in flight (write-behind, setattrs behind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    Write { offset: u64, len: usize, byte: u8 },
    Chmod(u32),
    Truncate(u64),
    Mtime(i64),
}

/// A user of a caller's sequence, resolved by [`super::identity::Ids`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum User {
    Root,
    /// The caller the sequence runs as.
    Caller,
    /// Someone else.
    Other,
}

/// A group of a caller's sequence, resolved by [`super::identity::Ids`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    Root,
    /// The caller's own gid.
    Primary,
    /// One of the caller's supplementary groups.
    Supplementary,
    /// A group the caller is not in.
    Foreign,
}

impl Op {
    /// Whether the op is setup done as root in a caller's sequence.
    pub(crate) fn by_root(&self) -> bool {
        matches!(self, Op::Plant { .. } | Op::Outside { .. })
    }

    /// What to stat after the op in a caller's sequence, to compare the
    /// modes and owners it may have changed (setuid/setgid cleared by a
    /// write, truncation or chown): a path (followed or not), or a slot.
    pub(crate) fn changes_mode(&self) -> Option<Result<(&'static str, bool), usize>> {
        match *self {
            Op::Write { path, .. }
            | Op::DirectWrite { path, .. }
            | Op::Truncate { path, .. }
            | Op::Fallocate { path, .. }
            | Op::Chmod { path, .. } => Some(Ok((path, true))),
            Op::Chown { path, follow, .. } => Some(Ok((path, follow))),
            Op::FdWrite { slot, .. } | Op::FdTruncate { slot, .. } => Some(Err(slot)),
            _ => None,
        }
    }
}

fn path() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => select(&TOP[..]), 1 => select(&NESTED[..])]
}

fn time() -> impl Strategy<Value = Time> {
    prop_oneof![
        1 => Just(Time::Omit),
        1 => Just(Time::Now),
        3 => (1_000_000i64..1_000_100, prop_oneof![Just(0u32), 0u32..1_000_000_000])
            .prop_map(|(s, n)| Time::At(s, n)),
    ]
}

fn mode() -> impl Strategy<Value = u32> {
    select(&[0o644u32, 0o600, 0o755, 0o4755, 0o1777, 0o000][..])
}

fn rename_flags() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(0),
        3 => Just(libc::RENAME_NOREPLACE),
        3 => Just(libc::RENAME_EXCHANGE),
        1 => Just(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE),
    ]
}

fn xattr_flags() -> impl Strategy<Value = i32> {
    select(&[0, libc::XATTR_CREATE, libc::XATTR_REPLACE][..])
}

fn then() -> impl Strategy<Value = Then> {
    prop_oneof![
        3 => (0u64..10_000, 0usize..5_000, any::<u8>())
            .prop_map(|(offset, len, byte)| Then::Write { offset, len, byte }),
        1 => select(&[0o600u32, 0o755, 0o4755, 0o000][..]).prop_map(Then::Chmod),
        1 => (0u64..20_000).prop_map(Then::Truncate),
        1 => (1_000_000i64..1_000_100).prop_map(Then::Mtime),
    ]
}

/// A create raced by a third party in the container: the parent is
/// removed only under a nested path (the root stays).
fn raced() -> impl Strategy<Value = Op> {
    let third = || {
        prop_oneof![
            4 => any::<bool>().prop_map(|dir| Third::SameName { dir }),
            1 => Just(Third::ChmodParent),
            1 => Just(Third::FreezeParent),
        ]
    };
    let top = (select(&TOP[..]), third());
    let nested = (
        select(&NESTED[..]),
        prop_oneof![1 => Just(Third::RemoveParent), 2 => third()],
    );
    (
        prop_oneof![top, nested],
        any::<bool>(),
        proptest::collection::vec(then(), 0..4),
    )
        .prop_map(|((path, third), dir, then)| Op::Raced {
            path,
            dir,
            mode: if dir { 0o755 } else { 0o644 },
            third,
            then: if dir { Vec::new() } else { then },
        })
}

/// One operation of a sequence run as the test's own user: those of
/// [`op`] and a third party in the container racing the mount.
pub(crate) fn own_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => op(),
        2 => raced(),
        1 => (path(), 0usize..5_000, any::<u8>())
            .prop_map(|(path, len, byte)| Op::Rewritten { path, len, byte }),
        2 => (path(), 0usize..5_000, any::<u8>(), any::<bool>())
            .prop_map(|(path, len, byte, third)| Op::Copied { path, len, byte, third }),
    ]
}

/// One operation, weighted towards those that change the tree.
pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (path(), select(&[0o644u32, 0o600, 0o755][..]))
            .prop_map(|(path, mode)| Op::Create { path, mode }),
        4 => (path(), 0u64..20_000, 0usize..5_000, any::<u8>())
            .prop_map(|(path, offset, len, byte)| Op::Write { path, offset, len, byte }),
        1 => (path(), 0u64..20_000, 0usize..5_000, any::<u8>())
            .prop_map(|(path, offset, len, byte)| Op::DirectWrite { path, offset, len, byte }),
        1 => (path(), 0u64..20_000).prop_map(|(path, offset)| Op::Read { path, offset }),
        2 => (path(), 0u64..30_000, any::<bool>())
            .prop_map(|(path, size, via_fd)| Op::Truncate { path, size, via_fd }),
        1 => (path(), any::<bool>()).prop_map(|(path, datasync)| Op::Fsync { path, datasync }),
        1 => (path(), 0u64..20_000, 0u64..20_000, any::<bool>())
            .prop_map(|(path, offset, len, keep_size)| Op::Fallocate { path, offset, len, keep_size }),
        3 => (path(), select(&[0o755u32, 0o700, 0o1777][..]))
            .prop_map(|(path, mode)| Op::Mkdir { path, mode }),
        2 => path().prop_map(|path| Op::Rmdir { path }),
        2 => path().prop_map(|path| Op::Unlink { path }),
        2 => (select(&TARGETS[..]), path()).prop_map(|(target, path)| Op::Symlink { target, path }),
        2 => (path(), path()).prop_map(|(from, to)| Op::Link { from, to }),
        4 => (path(), path(), rename_flags())
            .prop_map(|(from, to, flags)| Op::Rename { from, to, flags }),
        1 => (path(), mode()).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        2 => (path(), time(), time(), any::<bool>())
            .prop_map(|(path, atime, mtime, follow)| Op::Utimens { path, atime, mtime, follow }),
        2 => (path(), select(&XATTRS[..]), proptest::collection::vec(any::<u8>(), 0..40), xattr_flags())
            .prop_map(|(path, name, value, flags)| Op::SetXattr { path, name, value, flags }),
        2 => (path(), select(&XATTRS[..]), any::<bool>())
            .prop_map(|(path, name, probe)| Op::GetXattr { path, name, probe }),
        1 => (path(), any::<bool>()).prop_map(|(path, probe)| Op::ListXattr { path, probe }),
        1 => (path(), select(&XATTRS[..])).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
        1 => (path(), any::<bool>()).prop_map(|(path, follow)| Op::Stat { path, follow }),
        3 => select(&[".", "a", "b", "c"][..]).prop_map(|path| Op::List { path }),
        1 => (path(), any::<bool>()).prop_map(|(path, dir)| Op::Outside { path, dir }),
        2 => (0..SLOTS, path(), any::<bool>())
            .prop_map(|(slot, path, write)| Op::Open { slot, path, write }),
        2 => (0..SLOTS, 0u64..20_000, 0usize..5_000, any::<u8>())
            .prop_map(|(slot, offset, len, byte)| Op::FdWrite { slot, offset, len, byte }),
        1 => (0..SLOTS, 0u64..20_000).prop_map(|(slot, offset)| Op::FdRead { slot, offset }),
        1 => (0..SLOTS).prop_map(|slot| Op::FdStat { slot }),
        1 => (0..SLOTS, 0u64..30_000).prop_map(|(slot, size)| Op::FdTruncate { slot, size }),
        1 => (0..SLOTS).prop_map(|slot| Op::Close { slot }),
    ]
}

fn user() -> impl Strategy<Value = User> {
    select(&[User::Root, User::Caller, User::Caller, User::Other][..])
}

fn group() -> impl Strategy<Value = Group> {
    select(
        &[
            Group::Root,
            Group::Primary,
            Group::Supplementary,
            Group::Foreign,
        ][..],
    )
}

/// Setup by root: setuid/setgid files writable by others, setgid
/// directories of a group, things owned by other users.
fn plant() -> impl Strategy<Value = Op> {
    let file = select(&[0o4777u32, 0o2777, 0o6777, 0o2767, 0o6766, 0o4755, 0o666][..]);
    let dir = select(&[0o2775u32, 0o2770, 0o2755, 0o777, 0o755][..]);
    prop_oneof![
        3 => (path(), file, user(), group()).prop_map(|(path, mode, owner, group)| {
            Op::Plant { path, dir: false, mode, owner, group }
        }),
        2 => (path(), dir, user(), group()).prop_map(|(path, mode, owner, group)| {
            Op::Plant { path, dir: true, mode, owner, group }
        }),
    ]
}

/// One operation of a caller's sequence: root's setup, chown/chgrp and
/// chmod with setuid/setgid bits, and everything of [`op`], all as the
/// caller but the setup.
pub(crate) fn caller_op() -> impl Strategy<Value = Op> {
    let chown = (
        path(),
        proptest::option::of(user()),
        group(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(path, owner, group, chgrp, follow)| Op::Chown {
            path,
            owner,
            // Never (-1, -1): see `privs.rs` of the satellite.
            group: (chgrp || owner.is_none()).then_some(group),
            follow,
        });
    let chmod = (
        path(),
        select(&[0o644u32, 0o4755, 0o2755, 0o6777, 0o2770, 0o000][..]),
    )
        .prop_map(|(path, mode)| Op::Chmod { path, mode });
    prop_oneof![
        3 => plant(),
        2 => chown,
        1 => chmod,
        // Writes and truncations, more often than in `op`.
        2 => (path(), 0u64..200, 0usize..100, any::<u8>())
            .prop_map(|(path, offset, len, byte)| Op::Write { path, offset, len, byte }),
        1 => (path(), 0u64..100, any::<bool>())
            .prop_map(|(path, size, via_fd)| Op::Truncate { path, size, via_fd }),
        10 => op(),
    ]
}

/// The bytes a write of `len` bytes starting with `byte` puts down.
pub(super) fn pattern(byte: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| byte.wrapping_add(i as u8)).collect()
}

/// The outcome of one operation, as both sides report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Out {
    Done,
    /// Bytes written, or the size a probe asked for.
    Count(u64),
    /// Data read, or an xattr value.
    Bytes(Vec<u8>),
    /// xattr names, sorted.
    Names(Vec<Vec<u8>>),
    Stat(Stat),
    /// The mtime a utimens set explicitly, read back (None: not
    /// explicit). The atime is set but not compared: any read of the
    /// inode, even a path walk through a symlink, may stamp it again
    /// (relatime), and the two sides read at different moments.
    Mtime(Option<(i64, u32)>),
    /// A raced create: the first error of its steps, and the lstat after.
    Raced(Option<dockerfuse_proto::Errno>, Box<Outcome>),
    /// A rewrite in the container during a listing: the listing, then
    /// what a read finds.
    Rewritten(Box<Outcome>, Box<Outcome>),
    /// A cp of one file: the bytes written, the stat after the close,
    /// whether that stat was answered at once when the create went
    /// behind (always true otherwise), and the stat after a third
    /// party's rewrite.
    Copied(u64, Box<Outcome>, bool, Option<Box<Outcome>>),
    /// Something the core did that no local file system does (never
    /// equal to what the twin reports).
    Odd(String),
}

/// What a stat reports that both sides must agree on (inode numbers and
/// ctime/atime differ by nature; the size of a directory depends on the
/// filesystem's block allocation, so it is left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Stat {
    pub(super) kind: u32,
    pub(super) perm: u32,
    pub(super) size: Option<u64>,
    pub(super) nlink: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl Stat {
    /// From a local stat.
    pub(super) fn of(st: &libc::stat) -> Stat {
        Stat::new(
            st.st_mode,
            st.st_size as u64,
            st.st_nlink as u32,
            (st.st_uid, st.st_gid),
        )
    }

    /// From the attributes the core reports.
    pub(super) fn of_attr(a: &dockerfuse_proto::Attr) -> Stat {
        Stat::new(a.mode, a.size, a.nlink, (a.uid, a.gid))
    }

    pub(super) fn new(mode: u32, size: u64, nlink: u32, (uid, gid): (u32, u32)) -> Stat {
        let kind = mode & libc::S_IFMT;
        Stat {
            kind,
            perm: mode & 0o7777,
            size: (kind != libc::S_IFDIR).then_some(size),
            nlink,
            uid,
            gid,
        }
    }
}

/// The explicit part of a time: (sec, nsec) when set explicitly.
pub(super) fn explicit(sec: i64, nsec: u32) -> Option<(i64, u32)> {
    (sec < EXPLICIT_BEFORE).then_some((sec, nsec))
}

pub(super) type Outcome = Result<Out, dockerfuse_proto::Errno>;
