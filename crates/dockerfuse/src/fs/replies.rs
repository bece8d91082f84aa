//! Validation of the satellite's replies: each helper turns a response of
//! the expected kind into a typed value and anything else into an errno.
//!
//! The satellite is not trusted: a reply of the wrong kind becomes EIO,
//! node id 0 is refused, an errno outside 1..4096 becomes EIO, a count
//! larger than what was sent is refused (all with [`Failure::bad_reply`]).

use std::borrow::Cow;

use dockerfuse_proto::{Attr, Entry, Response, StatFs};

use super::Failure;

/// The failure a response of the wrong kind stands for.
pub(super) fn unexpected(r: Response<'_>) -> Failure {
    Failure::unexpected(r)
}

pub(super) fn entry(r: Response<'_>) -> Result<Entry, Failure> {
    match r {
        Response::Entry(e) => checked_entry(e),
        r => Err(unexpected(r)),
    }
}

/// An entry whose attributes report its node id as the inode number.
pub(super) fn checked_entry(mut e: Entry) -> Result<Entry, Failure> {
    if e.node == 0 {
        return Err(Failure::bad_reply());
    }
    e.attr.ino = e.node;
    Ok(e)
}

pub(super) fn attr(r: Response<'_>) -> Result<Attr, Failure> {
    match r {
        Response::Attr(a) => Ok(a),
        r => Err(unexpected(r)),
    }
}

pub(super) fn ok(r: Response<'_>) -> Result<(), Failure> {
    match r {
        Response::Ok => Ok(()),
        r => Err(unexpected(r)),
    }
}

pub(super) fn fh(r: Response<'_>) -> Result<u64, Failure> {
    match r {
        Response::Opened { fh } => Ok(fh),
        r => Err(unexpected(r)),
    }
}

/// What an open's reply carries.
pub(super) struct OpenReply<'a> {
    pub(super) fh: u64,
    /// The satellite's descriptor number of the file.
    pub(super) fd: Option<u32>,
    /// The file's contents (the caller checks their length against what
    /// it asked).
    pub(super) data: Option<Cow<'a, [u8]>>,
}

/// An open file's handle, with its descriptor number and contents when
/// the reply carries them.
pub(super) fn opened(r: Response<'_>) -> Result<OpenReply<'_>, Failure> {
    let (fh, fd, data) = match r {
        Response::Opened { fh } => (fh, None, None),
        Response::OpenedFd { fh, fd } => (fh, Some(fd), None),
        Response::OpenedSmall { fh, fd, data } => (fh, fd, data),
        r => return Err(unexpected(r)),
    };
    Ok(OpenReply { fh, fd, data })
}

pub(super) fn created(r: Response<'_>) -> Result<(Entry, u64, Option<u32>), Failure> {
    match r {
        Response::Created { entry, fh } => Ok((checked_entry(entry)?, fh, None)),
        Response::CreatedFd { entry, fh, fd } => Ok((checked_entry(entry)?, fh, Some(fd))),
        r => Err(unexpected(r)),
    }
}

pub(super) fn statfs(r: Response<'_>) -> Result<StatFs, Failure> {
    match r {
        Response::StatFs(s) => Ok(s),
        r => Err(unexpected(r)),
    }
}

pub(super) fn offset(r: Response<'_>) -> Result<i64, Failure> {
    match r {
        Response::Offset(o) => i64::try_from(o).map_err(|_| Failure::bad_reply()),
        r => Err(unexpected(r)),
    }
}

/// A count of bytes written, at most `len`.
pub(super) fn written(r: Response<'_>, len: u64) -> Result<u32, Failure> {
    match r {
        Response::Written(n) | Response::WrittenAttr { n, .. } if u64::from(n) <= len => Ok(n),
        Response::Written(_) | Response::WrittenAttr { .. } => Err(Failure::bad_reply()),
        r => Err(unexpected(r)),
    }
}
