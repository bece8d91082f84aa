//! Request and response messages.
//!
//! Requests mirror the FUSE low-level operations on *node ids* chosen by
//! the satellite (root = 1), never on paths. Byte strings (names, link
//! targets, file data) are `Cow<[u8]>` so that a decoder can borrow them
//! from the frame buffer instead of copying.

use std::borrow::Cow;

use speedy::{LittleEndian, Readable, Writable};

use crate::flags::OpenFlags;

/// Node id of the mount's root directory (FUSE_ROOT_ID).
pub const ROOT_NODE: u64 = 1;

/// First frame from the satellite: who and what it is.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub struct SatelliteHello {
    pub protocol: u32,
    /// The satellite crate's version.
    pub version: String,
    /// `std::env::consts::ARCH` of the satellite build (x86_64, aarch64).
    pub arch: String,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub max_io: u32,
}

/// First frame from the host.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub struct HostHello {
    pub protocol: u32,
    pub version: String,
    pub max_io: u32,
}

/// A time to set with setattr.
#[derive(Readable, Writable, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At { sec: i64, nsec: u32 },
}

/// The attribute changes of one setattr; `None` leaves a field alone.
#[derive(Readable, Writable, Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

/// Everything a request can ask.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Hello(HostHello),
    Lookup {
        parent: u64,
        name: Cow<'a, [u8]>,
    },
    /// Drops `count` lookups of each node.
    Forget {
        nodes: Vec<(u64, u64)>,
    },
    GetAttr {
        node: u64,
        fh: Option<u64>,
    },
    SetAttr {
        node: u64,
        fh: Option<u64>,
        attr: SetAttr,
    },
    ReadLink {
        node: u64,
    },
    Symlink {
        parent: u64,
        name: Cow<'a, [u8]>,
        target: Cow<'a, [u8]>,
    },
    Mknod {
        parent: u64,
        name: Cow<'a, [u8]>,
        mode: u32,
        rdev: u64,
    },
    Mkdir {
        parent: u64,
        name: Cow<'a, [u8]>,
        mode: u32,
    },
    Unlink {
        parent: u64,
        name: Cow<'a, [u8]>,
    },
    Rmdir {
        parent: u64,
        name: Cow<'a, [u8]>,
    },
    Rename {
        parent: u64,
        name: Cow<'a, [u8]>,
        new_parent: u64,
        new_name: Cow<'a, [u8]>,
        flags: u32,
    },
    Link {
        node: u64,
        new_parent: u64,
        new_name: Cow<'a, [u8]>,
    },
    /// `flags` are open(2) flags in the protocol's numbering.
    Open {
        node: u64,
        flags: OpenFlags,
    },
    Create {
        parent: u64,
        name: Cow<'a, [u8]>,
        mode: u32,
        flags: OpenFlags,
    },
    Read {
        fh: u64,
        offset: u64,
        size: u32,
    },
    Write {
        fh: u64,
        offset: u64,
        data: Cow<'a, [u8]>,
    },
    Flush {
        fh: u64,
    },
    Release {
        fh: u64,
    },
    Fsync {
        fh: u64,
        datasync: bool,
    },
    OpenDir {
        node: u64,
    },
    /// `size` is the kernel's reply buffer; `plus` asks for an entry (and a
    /// lookup reference) with each name but `.` and `..`.
    ReadDir {
        fh: u64,
        offset: u64,
        size: u32,
        plus: bool,
    },
    ReleaseDir {
        fh: u64,
    },
    FsyncDir {
        fh: u64,
        datasync: bool,
    },
    StatFs {
        node: u64,
    },
    Access {
        node: u64,
        mask: i32,
    },
    GetXattr {
        node: u64,
        name: Cow<'a, [u8]>,
        size: u32,
    },
    ListXattr {
        node: u64,
        size: u32,
    },
    SetXattr {
        node: u64,
        name: Cow<'a, [u8]>,
        value: Cow<'a, [u8]>,
        flags: i32,
    },
    RemoveXattr {
        node: u64,
        name: Cow<'a, [u8]>,
    },
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    },
    Lseek {
        fh: u64,
        offset: i64,
        whence: i32,
    },
    CopyFileRange {
        fh_in: u64,
        offset_in: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
        flags: u32,
    },
    /// Removes files by absolute path (left-overs of failed uploads).
    RemovePaths {
        paths: Vec<Cow<'a, [u8]>>,
    },
    /// Ends the satellite.
    Shutdown,
    /// Runs `req` as host user `uid`/`gid` with supplementary `groups`
    /// (with `--allow-other`): a root satellite switches the worker
    /// thread's fsuid, fsgid and groups (per thread, so the pool serves
    /// several callers at once) for the request. At most [`crate::MAX_GROUPS`]
    /// groups (more is EINVAL). Never nested; never wraps a forget.
    As {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
        req: Box<Request<'a>>,
    },
    /// Asks for a private channel: the satellite makes a connected socket
    /// pair and answers [`Response::Channel`] with the descriptor number
    /// of the host's end, for a host on the same machine to take with
    /// `pidfd_getfd`. Only valid on the first (exec) stream.
    OpenChannel,
    /// Moves the conversation to the channel made by [`Request::OpenChannel`]
    /// (which the host has taken by now): the satellite answers `Ok` here,
    /// then sends a hello on the channel and from then on answers
    /// everything there. `fds`: open and create replies carry the
    /// satellite's descriptor number of the file ([`Response::OpenedFd`],
    /// [`Response::CreatedFd`]).
    UseChannel {
        fds: bool,
    },
    /// Turns the change feed on: from the reply on, the satellite watches
    /// the nodes the kernel holds and sends [`Response::Changes`] frames
    /// with id [`crate::EVENT_ID`]. An error reply means there is no feed.
    Watch,
    /// [`Request::Open`] that may bring the file's whole contents
    /// (protocol 5): answered by [`Response::OpenedSmall`], with the data
    /// when the open is read-only, the file regular and at most `max`
    /// bytes long (the satellite caps `max` at [`crate::MAX_OPEN_DATA`]).
    OpenSmall {
        node: u64,
        flags: OpenFlags,
        max: u32,
    },
    /// Releases these file handles (protocol 5). Has no reply, like
    /// `Forget`; handles that are not open are skipped.
    ReleaseMany {
        fhs: Vec<u64>,
    },
    /// [`Request::OpenDir`] and the new handle's first [`Request::ReadDir`]
    /// (at offset 0) in one (protocol 7): answered by
    /// [`Response::DirOpened`]; when the read fails the handle is closed
    /// and the error answered.
    OpenReadDir {
        node: u64,
        size: u32,
        plus: bool,
    },
    /// The listings of directory `node` and of the directories below it,
    /// breadth first, with each entry's attributes (a lookup reference
    /// each, as readdirplus) and the contents of small regular files,
    /// within `budget` (protocol 8): answered by [`Response::Streamed`].
    /// Each directory is watched (with the feed on) before it is read.
    Stream {
        node: u64,
        budget: StreamBudget,
    },
    /// [`Request::Create`] of a name the host believes absent, with the
    /// node id and handle the host chose (protocol 8): always exclusive
    /// (`O_EXCL`: a name made in the container meanwhile is EEXIST).
    /// `node` must have [`crate::HOST_NODE_BIT`] and `fh`
    /// [`crate::HOST_FH_BIT`], neither in use (else EINVAL / EEXIST and
    /// nothing is created). The new file's atime and mtime are set to
    /// `time` (seconds, nanoseconds: the host's clock, which answered the
    /// kernel). Answered by [`Response::Created`] with them, never with a
    /// descriptor.
    CreateNew {
        parent: u64,
        name: Cow<'a, [u8]>,
        mode: u32,
        flags: OpenFlags,
        node: u64,
        fh: u64,
        time: (i64, u32),
    },
    /// [`Request::Mkdir`] with the node id the host chose (protocol 8),
    /// as for [`Request::CreateNew`]; answered by [`Response::Entry`].
    MkdirNew {
        parent: u64,
        name: Cow<'a, [u8]>,
        mode: u32,
        node: u64,
        time: (i64, u32),
    },
    /// [`Request::Symlink`] with the node id the host chose (protocol 9),
    /// as for [`Request::MkdirNew`]: the link's atime and mtime are
    /// `time`; answered by [`Response::Entry`].
    SymlinkNew {
        parent: u64,
        name: Cow<'a, [u8]>,
        target: Cow<'a, [u8]>,
        node: u64,
        time: (i64, u32),
    },
}

