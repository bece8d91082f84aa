//! Subtrees streamed ahead of the kernel's reads.
//!
//! The first readdirplus of a directory opened on the host asks the
//! satellite for the directory and the subtree below it in one reply
//! (`Request::Stream`, within [`BUDGET`]): whole listings with each
//! entry's attributes and a lookup reference, breadth first, and the
//! contents of small files. The directory asked for is given to the
//! kernel at once; the other listings wait here for the kernel to read
//! those directories (then no round trip), and the contents for an open
//! of the file (answered on the host, its reads from them: no round trip
//! either).
//!
//! What keeps them true to the container: everything here is from one
//! instant of a stream generation, which moves with every batch of
//! changes the feed reports, every change the mount makes itself, and
//! every file's contents read from the container; once it moved, all of it
//! goes (wholesale, like the prefetch buffer), the references its entries
//! hold forgotten. The satellite watches each directory before it reads it
//! and each file before its contents, so a change during the stream is
//! reported; it reports the changes of the nodes a reply names only after
//! that reply, so a stream during which anything changed brings only the
//! directory asked for, and a read that shows a file newer than what a
//! stream brought (before the feed says so) drops what it brought.
//!
//! What the container sends is checked before any of it is kept
//! ([`check`]): each directory is the one asked for or named by an entry
//! before it, at most once; entries and contents stay within the budget;
//! contents belong to a regular file named in the reply, at most once,
//! and are as long as its attributes say. Memory is bounded by [`MAX_ENTRIES`] and
//! [`MAX_BYTES`]: past them what was kept before goes first.
//!
//! Small files the budget left out are asked for with a stream of each
//! of their directories alone ([`Subtree::cut_short`], [`FollowUp`]),
//! behind the kernel's walk; their contents join the stream's only while
//! it is current and the files are as it listed them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use dockerfuse_proto::{Attr, StreamBudget, StreamedDir, StreamedFile, MAX_STREAM_BYTES};

use super::listing::{self, PlusItem};

/// What one stream may bring.
pub(super) const BUDGET: StreamBudget = StreamBudget {
    entries: 4096,
    bytes: MAX_STREAM_BYTES,
    depth: 32,
    file_max: 16 * 1024,
};
/// Read-ahead streams on their way at once.
pub(super) const AHEAD: usize = 2;
/// What a follow-up stream brings: one directory's listing and its small
/// files' contents ([`Subtree::cut_short`]).
pub(super) const ONE_DIR: StreamBudget = StreamBudget { depth: 0, ..BUDGET };
/// Follow-up streams one stream may start.
pub(super) const FOLLOW_UPS: usize = 16;
/// Entries kept at once, all streams together.
pub(super) const MAX_ENTRIES: usize = 64 * 1024;
/// Bytes of contents kept at once.
pub(super) const MAX_BYTES: usize = 16 << 20;

/// Lookup references to forget: `(node, count)`.
pub(super) type Refs = Vec<(u64, u64)>;
/// Small files' contents: `(node, bytes)`.
pub(super) type Contents = Vec<(u64, Arc<[u8]>)>;

/// A streamed listing, whole: the kernel's first chunk starts it.
pub(super) struct Dir {
    /// The ledger's mark when the stream was asked for.
    pub(super) stamp: u64,
    pub(super) items: Vec<PlusItem<'static>>,
}

impl Dir {
    fn references(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.items.iter().filter(|i| i.counted).map(|i| (i.node, 1))
    }
}

/// A checked stream reply, detached from the receive buffer.
pub(super) struct Subtree {
    /// `(directory, listing)`, the one asked for first.
    pub(super) dirs: Vec<(u64, Dir)>,
    pub(super) files: Contents,
    /// The directories its listings name without bringing their own, in
    /// order: where a walk goes next ([`Streams::ahead`]).
    pub(super) frontier: Vec<u64>,
}

