//! dockerfuse: mount the filesystem of a running Docker container.
//!
//! Modules, in the order a mount uses them:
//! * [`cli`] — flags (classic single-dash and `--long` forms);
//! * [`engine`] — the Docker Engine API (bollard, driven from smol);
//! * [`satellites`], [`tarball`], [`launch`] — the embedded satellites,
//!   their upload and start;
//! * [`rpc`] — the pipelined client over the exec's stdin/stdout;
//! * [`fs`] — the filesystem core (requests out, checked results in);
//! * [`fuse`] — the thin fuser adapter over the core;
//! * [`mount`] — lifecycle: ready, signals, unmount, loss of the container;
//! * [`daemon`], [`signals`], [`logging`], [`error`] — process plumbing.

pub mod cli;
pub mod daemon;
pub mod engine;
pub mod error;
pub(crate) mod feed;
pub(crate) mod fs;
pub(crate) mod fuse;
pub mod launch;
pub mod logging;
pub mod mount;
pub mod rpc;
pub mod satellites;
pub mod signals;
pub mod tarball;