/// What a [`Request::Stream`] may bring; the satellite caps each field
/// ([`crate::MAX_STREAM_BYTES`], [`crate::MAX_STREAM_ENTRIES`],
/// [`crate::MAX_OPEN_DATA`]).
#[derive(Readable, Writable, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamBudget {
    /// Directory entries, all directories together.
    pub entries: u32,
    /// Bytes of the reply (entries and contents), counted generously.
    pub bytes: u32,
    /// Levels below `node` (0: `node` alone).
    pub depth: u32,
    /// Largest file whose contents come along (0: none).
    pub file_max: u32,
}

/// One directory of a [`Response::Streamed`]: its whole listing, from
/// offset 0 to the end, as readdirplus replies give it.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub struct StreamedDir<'a> {
    /// The streamed node or a directory named by an entry before.
    pub node: u64,
    pub entries: Vec<DirEntry<'a>>,
}

/// The whole contents of a regular file named by an entry of a
/// [`StreamedDir`], read after its watch began.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub struct StreamedFile<'a> {
    pub node: u64,
    pub data: Cow<'a, [u8]>,
}

/// File attributes as the kernel wants them; `ino` is the node id.
#[derive(Readable, Writable, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: i64,
    pub atime_nsec: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
    /// Type and permission bits (st_mode).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub blksize: u32,
}

