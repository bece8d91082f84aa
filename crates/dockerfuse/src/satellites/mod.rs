//! The satellites: the small static programs that serve the container's
//! filesystem from inside it.
//!
//! * [`embedded`] — the satellites `build.rs` embeds (LZMA-compressed),
//!   the architecture names and the order in which to try them;
//! * [`tarball`] — the one-file archive the Engine API's upload takes;
//! * [`launch`] — getting one running in the container: pick the arch,
//!   upload or pipe it, exec, wait for the hello.

pub(crate) mod embedded;
pub(crate) mod launch;
pub(crate) mod tarball;
