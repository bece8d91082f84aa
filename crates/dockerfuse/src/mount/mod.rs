//! The mount's life and the live mounts.
//!
//! * [`lifecycle`] — one mount from the checks to the end: the event
//!   loop (signals, unmount from outside, loss of the satellite), the
//!   reconnect loop, and the end; made of
//!   * [`preflight`] — what is checked before the engine is asked,
//!   * [`remote`] — the engine side: container, satellite start and
//!     restart, why it went away,
//!   * [`session`] — the core, the change feed and the FUSE mount,
//!   * [`tuning`] — the kernel's readahead and dirty-data knobs;
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
pub(crate) mod preflight;
pub(crate) mod remote;
pub(crate) mod session;
pub(crate) mod signals;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod tuning;
pub(crate) mod waits;
