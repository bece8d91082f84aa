//! The filesystem core: typed operations on node ids, turned into
//! requests to the satellite, with the satellite's replies checked and
//! typed on the way back.
//!
//! It knows nothing of fuser or the kernel (the adapter in `kernel/fuse.rs` maps
//! kernel requests to these methods and results to replies) and nothing
//! of Docker (it talks to a [`Transport`]), so tests drive it with canned
//! answers or with the real satellite over pipes. Besides the mapping it
//! holds the mount's policies:
//! * TTLs: short, or long for what the satellite's change feed watches
//!   ([`coherence`]), with what the host holds per node in one ledger
//!   ([`ledger`]), whose kept attributes answer GETATTR for watched nodes; negative entries likewise ([`Lookup::Absent`]),
//!   answered on the host for names a fully listed, watched directory
//!   does not hold ([`dir_names`]);
//! * xattr absence: `ls -l`'s getxattr calls are answered here for nodes
//!   the satellite said have none ([`xattr_cache`]);
//! * readdirplus references: entries the kernel did not take are forgotten
//!   ([`listing`]);
//! * symlink targets are rewritten both ways when asked ([`links`]);
//! * the caller's identity (uid, gid, groups) rides with each request when
//!   asked ([`caller`]): every operation takes its caller ([`Who`]) and
//!   sends, follow-ups included, through one path ([`Outbox`]) that wraps
//!   requests as the caller's and orders them behind accepted writes;
//! * on the local channel, open files come with the satellite's descriptor
//!   for FUSE passthrough, checked before use, and the core decides which
//!   open files the kernel serves from it ([`backing`]);
//! * a read-only open of a watched file the kernel may keep the pages of
//!   is answered here, and opened in the container on its first read
//!   ([`lazy_open`]);
//! * a read-only open of a small file brings its contents, and reads on
//!   that handle are answered here while they are current ([`heads`]);
//!   the releases of such handles go in batches ([`releases`]);
//! * the first read of a directory brings the subtree below it, whose
//!   listings and small files' contents answer the kernel's next reads
//!   and opens on the host ([`stream`]);
//! * writes are answered at once and sent in batches, other requests
//!   waiting for the writes before them ([`write_behind`]);
//! * a create, mkdir or symlink of a name the host knows is absent is
//!   answered at once with ids the host chose and made in the container
//!   behind, in order ([`pending`]); so are an unlink, rmdir or rename of
//!   a name it knows is there (an empty directory, a file); a directory a lookup missed in is listed
//!   behind, so that the names created next need no lookup
//!   ([`list_behind`]); a file so created has its attributes held on
//!   the host while its handle is open, which answers its setattrs at
//!   once, sent behind too ([`made`]);
//! * the handles that may write are known, so that the change feed never
//!   makes the kernel wait on their writeback ([`writers`]).

mod backing;
mod caller;
mod coherence;
mod dir_names;
pub(crate) mod failure;
mod heads;
pub(crate) mod ids;
mod lazy_dir;
mod lazy_open;
pub(crate) mod ledger;
mod links;
mod list_behind;
mod listing;
mod made;
mod ops;
mod pending;
mod prefetch;
mod releases;
mod replies;
mod statfs_cache;
mod stream;
mod transport;
mod write_behind;
mod write_only;
mod writers;
mod xattr_cache;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub(crate) use dockerfuse_proto::{Attr, Entry, Errno, SetAttr, SetTime, StatFs};
use dockerfuse_proto::{OpenFlags, Request, Response, MAX_OPEN_DATA};

pub(crate) use backing::OpenReply;
pub(crate) use caller::{Caller, Who};
pub(crate) use coherence::Source;
pub(crate) use coherence::{Coherence, Inval, Ttl};
pub(crate) use failure::Failure;
pub(crate) use ids::{Fh, NodeId};
pub(crate) use links::LinkRewrite;
pub(crate) use listing::{DirItem, PlusItem};
pub use transport::{Done, Transport};

