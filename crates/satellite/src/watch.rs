//! The change feed: inotify watches on the nodes the kernel holds, and the
//! thread that turns their events into batches of changes for the host.
//!
//! Off until the host asks for it (`Request::Watch`). Then the root and
//! every node that gets a lookup reference is watched (directories for
//! names coming and going, everything else for contents and attributes;
//! symlinks are not watched: their parent's watch covers their name), and
//! the watch goes when the node is forgotten. A node that cannot be
//! watched (fs.inotify.max_user_watches exhausted) is announced with
//! `Change::Unwatched` *before* the reply that introduces it, so the host
//! never caches it for long. The same happens past the satellite's own
//! cap ([`Watch::set_limit`]; by default half of the system's
//! max_user_watches, which the container shares with the host's root and
//! every other container: a walk of a large tree must not starve them). The thread gathers events for a short window
//! ([`WINDOW_MS`]), coalesces them ([`crate::coalesce`]) and sends them as
//! `Response::Changes` frames with the reserved id `EVENT_ID`; a queue
//! overflow becomes `Change::All`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dockerfuse_proto::frame;
use dockerfuse_proto::{Change, Errno, Response, EVENT_ID, ROOT_NODE};

use crate::coalesce::Coalescer;
use crate::inotify::{self, Inotify, RawEvent, DIR_MASK, FILE_MASK};
use crate::sys::SysResult;

/// How long events are gathered before a batch leaves.
pub(crate) const WINDOW_MS: i32 = 5;
/// Looks of [`Watch::quiet_since`] for events still unread, 200 µs apart.
const QUIET_TRIES: usize = 100;
/// Changes per frame (well inside MAX_PAYLOAD with 255-byte names).
const CHANGES_PER_FRAME: usize = 1024;
/// (directory, name) → child remembered for removals; past this, removals
/// are reported as plain entry changes.
const MAX_NAMES: usize = 500_000;

/// Where encoded frames go (the satellite's output).
pub(crate) type Sink = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;
/// The current stat of a node, if it can be had.
pub(crate) type StatNode = Arc<dyn Fn(u64) -> Option<libc::stat> + Send + Sync>;
/// Files whose state after the satellite's own change is remembered.
const MAX_OWN: usize = 100_000;
/// Names of the satellite's own namespace changes remembered at once.
const MAX_OWN_NAMES: usize = 10_000;
/// How long a name's own change waits for its event: a container change
/// to the same name after that is sent whatever happens.
const OWN_NAME_WAIT: Duration = Duration::from_millis(250);

/// What a file looked like right after the satellite itself changed it:
/// an event that finds it still so is the echo of that change, which the
/// kernel already knows (it made it), and is not sent. Any later change
/// moves the ctime (fine-grained once queried, on current kernels).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

// libc's stat field types differ between targets.
#[allow(clippy::unnecessary_cast)]
fn stamp_of(st: &libc::stat) -> ((u64, u64), Stamp) {
    (
        (st.st_dev as u64, st.st_ino as u64),
        Stamp {
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        },
    )
}

#[derive(Default)]
struct State {
    wd_of: HashMap<u64, i32>,
    node_of: HashMap<i32, (u64, bool)>,
    /// Where each node was last looked up, and the reverse.
    place_of: HashMap<u64, (u64, Vec<u8>)>,
    child_at: HashMap<(u64, Vec<u8>), u64>,
    /// Nodes whose introducing reply has not left yet: their changes wait
    /// (a change sent before that reply would reach the host before the
    /// node, and be dropped there).
    replying: HashMap<u64, u32>,
    unwatched: u64,
    /// Names the satellite itself is creating, removing or renaming, with
    /// how many events to expect and since when: those events echo a
    /// change the kernel made through the mount, and an entry
    /// invalidation would unhash a directory a process may have entered
    /// (its getcwd would then fail).
    own_names: HashMap<(u64, Vec<u8>, u32), (u32, Instant)>,
}

