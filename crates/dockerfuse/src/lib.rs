//! dockerfuse: mount the filesystem of a running Docker container.
//!
//! The binary calls [`run`]; [`rpc`] is public for the tests that drive the
//! RPC client against a hostile peer. Everything else is crate-private.
//!
//! Modules, in the order a mount uses them:
//! * [`cli`] — flags (classic single-dash and `--long` forms);
//! * [`commands`], [`plugin`], [`helper`] — the other subcommands,
//!   `docker mount`, `mount -t fuse.dockerfuse`; [`completions`] — shell
//!   completions and the man page;
//! * [`engine`] — the Docker Engine API (bollard, driven from smol), and
//!   [`ssh`] for ssh:// engines;
//! * [`satellites`], [`tarball`], [`launch`] — the embedded satellites,
//!   their upload and start;
//! * [`rpc`] — the pipelined client over the exec's stdin/stdout;
//! * [`local`] — on a local engine, the channel that bypasses it and the
//!   satellite's descriptors for FUSE passthrough;
//! * [`relink`] — a transport that survives the satellite's restart, and
//!   [`reconnect`] — waiting for the container to come back;
//! * [`fs`] — the filesystem core (requests out, checked results in);
//! * [`fuse`] — the thin fuser adapter over the core, and [`passthrough`]
//!   — which inode is backed by which file;
//! * [`mount`] — lifecycle: ready, signals, unmount, loss of the container;
//!   [`kernel_mount`] — the mount(2) call as root (type fuse.dockerfuse);
//! * [`daemon`], [`signals`], [`logging`], [`error`] — process plumbing;
//! * [`report`] — error messages for people;
//! * [`state`], [`mountinfo`], [`manage`] — the live mounts: `list`, `unmount`;
//!   [`waits`] and [`stats`] — what the mount answered and what it waited
//!   for the satellite for (`stats`).

#![warn(unreachable_pub)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub use entry::run;

pub(crate) mod cli;
pub(crate) mod commands;
pub(crate) mod completions;
pub(crate) mod daemon;
pub(crate) mod engine;
mod entry;
pub(crate) mod error;
pub(crate) mod feed;
pub(crate) mod fs;
pub(crate) mod fuse;
pub(crate) mod fusermount;
pub(crate) mod groups;
pub(crate) mod helper;
pub(crate) mod idmap;
pub(crate) mod kernel_mount;
pub(crate) mod launch;
pub(crate) mod local;
pub(crate) mod logging;
pub(crate) mod manage;
pub(crate) mod mount;
pub(crate) mod mountinfo;
pub(crate) mod passthrough;
pub(crate) mod plugin;
pub(crate) mod reach;
pub(crate) mod reconnect;
pub(crate) mod relink;
pub(crate) mod report;
pub mod rpc;
pub(crate) mod satellites;
pub(crate) mod signals;
pub(crate) mod ssh;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod tarball;
pub(crate) mod waits;