use backing::Serving;
use heads::Heads;
use lazy_dir::LazyDirs;
use lazy_open::{LazyFiles, Remote};
use pending::Pending;
use prefetch::{Buffer, Prefetched};
use releases::Releases;
use replies::unexpected;
use write_behind::{Accepted, Closed, WriteBehind};
use xattr_cache::NoXattrs;

/// open(2) flags of this kernel as a satellite reads them: in the
/// protocol's numbering, or in its own kernel's before protocol 6.
fn wire_flags(legacy: Option<dockerfuse_proto::Abi>, flags: i32) -> OpenFlags {
    let wire = OpenFlags::from_native(flags);
    match legacy {
        None => wire,
        Some(abi) => OpenFlags(wire.to_abi(abi) as u32),
    }
}

/// Caching and I/O choices of a mount.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// How long the kernel may trust names and attributes (without the
    /// change feed, or for what it does not watch).
    pub(crate) ttl: Duration,
    /// `ttl` was chosen by the user: it applies even with the feed.
    pub(crate) fixed_ttl: bool,
    /// The kernel caches writes (open flags are adjusted for it).
    pub(crate) writeback: bool,
    /// Opt-in: show absolute symlinks under the mount point.
    pub(crate) links: Option<LinkRewrite>,
    /// Perform each request as the host user who made it (`--allow-other`).
    pub(crate) per_caller: bool,
    /// The satellite answers `OpenSmall` (protocol 5): read-only opens of
    /// small files bring their contents.
    pub(crate) open_small: bool,
    /// Answer writes at once and send them in batches (not with
    /// `per_caller`: a batch has one identity).
    pub(crate) write_behind: bool,
    /// Keep the attributes of nodes the change feed watches on the host
    /// and answer GETATTR with them.
    pub(crate) host_attrs: bool,
    /// Read-only opens of watched files are answered on the host and made
    /// in the container on the first read ([`lazy_open`]); only for a
    /// satellite running as root (whose open cannot be refused where the
    /// kernel's page cache would serve the reads).
    pub(crate) lazy_open: bool,
    /// The satellite speaks protocol 6: a directory opened on the host is
    /// opened in the container with its first read (`OpenReadDir`).
    pub(crate) open_read_dir: bool,
    /// The satellite speaks protocol 8: the first read of a directory
    /// opened on the host streams the subtree below it ([`stream`]).
    pub(crate) stream: bool,
    /// The satellite is older than protocol 6 and reads open flags in its
    /// own kernel's numbers, these; `None`: in the protocol's.
    pub(crate) legacy_flags: Option<dockerfuse_proto::Abi>,
    /// The satellite speaks protocol 8 and decides as the kernel did: a
    /// create or mkdir of a name known absent is answered at once and
    /// sent behind ([`pending`]; needs `write_behind`).
    pub(crate) pipeline: bool,
    /// The kernel checks permissions (`default_permissions`) and keeps
    /// each inode's POSIX ACLs itself (FUSE_POSIX_ACL): asked for once
    /// per inode, dropped by the change feed's invalidations. Only with
    /// `--allow-other`, whose kernel checks permissions anyway, and the
    /// feed.
    pub(crate) kernel_acls: bool,
    /// The satellite speaks protocol 9: with `pipeline`, a symlink of a
    /// name known absent is answered at once and sent behind too.
    pub(crate) symlink_new: bool,
    /// `--close-behind`: a FLUSH does not wait for the writes and create
    /// of its handle still behind; what the container refuses after is
    /// owed to the node ([`write_behind`]). Needs `write_behind`.
    pub(crate) close_behind: bool,
}

/// Completion of one request sent through the [`Outbox`]: the
/// transport's, with its failures typed.
type Sent = Box<dyn for<'a> FnOnce(Result<Response<'a>, Failure>) + Send>;

/// Outcome callback of one operation.
pub(crate) type Cb<T> = Box<dyn FnOnce(Result<T, Failure>) + Send>;
/// Outcome callback of an operation whose data borrows the receive buffer.
pub(crate) type BytesCb = Box<dyn for<'a> FnOnce(Result<&'a [u8], Failure>) + Send>;
/// Outcome callback of a plain readdir.
pub(crate) type DirCb = Box<dyn for<'a> FnOnce(Result<Vec<DirItem<'a>>, Failure>) + Send>;
/// Outcome callback of a readdirplus: returns how many of the items the
/// kernel took (the rest are forgotten).
pub(crate) type PlusCb = Box<dyn for<'a> FnOnce(Result<&[PlusItem<'a>], Failure>) -> usize + Send>;

