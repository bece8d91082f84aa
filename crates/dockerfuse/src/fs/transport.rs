//! The transport interface the filesystem core needs: send a request and
//! have a callback run with its outcome, or send one that has no reply.
//!
//! The core owns this definition; `rpc` implements it over a satellite
//! connection, tests implement it with canned answers. So dependencies
//! point one way: fuser adapter → core → transport → engine.

use std::os::fd::OwnedFd;

use dockerfuse_proto::{Errno, Request, Response};

/// Completion of one request. The response may borrow from the receive
/// buffer, so it is handed over by reference to the callback.
pub type Done = Box<dyn for<'a> FnOnce(Result<Response<'a>, Errno>) + Send>;

/// What the filesystem core needs from a transport.
pub trait Transport: Send + Sync + 'static {
    /// Sends a request; `done` runs exactly once with its outcome.
    fn call(&self, req: &Request<'_>, done: Done);
    /// Sends a request that has no reply (forget).
    fn post(&self, req: &Request<'_>);
    /// A copy of the satellite's descriptor number `fd`, on a transport
    /// that can take one (the local channel); `None` elsewhere.
    fn take_fd(&self, _fd: u32) -> Option<OwnedFd> {
        None
    }
    /// Whether the satellite that opened handle `fh` is gone (a handle
    /// from before a reconnect): what is sent on it can only fail. A
    /// write on it is refused at once, not accepted behind and lost.
    fn handle_gone(&self, _fh: u64) -> bool {
        false
    }
}
