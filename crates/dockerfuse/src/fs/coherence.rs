//! What the kernel may cache, for how long, and what a change in the
//! container invalidates.
//!
//! Without the satellite's change feed every name and attribute is kept
//! for the short TTL (`--ttl`, 1 s by default). With the feed on, a node
//! the satellite watches keeps its attributes, and a name in a watched
//! directory its entry (positive or negative), for [`LONG_TTL`]: until a
//! change says otherwise. An explicit `--ttl` fixes every TTL instead.
//!
//! The host tracks what it handed to the kernel — the nodes it holds (with
//! their lookup counts) and the names given the long TTL — so that a
//! change naming anything else is dropped (the container is untrusted),
//! and so that "everything changed" (a lost event) can be turned into
//! invalidations of all of it. Both are bounded: past [`MAX_NAMES`] names
//! new entries get the short TTL; past [`MAX_UNWATCHED`] unwatched nodes
//! every node does.
//!
//! The feed does not echo the mount's own changes, nor what they did on
//! the side. Most side effects the kernel expires itself when it sees the
//! operation succeed (a parent's times and link count after a creation,
//! removal or rename, a node's link count and ctime after link or unlink,
//! ctime after setxattr, size and mtime after a write, everything after
//! an `O_TRUNC` open) or learns from the reply (setattr, link and
//! creations carry attributes). What it cannot know is that a write, a
//! fallocate or a copy into a file cleared its setuid/setgid bits: it
//! would keep showing the old mode to a `statx` that asks for the mode
//! alone until the TTL ends (an hour with the feed). The core reports
//! those with
//! [`Coherence::changed_here`], which expires the node's attributes in the
//! kernel at once, before the operation's reply.
//!
//! What the host holds per node is in the [`Ledger`]; this is the policy
//! over it. With the feed on, the ledger also keeps the attributes of
//! watched nodes (from every reply that carries them) and answers GETATTR
//! with them ([`Coherence::kept_attr`]): the kernel asks again after a
//! read or a listing (it marks the atime stale), although nothing changed.
//! The core drops them on the mount's own operations that change them
//! ([`Coherence::touched`], [`Coherence::name_changed`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dockerfuse_proto::{Change, ROOT_NODE};

use super::dir_names::DirNames;
use super::heads::Heads;
use super::ledger::Ledger;
pub(crate) use super::ledger::{Followed, Source, MAX_NAMES, MAX_UNWATCHED};
use super::writers::Writers;
use super::xattr_cache::NoXattrs;
use dockerfuse_proto::Attr;

/// How long a watched node's names and attributes are kept.
pub(crate) const LONG_TTL: Duration = Duration::from_secs(3600);
/// Longest name a change may carry.
const NAME_MAX: usize = 255;
/// Directories whose mode is kept through their time changes.
const MAX_DIR_MODES: usize = 65_536;

/// How long the kernel may keep what one reply carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ttl {
    /// The node's attributes.
    pub(crate) attr: Duration,
    /// The name → node binding (or the name's absence).
    pub(crate) entry: Duration,
}

impl Ttl {
    /// One TTL for both (readdirplus entries carry one).
    pub(crate) fn min(&self) -> Duration {
        self.attr.min(self.entry)
    }
}

/// One notification for the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Inval {
    /// Forget the name (positive or negative) in `parent`.
    Entry { parent: u64, name: Vec<u8> },
    /// The name in `parent`, which was `child`, is gone (also tells the
    /// host's inotify watchers); falls back to `Entry`.
    Delete {
        parent: u64,
        child: u64,
        name: Vec<u8>,
    },
    /// The node's attributes are stale.
    Attr(u64),
    /// The node's attributes and cached contents (pages, directory
    /// listing) are stale.
    Data(u64),
}

/// Makes the kernel forget a name (parent, name); must not wait on the
/// caller's thread (the kernel may hold the directory's lock for a
/// request waiting on it).
pub(crate) type ForgetName = Box<dyn Fn(u64, &[u8]) + Send + Sync>;

/// Expires a node's attributes in the kernel (an attribute-only
/// invalidation, which never waits on a lock a request in flight holds,
/// so it may run on any thread).
pub(crate) type ExpireAttrs = Box<dyn Fn(u64) + Send + Sync>;

/// Counters shown in debug logs.
#[derive(Default, Debug)]
pub(crate) struct Counts {
    pub(crate) changes: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) everything: AtomicU64,
    pub(crate) unwatched: AtomicU64,
    /// Lookups answered "absent" from a complete listing, on the host.
    pub(crate) absent_here: AtomicU64,
    /// Attributes expired after this mount's own operations.
    pub(crate) changed_here: AtomicU64,
    /// GETATTRs answered from the attributes kept on the host.
    pub(crate) attrs_here: AtomicU64,
    /// Removals and renames answered on the host and sent behind.
    pub(crate) removed_here: AtomicU64,
}

