//! The Docker engine: the only place that knows Docker.
//!
//! * [`endpoint`] — which engine and how to reach it: flags, environment,
//!   contexts, TLS, as the docker CLI resolves them;
//! * [`api`] — the Engine API through bollard (driven from smol):
//!   containers, exec, upload;
//! * [`ssh`] — `ssh://` engines, reached through `docker system dial-stdio`;
//! * [`reach`] — why an engine cannot be reached, in words.

pub(crate) mod api;
pub(crate) mod endpoint;
pub(crate) mod reach;
pub(crate) mod ssh;
