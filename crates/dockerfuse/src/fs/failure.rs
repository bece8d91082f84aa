//! Why a request failed: the errno the kernel gets and its cause, as one
//! value that travels with the outcome.
//!
//! Every outcome callback of the core carries a [`Failure`]: the errno
//! and where it came from — answered on the host, the satellite's own
//! errno, a reply that made no sense, or the transport (connection closed
//! or stalled, a handle or node from before a reconnect), or an earlier
//! operation sent behind whose error this request reports. The value
//! crosses threads with the outcome (replies run on the RPC reader), so
//! the cause reaches the adapter whichever thread answers. The adapter
//! runs each kernel request in a `request` span with the request's id,
//! operation and node, and logs one line per failed request in it
//! ([`log`]), with its errno and cause.
//!
//! `From<Errno>` makes a failure decided on the host: `Err(Errno::X)?`
//! and `Err(Errno::X.into())` stay short.

use std::fmt;

use dockerfuse_proto::{Errno, Response};

/// What made a request fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Decided on the host (a cached absence, a refused handle...).
    Host,
    /// The satellite answered with this errno.
    Satellite,
    /// The satellite's reply was of the wrong kind or out of bounds.
    BadReply,
    /// No reply: the connection closed or stalled, or relink refused a
    /// node or handle from before a reconnect.
    Transport,
    /// An operation answered at once and sent behind (a write, or a
    /// create or setattr of a file made behind) failed in the container
    /// earlier; this request reports it.
    Behind,
}

impl Cause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cause::Host => "host",
            Cause::Satellite => "satellite",
            Cause::BadReply => "bad reply",
            Cause::Transport => "transport",
            Cause::Behind => "sent behind",
        }
    }
}

/// A failed operation: the errno for the kernel and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) errno: Errno,
    pub(crate) cause: Cause,
}

impl Failure {
    /// The satellite answered `errno`.
    pub(crate) fn satellite(errno: Errno) -> Failure {
        Failure {
            errno,
            cause: Cause::Satellite,
        }
    }

    /// A reply that makes no sense: EIO.
    pub(crate) fn bad_reply() -> Failure {
        Failure {
            errno: Errno::EIO,
            cause: Cause::BadReply,
        }
    }

    /// The transport gave no reply.
    pub(crate) fn transport(errno: Errno) -> Failure {
        Failure {
            errno,
            cause: Cause::Transport,
        }
    }

    /// An earlier operation sent behind failed with `errno`.
    pub(crate) fn behind(errno: Errno) -> Failure {
        Failure {
            errno,
            cause: Cause::Behind,
        }
    }

    /// The failure a response other than the expected one stands for: the
    /// satellite's errno, or a bad reply (an errno outside 1..4096 too).
    pub(crate) fn unexpected(r: Response<'_>) -> Failure {
        match r {
            Response::Error(n) if n > 0 && n < 4096 => Failure::satellite(Errno(n)),
            _ => Failure::bad_reply(),
        }
    }
}

impl From<Errno> for Failure {
    /// A failure decided on the host.
    fn from(errno: Errno) -> Failure {
        Failure {
            errno,
            cause: Cause::Host,
        }
    }
}

impl PartialEq<Errno> for Failure {
    fn eq(&self, e: &Errno) -> bool {
        self.errno == *e
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.errno, self.cause.as_str())
    }
}

/// The one log line of a failed request, in the current span (the
/// adapter's `request` span: id, op, node). ENODATA, a missing extended
/// attribute, is the ordinary answer to the probes of `ls -l` and every
/// write: only at trace level.
pub(crate) fn log(f: Failure) {
    let cause = f.cause.as_str();
    if f.errno == Errno::ENODATA {
        tracing::trace!(errno = %f.errno, cause, "request failed");
    } else {
        tracing::debug!(errno = %f.errno, cause, "request failed");
    }
}
