//! The mount's life and the live mounts.
//!
//! * [`lifecycle`] — one mount from the checks to the end: satellite,
//!   FUSE session, ready, signals, unmount, loss of the container;
//! * [`daemon`] — `-daemonize`, and [`signals`] — SIGINT, SIGTERM, SIGHUP
//!   as events;
//! * [`idmap`] — how the container's user ids map to the host's (logged);
//! * [`state`] — one state file per live mount, and [`manage`] — `list`
//!   and `unmount`;
//! * [`waits`] — what the mount answered and what it waited for the
//!   satellite for, and [`stats`] — `dockerfuse stats`, which shows them.

pub(crate) mod daemon;
pub(crate) mod idmap;
pub(crate) mod lifecycle;
pub(crate) mod manage;
pub(crate) mod signals;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod waits;
