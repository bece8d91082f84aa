//! Transports: the implementations of the core's
//! [`Transport`](crate::fs::transport::Transport) interface, and the
//! connections to the satellite beneath them.
//!
//! * [`rpc`] — the pipelined client over any pair of byte streams (the
//!   exec's stdin/stdout, or the local channel);
//! * [`local`] — on a local engine, the channel that leaves the engine
//!   out, and the satellite's descriptors for FUSE passthrough;
//! * [`relink`] — a transport that survives the satellite's restart, and
//!   [`reconnect`] — waiting for the container to come back.
//!
//! [`rpc`] is public for the tests that drive the client against a
//! hostile peer (`crates/dockerfuse/tests`).

pub(crate) mod local;
pub(crate) mod reconnect;
pub(crate) mod relink;
pub mod rpc;
