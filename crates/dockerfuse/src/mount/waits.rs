//! Counts of waits: how many kernel requests of each kind the mount
//! answered, how many of them waited for a round trip to the satellite,
//! and how many requests of each kind went to the satellite.
//!
//! A *wait* is a kernel request whose answer needed the satellite: its
//! handler sent a request expecting an answer ([`sent`] with `awaited`),
//! or queued one behind the writes in flight ([`deferred`]). Requests the
//! handler does not wait for (write-behind batches, releases, forgets)
//! are sent but are no wait; a kernel request that waits for two round
//! trips one after the other is one wait (the second one goes from the
//! transport's thread, after the handler returned) and two requests sent.
//! A kernel request answered from a round trip another request already
//! started is not counted as a wait.
//!
//! The fuser adapter marks each kernel request with [`kernel`] (a guard
//! for the handler's thread); the transport calls [`sent`] for every frame
//! it sends. Counting is a few relaxed atomic additions; the counts are
//! process-wide (one process serves one mount). `-debug` logs them at
//! unmount and `dockerfuse stats MOUNTPOINT` asks the serving process for
//! them (see [`crate::mount::stats`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use dockerfuse_proto::Request;
use serde::{Deserialize, Serialize};

macro_rules! kinds {
    ($enum:ident, $names:ident, $count:ident: $($v:ident = $n:literal),+ $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $enum { $($v),+ }
        const $names: &[&str] = &[$($n),+];
        const $count: usize = $names.len();
    };
}

kinds!(Op, OP_NAMES, OPS:
    Lookup = "LOOKUP", Forget = "FORGET", GetAttr = "GETATTR", SetAttr = "SETATTR",
    ReadLink = "READLINK", Mknod = "MKNOD", Mkdir = "MKDIR", Unlink = "UNLINK",
    Rmdir = "RMDIR", Symlink = "SYMLINK", Rename = "RENAME", Link = "LINK",
    Open = "OPEN", Read = "READ", Write = "WRITE", Flush = "FLUSH",
    Release = "RELEASE", Fsync = "FSYNC", OpenDir = "OPENDIR", ReadDir = "READDIR",
    ReadDirPlus = "READDIRPLUS", ReleaseDir = "RELEASEDIR", FsyncDir = "FSYNCDIR",
    StatFs = "STATFS", SetXattr = "SETXATTR", GetXattr = "GETXATTR",
    ListXattr = "LISTXATTR", RemoveXattr = "REMOVEXATTR", Access = "ACCESS",
    Create = "CREATE", Fallocate = "FALLOCATE", Lseek = "LSEEK",
    CopyFileRange = "COPY_FILE_RANGE", Ioctl = "IOCTL", Poll = "POLL",
);

kinds!(Kind, KIND_NAMES, KINDS:
    Hello = "Hello", Lookup = "Lookup", Forget = "Forget", GetAttr = "GetAttr",
    SetAttr = "SetAttr", ReadLink = "ReadLink", Symlink = "Symlink", Mknod = "Mknod",
    Mkdir = "Mkdir", Unlink = "Unlink", Rmdir = "Rmdir", Rename = "Rename",
    Link = "Link", Open = "Open", Create = "Create", Read = "Read", Write = "Write",
    Flush = "Flush", Release = "Release", Fsync = "Fsync", OpenDir = "OpenDir",
    ReadDir = "ReadDir", ReleaseDir = "ReleaseDir", FsyncDir = "FsyncDir",
    StatFs = "StatFs", Access = "Access", GetXattr = "GetXattr",
    ListXattr = "ListXattr", SetXattr = "SetXattr", RemoveXattr = "RemoveXattr",
    Fallocate = "Fallocate", Lseek = "Lseek", CopyFileRange = "CopyFileRange",
    RemovePaths = "RemovePaths", Shutdown = "Shutdown", OpenChannel = "OpenChannel",
    UseChannel = "UseChannel", Watch = "Watch", OpenSmall = "OpenSmall",
    ReleaseMany = "ReleaseMany", OpenReadDir = "OpenReadDir", Stream = "Stream",
);