impl Subtree {
    /// The lookup references its entries hold.
    pub(super) fn references(&self) -> Vec<(u64, u64)> {
        self.dirs.iter().flat_map(|(_, d)| d.references()).collect()
    }
}

/// What a directory's entry costs in a stream reply, as the satellite
/// counts it (a readdirplus record).
fn entry_cost(name_len: usize) -> usize {
    ((24 + name_len + 7) & !7) + 128
}

/// What a file's contents cost in a stream reply besides their bytes.
const FILE_COST: usize = 16;

/// The attributes that say a file is as a listing showed it: a change
/// of its contents moves its ctime (and its size or mtime).
fn same_file(a: &Attr, b: &Attr) -> bool {
    (
        a.ino,
        a.mode,
        a.size,
        a.mtime,
        a.mtime_nsec,
        a.ctime,
        a.ctime_nsec,
    ) == (
        b.ino,
        b.mode,
        b.size,
        b.mtime,
        b.mtime_nsec,
        b.ctime,
        b.ctime_nsec,
    )
}

/// The small regular files a streamed directory listed, as it listed
/// them, whose contents a follow-up stream may bring.
pub(super) struct FollowUp {
    pub(super) dir: u64,
    listed: HashMap<u64, Attr>,
}

impl FollowUp {
    /// Of what a follow-up stream of the directory brought, the contents
    /// of the files still as the first stream listed them (their
    /// contents are then those of the first stream's instant: nothing
    /// newer is learned from them); nothing when the reply does not check.
    pub(super) fn keep(
        &self,
        dirs: Vec<StreamedDir<'_>>,
        files: Vec<StreamedFile<'_>>,
    ) -> (Contents, Refs) {
        let tree = match check(self.dir, ONE_DIR, 0, dirs, files) {
            Ok(t) => t,
            Err(refs) => return (Vec::new(), refs),
        };
        let refs = tree.references();
        let now: HashMap<u64, Attr> = tree
            .dirs
            .iter()
            .take(1)
            .flat_map(|(_, d)| d.items.iter().filter(|i| i.counted))
            .map(|i| (i.node, i.attr))
            .collect();
        let files = tree
            .files
            .into_iter()
            .filter(|(node, _)| match (self.listed.get(node), now.get(node)) {
                (Some(was), Some(is)) => same_file(was, is),
                _ => false,
            })
            .collect();
        (files, refs)
    }
}

impl Subtree {
    /// The directories (in the reply's order, at most `max`) with small
    /// regular files whose contents did not fit the budget: a stream of
    /// each alone may bring them before the kernel opens those files.
    /// Files left out for another reason (the satellite may not read them
    /// with O_NOATIME, or their size changed) are not asked for again.
    pub(super) fn cut_short(&self, budget: StreamBudget, max: usize) -> Vec<FollowUp> {
        let with: HashSet<u64> = self.files.iter().map(|(n, _)| *n).collect();
        let used: usize = self
            .dirs
            .iter()
            .flat_map(|(_, d)| d.items.iter())
            .map(|i| entry_cost(i.name.len()))
            .sum::<usize>()
            + self
                .files
                .iter()
                .map(|(_, f)| f.len() + FILE_COST)
                .sum::<usize>();
        let left = (budget.bytes as usize).saturating_sub(used);
        let small = |i: &&PlusItem<'_>| {
            i.counted
                && i.attr.mode & libc::S_IFMT == libc::S_IFREG
                && i.attr.size <= u64::from(budget.file_max)
        };
        let mut out = Vec::new();
        for (dir, d) in &self.dirs {
            if out.len() >= max {
                break;
            }
            let cut = d
                .items
                .iter()
                .filter(small)
                .any(|i| !with.contains(&i.node) && i.attr.size as usize + FILE_COST > left);
            if cut {
                let listed = d
                    .items
                    .iter()
                    .filter(small)
                    .map(|i| (i.node, i.attr))
                    .collect();
                out.push(FollowUp { dir: *dir, listed });
            }
        }
        out
    }
}

