//! Sequences run as a caller, as a mount with `--allow-other` performs
//! the requests of another user.
//!
//! Through the core, each step is sent as the caller ([`Who::Caller`]),
//! and the satellite, root as the test process, switches its worker to
//! the caller's credentials. Directly, the twin runs on a thread of its
//! own whose fsuid, fsgid and supplementary groups are switched to the
//! caller's around each step with the raw per-thread system calls (libc's
//! `setgroups` would change every thread of the test process), so the
//! kernel checks permissions and clears setuid/setgid for that user on
//! both sides. Root's setup steps ([`Op::by_root`]) run as the test
//! process on both sides.
//!
//! A test process that is not root cannot switch: the caller is then
//! the test process's own user, and the sequences still run (and say so).
//!
//! [`Who::Caller`]: crate::fs::Who::Caller

use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;

use super::ops::{Group, Op, Outcome, User};
use super::twin::TwinDir;
use crate::fs::Caller;

/// The caller when the test process is root: uid, gid, groups.
const CALLER: (u32, u32, [u32; 2]) = (3000, 2000, [2000, 2001]);
/// A user who is neither root nor the caller.
const OTHER_UID: u32 = 3001;
/// A group the caller is not in.
const FOREIGN_GID: u32 = 2002;

/// The ids of a caller's sequence.
pub(crate) struct Ids {
    /// Whether credentials are switched (the test process is root).
    pub(crate) switching: bool,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// The test process's own supplementary groups, restored after a step.
    own_groups: Vec<u32>,
}

fn getgroups() -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: the buffer holds `groups.len()` gids.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    assert!(n >= 0, "getgroups: {}", std::io::Error::last_os_error());
    groups.truncate(n as usize);
    groups
}

impl Ids {
    pub(crate) fn get() -> &'static Ids {
        static IDS: OnceLock<Ids> = OnceLock::new();
        IDS.get_or_init(|| {
            // SAFETY: plain system calls without arguments.
            let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let own_groups = getgroups();
            if euid == 0 {
                let (uid, gid, groups) = CALLER;
                Ids {
                    switching: true,
                    uid,
                    gid,
                    groups: groups.to_vec(),
                    own_groups,
                }
            } else {
                Ids {
                    switching: false,
                    uid: euid,
                    gid: egid,
                    groups: own_groups.clone(),
                    own_groups,
                }
            }
        })
    }

    pub(crate) fn caller(&self) -> Caller {
        Caller {
            uid: self.uid,
            gid: self.gid,
            groups: Arc::from(self.groups.as_slice()),
            pid: std::process::id(),
        }
    }

    /// The test process's own user when it is not root (whose access the
    /// kernel checks), as a caller.
    pub(crate) fn own(&self) -> Option<Caller> {
        (!self.switching).then(|| self.caller())
    }

    /// Whether the test's own user may list and search a directory with
    /// this owner and mode (always, as root). The snapshots of a test that
    /// is not root record other directories as refused on both sides.
    pub(crate) fn own_may_list(&self, stat: &super::ops::Stat) -> bool {
        let Some(c) = self.own() else { return true };
        let bits = if c.uid == stat.uid {
            stat.perm >> 6
        } else if c.gid == stat.gid || c.groups.contains(&stat.gid) {
            stat.perm >> 3
        } else {
            stat.perm
        };
        bits & 0o5 == 0o5
    }

    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    pub(crate) fn user(&self, u: User) -> u32 {
        match u {
            User::Root => 0,
            User::Caller => self.uid,
            User::Other => OTHER_UID,
        }
    }

    pub(crate) fn group(&self, g: Group) -> u32 {
        match g {
            Group::Root => 0,
            Group::Primary => self.gid,
            Group::Supplementary => self
                .groups
                .iter()
                .copied()
                .find(|&g| g != self.gid)
                .unwrap_or(self.gid),
            Group::Foreign => FOREIGN_GID,
        }
    }

    /// Makes the temp dir `tmp` searchable and the served and twin
    /// roots the caller's own, so that the caller works in them.
    pub(crate) fn prepare(&self, tmp: &std::path::Path, roots: [&std::path::Path; 2]) {
        use std::os::unix::fs::PermissionsExt;
        if !self.switching {
            return;
        }
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755))
            .expect("open the temp dir to the caller");
        for r in roots {
            std::os::unix::fs::chown(r, Some(self.uid), Some(self.gid))
                .expect("give a root to the caller");
        }
    }
}

/// Sets the calling thread's supplementary groups, fsgid and fsuid, and
/// checks that the ids took (setfsuid/setfsgid report no error).
fn switch_thread(uid: u32, gid: u32, groups: &[u32]) -> Result<(), String> {
    // SAFETY: setgroups takes (size_t, const gid_t *) and reads
    // `groups.len()` gids; setfsuid/setfsgid take plain integers (an
    // invalid id changes nothing and returns the current one).
    unsafe {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
            return Err(format!("setgroups: {}", std::io::Error::last_os_error()));
        }
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
        let now_gid = libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32;
        let now_uid = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
        if (now_uid, now_gid) != (uid, gid) {
            return Err(format!("fs ids are {now_uid}/{now_gid}, not {uid}/{gid}"));
        }
    }
    Ok(())
}

/// The twin side: the twin applied here, or on a thread of its own
/// that takes the caller's credentials for each caller's step.
pub(super) enum Twin {
    Here(TwinDir),
    Caller {
        steps: mpsc::Sender<(Op, bool)>,
        outcomes: mpsc::Receiver<Outcome>,
        thread: Option<JoinHandle<()>>,
    },
}

impl Twin {
    /// A twin whose caller's steps run as the caller.
    pub(super) fn as_caller(mut twin: TwinDir) -> Twin {
        let (steps, rx) = mpsc::channel::<(Op, bool)>();
        let (tx, outcomes) = mpsc::channel();
        let ids = Ids::get();
        let thread = std::thread::Builder::new()
            .name("model-caller".into())
            .spawn(move || {
                for (op, as_caller) in rx {
                    let switch = as_caller && ids.switching;
                    if switch {
                        switch_thread(ids.uid, ids.gid, &ids.groups)
                            .unwrap_or_else(|e| panic!("cannot switch to the caller: {e}"));
                    }
                    let out = twin.apply(&op);
                    if switch {
                        // A thread that cannot switch back dies here: it
                        // never performs a root step as the caller.
                        switch_thread(0, 0, &ids.own_groups)
                            .unwrap_or_else(|e| panic!("cannot switch back to root: {e}"));
                    }
                    if tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .expect("start the caller's thread");
        Twin::Caller {
            steps,
            outcomes,
            thread: Some(thread),
        }
    }

    /// Applies `op`: as the caller when `as_caller` on a caller's twin.
    pub(super) fn apply(&mut self, op: &Op, as_caller: bool) -> Outcome {
        match self {
            Twin::Here(d) => d.apply(op),
            Twin::Caller {
                steps, outcomes, ..
            } => {
                steps
                    .send((op.clone(), as_caller))
                    .expect("the caller's thread is alive");
                outcomes.recv().expect("the caller's thread answers")
            }
        }
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        if let Twin::Caller { steps, thread, .. } = self {
            // Closing the channel ends the thread.
            let (closed, _) = mpsc::channel();
            drop(std::mem::replace(steps, closed));
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}
