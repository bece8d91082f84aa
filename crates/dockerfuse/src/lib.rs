//! dockerfuse: mount the filesystem of a running Docker container.
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
//! * [`state`], [`mountinfo`], [`manage`] — the live mounts: `list`, `unmount`.

pub mod cli;
pub mod commands;
pub mod completions;
pub mod daemon;
pub mod engine;
pub mod error;
pub(crate) mod fs;
pub(crate) mod fuse;
pub(crate) mod groups;
pub mod helper;
pub mod kernel_mount;
pub mod launch;
pub mod local;
pub mod logging;
pub mod manage;
pub mod mount;
pub mod mountinfo;
pub(crate) mod passthrough;
pub mod plugin;
pub(crate) mod reconnect;
pub(crate) mod relink;
pub mod report;
pub mod rpc;
pub mod satellites;
pub mod signals;
pub mod ssh;
pub mod state;
pub mod tarball;
