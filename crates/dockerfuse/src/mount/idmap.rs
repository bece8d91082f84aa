//! How a container's user ids map to the host's, for the log: rootless
//! Docker and rootless Podman (and dockerd's `userns-remap`) run the
//! container in a user namespace where uid 0 is an unprivileged host user
//! (the engine's own user, for a rootless engine) and the other ids are
//! that user's subordinate ids (`/etc/subuid`). The mount shows the
//! container's own ids, as `docker exec ls -l` does, unless `--idmap`
//! swaps the satellite's user and group with the caller's ([`Swap`]), as
//! sshfs's `-o idmap=user`.

use std::sync::OnceLock;

/// `--idmap`: the satellite's ids shown as ours, and ours sent as its.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swap {
    /// The satellite's uid and gid (in the container).
    pub theirs: (u32, u32),
    /// This process's uid and gid (on the host).
    pub ours: (u32, u32),
}

impl Swap {
    /// The owner to show for a file the satellite reports.
    pub(crate) fn shown(&self, uid: u32, gid: u32) -> (u32, u32) {
        (
            if uid == self.theirs.0 {
                self.ours.0
            } else {
                uid
            },
            if gid == self.theirs.1 {
                self.ours.1
            } else {
                gid
            },
        )
    }

    /// The owner to send for a chown the kernel asks for.
    pub(crate) fn stored(&self, uid: Option<u32>, gid: Option<u32>) -> (Option<u32>, Option<u32>) {
        (
            uid.map(|u| if u == self.ours.0 { self.theirs.0 } else { u }),
            gid.map(|g| if g == self.ours.1 { self.theirs.1 } else { g }),
        )
    }
}

static SWAP: OnceLock<Swap> = OnceLock::new();

/// Turns `--idmap` on for this process's mount (once).
pub(crate) fn enable(swap: Swap) {
    let _ = SWAP.set(swap);
}

/// The swap in force, if any.
pub(crate) fn swap() -> Option<&'static Swap> {
    SWAP.get()
}

/// One line of `/proc/PID/uid_map`: inside, outside, count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub inside: u64,
    pub outside: u64,
    pub count: u64,
}

/// The ranges of a `uid_map`/`gid_map` text (malformed lines are skipped).
pub(crate) fn parse(text: &str) -> Vec<Range> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|w| w.parse::<u64>());
            match (f.next(), f.next(), f.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) => Some(Range {
                    inside,
                    outside,
                    count,
                }),
                _ => None,
            }
        })
        .collect()
}

/// True for the identity map of the initial namespace.
fn is_identity(r: &[Range]) -> bool {
    r.len() == 1 && r[0].inside == 0 && r[0].outside == 0 && r[0].count >= u64::from(u32::MAX)
}

/// The sentence for a map, `None` for the identity map.
pub(crate) fn sentence(uids: &[Range], host_uid: u32) -> Option<String> {
    if uids.is_empty() || is_identity(uids) {
        return None;
    }
    let ranges: Vec<String> = uids
        .iter()
        .map(|r| {
            if r.count == 1 {
                format!("{} -> {}", r.inside, r.outside)
            } else {
                format!(
                    "{}-{} -> {}-{}",
                    r.inside,
                    r.inside + r.count - 1,
                    r.outside,
                    r.outside + r.count - 1
                )
            }
        })
        .collect();
    let root = uids.iter().find(|r| r.inside == 0).map(|r| r.outside);
    let whose = match root {
        Some(o) if o == u64::from(host_uid) => format!("the container's root is you (uid {o})"),
        Some(o) => format!("the container's root is host uid {o}"),
        None => "the container's root is not mapped".to_owned(),
    };
    Some(format!(
        "rootless engine (user namespace): {whose}; container uids map to host uids {}; \
         the mount shows the container's own ids",
        ranges.join(", ")
    ))
}

/// The sentence for the container whose first process is `pid`, if it
/// runs in a user namespace and its map can be read.
pub(crate) fn describe(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    // SAFETY: getuid has no preconditions and cannot fail.
    sentence(&parse(&text), unsafe { libc::getuid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_swap_goes_both_ways_and_leaves_other_ids() {
        let s = Swap {
            theirs: (0, 0),
            ours: (1000, 100),
        };
        assert_eq!(s.shown(0, 0), (1000, 100));
        assert_eq!(s.shown(33, 0), (33, 100));
        assert_eq!(s.stored(Some(1000), Some(100)), (Some(0), Some(0)));
        assert_eq!(s.stored(Some(5), None), (Some(5), None));
    }

    #[test]
    fn the_initial_namespace_says_nothing() {
        let r = parse("         0          0 4294967295\n");
        assert!(sentence(&r, 0).is_none());
    }

    #[test]
    fn a_rootless_map_names_the_user_and_the_ranges() {
        let r = parse("0 1001 1\n1 231072 65536\nbad line\n");
        assert_eq!(r.len(), 2);
        let s = sentence(&r, 1001).unwrap();
        assert!(s.contains("the container's root is you (uid 1001)"), "{s}");
        assert!(s.contains("0 -> 1001, 1-65536 -> 231072-296607"), "{s}");
        let s = sentence(&r, 0).unwrap();
        assert!(s.contains("host uid 1001"), "{s}");
    }
}
