//! The host user on whose behalf the current thread sends requests.
//!
//! With `--allow-other` each request is performed in the container as the
//! host user who made it. The fuser adapter sets the caller around each
//! call into the core; calls into the core are synchronous up to the send,
//! so a thread-local is exact even when the session runs on several
//! threads.

use std::cell::Cell;

thread_local! {
    /// The (uid, gid) of the kernel request being handled on this thread.
    static CALLER: Cell<Option<(u32, u32)>> = const { Cell::new(None) };
}

/// Sets the caller of the requests sent from this thread until the guard
/// drops.
pub(crate) fn with_caller(uid: u32, gid: u32) -> CallerGuard {
    CALLER.with(|c| c.set(Some((uid, gid))));
    CallerGuard(())
}

/// The caller set on this thread, if any.
pub(super) fn current() -> Option<(u32, u32)> {
    CALLER.with(|c| c.get())
}

/// Clears the thread's caller when dropped.
pub(crate) struct CallerGuard(());

impl Drop for CallerGuard {
    fn drop(&mut self) {
        CALLER.with(|c| c.set(None));
    }
}