/// The cache policy of one mount and what the kernel holds.
pub(crate) struct Coherence {
    short: Duration,
    fixed: bool,
    feed: AtomicBool,
    /// Bumped by every batch of changes from the container.
    generation: AtomicU64,
    /// Bumped by every change the mount makes itself (which the feed
    /// does not echo): with `generation`, what streamed subtrees are
    /// current for.
    local: AtomicU64,
    /// Keep watched nodes' attributes on the host (`--no-host-attrs`: no).
    keep_attrs: AtomicBool,
    /// The node ledger, shared with the views of the xattr answers and
    /// the contents it holds.
    held: Arc<Mutex<Ledger>>,
    no_xattrs: Arc<NoXattrs>,
    /// Names of directories listed completely while watched.
    listings: DirNames,
    /// Contents brought by opens, dropped by the changes of their nodes.
    heads: Arc<Heads>,
    /// Set once the kernel session exists.
    expire_attrs: OnceLock<ExpireAttrs>,
    /// Set once the kernel session exists.
    forget_name: OnceLock<ForgetName>,
    /// Mode and group of directories, kept through the changes of their
    /// times (what a create in them needs), dropped by any other change.
    dir_modes: Mutex<HashMap<u64, (u32, u32)>>,
    /// Handles that may write, which data invalidations must spare.
    writers: Writers,
    pub(crate) counts: Counts,
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX && !name.contains(&b'/') && !name.contains(&0)
}

impl Coherence {
    /// `ttl` is the short TTL; `fixed` when the user chose it, so that it
    /// applies to everything.
    pub(crate) fn new(ttl: Duration, fixed: bool) -> Self {
        let held: Arc<Mutex<Ledger>> = Arc::default();
        Coherence {
            short: ttl,
            fixed,
            feed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            local: AtomicU64::new(0),
            keep_attrs: AtomicBool::new(false),
            no_xattrs: Arc::new(NoXattrs::over(held.clone())),
            heads: Arc::new(Heads::over(held.clone(), super::heads::MAX_BYTES)),
            listings: DirNames::over(held.clone()),
            writers: Writers::over(held.clone()),
            held,
            expire_attrs: OnceLock::new(),
            forget_name: OnceLock::new(),
            dir_modes: Mutex::default(),
            counts: Counts::default(),
        }
    }

    /// The xattr cache that attribute changes correct.
    pub(super) fn no_xattrs(&self) -> Arc<NoXattrs> {
        self.no_xattrs.clone()
    }

    /// The held contents of small files that changes drop.
    pub(crate) fn heads(&self) -> Arc<Heads> {
        self.heads.clone()
    }

    /// The node ledger, for the views kept outside the core (passthrough's
    /// backing files).
    pub(crate) fn ledger(&self) -> Arc<Mutex<Ledger>> {
        self.held.clone()
    }

    /// The handles open for writing (data invalidations go through it).
    pub(crate) fn writers(&self) -> &Writers {
        &self.writers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How to expire a node's attributes in the kernel (once).
    pub(crate) fn set_expire_attrs(&self, expire: ExpireAttrs) {
        let _ = self.expire_attrs.set(expire);
    }

    /// This mount's own operation changed `node`'s attributes in a way
    /// its reply does not carry and the feed does not echo (setuid/setgid
    /// cleared): the kernel must ask again, whatever the TTL.
    pub(crate) fn changed_here(&self, node: u64) {
        self.counts.changed_here.fetch_add(1, Ordering::Relaxed);
        self.touched(node);
        if let Some(expire) = self.expire_attrs.get() {
            expire(node);
        }
    }

    /// How to make the kernel forget a name (once).
    pub(crate) fn set_forget_name(&self, forget: ForgetName) {
        let _ = self.forget_name.set(forget);
    }

    /// The kernel was answered with provisional attributes of `node` (a
    /// create sent behind) and the container's are known now: the kernel
    /// asks again, and the ledger answers if it kept them.
    pub(crate) fn provisional_done(&self, node: u64) {
        if let Some(expire) = self.expire_attrs.get() {
            expire(node);
        }
    }

    /// The container refused to make `name` in `parent`, which the kernel
    /// was told exists: the name is unknown here and forgotten there.
    pub(crate) fn refused(&self, parent: u64, name: &[u8]) {
        self.name_changed(parent, name);
        self.listings.unsure(parent, name);
        if let Some(forget) = self.forget_name.get() {
            forget(parent, name);
        }
    }

    /// Directory `dir` has this mode and group (its attributes are
    /// current now).
    pub(crate) fn learn_dir_mode(&self, dir: u64, mode: u32, gid: u32) {
        if !self.feeding() {
            return;
        }
        let mut m = self.dir_modes.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_DIR_MODES {
            m.clear();
        }
        m.insert(dir, (mode, gid));
    }

    /// Directory `dir`'s mode and group, as kept on the host or learnt
    /// since (only the mount's own creates in it changed it since).
    pub(crate) fn dir_mode(&self, dir: u64) -> Option<(u32, u32)> {
        if let Some((a, _)) = self.kept_attr(dir) {
            self.learn_dir_mode(dir, a.mode, a.gid);
            return Some((a.mode, a.gid));
        }
        let m = self.dir_modes.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&dir).copied()
    }

