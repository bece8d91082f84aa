//! Request and response messages.
//!
//! Requests mirror the FUSE low-level operations on *node ids* chosen by
//! the satellite (root = 1), never on paths. Byte strings (names, link
//! targets, file data) are `Cow<[u8]>` so that a decoder can borrow them
//! from the frame buffer instead of copying.

use std::borrow::Cow;

use speedy::{Readable, Writable};

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
    /// `flags` are open(2) flags.
    Open {
        node: u64,
        flags: i32,
    },
    Create {
        parent: u64,
        name: Cow<'a, [u8]>,
        mode: u32,
        flags: i32,
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
    /// Runs `req` as host user `uid`/`gid` (with `--allow-other`): a root
    /// satellite switches the worker thread's fsuid/fsgid (per thread, so
    /// the pool serves several callers at once) and drops its
    /// supplementary groups for the request. Never nested; never wraps a
    /// forget.
    As {
        uid: u32,
        gid: u32,
        req: Box<Request<'a>>,
    },
    /// Turns the change feed on: from the reply on, the satellite watches
    /// the nodes the kernel holds and sends [`Response::Changes`] frames
    /// with id [`crate::EVENT_ID`]. An error reply means there is no feed.
    Watch,
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
    /// Unsolicited (frame id [`crate::EVENT_ID`]): changes seen in the
    /// container since the last batch.
    Changes(Vec<Change<'a>>),
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

fn own(c: Cow<'_, [u8]>) -> Cow<'static, [u8]> {
    Cow::Owned(c.into_owned())
}

impl Request<'_> {
    /// Detaches the request from the buffer it was decoded from.
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
            As { uid, gid, req } => As {
                uid,
                gid,
                req: Box::new(req.into_owned()),
            },
            Watch => Watch,
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        use Request::*;
        match self {
            Hello(_) => "hello",
            Lookup { .. } => "lookup",
            Forget { .. } => "forget",
            GetAttr { .. } => "getattr",
            SetAttr { .. } => "setattr",
            ReadLink { .. } => "readlink",
            Symlink { .. } => "symlink",
            Mknod { .. } => "mknod",
            Mkdir { .. } => "mkdir",
            Unlink { .. } => "unlink",
            Rmdir { .. } => "rmdir",
            Rename { .. } => "rename",
            Link { .. } => "link",
            Open { .. } => "open",
            Create { .. } => "create",
            Read { .. } => "read",
            Write { .. } => "write",
            Flush { .. } => "flush",
            Release { .. } => "release",
            Fsync { .. } => "fsync",
            OpenDir { .. } => "opendir",
            ReadDir { .. } => "readdir",
            ReleaseDir { .. } => "releasedir",
            FsyncDir { .. } => "fsyncdir",
            StatFs { .. } => "statfs",
            Access { .. } => "access",
            GetXattr { .. } => "getxattr",
            ListXattr { .. } => "listxattr",
            SetXattr { .. } => "setxattr",
            RemoveXattr { .. } => "removexattr",
            Fallocate { .. } => "fallocate",
            Lseek { .. } => "lseek",
            CopyFileRange { .. } => "copy_file_range",
            RemovePaths { .. } => "remove_paths",
            Shutdown => "shutdown",
            As { req, .. } => req.name(),
            Watch => "watch",
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
        round_trip_req(Request::Watch);
        round_trip_req(Request::As {
            uid: 1000,
            gid: 100,
            req: Box::new(Request::Mkdir {
                parent: 1,
                name: b"d".as_slice().into(),
                mode: 0o755,
            }),
        });
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
        round_trip_resp(Response::Data(vec![1, 2, 3].into()));
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