/// The kind of a satellite request (one sent on behalf of a caller
/// counts as what it wraps).
fn kind(req: &Request<'_>) -> Kind {
    match req {
        Request::Hello(_) => Kind::Hello,
        Request::Lookup { .. } => Kind::Lookup,
        Request::Forget { .. } => Kind::Forget,
        Request::GetAttr { .. } => Kind::GetAttr,
        Request::SetAttr { .. } => Kind::SetAttr,
        Request::ReadLink { .. } => Kind::ReadLink,
        Request::Symlink { .. } => Kind::Symlink,
        Request::Mknod { .. } => Kind::Mknod,
        Request::Mkdir { .. } => Kind::Mkdir,
        Request::Unlink { .. } => Kind::Unlink,
        Request::Rmdir { .. } => Kind::Rmdir,
        Request::Rename { .. } => Kind::Rename,
        Request::Link { .. } => Kind::Link,
        Request::Open { .. } => Kind::Open,
        Request::Create { .. } => Kind::Create,
        Request::Read { .. } => Kind::Read,
        Request::Write { .. } => Kind::Write,
        Request::Flush { .. } => Kind::Flush,
        Request::Release { .. } => Kind::Release,
        Request::Fsync { .. } => Kind::Fsync,
        Request::OpenDir { .. } => Kind::OpenDir,
        Request::OpenReadDir { .. } => Kind::OpenReadDir,
        Request::CreateNew { .. } => Kind::Create,
        Request::MkdirNew { .. } => Kind::Mkdir,
        Request::SymlinkNew { .. } => Kind::Symlink,
        Request::ReadDir { .. } => Kind::ReadDir,
        Request::ReleaseDir { .. } => Kind::ReleaseDir,
        Request::FsyncDir { .. } => Kind::FsyncDir,
        Request::StatFs { .. } => Kind::StatFs,
        Request::Access { .. } => Kind::Access,
        Request::GetXattr { .. } => Kind::GetXattr,
        Request::ListXattr { .. } => Kind::ListXattr,
        Request::SetXattr { .. } => Kind::SetXattr,
        Request::RemoveXattr { .. } => Kind::RemoveXattr,
        Request::Fallocate { .. } => Kind::Fallocate,
        Request::Lseek { .. } => Kind::Lseek,
        Request::CopyFileRange { .. } => Kind::CopyFileRange,
        Request::RemovePaths { .. } => Kind::RemovePaths,
        Request::Shutdown => Kind::Shutdown,
        Request::As { req, .. } => kind(req),
        Request::OpenChannel => Kind::OpenChannel,
        Request::UseChannel { .. } => Kind::UseChannel,
        Request::Watch => Kind::Watch,
        Request::OpenSmall { .. } => Kind::OpenSmall,
        Request::ReleaseMany { .. } => Kind::ReleaseMany,
        Request::Stream { .. } => Kind::Stream,
    }
}

/// The counters of one process (or of one test).
pub(crate) struct Counters {
    requests: [AtomicU64; OPS],
    waits: [AtomicU64; OPS],
    sent: [AtomicU64; KINDS],
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            requests: [const { AtomicU64::new(0) }; OPS],
            waits: [const { AtomicU64::new(0) }; OPS],
            sent: [const { AtomicU64::new(0) }; KINDS],
        }
    }

    /// What was counted so far (kinds never seen left out).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ops: Vec<OpCount> = OP_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| OpCount {
                op: (*name).to_owned(),
                requests: get(&self.requests[i]),
                waits: get(&self.waits[i]),
            })
            .filter(|c| c.requests > 0 || c.waits > 0)
            .collect();
        let sent: Vec<SentCount> = KIND_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| SentCount {
                request: (*name).to_owned(),
                sent: get(&self.sent[i]),
            })
            .filter(|c| c.sent > 0)
            .collect();
        Snapshot {
            requests: ops.iter().map(|c| c.requests).sum(),
            waits: ops.iter().map(|c| c.waits).sum(),
            sent_total: sent.iter().map(|c| c.sent).sum(),
            ops,
            sent,
        }
    }
}

static COUNTERS: Counters = Counters::new();

/// The counters of this process.
pub(crate) fn counters() -> &'static Counters {
    &COUNTERS
}

