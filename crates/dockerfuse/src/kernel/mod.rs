//! The kernel side: FUSE requests in, answers and notifications out, and
//! the mount itself.
//!
//! * [`fuse`] — the thin fuser adapter over the core (the only module
//!   that knows fuser), and [`groups`] — the supplementary groups of the
//!   process behind a request;
//! * [`feed`] — the satellite's change frames turned into the kernel's
//!   cache invalidations;
//! * [`passthrough`] — which inode is backed by which file (FUSE
//!   passthrough);
//! * [`sys_mount`] — the mount(2) call as root (type `fuse.dockerfuse`),
//!   [`fusermount`] — mounting as another user through `fusermount3`;
//! * [`mountinfo`] — the kernel's mount table, read without touching the
//!   mounts.

pub(crate) mod feed;
pub(crate) mod fuse;
pub(crate) mod fusermount;
pub(crate) mod groups;
pub(crate) mod mountinfo;
pub(crate) mod passthrough;
pub(crate) mod sys_mount;
