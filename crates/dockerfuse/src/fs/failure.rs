//! Why a request failed, for `-debug` logs.
//!
//! The adapter runs each kernel request in a `request` span with the
//! request's id, operation and node. Where the core learns why a request
//! failed it records the cause in that span: the satellite's own errno,
//! a reply that made no sense, or the transport (connection closed or
//! stalled, a handle or node from before a reconnect). The adapter then
//! logs one line per failed request, with its errno, inside that span. A
//! failure without a cause was answered on the host.

use dockerfuse_proto::Errno;

/// What made a request fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The satellite answered with this errno.
    Satellite,
    /// The satellite's reply was of the wrong kind or out of bounds.
    BadReply,
    /// No reply: the connection closed or stalled, or relink refused a
    /// node or handle from before a reconnect.
    Transport,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Satellite => "satellite",
            Cause::BadReply => "bad reply",
            Cause::Transport => "transport",
        }
    }
}

/// Records `cause` in the current request's span (a no-op outside one).
pub(crate) fn record(cause: Cause) {
    tracing::Span::current().record("cause", cause.as_str());
}

/// The one log line of a failed request (in its span). ENODATA, a
/// missing extended attribute, is the ordinary answer to the probes of
/// `ls -l` and every write: only at trace level.
pub(crate) fn log(e: Errno) {
    if e == Errno::ENODATA {
        tracing::trace!(errno = %e, "request failed");
    } else {
        tracing::debug!(errno = %e, "request failed");
    }
}