    /// `node`'s mode, owner or group may have changed.
    pub(crate) fn forget_dir_mode(&self, node: u64) {
        let mut m = self.dir_modes.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&node);
    }

    /// The satellite's feed is on: long TTLs may be given from now.
    pub(crate) fn feed_on(&self) {
        self.feed.store(true, Ordering::SeqCst);
    }

    /// The satellite's feed is off (a new satellite offers none): only
    /// the short TTL from now.
    pub(crate) fn feed_off(&self) {
        self.feed.store(false, Ordering::SeqCst);
        // Nothing would say a file made behind changed in the container.
        self.lock().drop_attrs();
    }

    /// The feed is on and the TTLs are ours to choose.
    pub(crate) fn feeding(&self) -> bool {
        !self.fixed && self.feed.load(Ordering::SeqCst)
    }

    /// Changes the container reported so far (entries fetched before a
    /// change may be stale).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Changes the container reported or the mount made so far:
    /// streamed subtrees are current while it stays ([`super::stream`]).
    pub(crate) fn stream_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst) + self.local.load(Ordering::SeqCst)
    }

    /// The short TTL (`--ttl`).
    pub(crate) fn short(&self) -> Duration {
        self.short
    }

    fn watched(h: &Ledger, node: u64) -> bool {
        h.watched(node)
    }

    /// Keep watched nodes' attributes on the host and answer GETATTR with
    /// them (with the feed on and TTLs not fixed).
    pub(crate) fn set_keep_attrs(&self, on: bool) {
        self.keep_attrs.store(on, Ordering::SeqCst);
    }

    fn keeping_attrs(&self) -> bool {
        self.feeding() && self.keep_attrs.load(Ordering::SeqCst)
    }

    /// A mark taken when a request whose reply carries attributes is
    /// sent: the reply is kept only if nothing was dropped meanwhile.
    pub(crate) fn attr_stamp(&self) -> u64 {
        self.lock().stamp()
    }

    /// A reply brought `node`'s attributes (`stamp` taken when its request
    /// left): kept when the feed watches the node. Never those of a file
    /// with no name left (link count 0, open only through a handle): the
    /// container no longer answers for it by node, and the feed may stop
    /// watching it.
    pub(crate) fn keep_attr(&self, node: u64, mut attr: Attr, source: Source, stamp: u64) {
        if !self.keeping_attrs() || attr.mode & libc::S_IFMT == libc::S_IFLNK || attr.nlink == 0 {
            return;
        }
        attr.ino = node;
        let mut h = self.lock();
        if h.watched(node) {
            h.keep(node, attr, source, stamp, LONG_TTL);
        }
    }

    /// `node`'s attributes as kept on the host, if current; counted as
    /// answered here.
    pub(crate) fn kept_attr(&self, node: u64) -> Option<(Attr, Duration)> {
        if !self.keeping_attrs() {
            return None;
        }
        let h = self.lock();
        let k = h.kept(node).filter(|_| h.watched(node))?;
        drop(h);
        self.counts.attrs_here.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(node, source = ?k.source, "attributes answered on the host");
        Some((k.attr, LONG_TTL))
    }

    /// The mount's own operation changes (or changed) `node`'s attributes
    /// (a file made behind whose handle is open keeps them: the
    /// operation changed them on the host).
    pub(crate) fn touched(&self, node: u64) {
        self.local.fetch_add(1, Ordering::SeqCst);
        self.lock().touch(node);
    }

    /// `node` was made behind with `attr` in `parent`, opened as `fh`
    /// ([`super::made`]): the host holds its attributes from now. False
    /// when it may not.
    pub(crate) fn follow(&self, node: u64, mut attr: Attr, parent: u64, fh: u64) -> bool {
        attr.ino = node;
        self.lock().follow(node, attr, parent, fh, LONG_TTL)
    }

    /// `node`'s attributes and what is followed of it, when it is a file
    /// made behind that the host follows.
    pub(crate) fn followed(&self, node: u64) -> Option<(Attr, Followed)> {
        self.lock().followed(node)
    }

    /// The attributes of `node`, a file made behind, answered on the host.
    pub(crate) fn followed_attr(&self, node: u64) -> Option<Attr> {
        let h = self.lock();
        let (a, f) = h.followed(node)?;
        // Released: held as long as the feed would report a change.
        if f.fh.is_none() && !(self.keeping_attrs() && h.watched(node)) {
            return None;
        }
        drop(h);
        self.counts.attrs_here.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(node, source = ?Source::Made, "attributes answered on the host");
        Some(a)
    }

    /// Changes `node`, a file made behind that the host follows.
    pub(crate) fn follow_change(
        &self,
        node: u64,
        change: impl FnOnce(&mut Attr, &mut Followed),
    ) -> Option<(Attr, Followed)> {
        self.lock().follow_change(node, LONG_TTL, change)
    }

    /// The create's handle of `node`, a file made behind, was released:
    /// what the host holds stays while the container's word holds every
    /// write, and the change feed would report a third party's change of
    /// it; else it goes. Whether it stays.
    pub(crate) fn follow_released(&self, node: u64, fenced: bool) -> bool {
        let keep = !fenced && self.keeping_attrs();
        let mut h = self.lock();
        let keep = keep && h.watched(node);
        let kept = keep
            && h.follow_change(node, LONG_TTL, |a, f| {
                f.fh = None;
                if let Some(t) = f.current() {
                    *a = Attr { ino: a.ino, ..t };
                }
            })
            .is_some_and(|(a, f)| f.current().is_some_and(|t| Attr { ino: a.ino, ..t } == a));
        if !kept {
            h.unfollow(node);
        }
        kept
    }

    /// The host stops following `node`; whether it did.
    pub(crate) fn unfollow(&self, node: u64) -> bool {
        self.lock().unfollow(node)
    }

    /// Every node followed.
    pub(crate) fn followed_nodes(&self) -> Vec<u64> {
        self.lock().followed_nodes()
    }

    /// The mount's own operation removes, replaces or moves `name` in
    /// `parent` (or did): the parent's and the named node's attributes.
    pub(crate) fn name_changed(&self, parent: u64, name: &[u8]) {
        self.local.fetch_add(1, Ordering::SeqCst);
        self.lock().name_changed(parent, name);
    }

    /// `fh` is an open file of `node`.
    pub(crate) fn opened(&self, fh: u64, node: u64) {
        self.lock().opened(fh, node);
    }

    /// `fh` was released.
    pub(crate) fn released(&self, fh: u64) {
        self.lock().released(fh);
    }

    /// Data is read in the container through `fh` (its atime may move).
    pub(crate) fn read_through(&self, fh: u64) {
        self.lock().read_through(fh);
    }

    /// `node` is read or written through a backing file the host does not
    /// see (reads move its atime, writes its size and times).
    pub(crate) fn bypassed(&self, node: u64) {
        self.lock().bypass(node);
    }

    /// Checks of the ledger's invariants: lookup counts and the nodes with
    /// kept attributes, each watched; xattr answers and contents held only
    /// for nodes the kernel holds.
    #[cfg(test)]
    pub(crate) fn ledger_view(&self) -> (std::collections::HashMap<u64, u64>, Vec<(u64, Attr)>) {
        let h = self.lock();
        // A file made behind whose handle is open has the host's guess.
        let open = |n: u64| h.followed(n).is_some_and(|(_, f)| f.fh.is_some());
        let kept = h
            .kept_nodes()
            .into_iter()
            .filter(|&n| !open(n))
            .filter_map(|n| h.kept(n).map(|k| (n, k.attr)))
            .collect::<Vec<_>>();
        for (n, _) in &kept {
            assert!(h.watched(*n), "attributes kept for unwatched node {n}");
            assert!(
                h.knows(*n),
                "attributes kept for node {n} the kernel does not hold"
            );
        }
        for n in h.xattrs.keys() {
            assert!(
                h.knows(*n),
                "an xattr answer kept for node {n} the kernel does not hold"
            );
        }
        for n in h.listings.dirs() {
            assert!(
                h.knows(n),
                "names kept for directory {n} the kernel does not hold"
            );
        }
        for n in h.heads.checked_nodes() {
            assert!(
                h.knows(n),
                "contents held for node {n} the kernel does not hold"
            );
        }
        (h.nodes.clone(), kept)
    }

    /// TTL of a node's attributes (`mode` tells symlinks, never watched).
    /// The kernel is about to get them: contents held since before may be
    /// older than what they tell it (it drops its pages on a new mtime and
    /// reads again), so they go.
    pub(crate) fn attr_ttl(&self, node: u64, mode: u32) -> Duration {
        let mut h = self.lock();
        h.heads.refreshed(node);
        if !self.feeding() || mode & libc::S_IFMT == libc::S_IFLNK {
            return self.short;
        }
        if Self::watched(&h, node) {
            LONG_TTL
        } else {
            self.short
        }
    }

    /// How long contents read now of regular file `node` may answer reads:
    /// as long as its attributes would be kept.
    pub(crate) fn contents_ttl(&self, node: u64) -> Duration {
        match self.feeding() && Self::watched(&self.lock(), node) {
            true => LONG_TTL,
            false => self.short,
        }
    }

    /// The kernel takes one reference on `node`, found as `name` in
    /// `parent`; returns the TTLs for the reply.
    pub(crate) fn entry(&self, parent: u64, name: &[u8], node: u64, mode: u32) -> Ttl {
        let attr = self.attr_ttl(node, mode);
        let mut h = self.lock();
        h.looked_up(node);
        h.kinds.insert(node, mode & libc::S_IFMT);
        if mode & libc::S_IFMT == libc::S_IFREG && valid_name(name) {
            h.place.insert(node, (parent, name.into()));
        }
        let entry = self.name_ttl(&mut h, parent, name, node);
        Ttl { attr, entry }
    }

    /// TTL of the absence of `name` in `parent`; one kept long is
    /// remembered (see [`DirNames`]: the kernel asks again before an
    /// exclusive create).
    pub(crate) fn absent(&self, parent: u64, name: &[u8]) -> Duration {
        let mut h = self.lock();
        let ttl = self.name_ttl(&mut h, parent, name, 0);
        drop(h);
        if ttl == LONG_TTL {
            self.listings.told_absent(parent, name);
        }
        ttl
    }

    fn name_ttl(&self, h: &mut Ledger, parent: u64, name: &[u8], node: u64) -> Duration {
        if !self.feeding() || !Self::watched(h, parent) || !valid_name(name) {
            return self.short;
        }
        if h.names.len() >= MAX_NAMES {
            // Drop the names of forgotten nodes before giving up.
            let Ledger { names, nodes, .. } = &mut *h;
            names.retain(|_, n| *n == 0 || nodes.contains_key(n));
            if h.names.len() >= MAX_NAMES * 3 / 4 {
                return self.short;
            }
        }
        h.names.insert((parent, name.into()), node);
        LONG_TTL
    }

    /// The node `name` in `parent` is, with its file type, when the host
    /// knows it is there: the watched directory's complete listing holds
    /// the name and the kernel was given it for the long TTL (the feed
    /// takes it back at a change, a lost event drops the listing).
    pub(crate) fn known_present(&self, parent: u64, name: &[u8]) -> Option<(u64, u32)> {
        if !self.cache_dir(parent) || !self.listings.present(parent, name) {
            return None;
        }
        let h = self.lock();
        let node = *h.names.get(&(parent, Box::from(name)))?;
        let kind = *h.kinds.get(&node).filter(|_| node != 0 && h.knows(node))?;
        Some((node, kind))
    }

    /// The mount removed or moved `name` from `parent`: whatever node the
    /// ledger had under it is no longer there (its attributes stay).
    pub(crate) fn unnamed(&self, parent: u64, name: &[u8]) {
        self.lock().names.remove(&(parent, Box::from(name)));
    }

    /// The mount moved `node` from `old` in `parent` to `new` in
    /// `new_parent` (which it replaced): the ledger names it there now.
    pub(crate) fn moved(
        &self,
        (parent, old): (u64, &[u8]),
        (new_parent, new): (u64, &[u8]),
        node: u64,
    ) {
        let mut h = self.lock();
        h.names.remove(&(parent, Box::from(old)));
        h.names.remove(&(new_parent, Box::from(new)));
        if h.place.contains_key(&node) && valid_name(new) {
            h.place.insert(node, (new_parent, new.into()));
        }
        self.name_ttl(&mut h, new_parent, new, node);
    }

    /// The complete listings of watched directories.
    pub(crate) fn listings(&self) -> &DirNames {
        &self.listings
    }

    /// The TTL of `name`'s absence in `parent` when a complete listing
    /// of the watched directory says so without asking the container.
    pub(crate) fn known_absent(&self, parent: u64, name: &[u8]) -> Option<Duration> {
        if !self.cache_dir(parent) || !self.listings.absent(parent, name) {
            return None;
        }
        let n = self.counts.absent_here.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            // Also shown with the feed's counters; this says it on a
            // mount that receives no changes.
            tracing::debug!(absent_here = n, "lookups answered \"absent\" on the host");
        }
        // Not told again: the listing already says so, and a change the
        // feed applied since the check above must not be undone by it
        // (the name would stay absent on the host for good).
        let mut h = self.lock();
        Some(self.name_ttl(&mut h, parent, name, 0))
    }

    /// Changes were lost before they could be applied (a frame over the
    /// feed's budget): nothing fetched before now can be trusted.
    pub(crate) fn lost(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut h = self.lock();
        h.drop_attrs();
        h.listings.drop_all();
    }

    /// The kernel dropped `count` references of `node`.
    pub(crate) fn forgotten(&self, node: u64, count: u64) {
        self.lock().forgotten(node, count);
    }

    /// Whether the kernel holds `node` (the root always): only then does
    /// the feed report its changes.
    pub(crate) fn holds(&self, node: u64) -> bool {
        self.lock().knows(node)
    }

    /// The feed watches `node` and the TTLs are ours: the kernel keeps its
    /// pages and attributes until the feed reports a change.
    pub(crate) fn watching(&self, node: u64) -> bool {
        self.feeding() && Self::watched(&self.lock(), node)
    }

    /// The directory's listing may be kept in the kernel's readdir cache.
    pub(crate) fn cache_dir(&self, node: u64) -> bool {
        self.feeding() && Self::watched(&self.lock(), node)
    }

    /// The notifications a batch of changes calls for. Changes naming
    /// nodes the kernel does not hold are dropped; `Unwatched` only
    /// updates the policy (it precedes the node's reply).
    pub(crate) fn apply(&self, changes: &[Change<'_>]) -> Vec<Inval> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        {
            let mut m = self.dir_modes.lock().unwrap_or_else(|p| p.into_inner());
            for c in changes {
                match c {
                    Change::Attr { node } | Change::Unwatched { node } => {
                        m.remove(node);
                    }
                    Change::All => m.clear(),
                    Change::Entry { .. } | Change::Removed { .. } | Change::Data { .. } => {}
                }
            }
        }
        let mut out = Vec::new();
        let mut dirs = HashSet::new();
        let mut h = self.lock();
        h.listings.changed(changes);
        h.heads.changed(changes);
        // A reply in flight may carry attributes from before these
        // changes, of a node the kernel did not hold yet (its changes
        // were dropped): none is kept.
        h.changes_came();
        let knows = |h: &Ledger, n: u64| h.knows(n);
        for c in changes {
            self.counts.changes.fetch_add(1, Ordering::Relaxed);
            let ok = match c {
                Change::Entry { dir, name } | Change::Removed { dir, name, .. }
                    if knows(&h, *dir) && valid_name(name) =>
                {
                    if let Some(old) = h.names.remove(&(*dir, Box::from(&name[..]))) {
                        h.drop_attr(old);
                    }
                    h.drop_attr(*dir);
                    match c {
                        Change::Removed { node, .. } if knows(&h, *node) => {
                            h.drop_attr(*node);
                            out.push(Inval::Delete {
                                parent: *dir,
                                child: *node,
                                name: name.to_vec(),
                            })
                        }
                        _ => out.push(Inval::Entry {
                            parent: *dir,
                            name: name.to_vec(),
                        }),
                    }
                    if dirs.insert(*dir) {
                        out.push(Inval::Data(*dir));
                    }
                    true
                }
                Change::Attr { node } if knows(&h, *node) => {
                    h.drop_attr(*node);
                    h.xattrs.remove(node);
                    out.push(Inval::Attr(*node));
                    true
                }
                // Contents changed: xattrs did not (their changes come as
                // Attr), and a write only ever removes security.capability.
                // Keeping the "no xattrs" answer spares each later write()
                // its security.capability round trip.
                Change::Data { node } if knows(&h, *node) => {
                    h.drop_attr(*node);
                    if let Some((parent, name)) = h.place.get(node) {
                        out.push(Inval::Entry {
                            parent: *parent,
                            name: name.to_vec(),
                        });
                    }
                    out.push(Inval::Data(*node));
                    true
                }
                Change::Unwatched { node } => {
                    let n = self.counts.unwatched.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::debug!(node, unwatched = n, "node not watched: short TTL");
                    h.drop_attr(*node);
                    if h.unwatched.len() >= MAX_UNWATCHED {
                        h.degraded = true;
                    } else {
                        h.unwatched.insert(*node);
                    }
                    true
                }
                Change::All => {
                    drop(h);
                    out.extend(self.everything());
                    h = self.lock();
                    true
                }
                _ => false,
            };
            if !ok {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        out
    }

    /// Invalidations of everything the kernel may hold from us (after a
    /// lost event or a full queue).
    pub(crate) fn everything(&self) -> Vec<Inval> {
        self.counts.everything.fetch_add(1, Ordering::Relaxed);
        let mut h = self.lock();
        h.listings.drop_all();
        h.xattrs.clear();
        h.heads.clear();
        h.drop_attrs();
        let mut out: Vec<Inval> = h
            .names
            .drain()
            .map(|((parent, name), _)| Inval::Entry {
                parent,
                name: name.into_vec(),
            })
            .collect();
        out.push(Inval::Data(ROOT_NODE));
        out.extend(h.nodes.keys().map(|&n| Inval::Data(n)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: u32 = libc::S_IFREG | 0o644;
    const DIR: u32 = libc::S_IFDIR | 0o755;

    fn short() -> Duration {
        Duration::from_secs(1)
    }

    fn fed() -> Coherence {
        let c = Coherence::new(short(), false);
        c.feed_on();
        c
    }

    fn entry(dir: u64, name: &str) -> Change<'static> {
        Change::Entry {
            dir,
            name: name.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn without_the_feed_or_with_a_fixed_ttl_everything_gets_the_short_ttl() {
        let off = Coherence::new(short(), false);
        assert_eq!(
            off.entry(1, b"a", 2, FILE),
            Ttl {
                attr: short(),
                entry: short()
            }
        );
        assert_eq!(off.absent(1, b"b"), short());
        assert!(!off.cache_dir(1));
        let fixed = Coherence::new(Duration::from_secs(7), true);
        fixed.feed_on();
        assert_eq!(fixed.entry(1, b"a", 2, FILE).min(), Duration::from_secs(7));
        assert_eq!(fixed.absent(1, b"b"), Duration::from_secs(7));
        assert!(!fixed.cache_dir(1));
    }

    #[test]
    fn with_the_feed_watched_nodes_are_kept_long_and_others_short() {
        let c = fed();
        assert_eq!(
            c.entry(1, b"a", 2, FILE),
            Ttl {
                attr: LONG_TTL,
                entry: LONG_TTL
            }
        );
        assert_eq!(c.absent(1, b"none"), LONG_TTL);
        assert!(c.cache_dir(1));
        // Symlinks are not watched: their own attributes stay short.
        assert_eq!(c.entry(1, b"l", 3, libc::S_IFLNK | 0o777).attr, short());
        // An unwatched node, and names inside it if it is a directory.
        assert!(c.apply(&[Change::Unwatched { node: 4 }]).is_empty());
        let t = c.entry(1, b"d", 4, DIR);
        assert_eq!(
            t,
            Ttl {
                attr: short(),
                entry: LONG_TTL
            }
        );
        assert_eq!(c.entry(4, b"x", 5, FILE).entry, short());
        assert_eq!(c.absent(4, b"y"), short());
        assert!(!c.cache_dir(4));
        // Forgotten and found again: watched anew.
        c.forgotten(4, 1);
        assert_eq!(c.attr_ttl(4, DIR), LONG_TTL);
    }

    #[test]
    fn an_absence_told_to_the_kernel_is_known_until_something_names_it() {
        let c = fed();
        c.entry(1, b"d", 2, DIR);
        assert_eq!(c.known_absent(2, b"new"), None, "never asked");
        assert_eq!(c.absent(2, b"new"), LONG_TTL);
        assert_eq!(c.known_absent(2, b"new"), Some(LONG_TTL));
        assert_eq!(c.known_absent(2, b"other"), None);
        // Created in the container: asked again.
        c.apply(&[entry(2, "new")]);
        assert_eq!(c.known_absent(2, b"new"), None);
        // Made by the mount (a rename's target, a create), or found.
        c.absent(2, b"made");
        c.listings().created(2, b"made");
        assert_eq!(c.known_absent(2, b"made"), None);
        c.absent(2, b"seen");
        c.listings().found(2, b"seen");
        assert_eq!(c.known_absent(2, b"seen"), None);
        // Everything invalidated, or the directory forgotten.
        c.absent(2, b"gone");
        c.everything();
        assert_eq!(c.known_absent(2, b"gone"), None);
        c.absent(2, b"gone");
        c.forgotten(2, 1);
        assert_eq!(c.known_absent(2, b"gone"), None);
        // Not watched, or without the feed: never known.
        assert!(c.apply(&[Change::Unwatched { node: 4 }]).is_empty());
        c.entry(1, b"u", 4, DIR);
        c.absent(4, b"x");
        assert_eq!(c.known_absent(4, b"x"), None);
        let off = Coherence::new(short(), false);
        off.absent(1, b"x");
        assert_eq!(off.known_absent(1, b"x"), None);
    }

    #[test]
    fn changes_become_notifications_and_unknown_nodes_are_dropped() {
        let c = fed();
        c.entry(1, b"d", 2, DIR);
        c.entry(2, b"f", 3, FILE);
        let got = c.apply(&[
            entry(2, "new"),
            entry(2, "other"),
            Change::Removed {
                dir: 2,
                name: b"f".to_vec().into(),
                node: 3,
            },
            Change::Data { node: 3 },
            Change::Attr { node: 2 },
            // Unknown nodes, bad names: dropped.
            entry(99, "x"),
            entry(2, "a/b"),
            entry(2, ""),
            Change::Data { node: 77 },
            Change::Removed {
                dir: 2,
                name: b"g".to_vec().into(),
                node: 78,
            },
        ]);
        let e = |p: u64, n: &str| Inval::Entry {
            parent: p,
            name: n.as_bytes().to_vec(),
        };
        assert_eq!(
            got,
            vec![
                e(2, "new"),
                Inval::Data(2),
                e(2, "other"),
                Inval::Delete {
                    parent: 2,
                    child: 3,
                    name: b"f".to_vec()
                },
                e(2, "f"),
                Inval::Data(3),
                Inval::Attr(2),
                // A removal of an unknown child is a plain entry change.
                e(2, "g"),
            ]
        );
        assert_eq!(c.counts.dropped.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_lost_event_invalidates_every_name_and_node_held() {
        let c = fed();
        c.entry(1, b"d", 2, DIR);
        c.entry(2, b"f", 3, FILE);
        c.absent(2, b"missing");
        let mut got = c.apply(&[Change::All]);
        got.sort_by_key(|i| format!("{i:?}"));
        let mut want = vec![
            Inval::Entry {
                parent: 1,
                name: b"d".to_vec(),
            },
            Inval::Entry {
                parent: 2,
                name: b"f".to_vec(),
            },
            Inval::Entry {
                parent: 2,
                name: b"missing".to_vec(),
            },
            Inval::Data(1),
            Inval::Data(2),
            Inval::Data(3),
        ];
        want.sort_by_key(|i| format!("{i:?}"));
        assert_eq!(got, want);
        // The names were handed back: a second loss has only nodes to do.
        assert_eq!(c.everything().len(), 3);
    }

    #[test]
    fn too_many_unwatched_nodes_degrade_everything_to_the_short_ttl() {
        let c = fed();
        let flood: Vec<Change<'static>> = (0..MAX_UNWATCHED as u64 + 1)
            .map(|node| Change::Unwatched { node: node + 1000 })
            .collect();
        c.apply(&flood);
        assert_eq!(c.attr_ttl(5, FILE), short());
        assert!(!c.cache_dir(ROOT_NODE));
    }

    #[test]
    fn xattr_answers_and_contents_live_in_the_ledger_and_go_with_their_node() {
        let c = fed();
        let xattrs = c.no_xattrs();
        let heads = c.heads();
        // Never for a node the kernel does not hold.
        xattrs.note_empty(3, LONG_TTL);
        assert!(!xattrs.known_empty(3));
        c.entry(1, b"f", 3, FILE);
        c.entry(1, b"g", 4, FILE);
        for n in [3, 4] {
            xattrs.note_empty(n, LONG_TTL);
            assert!(heads.keep(n + 10, n, b"data", heads.ticket(), LONG_TTL));
        }
        assert!(xattrs.known_empty(3) && heads.read(13, 0, 4).is_some());
        c.ledger_view();
        // Forgotten: both go at once, with the attributes.
        c.forgotten(3, 1);
        assert!(!xattrs.known_empty(3));
        assert!(heads.read(13, 0, 4).is_none());
        c.ledger_view();
        // An attribute change drops the node's answer and contents; a
        // loss of events drops everything.
        c.entry(1, b"h", 5, FILE);
        xattrs.note_empty(5, LONG_TTL);
        c.apply(&[Change::Attr { node: 4 }]);
        assert!(!xattrs.known_empty(4) && heads.read(14, 0, 4).is_none());
        assert!(xattrs.known_empty(5));
        c.everything();
        assert!(!xattrs.known_empty(5));
        assert_eq!(heads.bytes(), 0);
        c.ledger_view();
    }

    #[test]
    fn names_are_bounded() {
        let c = fed();
        for i in 0..MAX_NAMES as u64 {
            c.absent(1, format!("n{i}").as_bytes());
        }
        assert_eq!(c.absent(1, b"one-more"), short());
        assert!(c.lock().names.len() <= MAX_NAMES);
    }
}