thread_local! {
    /// Nodes the request this worker is serving introduced.
    static INTRODUCED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The feed of one satellite.
#[derive(Default)]
pub(crate) struct Watch {
    ino: OnceLock<Inotify>,
    sink: OnceLock<Sink>,
    stat: OnceLock<StatNode>,
    state: Mutex<State>,
    own: Mutex<HashMap<(u64, u64), Stamp>>,
    /// Most watches held at once (`--max-watches`); unset: half the
    /// system's limit, read when the feed starts.
    limit: OnceLock<usize>,
    /// inotify events read so far that changed something for the host
    /// (see [`Watch::quiet_since`]).
    events: std::sync::atomic::AtomicU64,
    /// Held by the feed's thread from a read of the inotify descriptor
    /// until the events read are counted.
    reading: Mutex<()>,
}

/// The cap when none was given: half of fs.inotify.max_user_watches (the
/// budget is per user, shared with everything else the same uid runs),
/// or no cap when it cannot be read.
fn default_limit() -> usize {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map_or(usize::MAX, |n| (n / 2).max(1))
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Caps the watches held at once (the root's included); nodes past it
    /// are unwatched, as when the system's limit is reached. Takes effect
    /// only before the feed starts.
    pub(crate) fn set_limit(&self, max: usize) {
        let _ = self.limit.set(max.max(1));
    }

    /// Whether the feed was turned on.
    pub(crate) fn is_on(&self) -> bool {
        self.ino.get().is_some()
    }

    /// Where change frames are to be written, and how nodes are stat'ed.
    pub(crate) fn set_sink(&self, sink: Sink, stat: StatNode) {
        let _ = self.sink.set(sink);
        let _ = self.stat.set(stat);
    }

    /// The satellite itself just changed the file behind `fd` (a write,
    /// a truncate...): remember what it looks like now.
    pub(crate) fn own_change(&self, fd: RawFd) {
        if self.ino.get().is_none() {
            return;
        }
        if let Ok(st) = crate::sys::stat_fd(fd) {
            let (key, stamp) = stamp_of(&st);
            let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
            if own.len() >= MAX_OWN {
                own.clear();
            }
            own.insert(key, stamp);
        }
    }

    /// The satellite is about to create, remove or rename these names (in
    /// these directory nodes); call [`OwnNames::done`] on success, else
    /// dropping the guard forgets them.
    pub(crate) fn own_names<'a>(&'a self, names: &[(u64, &[u8], u32)]) -> OwnNames<'a> {
        let mut keys = Vec::new();
        if self.ino.get().is_some() {
            let mut s = self.lock();
            if s.own_names.len() >= MAX_OWN_NAMES {
                s.own_names.clear();
            }
            let now = Instant::now();
            for &(dir, name, mask) in names {
                let key = (dir, name.to_vec(), mask);
                let e = s.own_names.entry(key.clone()).or_insert((0, now));
                *e = (e.0 + 1, now);
                keys.push(key);
            }
        }
        OwnNames { watch: self, keys }
    }

    fn unown(&self, keys: &[(u64, Vec<u8>, u32)]) {
        let mut s = self.lock();
        for k in keys {
            if let Some(e) = s.own_names.get_mut(k) {
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    s.own_names.remove(k);
                }
            }
        }
    }

    /// A data or attribute change that only echoes the satellite's own.
    fn is_echo(&self, c: &Change<'_>) -> bool {
        let (Change::Data { node } | Change::Attr { node }) = c else {
            return false;
        };
        let Some(st) = self.stat.get().and_then(|f| f(*node)) else {
            return false;
        };
        let (key, stamp) = stamp_of(&st);
        let own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.get(&key) == Some(&stamp)
    }

    /// Turns the feed on (again: a no-op), watching the root `root_fd`.
    pub(crate) fn start(self: &Arc<Self>, root_fd: RawFd) -> SysResult<()> {
        if self.ino.get().is_some() {
            return Ok(());
        }
        if self.sink.get().is_none() {
            return Err(Errno::ENOSYS);
        }
        let _ = self.limit.set(default_limit());
        let ino = Inotify::new()?;
        let wd = ino.add(root_fd, DIR_MASK)?;
        {
            let mut s = self.lock();
            s.wd_of.insert(ROOT_NODE, wd);
            s.node_of.insert(wd, (ROOT_NODE, true));
        }
        if self.ino.set(ino).is_err() {
            return Ok(());
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("watch".into())
            .stack_size(256 * 1024)
            .spawn(move || me.run())
            .map_err(|_| Errno(libc::EAGAIN))?;
        Ok(())
    }

    /// A mark of the events seen so far, for [`Watch::quiet_since`].
    pub(crate) fn mark(&self) -> u64 {
        self.events.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// No inotify event that concerns the host came since `mark` (with the
    /// feed off: true). A stream whose subtree changed while it was read
    /// keeps only what the kernel takes at once: the changes of the nodes
    /// a reply names are sent after it, and the host could see the
    /// container newer through another reply before they arrive. Events
    /// still unread are waited for (the feed's thread reads them at once);
    /// those that change nothing, such as the `IN_IGNORED` of a watch the
    /// satellite removed itself (a node forgotten meanwhile, or the
    /// stream's own references dropped), do not count.
    pub(crate) fn quiet_since(&self, mark: u64) -> bool {
        let Some(ino) = self.ino.get() else {
            return true;
        };
        for _ in 0..QUIET_TRIES {
            let reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
            if self.mark() != mark {
                return false;
            }
            if !ino.wait(0) {
                return true;
            }
            drop(reading);
            std::thread::sleep(Duration::from_micros(200));
        }
        false
    }

    /// A node got a lookup reference (found as `place`): watch it. True
    /// when a watch began now (attributes read before it may be stale).
    pub(crate) fn held(
        &self,
        node: u64,
        fd: RawFd,
        kind: u32,
        place: Option<(u64, &[u8])>,
    ) -> bool {
        let Some(ino) = self.ino.get() else {
            return false;
        };
        let mut s = self.lock();
        *s.replying.entry(node).or_default() += 1;
        INTRODUCED.with(|v| v.borrow_mut().push(node));
        if let Some((dir, name)) = place {
            if s.child_at.len() < MAX_NAMES || s.place_of.contains_key(&node) {
                if let Some(old) = s.place_of.insert(node, (dir, name.to_vec())) {
                    if s.child_at.get(&old) == Some(&node) {
                        s.child_at.remove(&old);
                    }
                }
                s.child_at.insert((dir, name.to_vec()), node);
            }
        }
        if kind == libc::S_IFLNK || s.wd_of.contains_key(&node) {
            return false;
        }
        let is_dir = kind == libc::S_IFDIR;
        let limit = self.limit.get().copied().unwrap_or(usize::MAX);
        let added = if s.wd_of.len() >= limit {
            Err(Errno(libc::ENOSPC))
        } else {
            ino.add(fd, if is_dir { DIR_MASK } else { FILE_MASK })
        };
        match added {
            Ok(wd) => {
                if let Some((other, _)) = s.node_of.insert(wd, (node, is_dir)) {
                    // The same inode under another node id cannot happen
                    // (nodes are keyed by inode); keep the newest.
                    s.wd_of.remove(&other);
                }
                s.wd_of.insert(node, wd);
                true
            }
            Err(e) => {
                s.unwatched += 1;
                let n = s.unwatched;
                drop(s);
                if n == 1 || n.is_power_of_two() {
                    eprintln!(
                        "dockerfuse-satellite: cannot watch node {node} ({e}); {n} nodes unwatched so far"
                    );
                }
                self.send(vec![Change::Unwatched { node }]);
                false
            }
        }
    }

    /// The worker sent its reply: the nodes it introduced are the host's.
    pub(crate) fn replied(&self) {
        let nodes = INTRODUCED.with(|v| std::mem::take(&mut *v.borrow_mut()));
        if nodes.is_empty() {
            return;
        }
        let mut s = self.lock();
        for n in nodes {
            if let Some(c) = s.replying.get_mut(&n) {
                *c -= 1;
                if *c == 0 {
                    s.replying.remove(&n);
                }
            }
        }
    }

    /// A node was forgotten by the kernel: its watch goes.
    pub(crate) fn dropped(&self, node: u64) {
        let Some(ino) = self.ino.get() else {
            return;
        };
        let mut s = self.lock();
        if let Some(place) = s.place_of.remove(&node) {
            if s.child_at.get(&place) == Some(&node) {
                s.child_at.remove(&place);
            }
        }
        if let Some(wd) = s.wd_of.remove(&node) {
            s.node_of.remove(&wd);
            ino.remove(wd);
        }
    }

    fn send(&self, changes: Vec<Change<'static>>) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        let mut buf = Vec::new();
        for chunk in changes.chunks(CHANGES_PER_FRAME) {
            buf.clear();
            if frame::encode(EVENT_ID, &Response::Changes(chunk.to_vec()), &mut buf).is_ok() {
                sink(&buf);
            }
        }
    }

    fn run(&self) {
        let Some(ino) = self.ino.get() else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut batch = Coalescer::default();
        let mut held_back = false;
        loop {
            ino.wait(if held_back { WINDOW_MS } else { -1 });
            let until =
                std::time::Instant::now() + std::time::Duration::from_millis(WINDOW_MS as u64);
            loop {
                let reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
                let n = ino.read(&mut buf);
                if n > 0 {
                    let mut s = self.lock();
                    for ev in inotify::parse(&buf[..n]) {
                        if translate(&mut s, &ev, &mut batch) {
                            self.events
                                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    drop(s);
                    drop(reading);
                    continue;
                }
                drop(reading);
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || !ino.wait(left.as_millis().max(1) as i32) {
                    break;
                }
            }
            let ready = {
                let s = self.lock();
                batch.take_ready(|n| s.replying.contains_key(&n))
            };
            held_back = !batch.is_empty();
            let ready: Vec<Change<'static>> =
                ready.into_iter().filter(|c| !self.is_echo(c)).collect();
            if !ready.is_empty() {
                self.send(ready);
            }
        }
    }
}

/// Names registered by [`Watch::own_names`] until the change is done.
pub(crate) struct OwnNames<'a> {
    watch: &'a Watch,
    keys: Vec<(u64, Vec<u8>, u32)>,
}

impl OwnNames<'_> {
    /// The change happened: its events are echoes.
    pub(crate) fn done(mut self) {
        self.keys.clear();
    }
}

impl Drop for OwnNames<'_> {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            self.watch.unown(&self.keys);
        }
    }
}