/// A looked-up node: one reference the kernel must forget.
#[derive(Readable, Writable, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub node: u64,
    pub attr: Attr,
    /// The inode has no extended attributes at all (so the host can answer
    /// the getxattr calls of `ls -l` itself until the entry expires).
    pub no_xattrs: bool,
}

/// One directory entry.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub struct DirEntry<'a> {
    pub name: Cow<'a, [u8]>,
    /// Offset of the *next* entry (the cookie for the following readdir).
    pub offset: u64,
    /// File type bits (st_mode & S_IFMT).
    pub kind: u32,
    /// The container's inode number (for plain readdir).
    pub ino: u64,
    /// Present in readdirplus replies for names other than `.` and `..`.
    pub entry: Option<Entry>,
}

#[derive(Readable, Writable, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Everything a reply can carry.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    Hello(SatelliteHello),
    Error(i32),
    Ok,
    Entry(Entry),
    Attr(Attr),
    Data(Cow<'a, [u8]>),
    Written(u32),
    Opened {
        fh: u64,
    },
    Created {
        entry: Entry,
        fh: u64,
    },
    Dir(Vec<DirEntry<'a>>),
    StatFs(StatFs),
    /// The size an xattr value or list would need (for a size-0 probe).
    XattrSize(u32),
    Offset(u64),
    /// Answer to [`Request::OpenChannel`]: the host's end, as a descriptor
    /// number of the satellite.
    Channel {
        fd: u32,
    },
    /// [`Response::Opened`] with the satellite's descriptor number of the
    /// open file (after `UseChannel { fds: true }`).
    OpenedFd {
        fh: u64,
        fd: u32,
    },
    /// [`Response::Created`] with the satellite's descriptor number.
    CreatedFd {
        entry: Entry,
        fh: u64,
        fd: u32,
    },
    /// Unsolicited (frame id [`crate::EVENT_ID`]): changes seen in the
    /// container since the last batch.
    Changes(Vec<Change<'a>>),
    /// Answer to [`Request::OpenSmall`]: the handle, the descriptor number
    /// as [`Response::OpenedFd`] carries it (after `UseChannel { fds:
    /// true }`), and the file's whole contents at the time of the open
    /// when they fit the request's `max` (`None`: read them as usual).
    OpenedSmall {
        fh: u64,
        fd: Option<u32>,
        data: Option<Cow<'a, [u8]>>,
    },
    /// [`Response::Dir`] whose entries reach the end of the directory: a
    /// read from past the last of them would return nothing (protocol 7;
    /// sent only to a host that speaks it).
    DirEnd(Vec<DirEntry<'a>>),
    /// Answer to [`Request::OpenReadDir`]: the directory handle and the
    /// entries from the start; `end` when they reach the end of the
    /// directory (as [`Response::DirEnd`]).
    DirOpened {
        fh: u64,
        entries: Vec<DirEntry<'a>>,
        end: bool,
    },
    /// Answer to [`Request::Stream`]: complete directories, the streamed
    /// node first (none when even it does not fit the budget), and small
    /// contents.
    Streamed {
        dirs: Vec<StreamedDir<'a>>,
        files: Vec<StreamedFile<'a>>,
    },
    /// [`Response::Written`] with the file's attributes after the write
    /// (its fstat): the answer to a write through a handle the host chose
    /// ([`Request::CreateNew`]), sent to a host of protocol 10 or later.
    /// The host holds such a file's attributes and takes the container's
    /// from it (sizes, times, cleared setuid bits).
    WrittenAttr {
        n: u32,
        attr: Attr,
    },
}

/// One change the satellite saw in the container, on nodes the kernel
/// holds.
#[derive(Readable, Writable, Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    /// The name `name` in directory `dir` was created, removed or renamed
    /// (the directory's own attributes and listing changed with it).
    Entry { dir: u64, name: Cow<'a, [u8]> },
    /// The name `name` in directory `dir`, which was node `node`, is gone.
    Removed {
        dir: u64,
        name: Cow<'a, [u8]>,
        node: u64,
    },
    /// The attributes of `node` changed (mode, owner, times, links, xattrs).
    Attr { node: u64 },
    /// The contents (and so size and times) of `node` changed.
    Data { node: u64 },
    /// `node` cannot be watched (no watch left, or its watch was lost):
    /// it must not be cached for long. Sent before the reply that
    /// introduces the node.
    Unwatched { node: u64 },
    /// Events were lost: anything may have changed.
    All,
}

/// The variant tag at the start of an encoded enum: speedy writes it
/// first, as a little-endian `u32`, so a reader can tell what kind of
/// message a payload holds without decoding the rest. `None` for a payload
/// too short to hold one.
pub fn variant_tag(payload: &[u8]) -> Option<u32> {
    let tag: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(tag))
}

fn own(c: Cow<'_, [u8]>) -> Cow<'static, [u8]> {
    Cow::Owned(c.into_owned())
}

impl Request<'_> {
    /// The [`variant_tag`] of [`Request::Shutdown`], taken from its
    /// encoding so that it follows the order of the variants.
    pub fn shutdown_tag() -> u32 {
        Request::Shutdown.tag()
    }

    /// This request's [`variant_tag`], taken from its encoding.
    pub fn tag(&self) -> u32 {
        let bytes = Writable::<LittleEndian>::write_to_vec(self).expect("a request encodes");
        variant_tag(&bytes).expect("an encoded enum starts with its tag")
    }

    /// Detaches the request from the buffer it was decoded from (tests of
    /// both sides keep the requests they see).
    pub fn into_owned(self) -> Request<'static> {
        use Request::*;
        match self {
            Hello(h) => Hello(h),
            Lookup { parent, name } => Lookup {
                parent,
                name: own(name),
            },
            Forget { nodes } => Forget { nodes },
            GetAttr { node, fh } => GetAttr { node, fh },
            SetAttr { node, fh, attr } => SetAttr { node, fh, attr },
            ReadLink { node } => ReadLink { node },
            Symlink {
                parent,
                name,
                target,
            } => Symlink {
                parent,
                name: own(name),
                target: own(target),
            },
            Mknod {
                parent,
                name,
                mode,
                rdev,
            } => Mknod {
                parent,
                name: own(name),
                mode,
                rdev,
            },
            Mkdir { parent, name, mode } => Mkdir {
                parent,
                name: own(name),
                mode,
            },
            Unlink { parent, name } => Unlink {
                parent,
                name: own(name),
            },
            Rmdir { parent, name } => Rmdir {
                parent,
                name: own(name),
            },
            Rename {
                parent,
                name,
                new_parent,
                new_name,
                flags,
            } => Rename {
                parent,
                name: own(name),
                new_parent,
                new_name: own(new_name),
                flags,
            },
            Link {
                node,
                new_parent,
                new_name,
            } => Link {
                node,
                new_parent,
                new_name: own(new_name),
            },
            Open { node, flags } => Open { node, flags },
            OpenReadDir { node, size, plus } => OpenReadDir { node, size, plus },
            Create {
                parent,
                name,
                mode,
                flags,
            } => Create {
                parent,
                name: own(name),
                mode,
                flags,
            },
            Read { fh, offset, size } => Read { fh, offset, size },
            Write { fh, offset, data } => Write {
                fh,
                offset,
                data: own(data),
            },
            Flush { fh } => Flush { fh },
            Release { fh } => Release { fh },
            Fsync { fh, datasync } => Fsync { fh, datasync },
            OpenDir { node } => OpenDir { node },
            ReadDir {
                fh,
                offset,
                size,
                plus,
            } => ReadDir {
                fh,
                offset,
                size,
                plus,
            },
            ReleaseDir { fh } => ReleaseDir { fh },
            FsyncDir { fh, datasync } => FsyncDir { fh, datasync },
            StatFs { node } => StatFs { node },
            Access { node, mask } => Access { node, mask },
            GetXattr { node, name, size } => GetXattr {
                node,
                name: own(name),
                size,
            },
            ListXattr { node, size } => ListXattr { node, size },
            SetXattr {
                node,
                name,
                value,
                flags,
            } => SetXattr {
                node,
                name: own(name),
                value: own(value),
                flags,
            },
            RemoveXattr { node, name } => RemoveXattr {
                node,
                name: own(name),
            },
            Fallocate {
                fh,
                offset,
                length,
                mode,
            } => Fallocate {
                fh,
                offset,
                length,
                mode,
            },
            Lseek { fh, offset, whence } => Lseek { fh, offset, whence },
            CopyFileRange {
                fh_in,
                offset_in,
                fh_out,
                offset_out,
                len,
                flags,
            } => CopyFileRange {
                fh_in,
                offset_in,
                fh_out,
                offset_out,
                len,
                flags,
            },
            RemovePaths { paths } => RemovePaths {
                paths: paths.into_iter().map(own).collect(),
            },
            Shutdown => Shutdown,
            As {
                uid,
                gid,
                groups,
                req,
            } => As {
                uid,
                gid,
                groups,
                req: Box::new(req.into_owned()),
            },
            OpenChannel => OpenChannel,
            UseChannel { fds } => UseChannel { fds },
            Watch => Watch,
            OpenSmall { node, flags, max } => OpenSmall { node, flags, max },
            ReleaseMany { fhs } => ReleaseMany { fhs },
            Stream { node, budget } => Stream { node, budget },
            CreateNew {
                parent,
                name,
                mode,
                flags,
                node,
                fh,
                time,
            } => CreateNew {
                parent,
                name: own(name),
                mode,
                flags,
                node,
                fh,
                time,
            },
            MkdirNew {
                parent,
                name,
                mode,
                node,
                time,
            } => MkdirNew {
                parent,
                name: own(name),
                mode,
                node,
                time,
            },
            SymlinkNew {
                parent,
                name,
                target,
                node,
                time,
            } => SymlinkNew {
                parent,
                name: own(name),
                target: own(target),
                node,
                time,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode, HEADER_LEN};

    fn round_trip_req(r: Request<'_>) {
        let mut buf = Vec::new();
        encode(5, &r, &mut buf).unwrap();
        let back: Request<'_> = decode(&buf[HEADER_LEN..]).unwrap();
        assert_eq!(back, r);
    }

    fn round_trip_resp(r: Response<'_>) {
        let mut buf = Vec::new();
        encode(5, &r, &mut buf).unwrap();
        let back: Response<'_> = decode(&buf[HEADER_LEN..]).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn requests_round_trip() {
        round_trip_req(Request::Hello(HostHello {
            protocol: 1,
            version: "x".into(),
            max_io: 4096,
        }));
        round_trip_req(Request::Forget {
            nodes: vec![(2, 3), (4, 1)],
        });
        round_trip_req(Request::SetAttr {
            node: 9,
            fh: Some(2),
            attr: SetAttr {
                mode: Some(0o600),
                size: Some(0),
                mtime: Some(SetTime::At { sec: -5, nsec: 7 }),
                atime: Some(SetTime::Now),
                ..Default::default()
            },
        });
        round_trip_req(Request::Rename {
            parent: 1,
            name: b"a".as_slice().into(),
            new_parent: 2,
            new_name: b"b\xff".as_slice().into(),
            flags: 1,
        });
        round_trip_req(Request::RemovePaths {
            paths: vec![b"/tmp/x".as_slice().into()],
        });
        round_trip_req(Request::Shutdown);
        round_trip_req(Request::OpenChannel);
        round_trip_req(Request::UseChannel { fds: true });
        round_trip_req(Request::Watch);
        round_trip_req(Request::OpenReadDir {
            node: 4,
            size: 131072,
            plus: true,
        });
        round_trip_req(Request::Stream {
            node: 4,
            budget: StreamBudget {
                entries: 100,
                bytes: 1 << 16,
                depth: 3,
                file_max: 4096,
            },
        });
        round_trip_req(Request::OpenSmall {
            node: 4,
            flags: OpenFlags(OpenFlags::DIRECT),
            max: 65536,
        });
        round_trip_req(Request::As {
            uid: 1000,
            gid: 100,
            groups: vec![10, 20, 65534],
            req: Box::new(Request::Mkdir {
                parent: 1,
                name: b"d".as_slice().into(),
                mode: 0o755,
            }),
        });
    }

    /// One request of every kind, in the order of the variants.
    fn one_of_each() -> Vec<Request<'static>> {
        let name = || Cow::Borrowed(b"n".as_slice());
        vec![
            Request::Hello(HostHello {
                protocol: 1,
                version: "x".into(),
                max_io: 1,
            }),
            Request::Lookup {
                parent: 1,
                name: name(),
            },
            Request::Forget {
                nodes: vec![(2, 1)],
            },
            Request::GetAttr { node: 1, fh: None },
            Request::SetAttr {
                node: 1,
                fh: Some(2),
                attr: SetAttr::default(),
            },
            Request::ReadLink { node: 1 },
            Request::Symlink {
                parent: 1,
                name: name(),
                target: name(),
            },
            Request::Mknod {
                parent: 1,
                name: name(),
                mode: 0o10644,
                rdev: 0,
            },
            Request::Mkdir {
                parent: 1,
                name: name(),
                mode: 0o755,
            },
            Request::Unlink {
                parent: 1,
                name: name(),
            },
            Request::Rmdir {
                parent: 1,
                name: name(),
            },
            Request::Rename {
                parent: 1,
                name: name(),
                new_parent: 1,
                new_name: name(),
                flags: 0,
            },
            Request::Link {
                node: 2,
                new_parent: 1,
                new_name: name(),
            },
            Request::Open {
                node: 2,
                flags: OpenFlags::default(),
            },
            Request::Create {
                parent: 1,
                name: name(),
                mode: 0o644,
                flags: OpenFlags::default(),
            },
            Request::Read {
                fh: 1,
                offset: 0,
                size: 10,
            },
            Request::Write {
                fh: 1,
                offset: 0,
                data: name(),
            },
            Request::Flush { fh: 1 },
            Request::Release { fh: 1 },
            Request::Fsync {
                fh: 1,
                datasync: true,
            },
            Request::OpenDir { node: 1 },
            Request::ReadDir {
                fh: 1,
                offset: 0,
                size: 4096,
                plus: true,
            },
            Request::ReleaseDir { fh: 1 },
            Request::FsyncDir {
                fh: 1,
                datasync: false,
            },
            Request::StatFs { node: 1 },
            Request::Access { node: 1, mask: 4 },
            Request::GetXattr {
                node: 1,
                name: name(),
                size: 0,
            },
            Request::ListXattr { node: 1, size: 0 },
            Request::SetXattr {
                node: 1,
                name: name(),
                value: name(),
                flags: 0,
            },
            Request::RemoveXattr {
                node: 1,
                name: name(),
            },
            Request::Fallocate {
                fh: 1,
                offset: 0,
                length: 1,
                mode: 0,
            },
            Request::Lseek {
                fh: 1,
                offset: 0,
                whence: 3,
            },
            Request::CopyFileRange {
                fh_in: 1,
                offset_in: 0,
                fh_out: 2,
                offset_out: 0,
                len: 1,
                flags: 0,
            },
            Request::RemovePaths {
                paths: vec![name()],
            },
            Request::Shutdown,
            Request::As {
                uid: 1,
                gid: 1,
                groups: vec![2, 3],
                req: Box::new(Request::Shutdown),
            },
            Request::OpenChannel,
            Request::UseChannel { fds: true },
            Request::Watch,
            Request::OpenSmall {
                node: 2,
                flags: OpenFlags::default(),
                max: 10,
            },
            Request::ReleaseMany { fhs: vec![1, 2] },
            Request::OpenReadDir {
                node: 1,
                size: 4096,
                plus: true,
            },
            Request::Stream {
                node: 1,
                budget: StreamBudget::default(),
            },
            Request::CreateNew {
                parent: 1,
                name: name(),
                mode: 0o644,
                flags: OpenFlags::default(),
                node: crate::HOST_NODE_BIT | 1,
                fh: crate::HOST_FH_BIT | 1,
                time: (1, 2),
            },
            Request::MkdirNew {
                parent: 1,
                name: name(),
                mode: 0o755,
                node: crate::HOST_NODE_BIT | 2,
                time: (1, 2),
            },
            Request::SymlinkNew {
                parent: 1,
                name: name(),
                target: name(),
                node: crate::HOST_NODE_BIT | 3,
                time: (1, 2),
            },
        ]
    }

    /// Fails to compile when a variant is added, until [`one_of_each`]
    /// gets a sample of it.
    fn variant_index(r: &Request<'_>) -> u32 {
        use Request::*;
        match r {
            Hello(_) => 0,
            Lookup { .. } => 1,
            Forget { .. } => 2,
            GetAttr { .. } => 3,
            SetAttr { .. } => 4,
            ReadLink { .. } => 5,
            Symlink { .. } => 6,
            Mknod { .. } => 7,
            Mkdir { .. } => 8,
            Unlink { .. } => 9,
            Rmdir { .. } => 10,
            Rename { .. } => 11,
            Link { .. } => 12,
            Open { .. } => 13,
            Create { .. } => 14,
            Read { .. } => 15,
            Write { .. } => 16,
            Flush { .. } => 17,
            Release { .. } => 18,
            Fsync { .. } => 19,
            OpenDir { .. } => 20,
            ReadDir { .. } => 21,
            ReleaseDir { .. } => 22,
            FsyncDir { .. } => 23,
            StatFs { .. } => 24,
            Access { .. } => 25,
            GetXattr { .. } => 26,
            ListXattr { .. } => 27,
            SetXattr { .. } => 28,
            RemoveXattr { .. } => 29,
            Fallocate { .. } => 30,
            Lseek { .. } => 31,
            CopyFileRange { .. } => 32,
            RemovePaths { .. } => 33,
            Shutdown => 34,
            As { .. } => 35,
            OpenChannel => 36,
            UseChannel { .. } => 37,
            Watch => 38,
            OpenSmall { .. } => 39,
            ReleaseMany { .. } => 40,
            OpenReadDir { .. } => 41,
            Stream { .. } => 42,
            CreateNew { .. } => 43,
            MkdirNew { .. } => 44,
            SymlinkNew { .. } => 45,
        }
    }

    #[test]
    fn the_tag_tells_every_request_kind_apart() {
        let all = one_of_each();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(variant_index(r), i as u32, "samples follow the variants");
            let mut buf = Vec::new();
            encode(9, r, &mut buf).unwrap();
            let tag = variant_tag(&buf[HEADER_LEN..]);
            assert_eq!(
                tag,
                Some(i as u32),
                "speedy tags variants by position: {r:?}"
            );
            let shutdown = tag == Some(Request::shutdown_tag());
            assert_eq!(shutdown, matches!(r, Request::Shutdown), "{r:?}");
        }
    }

    #[test]
    fn a_short_payload_has_no_tag() {
        assert_eq!(variant_tag(&[]), None);
        assert_eq!(variant_tag(&[34, 0, 0]), None);
        assert_eq!(variant_tag(&[34, 0, 0, 0, 0xff]), Some(34));
    }

    #[test]
    fn responses_round_trip() {
        let attr = Attr {
            ino: 3,
            size: 10,
            mode: 0o100644,
            nlink: 1,
            ..Default::default()
        };
        round_trip_resp(Response::Error(2));
        round_trip_resp(Response::Created {
            entry: Entry {
                node: 3,
                attr,
                no_xattrs: false,
            },
            fh: 8,
        });
        round_trip_resp(Response::Dir(vec![
            DirEntry {
                name: b".".as_slice().into(),
                offset: 1,
                kind: 0o040000,
                ino: 5,
                entry: None,
            },
            DirEntry {
                name: b"f".as_slice().into(),
                offset: 2,
                kind: 0o100000,
                ino: 6,
                entry: Some(Entry {
                    node: 3,
                    attr,
                    no_xattrs: true,
                }),
            },
        ]));
        round_trip_resp(Response::DirEnd(vec![DirEntry {
            name: b"last".as_slice().into(),
            offset: 9,
            kind: 0o100000,
            ino: 7,
            entry: None,
        }]));
        round_trip_resp(Response::DirEnd(Vec::new()));
        round_trip_resp(Response::DirOpened {
            fh: 3,
            entries: vec![DirEntry {
                name: b"a".as_slice().into(),
                offset: 1,
                kind: 0o100000,
                ino: 7,
                entry: None,
            }],
            end: true,
        });
        round_trip_resp(Response::WrittenAttr { n: 7, attr });
        round_trip_resp(Response::Streamed {
            dirs: vec![StreamedDir {
                node: 1,
                entries: vec![DirEntry {
                    name: b"f".as_slice().into(),
                    offset: 3,
                    kind: 0o100000,
                    ino: 6,
                    entry: Some(Entry {
                        node: 3,
                        attr,
                        no_xattrs: true,
                    }),
                }],
            }],
            files: vec![StreamedFile {
                node: 3,
                data: b"0123456789".as_slice().into(),
            }],
        });
        round_trip_resp(Response::Data(vec![1, 2, 3].into()));
        round_trip_resp(Response::Channel { fd: 9 });
        round_trip_resp(Response::OpenedFd { fh: 4, fd: 12 });
        round_trip_resp(Response::OpenedSmall {
            fh: 4,
            fd: Some(12),
            data: Some(b"whole file".as_slice().into()),
        });
        round_trip_resp(Response::OpenedSmall {
            fh: 5,
            fd: None,
            data: None,
        });
        round_trip_resp(Response::CreatedFd {
            entry: Entry {
                node: 3,
                attr,
                no_xattrs: false,
            },
            fh: 5,
            fd: 13,
        });
        round_trip_resp(Response::Changes(vec![
            Change::Entry {
                dir: 1,
                name: b"a".as_slice().into(),
            },
            Change::Removed {
                dir: 1,
                name: b"b".as_slice().into(),
                node: 9,
            },
            Change::Attr { node: 2 },
            Change::Data { node: 3 },
            Change::Unwatched { node: 4 },
            Change::All,
        ]));
        round_trip_resp(Response::Hello(SatelliteHello {
            protocol: 1,
            version: "0.1.0".into(),
            arch: "aarch64".into(),
            uid: 0,
            gid: 0,
            pid: 7,
            max_io: 1 << 20,
        }));
    }

    #[test]
    fn data_is_borrowed_from_the_frame() {
        let mut buf = Vec::new();
        encode(1, &Response::Data(vec![9u8; 100].into()), &mut buf).unwrap();
        match decode::<Response<'_>>(&buf[HEADER_LEN..]).unwrap() {
            Response::Data(Cow::Borrowed(d)) => assert_eq!(d, &[9u8; 100][..]),
            other => panic!("expected borrowed data, got {other:?}"),
        }
    }
}
