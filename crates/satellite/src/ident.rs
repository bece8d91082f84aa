//! Performing a request as the host user who made it (`--allow-other`).
//!
//! The host wraps requests in `Request::As { uid, gid, .. }`. A satellite
//! running as root switches the worker thread's fsuid/fsgid to them and
//! clears its supplementary groups for the duration of the request, so
//! the container's kernel checks permissions for that user and new files
//! get that owner. fsuid, fsgid and the group list are per-thread
//! credentials, which fits the worker pool: each worker serves one request
//! at a time and restores root's credentials before taking the next. A
//! satellite that is not root performs every request as itself.

use dockerfuse_proto::Errno;

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

    /// Switches the calling thread to `uid`/`gid` until the guard drops.
    pub(crate) fn switch(&self, uid: u32, gid: u32) -> Result<Switched<'_>, Errno> {
        if !self.root || (uid == 0 && gid == 0) {
            return Ok(Switched { id: None });
        }
        let guard = Switched { id: Some(self) };
        sys::set_thread_groups(&[])?;
        sys::set_thread_fs_ids(uid, gid)?;
        Ok(guard)
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