/// Checks a stream reply for `asked` against `budget` and keeps it as
/// items. `Err` with the references its entries hold (to forget) when the
/// container broke a rule.
pub(super) fn check(
    asked: u64,
    budget: StreamBudget,
    stamp: u64,
    dirs: Vec<StreamedDir<'_>>,
    files: Vec<StreamedFile<'_>>,
) -> Result<Subtree, Vec<(u64, u64)>> {
    let references: Vec<(u64, u64)> = dirs
        .iter()
        .flat_map(|d| {
            d.entries
                .iter()
                .filter_map(|e| e.entry.map(|e| (e.node, 1)))
        })
        .collect();
    let entries: usize = dirs.iter().map(|d| d.entries.len()).sum();
    let mut named = HashSet::from([asked]);
    let mut seen = HashSet::new();
    let mut small: HashMap<u64, u64> = HashMap::new();
    let mut ok = entries <= budget.entries as usize;
    for d in &dirs {
        ok &= named.contains(&d.node) && seen.insert(d.node);
        for e in d.entries.iter().filter_map(|e| e.entry) {
            match e.attr.mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    named.insert(e.node);
                }
                libc::S_IFREG => {
                    small.insert(e.node, e.attr.size);
                }
                _ => {}
            }
        }
    }
    let mut bytes = 0usize;
    let mut kept = HashSet::new();
    for f in &files {
        bytes = bytes.saturating_add(f.data.len());
        ok &= f.data.len() <= budget.file_max as usize
            && small.get(&f.node) == Some(&(f.data.len() as u64))
            && kept.insert(f.node);
    }
    ok &= bytes <= budget.bytes as usize;
    if !ok || dirs.first().is_some_and(|d| d.node != asked) {
        return Err(references);
    }
    let dirs: Vec<(u64, Dir)> = dirs
        .into_iter()
        .map(|d| {
            let items = listing::plus(d.entries, std::time::Duration::ZERO)
                .into_iter()
                .map(PlusItem::into_owned)
                .collect();
            (d.node, Dir { stamp, items })
        })
        .collect();
    let files = files
        .into_iter()
        .map(|f| (f.node, Arc::from(&f.data[..])))
        .collect();
    let frontier = frontier(&dirs);
    Ok(Subtree {
        dirs,
        files,
        frontier,
    })
}

/// The directories named in `dirs` whose listing is not among them.
fn frontier(dirs: &[(u64, Dir)]) -> Vec<u64> {
    let listed: HashSet<u64> = dirs.iter().map(|(n, _)| *n).collect();
    dirs.iter()
        .flat_map(|(_, d)| d.items.iter())
        .filter(|i| i.counted && i.attr.mode & libc::S_IFMT == libc::S_IFDIR)
        .map(|i| i.node)
        .filter(|n| !listed.contains(n))
        .collect()
}

#[derive(Default)]
struct Inner {
    /// The stream generation everything here is current for.
    generation: u64,
    dirs: HashMap<u64, Dir>,
    files: HashMap<u64, Arc<[u8]>>,
    entries: usize,
    bytes: usize,
    /// Directories named by what streams brought, not streamed yet.
    frontier: VecDeque<u64>,
    /// All those, streamed since or not.
    named: HashSet<u64>,
    /// Directories streamed or being streamed this generation.
    asked: HashSet<u64>,
    /// Read-ahead streams on their way, with what waits for each.
    flying: HashMap<u64, Vec<Waiter>>,
}

/// A kernel read waiting for a read-ahead stream of its directory.
pub(super) type Waiter = Box<dyn FnOnce() + Send>;

impl Inner {
    /// Drops everything; the references to forget.
    fn drain(&mut self) -> Vec<(u64, u64)> {
        let refs = self.dirs.values().flat_map(Dir::references).collect();
        self.dirs.clear();
        self.files.clear();
        self.entries = 0;
        self.bytes = 0;
        self.frontier.clear();
        self.named.clear();
        self.asked.clear();
        refs
    }