/// The kernel request the current thread is answering, and whether it
/// waited already.
#[derive(Clone, Copy)]
struct Current {
    op: Option<Op>,
    waited: bool,
    counters: &'static Counters,
}

thread_local! {
    static CURRENT: Cell<Current> = const {
        Cell::new(Current { op: None, waited: false, counters: &COUNTERS })
    };
}

/// Marks the current thread's work until dropped (restores what was before).
#[must_use]
pub(crate) struct Scope(Current);

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

fn enter(next: Current) -> Scope {
    Scope(CURRENT.with(|c| c.replace(next)))
}

/// A kernel request of kind `op` is being answered on this thread.
pub(crate) fn kernel(op: Op) -> Scope {
    kernel_in(&COUNTERS, op)
}

fn kernel_in(counters: &'static Counters, op: Op) -> Scope {
    counters.requests[op as usize].fetch_add(1, Ordering::Relaxed);
    enter(Current {
        op: Some(op),
        waited: false,
        counters,
    })
}

/// What this thread sends until dropped is not waited for by the kernel
/// request it answers (a write-behind batch).
pub(crate) fn background() -> Scope {
    let now = CURRENT.with(Cell::get);
    enter(Current { op: None, ..now })
}

/// The kernel request answered on this thread waits for a round trip.
fn waited() {
    CURRENT.with(|c| {
        let mut cur = c.get();
        if let (Some(op), false) = (cur.op, cur.waited) {
            cur.counters.waits[op as usize].fetch_add(1, Ordering::Relaxed);
            cur.waited = true;
            c.set(cur);
        }
    })
}

/// The kernel request answered on this thread was queued behind the
/// writes in flight and a request sent after them: a wait.
pub(crate) fn deferred() {
    waited();
}

/// `req` goes to the satellite; `awaited`: its answer is waited for (a
/// call, not a post).
pub(crate) fn sent(req: &Request<'_>, awaited: bool) {
    let counters = CURRENT.with(|c| c.get().counters);
    counters.sent[kind(req) as usize].fetch_add(1, Ordering::Relaxed);
    if awaited {
        waited();
    }
}

/// One kernel operation's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpCount {
    pub op: String,
    pub requests: u64,
    pub waits: u64,
}

/// One satellite request kind's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SentCount {
    pub request: String,
    pub sent: u64,
}

/// The counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    /// Kernel requests answered.
    pub requests: u64,
    /// Those that waited for the satellite.
    pub waits: u64,
    /// Requests sent to the satellite.
    pub sent_total: u64,
    pub ops: Vec<OpCount>,
    pub sent: Vec<SentCount>,
}

impl Snapshot {
    /// One line: totals, then `OP waits/requests` for the ops that waited,
    /// then the satellite requests by kind.
    pub(crate) fn line(&self) -> String {
        let mut s = format!(
            "{} kernel requests, {} waited for the satellite; {} satellite requests",
            self.requests, self.waits, self.sent_total
        );
        let waited: Vec<String> = self
            .ops
            .iter()
            .filter(|c| c.waits > 0)
            .map(|c| format!("{} {}/{}", c.op, c.waits, c.requests))
            .collect();
        if !waited.is_empty() {
            s += &format!("; waits/requests: {}", waited.join(" "));
        }
        let sent: Vec<String> = self
            .sent
            .iter()
            .map(|c| format!("{} {}", c.request, c.sent))
            .collect();
        if !sent.is_empty() {
            s += &format!("; sent: {}", sent.join(" "));
        }
        s
    }

    /// A table for people: kernel operations, then satellite requests.
    pub(crate) fn table(&self) -> String {
        let mut out = format!("{:<16} {:>10} {:>10}\n", "KERNEL OP", "REQUESTS", "WAITS");
        for c in &self.ops {
            out += &format!("{:<16} {:>10} {:>10}\n", c.op, c.requests, c.waits);
        }
        out += &format!("{:<16} {:>10} {:>10}\n", "total", self.requests, self.waits);
        out += &format!("\n{:<16} {:>10}\n", "SATELLITE REQ", "SENT");
        for c in &self.sent {
            out += &format!("{:<16} {:>10}\n", c.request, c.sent);
        }
        out += &format!("{:<16} {:>10}\n", "total", self.sent_total);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockerfuse_proto::Request;

    fn leak() -> &'static Counters {
        Box::leak(Box::new(Counters::new()))
    }

