//! Performing a request as the host user who made it (`--allow-other`).
//!
//! The host wraps requests in `Request::As { uid, gid, groups, .. }`. A
//! satellite running as root switches the worker thread's fsuid, fsgid and
//! supplementary groups to them for the duration of the request, so the
//! container's kernel checks permissions for that user (group rights
//! included) and new files get that owner. These are per-thread
//! credentials when set with the raw system calls (libc's `setgroups`
//! would change every thread), which fits the worker pool: each worker
//! serves one request at a time and restores root's credentials before
//! taking the next.
//!
//! A thread whose fsuid is not 0 has no CAP_FSETID (the kernel drops the
//! filesystem capabilities with the switch), so the container's kernel
//! itself clears setuid/setgid on the caller's writes, truncations and
//! chowns, by its own rules. A satellite that is not root performs every
//! request as itself.

use dockerfuse_proto::{Errno, MAX_GROUPS};

use crate::sys;

/// Who the satellite is, captured once at start.
pub(crate) struct Identity {
    root: bool,
    groups: Vec<libc::gid_t>,
}

impl Identity {
    pub(crate) fn current() -> Identity {
        let (uid, _) = sys::getuid_gid();
        Identity {
            root: uid == 0,
            groups: sys::getgroups(),
        }
    }

    /// Switches the calling thread to `uid`/`gid` with supplementary
    /// `groups` until the guard drops. Root (uid and gid 0) keeps the
    /// satellite's own credentials.
    pub(crate) fn switch(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<Switched<'_>, Errno> {
        if groups.len() > MAX_GROUPS {
            return Err(Errno::EINVAL);
        }
        if !self.root || (uid == 0 && gid == 0) {
            return Ok(Switched { id: None });
        }
        let guard = Switched { id: Some(self) };
        sys::set_thread_groups(groups)?;
        sys::set_thread_fs_ids(uid, gid)?;
        Ok(guard)
    }
}

impl Identity {
    /// Runs `f` with the satellite's own credentials when the thread is
    /// switched to a caller, then switches back. For what the kernel gates
    /// on the host already: the entries of a readdirplus in a directory the
    /// caller may read but not search (direct access lists those names; the
    /// host kernel checks search permission on every path walk to them).
    pub(crate) fn as_self<R>(&self, f: impl FnOnce() -> R) -> R {
        let (uid, gid) = sys::thread_fs_ids();
        if !self.root || (uid == 0 && gid == 0) {
            return f();
        }
        let groups = sys::getgroups();
        let restore = |ok: Result<(), Errno>| {
            if ok.is_err() {
                eprintln!("dockerfuse-satellite: cannot switch credentials; exiting");
                std::process::exit(1);
            }
        };
        restore(sys::set_thread_fs_ids(0, 0).and_then(|_| sys::set_thread_groups(&self.groups)));
        let r = f();
        restore(sys::set_thread_groups(&groups).and_then(|_| sys::set_thread_fs_ids(uid, gid)));
        r
    }
}

/// Restores root's filesystem ids and groups on drop.
pub(crate) struct Switched<'a> {
    id: Option<&'a Identity>,
}

impl Drop for Switched<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let back =
                sys::set_thread_fs_ids(0, 0).and_then(|_| sys::set_thread_groups(&id.groups));
            if back.is_err() {
                // A worker that cannot get root's credentials back would
                // serve later requests as the wrong user: stop instead.
                eprintln!("dockerfuse-satellite: cannot restore root credentials; exiting");
                std::process::exit(1);
            }
        }
    }
}