    /// Everything goes when it is from before `generation`.
    fn current(&mut self, generation: u64) -> Vec<(u64, u64)> {
        if self.generation == generation {
            return Vec::new();
        }
        self.generation = generation;
        self.drain()
    }
}

/// What the streams of one mount brought and the kernel has not read.
#[derive(Default)]
pub(super) struct Streams {
    inner: Mutex<Inner>,
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The listing of `dir` if one is kept and current (taken: it is the
    /// kernel's now), and the references of what went stale, to forget.
    pub(super) fn take_dir(&self, dir: u64, generation: u64) -> (Option<Dir>, Vec<(u64, u64)>) {
        let mut t = self.lock();
        let stale = t.current(generation);
        if t.asked.len() < MAX_ENTRIES {
            t.asked.insert(dir);
        }
        let d = t.dirs.remove(&dir);
        if let Some(d) = &d {
            t.entries -= d.items.len();
        }
        (d, stale)
    }

    /// Whether a stream named `dir` (a walk went where streams went).
    pub(super) fn named(&self, dir: u64) -> bool {
        self.lock().named.contains(&dir)
    }

    /// The whole contents of `node` if they came with a stream and are
    /// current; the references of what went stale, to forget.
    pub(super) fn contents(&self, node: u64, generation: u64) -> (Option<Arc<[u8]>>, Refs) {
        let mut t = self.lock();
        let stale = t.current(generation);
        (t.files.get(&node).cloned(), stale)
    }

    /// Keeps what a stream asked for at `sent` brought (its first
    /// directory already given to the kernel); `now` is the generation at
    /// its arrival. The references to forget: of listings replaced or
    /// dropped for room, of everything when something changed while it
    /// was on its way.
    pub(super) fn put(&self, sent: u64, now: u64, tree: Subtree) -> Vec<(u64, u64)> {
        let mut t = self.lock();
        let mut forget = t.current(now);
        if sent != now {
            forget.extend(tree.references());
            return forget;
        }
        let entries: usize = tree.dirs.iter().map(|(_, d)| d.items.len()).sum();
        let bytes: usize = tree.files.iter().map(|(_, f)| f.len()).sum();
        if t.entries + entries > MAX_ENTRIES || t.bytes + bytes > MAX_BYTES {
            forget.extend(t.drain());
        }
        for (node, d) in tree.dirs {
            t.entries += d.items.len();
            if let Some(old) = t.dirs.insert(node, d) {
                t.entries -= old.items.len();
                forget.extend(old.references());
            }
        }
        for (node, data) in tree.files {
            t.bytes += data.len();
            if let Some(old) = t.files.insert(node, data) {
                t.bytes -= old.len();
            }
        }
        for dir in tree.frontier {
            if t.named.len() < MAX_ENTRIES && t.named.insert(dir) {
                t.frontier.push_back(dir);
            }
        }
        forget
    }

    /// The directories to stream ahead of the kernel now: the next ones
    /// the streams named without bringing, while fewer than [`AHEAD`]
    /// such streams are on their way, the listings kept are under a
    /// quarter of [`MAX_ENTRIES`] and the contents leave room for those
    /// streams under [`MAX_BYTES`]. Each is to be followed by
    /// [`Streams::landed`].
    pub(super) fn ahead(&self, generation: u64) -> (Vec<u64>, Refs) {
        let mut t = self.lock();
        let stale = t.current(generation);
        let mut go = Vec::new();
        // Contents stay kept once read (a file may be opened again): the
        // room for one more reply, so that a read-ahead never drops them.
        while t.flying.len() < AHEAD
            && t.entries < MAX_ENTRIES / 4
            && t.bytes + (AHEAD + 1) * MAX_STREAM_BYTES as usize <= MAX_BYTES
        {
            let Some(dir) = t.frontier.pop_front() else {
                break;
            };
            if t.dirs.contains_key(&dir) || !t.asked.insert(dir) {
                continue;
            }
            t.flying.insert(dir, Vec::new());
            go.push(dir);
        }
        (go, stale)
    }

    /// Runs `w` when the read-ahead stream of `dir` is back, if one is on
    /// its way (else gives it back): a second stream of the same
    /// directory would only do its work twice.
    pub(super) fn wait_for(&self, dir: u64, w: Waiter) -> Result<(), Waiter> {
        match self.lock().flying.get_mut(&dir) {
            Some(v) => {
                v.push(w);
                Ok(())
            }
            None => Err(w),
        }
    }

    /// The read-ahead stream of `dir` is back (kept or not): what waited
    /// for it, to run.
    pub(super) fn landed(&self, dir: u64) -> Vec<Waiter> {
        self.lock().flying.remove(&dir).unwrap_or_default()
    }

    /// Entries and bytes kept.
    #[cfg(test)]
    pub(super) fn size(&self) -> (usize, usize) {
        let t = self.lock();
        (t.entries, t.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockerfuse_proto::{DirEntry, Entry};

    fn ent(name: &str, node: u64, mode: u32, size: u64) -> DirEntry<'static> {
        DirEntry {
            name: name.as_bytes().to_vec().into(),
            offset: node,
            kind: mode & libc::S_IFMT,
            ino: node,
            entry: Some(Entry {
                node,
                attr: Attr {
                    ino: node,
                    mode,
                    size,
                    nlink: 1,
                    ..Default::default()
                },
                no_xattrs: true,
            }),
        }
    }

    fn tree() -> (Vec<StreamedDir<'static>>, Vec<StreamedFile<'static>>) {
        let dirs = vec![
            StreamedDir {
                node: 1,
                entries: vec![
                    ent("d", 2, libc::S_IFDIR | 0o755, 0),
                    ent("f", 3, libc::S_IFREG | 0o644, 2),
                ],
            },
            StreamedDir {
                node: 2,
                entries: vec![ent("g", 4, libc::S_IFREG | 0o644, 0)],
            },
        ];
        let files = vec![
            StreamedFile {
                node: 3,
                data: b"hi".to_vec().into(),
            },
            StreamedFile {
                node: 4,
                data: Vec::new().into(),
            },
        ];
        (dirs, files)
    }

    #[test]
    fn a_sound_reply_is_kept_and_taken_once() {
        let (dirs, files) = tree();
        let t = check(1, BUDGET, 7, dirs, files).ok().unwrap();
        assert_eq!(t.references(), vec![(2, 1), (3, 1), (4, 1)]);
        let s = Streams::default();
        assert!(s.put(5, 5, t).is_empty());
        assert_eq!(s.size(), (3, 2));
        assert_eq!(&s.contents(3, 5).0.unwrap()[..], b"hi");
        let (d, stale) = s.take_dir(2, 5);
        assert!(stale.is_empty());
        assert_eq!(d.unwrap().items.len(), 1);
        assert!(s.take_dir(2, 5).0.is_none(), "taken once");
    }

    #[test]
    fn a_change_drops_everything_and_its_references() {
        let (dirs, files) = tree();
        let s = Streams::default();
        s.put(5, 5, check(1, BUDGET, 7, dirs, files).ok().unwrap());
        let (d, mut stale) = s.take_dir(2, 6);
        assert!(d.is_none());
        stale.sort();
        assert_eq!(stale, vec![(2, 1), (3, 1), (4, 1)]);
        assert!(s.contents(3, 6).0.is_none());
        assert_eq!(s.size(), (0, 0));
        // Changed while on its way: nothing kept, all forgotten.
        let (dirs, files) = tree();
        let forget = s.put(6, 7, check(1, BUDGET, 7, dirs, files).ok().unwrap());
        assert_eq!(forget.len(), 3);
        assert_eq!(s.size(), (0, 0));
    }

    #[test]
    fn a_reply_breaking_the_rules_is_refused_with_its_references() {
        // A directory nobody named.
        let (mut dirs, files) = tree();
        dirs[1].node = 9;
        assert_eq!(check(1, BUDGET, 0, dirs, files).err().unwrap().len(), 3);
        // Another directory first.
        let (dirs, files) = tree();
        assert!(check(2, BUDGET, 0, dirs, files).is_err());
        // The same directory twice.
        let (mut dirs, files) = tree();
        dirs.push(dirs[1].clone());
        assert!(check(1, BUDGET, 0, dirs, files).is_err());
        // Contents of a directory, of an unnamed node, of the wrong size,
        // twice, or over the budget.
        for (node, data) in [(2, &b""[..]), (8, b""), (3, b"long"), (4, b"")] {
            let (dirs, mut files) = tree();
            files.push(StreamedFile {
                node,
                data: data.to_vec().into(),
            });
            assert!(check(1, BUDGET, 0, dirs, files).is_err(), "{node}");
        }
        let (dirs, files) = tree();
        let small = StreamBudget {
            file_max: 1,
            ..BUDGET
        };
        assert!(check(1, small, 0, dirs, files).is_err());
        let (dirs, files) = tree();
        let few = StreamBudget {
            entries: 2,
            ..BUDGET
        };
        assert!(check(1, few, 0, dirs, files).is_err());
    }

    #[test]
    fn past_the_caps_what_was_kept_goes_first() {
        let s = Streams::default();
        let big = |first: u64| {
            let entries = (0..MAX_ENTRIES as u64 / 2 + 1)
                .map(|i| ent("x", first + i, libc::S_IFREG | 0o644, 5))
                .collect();
            let dirs = vec![StreamedDir { node: 1, entries }];
            let budget = StreamBudget {
                entries: u32::MAX,
                ..BUDGET
            };
            check(1, budget, 0, dirs, Vec::new()).ok().unwrap()
        };
        assert!(s.put(1, 1, big(100)).is_empty());
        let forget = s.put(1, 1, big(1_000_000));
        assert_eq!(forget.len(), MAX_ENTRIES / 2 + 1, "the older listing");
        assert_eq!(s.size().0, MAX_ENTRIES / 2 + 1);
    }

    #[test]
    fn the_directories_named_and_not_brought_are_streamed_ahead_once() {
        let dirs = vec![
            StreamedDir {
                node: 1,
                entries: vec![
                    ent("d", 2, libc::S_IFDIR | 0o755, 0),
                    ent("e", 5, libc::S_IFDIR | 0o755, 0),
                    ent("f", 3, libc::S_IFREG | 0o644, 2),
                ],
            },
            StreamedDir {
                node: 2,
                entries: vec![
                    ent("g", 6, libc::S_IFDIR | 0o755, 0),
                    ent("h", 7, libc::S_IFDIR | 0o755, 0),
                ],
            },
        ];
        let t = check(1, BUDGET, 7, dirs, Vec::new()).ok().unwrap();
        assert_eq!(t.frontier, vec![5, 6, 7]);
        let s = Streams::default();
        s.put(5, 5, t);
        // One the kernel already read is not streamed again.
        s.take_dir(6, 5);
        let (go, stale) = s.ahead(5);
        assert!(stale.is_empty());
        assert_eq!(go, vec![5, 7]);
        assert!(s.ahead(5).0.is_empty(), "{AHEAD} on their way");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        let w: Waiter = Box::new(move || r.store(true, std::sync::atomic::Ordering::SeqCst));
        assert!(s.wait_for(7, w).is_ok());
        assert!(s.landed(5).is_empty());
        s.landed(7).into_iter().for_each(|w| w());
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
        assert!(s.wait_for(7, Box::new(|| ())).is_err(), "back already");
        assert!(s.ahead(5).0.is_empty(), "each once");
        // A change drops the frontier with the rest.
        let (dirs, files) = tree();
        s.put(5, 5, check(1, BUDGET, 7, dirs, files).ok().unwrap());
        assert!(s.ahead(6).0.is_empty());
    }
}