    fn find(s: &Snapshot, op: &str) -> (u64, u64) {
        s.ops
            .iter()
            .find(|c| c.op == op)
            .map(|c| (c.requests, c.waits))
            .unwrap_or((0, 0))
    }

    fn sent_of(s: &Snapshot, kind: &str) -> u64 {
        s.sent
            .iter()
            .find(|c| c.request == kind)
            .map_or(0, |c| c.sent)
    }

    #[test]
    fn names_match_the_enums() {
        assert_eq!(OP_NAMES[Op::CopyFileRange as usize], "COPY_FILE_RANGE");
        assert_eq!(OP_NAMES[Op::Poll as usize], "POLL");
        assert_eq!(OP_NAMES[Op::Lookup as usize], "LOOKUP");
        assert_eq!(KIND_NAMES[Kind::ReleaseMany as usize], "ReleaseMany");
        assert_eq!(KIND_NAMES[Kind::OpenSmall as usize], "OpenSmall");
    }

    #[test]
    fn a_call_in_a_handler_is_one_wait_a_post_none() {
        let c = leak();
        {
            let _k = kernel_in(c, Op::Lookup);
            sent(&Request::GetAttr { node: 1, fh: None }, true);
            // A second round trip of the same kernel request: one wait.
            sent(&Request::GetAttr { node: 1, fh: None }, true);
        }
        {
            let _k = kernel_in(c, Op::Release);
            sent(&Request::ReleaseMany { fhs: vec![1] }, false);
        }
        {
            // Answered on the host.
            let _k = kernel_in(c, Op::Lookup);
        }
        let s = c.snapshot();
        assert_eq!(find(&s, "LOOKUP"), (2, 1));
        assert_eq!(find(&s, "RELEASE"), (1, 0));
        assert_eq!(sent_of(&s, "GetAttr"), 2);
        assert_eq!(sent_of(&s, "ReleaseMany"), 1);
        assert_eq!((s.requests, s.waits, s.sent_total), (3, 1, 3));
    }

    #[test]
    fn background_sends_and_other_threads_are_no_wait() {
        let c = leak();
        {
            let _k = kernel_in(c, Op::Write);
            {
                let _b = background();
                sent(&Request::Flush { fh: 1 }, true);
            }
            // Outside of any kernel request (a transport thread): no wait,
            // and counted in the process's counters, not this test's.
            std::thread::spawn(|| sent(&Request::Flush { fh: 2 }, true))
                .join()
                .unwrap();
        }
        let s = c.snapshot();
        assert_eq!(find(&s, "WRITE"), (1, 0));
        assert_eq!(sent_of(&s, "Flush"), 1);
        {
            let _k = kernel_in(c, Op::Flush);
            deferred();
            deferred();
        }
        assert_eq!(find(&c.snapshot(), "FLUSH"), (1, 1));
    }

    #[test]
    fn scopes_nest_and_restore() {
        let c = leak();
        {
            let _a = kernel_in(c, Op::Open);
            {
                let _b = kernel_in(c, Op::Read);
                sent(&Request::Flush { fh: 1 }, true);
            }
            sent(&Request::Flush { fh: 1 }, true);
        }
        let s = c.snapshot();
        assert_eq!(find(&s, "OPEN"), (1, 1));
        assert_eq!(find(&s, "READ"), (1, 1));
    }

    #[test]
    fn snapshots_print_and_round_trip() {
        let c = leak();
        {
            let _k = kernel_in(c, Op::GetXattr);
            sent(&Request::Flush { fh: 1 }, true);
        }
        let s = c.snapshot();
        let line = s.line();
        assert!(line.contains("1 kernel requests, 1 waited"), "{line}");
        assert!(line.contains("GETXATTR 1/1"), "{line}");
        assert!(line.contains("sent: Flush 1"), "{line}");
        assert!(s.table().contains("GETXATTR"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
    }
}
