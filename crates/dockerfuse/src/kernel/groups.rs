//! The supplementary groups of the process behind a kernel request.
//!
//! FUSE tells a request's fsuid, fsgid and pid (the calling thread's id),
//! not its groups. With `--allow-other` they are read from
//! `/proc/<pid>/status` and kept for [`TTL`] per pid (at most
//! [`CAPACITY`] pids), so a busy process costs one read a second. The
//! status must show the same fsuid/fsgid as the request; when the process
//! is gone, is not visible from here (another pid namespace: pid 0), or
//! shows other ids (it changed them since), the request carries no groups.
//! A process in more than `MAX_GROUPS` groups carries the first
//! `MAX_GROUPS` of them, as the kernel lists them (ascending).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockerfuse_proto::MAX_GROUPS;

use crate::fs::Caller;

/// How long the groups read for a pid are reused.
pub(crate) const TTL: Duration = Duration::from_secs(1);
/// Most pids remembered at once.
pub(crate) const CAPACITY: usize = 1024;
/// Bytes of a status file read: far past the Groups line of 64 groups.
const STATUS_MAX: u64 = 16 * 1024;

struct Cached {
    at: Instant,
    uid: u32,
    gid: u32,
    groups: Arc<[u32]>,
}

/// Groups of recent callers, by pid.
#[derive(Default)]
pub(crate) struct CallerGroups {
    by_pid: Mutex<HashMap<u32, Cached>>,
}

impl CallerGroups {
    /// The caller of a request from `pid` with fsuid `uid` and fsgid `gid`.
    pub(crate) fn caller(&self, pid: u32, uid: u32, gid: u32) -> Caller {
        let groups = self.groups(pid, uid, gid).unwrap_or_else(|| Arc::from([]));
        Caller {
            uid,
            gid,
            groups,
            pid,
        }
    }

    fn groups(&self, pid: u32, uid: u32, gid: u32) -> Option<Arc<[u32]>> {
        if pid == 0 {
            return None;
        }
        let now = Instant::now();
        {
            let map = self.by_pid.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = map.get(&pid) {
                if c.uid == uid && c.gid == gid && now.duration_since(c.at) < TTL {
                    return Some(c.groups.clone());
                }
            }
        }
        let groups: Arc<[u32]> = read_status(pid)
            .and_then(|s| groups_of(&s, uid, gid))?
            .into();
        let mut map = self.by_pid.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, c| now.duration_since(c.at) < TTL);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(
            pid,
            Cached {
                at: now,
                uid,
                gid,
                groups: groups.clone(),
            },
        );
        Some(groups)
    }
}

/// The start of `/proc/<pid>/status`, if the process is there.
fn read_status(pid: u32) -> Option<String> {
    let f = std::fs::File::open(format!("/proc/{pid}/status")).ok()?;
    let mut s = String::new();
    f.take(STATUS_MAX).read_to_string(&mut s).ok()?;
    Some(s)
}

/// The groups a status file lists, if its fsuid and fsgid (the fourth
/// column of `Uid:` and `Gid:`) are `uid` and `gid`; at most `MAX_GROUPS`.
pub(crate) fn groups_of(status: &str, uid: u32, gid: u32) -> Option<Vec<u32>> {
    let fs_id = |key: &str| -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().nth(3)?.parse().ok()
    };
    if fs_id("Uid:")? != uid || fs_id("Gid:")? != gid {
        return None;
    }
    let start = status.find("\nGroups:")? + "\nGroups:".len();
    let rest = &status[start..];
    // A line cut by the read limit: drop its last, maybe partial, number.
    let (line, whole) = match rest.find('\n') {
        Some(end) => (&rest[..end], true),
        None => (rest, false),
    };
    let mut tokens: Vec<&str> = line.split_whitespace().collect();
    if !whole {
        tokens.pop();
    }
    let mut groups = Vec::new();
    for t in tokens.into_iter().take(MAX_GROUPS) {
        groups.push(t.parse().ok()?);
    }
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t1000\t1000\t1000\t1001\nGid:\t100\t100\t100\t101\n\
        FDSize:\t64\nGroups:\t10 20 65534 \nNStgid:\t7\n";

    #[test]
    fn groups_come_with_matching_fs_ids_only() {
        assert_eq!(groups_of(STATUS, 1001, 101), Some(vec![10, 20, 65534]));
        // The real/effective ids are not what FUSE reports.
        assert_eq!(groups_of(STATUS, 1000, 100), None);
        assert_eq!(groups_of(STATUS, 1001, 100), None);
        assert_eq!(groups_of("Name:\tx\n", 0, 0), None);
    }

    #[test]
    fn no_groups_and_cut_lines() {
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(groups_of(none, 0, 0), Some(vec![]));
        let cut = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t1 2 34";
        assert_eq!(groups_of(cut, 0, 0), Some(vec![1, 2]));
        let bad = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t1 x\n";
        assert_eq!(groups_of(bad, 0, 0), None);
    }

    #[test]
    fn more_than_the_cap_keeps_the_first() {
        let list: Vec<String> = (1..=100).map(|g| g.to_string()).collect();
        let s = format!(
            "Uid:\t5\t5\t5\t5\nGid:\t6\t6\t6\t6\nGroups:\t{}\n",
            list.join(" ")
        );
        let got = groups_of(&s, 5, 6).unwrap();
        assert_eq!(got.len(), MAX_GROUPS);
        assert_eq!(got[0], 1);
        assert_eq!(got[MAX_GROUPS - 1], MAX_GROUPS as u32);
    }

    #[test]
    fn this_process_is_read_and_cached() {
        let me = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let fs_id = |key: &str| -> u32 {
            let l = me.lines().find_map(|l| l.strip_prefix(key)).unwrap();
            l.split_whitespace().nth(3).unwrap().parse().unwrap()
        };
        let (uid, gid) = (fs_id("Uid:"), fs_id("Gid:"));
        let want = groups_of(&me, uid, gid).unwrap();
        let cache = CallerGroups::default();
        let pid = std::process::id();
        let c = cache.caller(pid, uid, gid);
        assert_eq!((c.uid, c.gid, &c.groups[..]), (uid, gid, &want[..]));
        // Cached: the same list comes back without another read.
        let again = cache.caller(pid, uid, gid);
        assert!(Arc::ptr_eq(&c.groups, &again.groups));
        // Other ids than the process has: no groups.
        assert!(cache.caller(pid, uid + 1, gid).groups.is_empty());
        // A pid that is not there, or not visible (0): no groups.
        assert!(cache.caller(0, uid, gid).groups.is_empty());
        assert!(cache.caller(u32::MAX, uid, gid).groups.is_empty());
    }
}
