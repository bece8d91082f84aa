//! Wire protocol between the dockerfuse host program and its satellite.
//!
//! The two sides talk over the stdin/stdout of a `docker exec`: a byte
//! stream with no message boundaries. This crate holds everything both
//! sides must agree on and nothing else:
//!
//! * [`frame`]: the framing (`u32 length | u64 id | payload`, little
//!   endian), with the length checked against [`frame::MAX_PAYLOAD`]
//!   *before* any buffer is sized from it;
//! * [`msg`]: the request and response types (speedy-encoded payloads),
//!   which mirror the FUSE low-level API on node ids, and
//!   [`msg::variant_tag`], which tells a payload's kind from its first
//!   four bytes;
//! * [`flags`]: the open(2) flags in the protocol's own numbering (the
//!   kernel's differs between architectures), and the compile-time check
//!   that every other number on the wire is the same on every one;
//! * [`errno`]: the Linux errno numbers that travel in error replies.
//!
//! No I/O policy lives here: the satellite reads frames with blocking
//! `std::io`, the host with an async incremental decoder; both use the same
//! header parser and limits.

pub mod errno;
pub mod flags;
pub mod frame;
pub mod msg;

pub use errno::Errno;
pub use flags::{Abi, OpenFlags};
pub use msg::*;

/// Version of the wire protocol; both hellos carry it. Version 3 added
/// the caller's groups, the local channel and passthrough descriptors;
/// version 4 the change feed ([`Request::Watch`], [`Response::Changes`]);
/// version 5 opens that bring a small file's contents
/// ([`Request::OpenSmall`], [`Response::OpenedSmall`]) and releases in
/// batches ([`Request::ReleaseMany`]); version 6 open flags in the
/// protocol's own numbering ([`OpenFlags`]; before, they travelled in the
/// satellite's, which a host sends an older satellite, see [`Abi`]);
/// version 7 says which readdir reply reaches the end of the directory
/// ([`Response::DirEnd`]) and opens a directory with its first read
/// ([`Request::OpenReadDir`]); version 8 streams a subtree's listings,
/// attributes and small contents in one reply ([`Request::Stream`],
/// [`Response::Streamed`]), and creates with node ids and handles the
/// host chose ([`Request::CreateNew`], [`Request::MkdirNew`]); version 9
/// symlinks with the node id the host chose ([`Request::SymlinkNew`]);
/// version 10 answers a write through a handle the host chose with the
/// file's attributes after it ([`Response::WrittenAttr`]).
pub const PROTOCOL_VERSION: u32 = 10;

/// Set in every node id the host chooses ([`Request::CreateNew`]): the
/// satellite numbers its own nodes from 1 up and never reaches it.
pub const HOST_NODE_BIT: u64 = 1 << 62;

/// Set in every file handle the host chooses: below the 48 bits a
/// handle keeps on the host, far above the satellite's own (from 1 up).
pub const HOST_FH_BIT: u64 = 1 << 46;

/// Oldest protocol either side still speaks: a host and a satellite
/// agree on the lower of their two versions, and nothing newer than that
/// is sent (a satellite before version 4 has no change feed).
pub const MIN_PROTOCOL_VERSION: u32 = 3;

/// Largest read or write carried in one request (FUSE's max_write with
/// max_pages = 256).
pub const MAX_IO: u32 = 1 << 20;

/// Most bytes of contents an [`Response::OpenedSmall`] carries: a file
/// up to this size comes whole with its open.
pub const MAX_OPEN_DATA: u32 = 64 * 1024;

/// Most bytes a [`Response::Streamed`] carries, as the satellite counts
/// them (an upper bound of the encoding): it fits one frame.
pub const MAX_STREAM_BYTES: u32 = 960 * 1024;

/// Most directory entries a [`Response::Streamed`] carries.
pub const MAX_STREAM_ENTRIES: u32 = 16 * 1024;

/// Most supplementary groups a [`Request::As`] carries (a caller in more
/// is sent with its first `MAX_GROUPS`, as the kernel lists them).
pub const MAX_GROUPS: usize = 64;

/// Frame id used by the two hello frames; requests use ids from 1 up.
pub const HELLO_ID: u64 = 0;

/// Frame id of the satellite's unsolicited change batches (after the
/// hello; no request ever has this id).
pub const EVENT_ID: u64 = 0;

/// Most changes in one [`Response::Changes`] frame.
pub const MAX_CHANGES: usize = 4096;
