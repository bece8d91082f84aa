//! The host user on whose behalf the current thread sends requests.
//!
//! With `--allow-other` each request is performed in the container as the
//! host user who made it: uid, gid and supplementary groups. The fuser
//! adapter sets the caller around each call into the core; calls into the
//! core are synchronous up to the send, so a thread-local is exact even
//! when the session runs on several threads.

use std::cell::RefCell;
use std::sync::Arc;

/// Who makes the requests sent from a thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups, at most `MAX_GROUPS`.
    pub(crate) groups: Arc<[u32]>,
}

thread_local! {
    /// The caller of the kernel request being handled on this thread.
    static CALLER: RefCell<Option<Caller>> = const { RefCell::new(None) };
}

/// Sets the caller of the requests sent from this thread until the guard
/// drops.
pub(crate) fn with_caller(caller: Caller) -> CallerGuard {
    CALLER.with(|c| *c.borrow_mut() = Some(caller));
    CallerGuard(())
}

/// The caller set on this thread, if any.
pub(super) fn current() -> Option<Caller> {
    CALLER.with(|c| c.borrow().clone())
}

/// Clears the thread's caller when dropped.
pub(crate) struct CallerGuard(());

impl Drop for CallerGuard {
    fn drop(&mut self) {
        CALLER.with(|c| *c.borrow_mut() = None);
    }
}