/// Outcome of getxattr/listxattr.
pub(crate) enum Xattr<'a> {
    /// The value (or the list of names).
    Data(&'a [u8]),
    /// The size a size probe (size 0) asked for.
    Size(u32),
}
/// Outcome callback of getxattr/listxattr.
pub(crate) type XattrCb = Box<dyn for<'a> FnOnce(Result<Xattr<'a>, Failure>) + Send>;

/// An open file: the satellite's handle and, with passthrough, the
/// backing file the kernel serves it from (`B`: the kernel's id of it).
pub(crate) struct Opened<B = ()> {
    pub(crate) fh: Fh,
    pub(crate) passthrough: Option<Arc<B>>,
}

/// Outcome of a lookup.
pub(crate) enum Lookup {
    Found(Entry, Ttl),
    /// The name does not exist; the kernel may remember that for the TTL.
    Absent(Duration),
}

/// The filesystem core of one mount; `B` is the kernel's id of a backing
/// file (passthrough).
pub(crate) struct Core<T: Transport, B = ()> {
    out: Outbox<T>,
    opts: Options,
    no_xattrs: Arc<NoXattrs>,
    coherence: Arc<Coherence>,
    dirs: Arc<LazyDirs>,
    files: Arc<LazyFiles>,
    prefetched: Arc<Prefetched>,
    streams: Arc<stream::Streams>,
    /// Recent statfs answers ([`statfs_cache`]).
    statfs: Arc<statfs_cache::Recent>,
    heads: Arc<Heads>,
    releases: Arc<Releases>,
    pending: Arc<Pending>,
    made: Arc<made::Made>,
    listing: Arc<list_behind::ListBehind>,
    /// Set when the kernel agreed to passthrough.
    passthrough: OnceLock<Arc<crate::kernel::passthrough::Backings<B>>>,
    /// With passthrough: when (ms after `epoch`, 0: never) a file created
    /// behind last grew past [`LARGE_CREATED`] through its create's
    /// handle; creates wait for [`LARGE_WINDOW`] after that.
    created_large: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
}

/// Size past which a file written through the handle of a create sent
/// behind (with passthrough: through write-behind) makes the next
/// creates wait for the descriptor passthrough serves them from.
const LARGE_CREATED: u64 = 8 << 20;
/// How long creates wait after such a file.
const LARGE_WINDOW: Duration = Duration::from_secs(10);

/// The one way out for the core's requests: wrapped as the caller's when
/// the mount performs requests per caller, and sent once the writes
/// accepted before them have landed. Callbacks that send follow-up
/// requests hold a clone.
struct Outbox<T> {
    transport: Arc<T>,
    behind: Option<Arc<WriteBehind>>,
    per_caller: bool,
    /// Replies with file contents received: one may carry contents newer
    /// than a stream in flight or kept ([`stream`]).
    replies: Arc<std::sync::atomic::AtomicU64>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            transport: self.transport.clone(),
            behind: self.behind.clone(),
            per_caller: self.per_caller,
            replies: self.replies.clone(),
        }
    }
}

impl<T: Transport> Outbox<T> {
    /// Sends `req` for `who`, after the writes accepted before it. The
    /// reply is handled in the span of the request that sent it; a
    /// failure of the transport reaches `done` as such ([`failure`]).
    fn send(&self, who: &Who, req: &Request<'_>, done: Sent) {
        let done: Done = Box::new(move |r| done(r.map_err(Failure::transport)));
        let done: Done = match req {
            Request::Read { .. } | Request::OpenSmall { .. } => {
                let replies = self.replies.clone();
                Box::new(move |r| {
                    replies.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    done(r)
                })
            }
            _ => done,
        };
        let span = tracing::Span::current();
        let done: Done = match span.is_disabled() {
            true => done,
            false => Box::new(move |r| {
                let _in = span.enter();
                done(r)
            }),
        };
        let wrapped;
        let req = match who {
            Who::Caller(c) if self.per_caller => {
                wrapped = Request::As {
                    uid: c.uid,
                    gid: c.gid,
                    groups: c.groups.to_vec(),
                    req: Box::new(req.clone()),
                };
                &wrapped
            }
            Who::Caller(_) | Who::Mount => req,
        };
        match &self.behind {
            Some(b) if !b.is_idle() => {
                crate::mount::waits::deferred();
                let (transport, req) = (self.transport.clone(), req.clone().into_owned());
                b.after_writes(Box::new(move || transport.call(&req, done)))
            }
            _ => self.transport.call(req, done),
        }
    }