/// Whether an event of kind `mask` on `name` in `dir` echoes the
/// satellite's own change of that kind (then consumed).
fn own_echo(s: &mut State, dir: u64, name: &[u8], mask: u32) -> bool {
    let kind = mask & (libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO);
    let key = (dir, name.to_vec(), kind);
    let Some(e) = s.own_names.get_mut(&key) else {
        return false;
    };
    if e.1.elapsed() > OWN_NAME_WAIT {
        s.own_names.remove(&key);
        return false;
    }
    e.0 -= 1;
    if e.0 == 0 {
        s.own_names.remove(&key);
    }
    true
}

/// One inotify event as changes, given the watches of `s`. False when
/// the event concerns no node the host holds: a watch the satellite
/// removed itself (its `IN_IGNORED` included).
fn translate(s: &mut State, ev: &RawEvent<'_>, out: &mut Coalescer) -> bool {
    if ev.mask & libc::IN_Q_OVERFLOW != 0 {
        out.lost();
        return true;
    }
    let Some(&(node, is_dir)) = s.node_of.get(&ev.wd) else {
        return false;
    };
    if ev.mask & libc::IN_IGNORED != 0 {
        // The kernel removed the watch (file deleted, filesystem gone):
        // the node, if still held, is unwatched from now on.
        s.node_of.remove(&ev.wd);
        if s.wd_of.get(&node) == Some(&ev.wd) {
            s.wd_of.remove(&node);
            out.push(Change::Unwatched { node });
            out.push(Change::Attr { node });
            return true;
        }
        return false;
    }
    match (is_dir, ev.name) {
        (true, Some(name)) => {
            let names = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
            if ev.mask & names != 0 && own_echo(s, node, name, ev.mask) {
                return true;
            }
            if ev.mask & libc::IN_DELETE != 0 {
                if let Some(&child) = s.child_at.get(&(node, name.to_vec())) {
                    out.push(Change::Removed {
                        dir: node,
                        name: name.to_vec().into(),
                        node: child,
                    });
                    return true;
                }
            }
            if ev.mask
                & (libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO)
                != 0
            {
                out.push(Change::Entry {
                    dir: node,
                    name: name.to_vec().into(),
                });
            }
            // Attribute events of children come from their own watches.
        }
        (true, None) => {
            if ev.mask & (libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                out.push(Change::Attr { node });
            }
        }
        (false, _) => {
            if ev.mask & libc::IN_MODIFY != 0 {
                out.push(Change::Data { node });
            } else if ev.mask & (libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                out.push(Change::Attr { node });
            }
        }
    }
    true
}

/// Hooks of the file operations into the feed.
impl crate::ops::Fs {
    /// A node got a lookup reference (lookup, readdirplus, create...).
    /// True when its watch began now.
    pub(crate) fn note_held(&self, node: u64, kind: u32, place: Option<(u64, &[u8])>) -> bool {
        if self.watch.ino.get().is_none() {
            return false;
        }
        match self.nodes.get(node) {
            Ok(n) => self.watch.held(node, n.raw(), kind, place),
            Err(_) => false,
        }
    }

    /// The current stat of a node.
    pub(crate) fn stat_node(&self, node: u64) -> Option<libc::stat> {
        let n = self.nodes.get(node).ok()?;
        crate::sys::stat_fd(n.raw()).ok()
    }

    /// Turns the feed on.
    pub(crate) fn start_watch(&self) -> SysResult<()> {
        let root = self.nodes.get(ROOT_NODE)?;
        self.watch.start(root.raw())
    }
}
