//! dockerfuse: mount the filesystem of a running Docker container.
//!
//! The binary calls [`run`]; [`rpc`] is public for the tests that drive the
//! RPC client against a hostile peer. Everything else is crate-private.
//!
//! Folders, in the order a mount uses them:
//! * [`cli`] — the command line: flags, subcommands, the docker CLI
//!   plugin, the mount helper, completions;
//! * [`engine`] — the Docker Engine API (bollard, driven from smol), ssh://
//!   engines, and why an engine cannot be reached;
//! * [`satellites`] — the embedded satellites, their upload and start;
//! * [`transport`] — the pipelined RPC client over the satellite's
//!   streams, the local channel that bypasses the engine, and the
//!   transport that survives the satellite's restart;
//! * [`fs`] — the filesystem core (requests out, checked results in);
//! * [`kernel`] — the fuser adapter over the core, invalidations,
//!   passthrough, mount(2) and fusermount3, the mount table;
//! * [`mount`] — lifecycle: ready, signals, unmount, loss of the
//!   container; the live mounts (`list`, `unmount`, `stats`);
//! * at the root, process plumbing: [`entry`] (which face the binary
//!   shows), [`logging`], [`error`], and [`report`] — error messages for
//!   people.

#![warn(unreachable_pub)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub use entry::run;
pub use transport::rpc;

pub(crate) mod cli;
pub(crate) mod engine;
mod entry;
pub(crate) mod error;
pub(crate) mod fs;
pub(crate) mod kernel;
pub(crate) mod logging;
pub(crate) mod mount;
pub(crate) mod report;
pub(crate) mod satellites;
pub(crate) mod transport;
