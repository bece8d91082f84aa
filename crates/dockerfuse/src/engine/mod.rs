//! The Docker engine: the only place that knows Docker.
//!
//! * [`api`] — the Engine API through bollard (driven from smol): which
//!   engine (flags, environment, contexts, TLS), containers, exec, upload;
//! * [`ssh`] — `ssh://` engines, reached through `docker system dial-stdio`;
//! * [`reach`] — why an engine cannot be reached, in words.

pub(crate) mod api;
pub(crate) mod reach;
pub(crate) mod ssh;
