//! On whose behalf the core sends a request.
//!
//! With `--allow-other` each request is performed in the container as the
//! host user who made it: uid, gid and supplementary groups. The adapter
//! passes the kernel request's caller to every core operation, and the
//! core hands it on to whatever it sends for that operation, follow-up
//! requests included (they may be sent from the RPC reader's thread).

use std::sync::Arc;

/// A process on the host that made a kernel request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups, at most `MAX_GROUPS`; read only when the
    /// mount performs requests per caller (else empty).
    pub(crate) groups: Arc<[u32]>,
    /// The calling thread's id (0 when the kernel could not tell it).
    pub(crate) pid: u32,
}

/// Who a request is sent for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// The mount itself: sent as the satellite's own identity.
    Mount,
    /// A host process: sent as that user when the mount performs
    /// requests per caller.
    Caller(Caller),
}