    /// What streamed subtrees are current for: the changes the container
    /// reported, those the mount made, and the contents read since (which
    /// may show a file newer than a stream's snapshot before the feed
    /// reports the change, which it sends after the stream's reply).
    fn stream_generation(&self, coh: &Coherence) -> u64 {
        coh.stream_generation() + self.replies.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sends a request whose outcome nobody waits for (no wait).
    fn send_and_forget(&self, who: &Who, req: &Request<'_>) {
        let _bg = crate::mount::waits::background();
        self.send(who, req, Box::new(|_| {}))
    }

    /// Sends `req`, an operation already answered to the kernel, behind
    /// everything accepted before it ([`WriteBehind::hold_after`]); no
    /// kernel request waits for it. `finish` gets the hold's number (to
    /// `unhold`) and the outcome.
    fn send_held(
        &self,
        behind: &WriteBehind,
        req: Request<'static>,
        finish: impl for<'a> FnOnce(u64, Result<Response<'a>, Failure>) + Send + 'static,
    ) {
        let transport = self.transport.clone();
        behind.hold_after(Box::new(move |seq| {
            let _bg = crate::mount::waits::background();
            transport.call(
                &req,
                Box::new(move |r| finish(seq, r.map_err(Failure::transport))),
            )
        }));
    }
}

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
    pub(crate) fn new(transport: T, opts: Options) -> Self {
        let coherence = Arc::new(Coherence::new(opts.ttl, opts.fixed_ttl));
        coherence.set_keep_attrs(opts.host_attrs);
        let no_xattrs = coherence.no_xattrs();
        let heads = coherence.heads();
        let transport = Arc::new(transport);
        let behind = (opts.write_behind && !opts.per_caller && !opts.writeback).then(|| {
            let transport = transport.clone();
            let send: write_behind::SendBatch = Arc::new(move |fh, offset, data, done| {
                let len = data.len() as u64;
                let _bg = crate::mount::waits::background();
                let req = Request::Write {
                    fh,
                    offset,
                    data: data.into(),
                };
                transport.call(
                    &req,
                    Box::new(move |r| {
                        let r = r.map_err(Failure::transport);
                        done(
                            r.and_then(|r| replies::written(r, len))
                                .map_err(|f| f.errno),
                        )
                    }),
                )
            });
            Arc::new(WriteBehind::new(send))
        });
        let out = Outbox {
            transport,
            behind,
            per_caller: opts.per_caller,
            replies: Arc::default(),
        };
        Core {
            out,
            opts,
            no_xattrs,
            coherence,
            dirs: Arc::default(),
            files: Arc::default(),
            prefetched: Arc::default(),
            streams: Arc::default(),
            statfs: Arc::default(),
            heads,
            releases: Arc::default(),
            pending: Arc::default(),
            made: Arc::default(),
            listing: Arc::default(),
            passthrough: OnceLock::new(),
            created_large: Default::default(),
            epoch: std::time::Instant::now(),
        }
    }

    /// The kernel agreed to passthrough: open files with a usable
    /// descriptor are served from it from now on.
    pub(crate) fn enable_passthrough(&self) {
        let ledger = self.coherence.ledger();
        let backings = crate::kernel::passthrough::Backings::over(ledger);
        let _ = self.passthrough.set(Arc::new(backings));
    }

    /// What decides, in an open's reply, how the kernel serves the file.
    fn serving(&self) -> Serving<T, B> {
        Serving {
            backings: self.passthrough.get().cloned(),
            heads: self.heads.clone(),
            out: self.out.clone(),
        }
    }

    /// The cache policy and what the kernel holds (for the change feed).
    pub(crate) fn coherence(&self) -> Arc<Coherence> {
        self.coherence.clone()
    }

    /// The transport (to ask for the change feed).
    pub(crate) fn transport(&self) -> &T {
        &self.out.transport
    }

    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    /// Sends `req` for `who` and maps its response with `map` into `cb`.
    fn call<R: 'static>(
        &self,
        who: &Who,
        req: Request<'_>,
        map: fn(Response<'_>) -> Result<R, Failure>,
        cb: Cb<R>,
    ) {
        self.out
            .send(who, &req, Box::new(move |r| cb(r.and_then(map))));
    }

    /// Sends a request whose reply is an entry found as `name` in
    /// `parent`: the kernel takes a reference, the TTLs are chosen and the
    /// xattr news remembered.
    fn call_entry(
        &self,
        who: &Who,
        req: Request<'_>,
        parent: u64,
        name: &[u8],
        cb: Cb<(Entry, Ttl)>,
    ) {
        let (cache, coh, name) = (
            self.no_xattrs.clone(),
            self.coherence.clone(),
            name.to_vec(),
        );
        let stamp = coh.attr_stamp();
        self.out.send(
            who,
            &req,
            Box::new(move |r| {
                cb(r.and_then(replies::entry).map(|e| {
                    let ttl = coh.entry(parent, &name, e.node, e.attr.mode);
                    coh.keep_attr(e.node, e.attr, Source::Entry, stamp);
                    cache.note(&e, ttl.attr);
                    (e, ttl)
                }))
            }),
        );
    }

    /// Wraps `cb` to tell the listings what an operation on `name` in
    /// `dir` did: on success the name exists (`exists`) or not; on a
    /// failure it is unknown, but for EEXIST of a creation.
    /// The operation changes the directory's times (and, for a removal,
    /// the named node's link count): what the ledger kept of them goes
    /// when it is sent and again when it is done.
    fn noting<R: 'static>(&self, dir: u64, name: &[u8], exists: bool, cb: Cb<R>) -> Cb<R> {
        let (coh, name) = (self.coherence.clone(), name.to_vec());
        let forget = move |coh: &Coherence, name: &[u8]| match exists {
            true => coh.touched(dir),
            false => coh.name_changed(dir, name),
        };
        forget(&coh, &name);
        Box::new(move |r: Result<R, Failure>| {
            forget(&coh, &name);
            let l = coh.listings();
            match &r {
                Ok(_) if exists => l.created(dir, &name),
                Ok(_) => {
                    l.removed(dir, &name);
                    coh.unnamed(dir, &name);
                }
                Err(f) if exists && f.errno == Errno::EEXIST => l.created(dir, &name),
                Err(_) => l.unsure(dir, &name),
            }
            cb(r)
        })
    }

    /// Drops `count` lookups of each node (never sent as a caller: it has
    /// no reply and no permission check).
    pub(crate) fn forget(&self, nodes: Vec<(NodeId, u64)>) {
        let nodes: Vec<(u64, u64)> = nodes.into_iter().map(|(NodeId(n), c)| (n, c)).collect();
        for &(node, count) in &nodes {
            self.coherence.forgotten(node, count);
            self.made.forget(node);
            if let Some(b) = &self.out.behind {
                b.forget_node(node);
            }
        }
        if nodes.is_empty() {
            return;
        }
        // A node created behind is forgotten after it was made; while
        // removals or renames are sent behind, after them (they name
        // their directories, which the kernel may forget first).
        let after =
            self.pending.removals() || nodes.iter().any(|&(n, _)| self.pending.is_pending(n));
        match &self.out.behind {
            Some(b) if after => {
                let transport = self.out.transport.clone();
                b.after_writes(Box::new(move || transport.post(&Request::Forget { nodes })))
            }
            _ => self.out.transport.post(&Request::Forget { nodes }),
        }
    }

    /// An operation that changes file contents in the container: held
    /// contents go when it is sent and again before `cb` learns it is done.
    fn changing<R: 'static>(&self, cb: Cb<R>) -> Cb<R> {
        self.heads.clear();
        let heads = self.heads.clone();
        Box::new(move |r| {
            heads.clear();
            cb(r)
        })
    }

    /// Wraps `cb` to expire `node`'s attributes in the kernel once the
    /// operation is over, before its reply: it may have cleared setuid or
    /// setgid, which nothing else would tell the kernel
    /// ([`Coherence::changed_here`]). Whatever the outcome: a failed
    /// write may have cleared them too.
    fn expiring<R: 'static>(&self, node: u64, cb: Cb<R>) -> Cb<R> {
        let coh = self.coherence.clone();
        Box::new(move |r| {
            coh.changed_here(node);
            cb(r)
        })
    }

    /// Wraps `cb` of an operation that changes `node`'s attributes (size,
    /// times, mode...): what the ledger kept of them goes when it is sent
    /// and again when it is done, before its reply.
    fn touching<R: 'static>(&self, node: u64, cb: Cb<R>) -> Cb<R> {
        let coh = self.coherence.clone();
        coh.touched(node);
        Box::new(move |r| {
            coh.touched(node);
            cb(r)
        })
    }

    /// The error owed to `node` by a write or create refused after its
    /// handle's close returned (`--close-behind`), reported once.
    fn owed(&self, node: u64) -> Option<Errno> {
        self.out.behind.as_ref()?.take_owed(node)
    }

    /// Wraps `cb` of an operation on `node` to report, in place of its
    /// outcome, an error owed to the node once it is done (what was
    /// behind before it is back by then).
    fn owing<R: 'static>(&self, node: u64, cb: Cb<R>) -> Cb<R> {
        let Some(b) = self.out.behind.clone().filter(|_| self.opts.close_behind) else {
            return cb;
        };
        Box::new(move |r| match b.take_owed(node) {
            Some(e) => cb(Err(Failure::behind(e))),
            None => cb(r),
        })
    }

    /// Wraps `cb` of a lookup of `name` in `dir` to report, in place of
    /// its outcome, the error owed to a file of that name whose create
    /// was refused after its close returned.
    fn owing_name<R: 'static>(&self, dir: u64, name: &[u8], cb: Cb<R>) -> Cb<R> {
        let Some(b) = self.out.behind.clone().filter(|_| self.opts.close_behind) else {
            return cb;
        };
        let name = name.to_vec();
        Box::new(move |r| match b.take_owed_name(dir, &name) {
            Some(e) => cb(Err(Failure::behind(e))),
            None => cb(r),
        })
    }

    /// Unmount: waits (at most `limit`) for everything answered before
    /// the container did it, and logs what it refused after a close
    /// returned (`--close-behind`) and what was left behind.
    pub(crate) fn drain(&self, limit: Duration) {
        let Some(b) = self.out.behind.clone() else {
            return;
        };
        if !b.is_idle() {
            let (tx, rx) = std::sync::mpsc::channel();
            b.after_writes(Box::new(move || {
                let _ = tx.send(());
            }));
            if rx.recv_timeout(limit).is_err() {
                tracing::warn!(
                    seconds = limit.as_secs(),
                    "unmounted with writes or creates still behind: not in the container"
                );
            }
        }
        let refused = b.refused_after_close();
        if refused > 0 {
            tracing::warn!(
                refused,
                "writes or creates the container refused after their close returned (--close-behind)"
            );
        }
    }

    /// Registers handle `fh`, opened on `node`, with write-behind.
    #[cfg(test)]
    pub(crate) fn write_behind_opened(&self, fh: u64, node: u64) {
        if let Some(b) = &self.out.behind {
            b.opened(fh, node, false, false);
        }
    }

    /// Calls `cb` once everything answered before the container did it
    /// (writes and creates sent behind) is done there.
    #[cfg(test)]
    pub(crate) fn settle(&self, cb: Cb<()>) {
        match self.out.behind.clone() {
            Some(b) => b.after_writes(Box::new(move || cb(Ok(())))),
            None => cb(Ok(())),
        }
    }
}
