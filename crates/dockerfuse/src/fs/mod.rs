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
//! * a create or mkdir of a name the host knows is absent is answered at
//!   once with ids the host chose and made in the container behind, in
//!   order ([`pending`]); a directory a lookup missed in is listed
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
mod ledger;
mod links;
mod list_behind;
mod listing;
mod made;
mod pending;
mod prefetch;
mod releases;
mod replies;
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
use write_behind::{Accepted, WriteBehind};
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
}

/// Outcome callback of one operation.
pub(crate) type Cb<T> = Box<dyn FnOnce(Result<T, Errno>) + Send>;
/// Outcome callback of an operation whose data borrows the receive buffer.
pub(crate) type BytesCb = Box<dyn for<'a> FnOnce(Result<&'a [u8], Errno>) + Send>;
/// Outcome callback of a plain readdir.
pub(crate) type DirCb = Box<dyn for<'a> FnOnce(Result<Vec<DirItem<'a>>, Errno>) + Send>;
/// Outcome callback of a readdirplus: returns how many of the items the
/// kernel took (the rest are forgotten).
pub(crate) type PlusCb = Box<dyn for<'a> FnOnce(Result<&[PlusItem<'a>], Errno>) -> usize + Send>;

/// Outcome of getxattr/listxattr.
pub(crate) enum Xattr<'a> {
    /// The value (or the list of names).
    Data(&'a [u8]),
    /// The size a size probe (size 0) asked for.
    Size(u32),
}
/// Outcome callback of getxattr/listxattr.
pub(crate) type XattrCb = Box<dyn for<'a> FnOnce(Result<Xattr<'a>, Errno>) + Send>;

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
    heads: Arc<Heads>,
    releases: Arc<Releases>,
    pending: Arc<Pending>,
    made: Arc<made::Made>,
    listing: Arc<list_behind::ListBehind>,
    /// Set when the kernel agreed to passthrough.
    passthrough: OnceLock<Arc<crate::kernel::passthrough::Backings<B>>>,
}

/// The one way out for the core's requests: wrapped as the caller's when
/// the mount performs requests per caller, and sent once the writes
/// accepted before them have landed. Callbacks that send follow-up
/// requests hold a clone.
struct Outbox<T> {
    rpc: Arc<T>,
    behind: Option<Arc<WriteBehind>>,
    per_caller: bool,
    /// Replies with file contents received: one may carry contents newer
    /// than a stream in flight or kept ([`stream`]).
    replies: Arc<std::sync::atomic::AtomicU64>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            rpc: self.rpc.clone(),
            behind: self.behind.clone(),
            per_caller: self.per_caller,
            replies: self.replies.clone(),
        }
    }
}

impl<T: Transport> Outbox<T> {
    /// Sends `req` for `who`, after the writes accepted before it. The
    /// reply is handled in the span of the request that sent it, where a
    /// failure of the transport is recorded ([`failure`]).
    fn send(&self, who: &Who, req: &Request<'_>, done: Done) {
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
                if r.is_err() {
                    failure::record(failure::Cause::Transport);
                }
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
                let (rpc, req) = (self.rpc.clone(), req.clone().into_owned());
                b.after_writes(Box::new(move || rpc.call(&req, done)))
            }
            _ => self.rpc.call(req, done),
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
}

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
    pub(crate) fn new(rpc: T, opts: Options) -> Self {
        let coherence = Arc::new(Coherence::new(opts.ttl, opts.fixed_ttl));
        coherence.set_keep_attrs(opts.host_attrs);
        let no_xattrs = coherence.no_xattrs();
        let heads = coherence.heads();
        let rpc = Arc::new(rpc);
        let behind = (opts.write_behind && !opts.per_caller && !opts.writeback).then(|| {
            let rpc = rpc.clone();
            let send: write_behind::SendBatch = Arc::new(move |fh, offset, data, done| {
                let len = data.len() as u64;
                let _bg = crate::mount::waits::background();
                let req = Request::Write {
                    fh,
                    offset,
                    data: data.into(),
                };
                rpc.call(
                    &req,
                    Box::new(move |r| done(r.and_then(|r| replies::written(r, len)))),
                )
            });
            Arc::new(WriteBehind::new(send))
        });
        let out = Outbox {
            rpc,
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
            heads,
            releases: Arc::default(),
            pending: Arc::default(),
            made: Arc::default(),
            listing: Arc::default(),
            passthrough: OnceLock::new(),
        }
    }

    /// The kernel agreed to passthrough: open files with a usable
    /// descriptor are served from it from now on.
    pub(crate) fn enable_passthrough(&self) {
        let _ = self.passthrough.set(Arc::default());
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
        &self.out.rpc
    }

    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    /// Sends `req` for `who` and maps its response with `map` into `cb`.
    fn call<R: 'static>(
        &self,
        who: &Who,
        req: Request<'_>,
        map: fn(Response<'_>) -> Result<R, Errno>,
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
        Box::new(move |r: Result<R, Errno>| {
            forget(&coh, &name);
            let l = coh.listings();
            match &r {
                Ok(_) if exists => l.created(dir, &name),
                Ok(_) => l.removed(dir, &name),
                Err(Errno::EEXIST) if exists => l.created(dir, &name),
                Err(_) => l.unsure(dir, &name),
            }
            cb(r)
        })
    }

    /// Looks `name` up in `parent`; a name a complete listing of the
    /// watched directory does not hold is absent without asking.
    pub(crate) fn lookup(&self, who: &Who, NodeId(parent): NodeId, name: &[u8], cb: Cb<Lookup>) {
        let coh = self.coherence.clone();
        let local = !self.opts.per_caller;
        if local {
            if let Some(ttl) = coh.known_absent(parent, name) {
                return cb(Ok(Lookup::Absent(ttl)));
            }
        }
        let stamp = local.then(|| coh.listings().stamp(parent)).flatten();
        let absent = name.to_vec();
        // A miss in a directory not listed yet lists it behind, so that
        // the next names created there need no lookup ([`list_behind`]).
        let list = (self.opts.pipeline && local && stamp.is_none() && self.out.behind.is_some())
            .then(|| (self.listing.clone(), self.out.rpc.clone()));
        self.call_entry(
            who,
            Request::Lookup {
                parent,
                name: name.into(),
            },
            parent,
            name,
            Box::new(move |r| {
                match &r {
                    Ok(_) if local => coh.listings().found(parent, &absent),
                    Err(Errno::ENOENT) if stamp.is_some() => {
                        coh.listings().not_found(parent, &absent, stamp)
                    }
                    Err(Errno::ENOENT) => {
                        if let Some((listing, rpc)) = &list {
                            listing.start(rpc, &coh, parent);
                        }
                    }
                    Ok(_) | Err(_) => {}
                }
                cb(match r {
                    Ok((e, ttl)) => Ok(Lookup::Found(e, ttl)),
                    Err(Errno::ENOENT) => match coh.absent(parent, &absent) {
                        ttl if ttl.is_zero() => Err(Errno::ENOENT),
                        ttl => Ok(Lookup::Absent(ttl)),
                    },
                    Err(e) => Err(e),
                })
            }),
        )
    }

    /// Drops `count` lookups of each node (never sent as a caller: it has
    /// no reply and no permission check).
    pub(crate) fn forget(&self, nodes: Vec<(NodeId, u64)>) {
        let nodes: Vec<(u64, u64)> = nodes.into_iter().map(|(NodeId(n), c)| (n, c)).collect();
        for &(node, count) in &nodes {
            self.coherence.forgotten(node, count);
            self.made.forget(node);
        }
        if nodes.is_empty() {
            return;
        }
        // A node created behind is forgotten after it was made.
        match &self.out.behind {
            Some(b) if nodes.iter().any(|&(n, _)| self.pending.is_pending(n)) => {
                let rpc = self.out.rpc.clone();
                b.after_writes(Box::new(move || rpc.post(&Request::Forget { nodes })))
            }
            _ => self.out.rpc.post(&Request::Forget { nodes }),
        }
    }

    pub(crate) fn getattr(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        fh: Option<Fh>,
        cb: Cb<(Attr, Duration)>,
    ) {
        // Kept on the host, unless writes accepted before may change them
        // (they wait for those writes, below).
        if let Some(a) = self.made.attr(node) {
            return cb(Ok((a, self.coherence.attr_ttl(node, a.mode))));
        }
        let idle = self.out.behind.as_ref().is_none_or(|b| b.is_idle());
        if let Some(kept) = self.coherence.kept_attr(node).filter(|_| idle) {
            return cb(Ok(kept));
        }
        let Some(Fh(host)) = fh.filter(|f| f.is_host()) else {
            let fh = fh.map(|Fh(f)| f);
            return self.call_attr(who, Request::GetAttr { node, fh }, node, cb);
        };
        // fstat of a file opened lazily: on the satellite's handle (the
        // file may have no name left), opened first if need be.
        let (out, owner, coh) = (self.out.clone(), who.clone(), self.coherence.clone());
        self.remote_file(
            who,
            host,
            Box::new(move |r| {
                let req = Request::GetAttr { node, fh: r.ok() };
                out.send(&owner, &req, attr_done(node, coh, cb))
            }),
        )
    }

    /// With the writeback cache the kernel keeps a written file's mtime
    /// itself and always sends it as an explicit time: alone on close and
    /// fsync, with the new size on a truncation, in place of "now" in a
    /// utimensat. Setting an explicit time needs the owner, where the write,
    /// truncation or "now" needed only write permission, which the kernel
    /// has checked (`default_permissions`; it also refuses an explicit time
    /// from anyone but the owner). So the mtime is sent as the satellite's,
    /// as without `--allow-other`, after the rest of the setattr succeeded
    /// as the caller.
    pub(crate) fn setattr(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        fh: Option<Fh>,
        attr: SetAttr,
        cb: Cb<(Attr, Duration)>,
    ) {
        let fh = fh.filter(|f| !f.is_host()).map(|Fh(f)| f);
        self.coherence.forget_dir_mode(node);
        let Some(cb) = self.setattr_behind(node, fh, &attr, cb) else {
            return;
        };
        let cb = match attr.size {
            Some(_) => self.changing(cb),
            None => cb,
        };
        let cb = self.touching(node, cb);
        let kernel_mtime = self.opts.writeback
            && self.opts.per_caller
            && matches!(attr.mtime, Some(SetTime::At { .. }));
        if !kernel_mtime {
            return self.call_attr(who, Request::SetAttr { node, fh, attr }, node, cb);
        }
        let mtime = SetAttr {
            mtime: attr.mtime,
            ..Default::default()
        };
        // A utimensat(now, now), which needs only write permission, reaches
        // here as (now, explicit): the caller's part stays (now, now), as
        // (now, omit) would need the owner.
        let rest = SetAttr {
            mtime: (attr.atime == Some(SetTime::Now)).then_some(SetTime::Now),
            ..attr
        };
        if rest == SetAttr::default() {
            let req = Request::SetAttr {
                node,
                fh,
                attr: mtime,
            };
            return self.call_attr(&Who::Mount, req, node, cb);
        }
        // The follow-up goes the same way out as everything else, as the
        // mount's own (see above).
        let (out, coh) = (self.out.clone(), self.coherence.clone());
        let then_mtime: Cb<(Attr, Duration)> = Box::new(move |r| match r {
            Ok(_) => {
                coh.touched(node);
                let req = Request::SetAttr {
                    node,
                    fh,
                    attr: mtime,
                };
                out.send(&Who::Mount, &req, attr_done(node, coh, cb))
            }
            Err(e) => cb(Err(e)),
        });
        self.call_attr(
            who,
            Request::SetAttr {
                node,
                fh,
                attr: rest,
            },
            node,
            then_mtime,
        )
    }

    /// A setattr of a file whose attributes the host holds ([`made`]):
    /// answered at once with the change applied and sent once the
    /// writes accepted before it landed; the file's writes after it wait
    /// for it. A refusal is kept for the file's handle (its next write,
    /// close or fsync) and its directory's fsync. Gives `cb` back when
    /// it may not be.
    fn setattr_behind(
        &self,
        node: u64,
        fh: Option<u64>,
        attr: &SetAttr,
        cb: Cb<(Attr, Duration)>,
    ) -> Option<Cb<(Attr, Duration)>> {
        let Some(behind) = self.out.behind.clone().filter(|_| self.opts.pipeline) else {
            return Some(cb);
        };
        let Some((a, made_fh, parent)) = self.made.set(node, attr) else {
            return Some(cb);
        };
        if attr.size.is_some() {
            self.heads.clear();
        }
        let coh = self.coherence.clone();
        coh.touched(node);
        let req = Request::SetAttr {
            node,
            fh,
            attr: attr.clone(),
        };
        let (rpc, made, pending, b2, heads) = (
            self.out.rpc.clone(),
            self.made.clone(),
            self.pending.clone(),
            behind.clone(),
            self.heads.clone(),
        );
        let finish = move |seq: u64, r: Result<Response<'_>, Errno>| {
            coh.touched(node);
            heads.clear();
            let r = r.and_then(replies::attr);
            if let Err(e) = r {
                tracing::debug!(
                    node,
                    errno = e.0,
                    "a setattr sent behind was refused: the next write, close or fsync of the file reports it"
                );
                b2.fail(made_fh, e);
                pending.fail(parent, e);
                coh.provisional_done(node);
            }
            made.landed(node, r.is_ok());
            b2.unhold(seq, None, None);
        };
        behind.hold_after(Box::new(move |seq| {
            let _bg = crate::mount::waits::background();
            rpc.call(&req, Box::new(move |r| finish(seq, r)))
        }));
        cb(Ok((a, self.coherence.attr_ttl(node, a.mode))));
        None
    }

    /// getattr/setattr: the attributes, reported under `node`, and their TTL.
    fn call_attr(&self, who: &Who, req: Request<'_>, node: u64, cb: Cb<(Attr, Duration)>) {
        let coh = self.coherence.clone();
        let done = attr_done(node, coh, cb);
        self.out.send(who, &req, done);
    }

    pub(crate) fn readlink(&self, who: &Who, NodeId(node): NodeId, cb: BytesCb) {
        let links = self.opts.links.clone();
        self.out.send(
            who,
            &Request::ReadLink { node },
            Box::new(move |r| match r {
                Ok(Response::Data(d)) => match links.as_ref().and_then(|l| l.to_host(&d)) {
                    Some(host) => cb(Ok(&host)),
                    None => cb(Ok(&d)),
                },
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    /// Creates a symlink; with link rewriting, a target under the mount
    /// point is stored in the container's terms.
    pub(crate) fn symlink(
        &self,
        who: &Who,
        NodeId(parent): NodeId,
        name: &[u8],
        target: &[u8],
        cb: Cb<(Entry, Ttl)>,
    ) {
        let stored = self
            .opts
            .links
            .as_ref()
            .and_then(|l| l.to_container(target));
        self.call_entry(
            who,
            Request::Symlink {
                parent,
                name: name.into(),
                target: stored.as_deref().unwrap_or(target).into(),
            },
            parent,
            name,
            self.noting(parent, name, true, cb),
        )
    }

    pub(crate) fn mknod(
        &self,
        who: &Who,
        NodeId(parent): NodeId,
        name: &[u8],
        mode: u32,
        rdev: u64,
        cb: Cb<(Entry, Ttl)>,
    ) {
        self.call_entry(
            who,
            Request::Mknod {
                parent,
                name: name.into(),
                mode,
                rdev,
            },
            parent,
            name,
            self.noting(parent, name, true, cb),
        )
    }

    pub(crate) fn mkdir(
        &self,
        who: &Who,
        NodeId(parent): NodeId,
        name: &[u8],
        mode: u32,
        cb: Cb<(Entry, Ttl)>,
    ) {
        let Some(cb) = self.mkdir_behind(parent, name, mode, cb) else {
            return;
        };
        // A directory the mount made is empty: its listing is complete.
        let (coh, pending) = (self.coherence.clone(), self.pending.clone());
        let cb: Cb<(Entry, Ttl)> = Box::new(move |r| {
            if let Ok((e, _)) = &r {
                coh.listings().made_empty(e.node);
                pending.learn_empty_dir(&e.attr);
                coh.learn_dir_mode(e.node, e.attr.mode, e.attr.gid);
            }
            cb(r)
        });
        self.call_entry(
            who,
            Request::Mkdir {
                parent,
                name: name.into(),
                mode,
            },
            parent,
            name,
            self.noting(parent, name, true, cb),
        )
    }

    /// Whether a create or mkdir of `name` in `parent` may be answered
    /// before the container made it: pipelining is on, the host knows the
    /// name is absent, and not too many are in flight. The new node's id
    /// and handle then.
    /// The directory's mode and group must be known (kept on the host,
    /// or it was made through the mount): a setgid directory gives its
    /// group, and its bit to subdirectories.
    fn may_pipeline(&self, parent: u64, name: &[u8]) -> Option<Pipelined> {
        let behind = self.out.behind.clone().filter(|_| self.opts.pipeline)?;
        if name.is_empty() || name.len() > 255 || name.contains(&b'/') {
            return None;
        }
        if !self.coherence.listings().absent(parent, name) || !self.coherence.cache_dir(parent) {
            return None;
        }
        let dir = self.coherence.dir_mode(parent)?;
        let (node, fh) = self.pending.begin()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Some(Pipelined {
            node,
            fh,
            behind,
            dir,
            time: (now.as_secs() as i64, now.subsec_nanos()),
        })
    }

    /// Attributes of a node made behind until the container's come: the
    /// satellite's identity (root) owns it, with the directory's group
    /// when it is setgid (a directory inherits the bit); atime and mtime
    /// are `p.time`, which the container's node gets too; an empty
    /// directory is as the container's last one.
    fn provisional_attr(&self, p: &Pipelined, mode: u32) -> Attr {
        let (secs, nsec) = p.time;
        let mut mode = mode;
        let mut gid = 0;
        let (dir_mode, dir_gid) = p.dir;
        if dir_mode & libc::S_ISGID != 0 {
            gid = dir_gid;
            if mode & libc::S_IFMT == libc::S_IFDIR {
                mode |= libc::S_ISGID;
            }
        }
        let (size, blocks, nlink, blksize) = match mode & libc::S_IFMT == libc::S_IFDIR {
            true => self.pending.empty_dir(),
            false => (0, 0, 1, 4096),
        };
        Attr {
            ino: p.node,
            size,
            blocks,
            atime: secs,
            atime_nsec: nsec,
            mtime: secs,
            mtime_nsec: nsec,
            ctime: secs,
            ctime_nsec: nsec,
            mode,
            nlink,
            uid: 0,
            gid,
            rdev: 0,
            blksize,
        }
    }

    /// What the host learns of a node it made behind, for its answer: the
    /// entry, its TTLs, the parent's changed listing and times.
    fn note_made(
        &self,
        coh: &Coherence,
        parent: u64,
        name: &[u8],
        node: u64,
        attr: Attr,
    ) -> (Entry, Ttl) {
        let entry = Entry {
            node,
            attr,
            no_xattrs: true,
        };
        let ttl = coh.entry(parent, name, node, attr.mode);
        // A new node has no xattrs (provisional too: a default ACL or a
        // security label of the container's shows once it is made).
        self.no_xattrs.note(&entry, ttl.attr);
        coh.touched(parent);
        coh.listings().created(parent, name);
        (entry, ttl)
    }

    /// mkdir answered at once and sent behind ([`pending`]); gives `cb`
    /// back when it may not be.
    fn mkdir_behind(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        cb: Cb<(Entry, Ttl)>,
    ) -> Option<Cb<(Entry, Ttl)>> {
        let Some(p) = self.may_pipeline(parent, name) else {
            return Some(cb);
        };
        let coh = self.coherence.clone();
        let attr = self.provisional_attr(&p, libc::S_IFDIR | (mode & 0o7777));
        let Pipelined {
            node, behind, time, ..
        } = p;
        coh.learn_dir_mode(node, attr.mode, attr.gid);
        let (entry, ttl) = self.note_made(&coh, parent, name, node, attr);
        coh.listings().made_empty(node);
        let seq = behind.hold(None);
        let req = Request::MkdirNew {
            parent,
            name: name.to_vec().into(),
            mode,
            node,
            time,
        };
        let stamp = coh.attr_stamp();
        let (pending, rpc, cache, owned) = (
            self.pending.clone(),
            self.out.rpc.clone(),
            self.no_xattrs.clone(),
            name.to_vec(),
        );
        let finish = move |r: Result<Response<'_>, Errno>| {
            coh.touched(parent);
            let r = r
                .and_then(replies::entry)
                .and_then(|e| match e.node == node {
                    true => Ok(e),
                    false => Err(Errno::EIO),
                });
            match r {
                Ok(e) => {
                    coh.keep_attr(node, e.attr, Source::Entry, stamp);
                    cache.note(&e, ttl.attr);
                    coh.provisional_done(node);
                    pending.learn_empty_dir(&e.attr);
                    coh.learn_dir_mode(node, e.attr.mode, e.attr.gid);
                    pending.done(node, parent, Ok(()));
                }
                Err(e) => {
                    tracing::debug!(parent, node, errno = e.0, "a mkdir sent behind was refused");
                    coh.refused(parent, &owned);
                    pending.done(node, parent, Err(e));
                }
            }
            behind.unhold(seq, None, None);
        };
        self.pending.after(
            parent,
            Box::new(move |r| match r {
                Ok(()) => {
                    let _bg = crate::mount::waits::background();
                    rpc.call(&req, Box::new(finish))
                }
                Err(e) => finish(Err(e)),
            }),
        );
        cb(Ok((entry, ttl)));
        None
    }

    pub(crate) fn unlink(&self, who: &Who, NodeId(parent): NodeId, name: &[u8], cb: Cb<()>) {
        self.made.forget_all();
        let cb = self.noting(parent, name, false, cb);
        let req = Request::Unlink {
            parent,
            name: name.to_vec().into(),
        };
        self.call_settled(who, req, cb)
    }

    pub(crate) fn rmdir(&self, who: &Who, NodeId(parent): NodeId, name: &[u8], cb: Cb<()>) {
        self.made.forget_all();
        let cb = self.noting(parent, name, false, cb);
        let name = name.into();
        self.call(who, Request::Rmdir { parent, name }, replies::ok, cb)
    }

    pub(crate) fn rename(
        &self,
        who: &Who,
        (NodeId(parent), name): (NodeId, &[u8]),
        (NodeId(new_parent), new_name): (NodeId, &[u8]),
        flags: u32,
        cb: Cb<()>,
    ) {
        // Done: the new name exists, and so does the old one with
        // RENAME_EXCHANGE. Otherwise the old name is gone, unless both
        // were links to one inode (then rename(2) does nothing): the
        // kernel sends no such rename, but the container may have linked
        // them meanwhile, so the old name is left unknown. Failed: neither
        // is known.
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        self.made.forget_all();
        let (coh, old, new) = (self.coherence.clone(), name.to_vec(), new_name.to_vec());
        // Both parents' times, the moved node's ctime and a replaced
        // node's link count change.
        coh.name_changed(parent, &old);
        coh.name_changed(new_parent, &new);
        let cb: Cb<()> = Box::new(move |r| {
            coh.name_changed(parent, &old);
            coh.name_changed(new_parent, &new);
            let l = coh.listings();
            match r {
                Ok(()) if exchange => {
                    l.created(parent, &old);
                    l.created(new_parent, &new);
                }
                Ok(()) => {
                    l.unsure(parent, &old);
                    l.created(new_parent, &new);
                }
                Err(_) => {
                    l.unsure(parent, &old);
                    l.unsure(new_parent, &new);
                }
            }
            cb(r)
        });
        let req = Request::Rename {
            parent,
            name: name.to_vec().into(),
            new_parent,
            new_name: new_name.to_vec().into(),
            flags,
        };
        self.call_settled(who, req, cb)
    }

    /// Sends `req`, an unlink or rename, once every file opened lazily
    /// and not yet in the container is opened there: the satellite finds
    /// a node past its descriptor budget by its last name, which `req`
    /// may remove, and a file opened before it must still read (and not
    /// fail with ESTALE). Waits only while such handles exist.
    fn call_settled(&self, who: &Who, req: Request<'static>, cb: Cb<()>) {
        let fhs = self.files.unopened();
        if fhs.is_empty() {
            return self.call(who, req, replies::ok, cb);
        }
        let (out, owner) = (self.out.clone(), who.clone());
        let send: Box<dyn FnOnce() + Send> = Box::new(move || {
            out.send(&owner, &req, Box::new(move |r| cb(r.and_then(replies::ok))))
        });
        let left = Arc::new((
            std::sync::atomic::AtomicUsize::new(fhs.len()),
            std::sync::Mutex::new(Some(send)),
        ));
        for fh in fhs {
            let left = left.clone();
            // An open that fails is tried again by the handle's next read.
            self.remote_file(
                who,
                fh,
                Box::new(move |_| {
                    if left.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                        let send = left.1.lock().unwrap_or_else(|p| p.into_inner()).take();
                        if let Some(send) = send {
                            send()
                        }
                    }
                }),
            );
        }
    }

    pub(crate) fn link(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        NodeId(new_parent): NodeId,
        new_name: &[u8],
        cb: Cb<(Entry, Ttl)>,
    ) {
        self.made.forget_all();
        self.call_entry(
            who,
            Request::Link {
                node,
                new_parent,
                new_name: new_name.into(),
            },
            new_parent,
            new_name,
            self.noting(new_parent, new_name, true, cb),
        )
    }

    /// open(2) flags as the satellite should use them.
    ///
    /// O_DIRECT never reaches the container: the kernel already sends
    /// every read and write of such a file to us uncached (its direct-I/O
    /// path), and the satellite's buffers are not aligned as the
    /// container's O_DIRECT demands (its writes would fail after the
    /// kernel was told they succeeded). Passthrough is not affected: the
    /// kernel reopens the backing file with the FUSE file's own flags.
    ///
    /// With a writeback cache the kernel may read back pages of a
    /// write-only file and does appends itself, so O_WRONLY becomes O_RDWR
    /// and O_APPEND goes.
    fn open_flags(&self, flags: i32) -> i32 {
        let flags = flags & !libc::O_DIRECT;
        if !self.opts.writeback {
            return flags;
        }
        let mut f = flags & !libc::O_APPEND;
        if f & libc::O_ACCMODE == libc::O_WRONLY {
            f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
        }
        f
    }

    /// open(2) flags of this kernel as the satellite reads them.
    fn wire_flags(&self, flags: i32) -> OpenFlags {
        wire_flags(self.opts.legacy_flags, flags)
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

    /// How long contents an open of `node` with `flags` brings may answer
    /// reads, when such an open is worth asking for: read-only, no
    /// O_DIRECT or O_TRUNC, no writeback cache (whose dirty pages are the
    /// kernel's), and a TTL that is not zero.
    fn small_open(&self, node: u64, flags: i32) -> Option<Duration> {
        let plain = flags & libc::O_ACCMODE == libc::O_RDONLY
            && flags & (libc::O_DIRECT | libc::O_TRUNC) == 0;
        if !(self.opts.open_small && !self.opts.writeback && plain) {
            return None;
        }
        Some(self.coherence.contents_ttl(node)).filter(|t| !t.is_zero())
    }

    /// Whether an open of `node` with `flags` may be answered here and
    /// made in the container later ([`lazy_open`]): read-only without
    /// O_TRUNC or O_DIRECT, a node the feed watches (the kernel keeps its
    /// pages until the feed reports a change), not per caller (the
    /// caller's permissions are checked by the container's open), without
    /// passthrough (the backing file is needed at the open) or the
    /// writeback cache.
    fn lazy_open(&self, node: u64, flags: i32) -> bool {
        let plain = flags & libc::O_ACCMODE == libc::O_RDONLY
            && flags & (libc::O_DIRECT | libc::O_TRUNC) == 0;
        plain
            && self.opts.lazy_open
            && !self.opts.per_caller
            && !self.opts.writeback
            && self.passthrough.get().is_none()
            && self.coherence.watching(node)
    }

    /// Whether an open of `node` with `flags` is answered here from the
    /// contents a stream brought ([`stream`]): read-only without O_TRUNC
    /// or O_DIRECT, a node the feed watches, not per caller, without the
    /// writeback cache; the handle's reads are answered from them and the
    /// file is opened in the container only if another request needs it.
    /// Passthrough or not: a small file read from the host needs no
    /// backing file.
    fn open_streamed(&self, node: u64, flags: i32) -> Option<Fh> {
        let plain = flags & libc::O_ACCMODE == libc::O_RDONLY
            && flags & (libc::O_DIRECT | libc::O_TRUNC) == 0;
        let allowed = plain && self.opts.stream && !self.opts.per_caller && !self.opts.writeback;
        if !allowed || !self.coherence.watching(node) {
            return None;
        }
        let (data, stale) = self
            .streams
            .contents(node, self.out.stream_generation(&self.coherence));
        if !stale.is_empty() {
            self.out.rpc.post(&Request::Forget { nodes: stale });
        }
        let data = data?;
        let fh = self.files.open(node, flags);
        // With passthrough the kernel serves all opens of a node alike:
        // not while the node is open through a backing file.
        if let Some(pt) = self.passthrough.get() {
            let unbacked = || Err(std::io::ErrorKind::Unsupported.into());
            if let crate::kernel::passthrough::Mode::Refuse =
                pt.open(node, fh, None, |_| unbacked())
            {
                self.files.release(fh);
                return None;
            }
        }
        self.coherence.opened(fh, node);
        // Not held (over the budget): read in the container, opened then.
        let lifetime = self.coherence.contents_ttl(node);
        self.heads
            .keep(fh, node, &data, self.heads.ticket(), lifetime);
        Some(Fh(fh))
    }

    /// Runs `then` with the satellite's handle of file handle `fh`,
    /// opening a host handle's file in the container first when needed.
    fn remote_file(&self, who: &Who, fh: u64, then: lazy_open::Then) {
        if !Fh(fh).is_host() {
            return then(Ok(fh));
        }
        match self.files.with_remote(fh, then) {
            (Remote::Open(remote), Some(then)) => then(Ok(remote)),
            (Remote::Unknown, Some(then)) => then(Err(Errno::EBADF)),
            (Remote::ToOpen { node, flags }, _) => self.open_late(who, fh, node, flags),
            _ => {}
        }
    }

    /// The request that opens `node` in the container: one that brings
    /// the contents (up to [`MAX_OPEN_DATA`]) when `small`.
    fn open_request(&self, node: u64, flags: i32, small: bool) -> Request<'static> {
        let flags = self.wire_flags(flags);
        match small {
            true => Request::OpenSmall {
                node,
                flags,
                max: MAX_OPEN_DATA,
            },
            false => Request::Open { node, flags },
        }
    }

    /// Opens in the container the file of host handle `fh`; a small file
    /// brings its contents, kept under `fh`, as at a plain open.
    fn open_late(&self, who: &Who, fh: u64, node: u64, flags: i32) {
        let small = self
            .small_open(node, flags)
            .map(|lifetime| (lifetime, self.heads.ticket()));
        let max = MAX_OPEN_DATA;
        let req = self.open_request(node, flags, small.is_some());
        let (files, heads, rpc, releases) = (
            self.files.clone(),
            self.heads.clone(),
            self.out.rpc.clone(),
            self.releases.clone(),
        );
        self.out.send(
            who,
            &req,
            Box::new(move |r| {
                let r = r.and_then(replies::opened).map(|o| {
                    if let (Some(d), Some((lifetime, ticket))) = (o.data, small) {
                        if d.len() <= max as usize {
                            heads.keep(fh, node, &d, ticket, lifetime);
                        }
                    }
                    // No passthrough for these: a descriptor sent anyway
                    // is closed.
                    drop(o.fd.and_then(|fd| rpc.take_fd(fd)));
                    o.fh
                });
                if let Some(remote) = files.opened(fh, node, flags, r) {
                    heads.release(fh);
                    releases.defer(remote, &rpc);
                }
            }),
        )
    }

    /// Sends a request for `who` on the satellite's handle of file handle
    /// `fh` (opening a host handle's file in the container first).
    fn on_file(
        &self,
        who: &Who,
        fh: u64,
        req: impl FnOnce(u64) -> Request<'static> + Send + 'static,
        done: Done,
    ) {
        let (out, owner) = (self.out.clone(), who.clone());
        self.remote_file(
            who,
            fh,
            Box::new(move |r| match r {
                Ok(remote) => out.send(&owner, &req(remote), done),
                Err(e) => done(Err(e)),
            }),
        )
    }

    /// Answers an open of `node`: a handle that may write is recorded,
    /// and answered once no data invalidation of the node is under way
    /// ([`writers`]); any other outcome at once.
    fn answer_open<X: Send + 'static, R: OpenReply<B, X>>(
        coh: &Coherence,
        writes: bool,
        node: u64,
        fh: impl FnOnce(&X) -> u64,
        reply: R,
        r: Result<X, Errno>,
    ) {
        match r {
            Ok(o) if writes => {
                let fh = fh(&o);
                coh.writers()
                    .opened(node, fh, Box::new(move || reply.answer(Ok(o))))
            }
            r => reply.answer(r),
        }
    }

    /// Opens `node`; `reply` registers a backing file with the kernel
    /// when passthrough is on, and takes the open file.
    pub(crate) fn open<R: OpenReply<B, Opened<B>>>(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        flags: i32,
        reply: R,
    ) {
        self.made.forget(node);
        let small = self
            .small_open(node, flags)
            .map(|lifetime| (lifetime, self.heads.ticket()));
        let direct = flags & libc::O_DIRECT != 0;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let write_only = flags & libc::O_ACCMODE == libc::O_WRONLY;
        let flags = self.open_flags(flags);
        if let Some(fh) = (!direct).then(|| self.open_streamed(node, flags)).flatten() {
            return reply.answer(Ok(Opened {
                fh,
                passthrough: None,
            }));
        }
        if !direct && self.lazy_open(node, flags) {
            let fh = Fh(self.files.open(node, flags));
            // The ledger knows which node the handle reads (its reads in
            // the container drop the kept attributes).
            self.coherence.opened(fh.0, node);
            return reply.answer(Ok(Opened {
                fh,
                passthrough: None,
            }));
        }
        let after: Cb<()> = match flags & libc::O_TRUNC {
            0 => Box::new(|_| {}),
            _ => self.changing(self.touching(node, Box::new(|_| {}))),
        };
        let (rpc, behind, serving, coh) = (
            self.out.rpc.clone(),
            self.out.behind.clone(),
            self.serving(),
            self.coherence.clone(),
        );
        if write_only && self.opts.writeback && self.opts.per_caller {
            let caller = match who {
                Who::Caller(c) => Some(c.clone()),
                Who::Mount => None,
            };
            let legacy = self.opts.legacy_flags;
            let done: Cb<(u64, Option<u32>)> = Box::new(move |r| {
                let r = r.and_then(|(fh, fd)| {
                    let fd = fd.and_then(|fd| backing::take(&*rpc, fd, flags));
                    let passthrough = serving.serve(node, fh, fd, &reply)?;
                    Ok(Opened {
                        fh: Fh(fh),
                        passthrough,
                    })
                });
                after(Ok(()));
                Self::answer_open(&coh, writes, node, |o| o.fh.0, reply, r)
            });
            return write_only::open(&self.out.rpc, caller, node, flags, legacy, done);
        }
        let max = MAX_OPEN_DATA;
        let req = self.open_request(node, flags, small.is_some());
        let heads = self.heads.clone();
        self.out.send(
            who,
            &req,
            Box::new(move |r| {
                let r = r.and_then(replies::opened).and_then(|o| {
                    let fh = o.fh;
                    match (o.data, small) {
                        (Some(d), Some((lifetime, ticket))) if d.len() <= max as usize => {
                            heads.keep(fh, node, &d, ticket, lifetime);
                        }
                        (Some(d), _) => {
                            tracing::debug!(
                                fh,
                                len = d.len(),
                                "open brought more than asked: ignored"
                            )
                        }
                        (None, _) => {}
                    }
                    if let Some(b) = behind {
                        b.opened(fh, node, flags & libc::O_APPEND != 0, direct);
                    }
                    let fd = o.fd.and_then(|fd| backing::take(&*rpc, fd, flags));
                    let passthrough = serving.serve(node, fh, fd, &reply)?;
                    coh.opened(fh, node);
                    if passthrough.is_some() {
                        coh.bypassed(node);
                    }
                    Ok(Opened {
                        fh: Fh(fh),
                        passthrough,
                    })
                });
                after(Ok(()));
                Self::answer_open(&coh, writes, node, |o| o.fh.0, reply, r)
            }),
        )
    }

    /// Creates and opens `name` in `parent`; `reply` as for [`Core::open`].
    /// An entry whose file may not be opened (passthrough) is forgotten.
    pub(crate) fn create<R: OpenReply<B, (Entry, Ttl, Opened<B>)>>(
        &self,
        who: &Who,
        NodeId(parent): NodeId,
        name: &[u8],
        mode: u32,
        flags: i32,
        reply: R,
    ) {
        let (cache, coh, owned, rpc) = (
            self.no_xattrs.clone(),
            self.coherence.clone(),
            name.to_vec(),
            self.out.rpc.clone(),
        );
        let Some(reply) = self.create_behind(who, parent, name, mode, flags, reply) else {
            return;
        };
        let (behind, serving) = (self.out.behind.clone(), self.serving());
        let after = self.noting(parent, name, true, Box::new(|_: Result<(), Errno>| {}));
        let direct = flags & libc::O_DIRECT != 0;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let flags = self.open_flags(flags);
        let after = match flags & libc::O_TRUNC {
            0 => after,
            _ => self.changing(after),
        };
        let req = Request::Create {
            parent,
            name: name.into(),
            mode,
            flags: self.wire_flags(flags),
        };
        let stamp = coh.attr_stamp();
        self.out.send(
            who,
            &req,
            Box::new(move |r| {
                let r = r.and_then(replies::created);
                after(r.as_ref().map(|_| ()).map_err(|e| *e));
                let mut node = 0;
                let r = r.and_then(|(e, fh, fd)| {
                    node = e.node;
                    let ttl = coh.entry(parent, &owned, e.node, e.attr.mode);
                    coh.keep_attr(e.node, e.attr, Source::Entry, stamp);
                    cache.note(&e, ttl.attr);
                    let fd = fd.and_then(|fd| backing::take(&*rpc, fd, flags));
                    if let Some(b) = behind {
                        b.opened(fh, e.node, flags & libc::O_APPEND != 0, direct);
                    }
                    match serving.serve(e.node, fh, fd, &reply) {
                        Ok(passthrough) => {
                            coh.opened(fh, e.node);
                            if passthrough.is_some() {
                                coh.bypassed(e.node);
                            }
                            Ok((
                                e,
                                ttl,
                                Opened {
                                    fh: Fh(fh),
                                    passthrough,
                                },
                            ))
                        }
                        Err(err) => {
                            // The kernel will not take the entry.
                            coh.forgotten(e.node, 1);
                            rpc.post(&Request::Forget {
                                nodes: vec![(e.node, 1)],
                            });
                            Err(err)
                        }
                    }
                });
                Self::answer_open(&coh, writes, node, |(_, _, o)| o.fh.0, reply, r)
            }),
        );
    }

    /// A create answered at once with the host's node id and handle and
    /// sent behind ([`pending`]); gives `reply` back when it may not be
    /// (`O_DIRECT`, passthrough on).
    fn create_behind<R: OpenReply<B, (Entry, Ttl, Opened<B>)>>(
        &self,
        _who: &Who,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        reply: R,
    ) -> Option<R> {
        // With passthrough a file is served by the kernel from the
        // container's descriptor, which only a create that waits brings:
        // writing a large file costs far more without it than the wait.
        if flags & libc::O_DIRECT != 0 || self.passthrough.get().is_some() {
            return Some(reply);
        }
        let Some(p) = self.may_pipeline(parent, name) else {
            return Some(reply);
        };
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let flags = self.open_flags(flags);
        let coh = self.coherence.clone();
        let attr = self.provisional_attr(&p, libc::S_IFREG | (mode & 0o7777));
        let Pipelined {
            node,
            fh,
            behind,
            time,
            ..
        } = p;
        let (entry, ttl) = self.note_made(&coh, parent, name, node, attr);
        behind.opened(fh, node, flags & libc::O_APPEND != 0, false);
        let seq = behind.hold(Some(fh));
        coh.opened(fh, node);
        let req = Request::CreateNew {
            parent,
            name: name.to_vec().into(),
            mode,
            flags: self.wire_flags(flags),
            node,
            fh,
            time,
        };
        let stamp = coh.attr_stamp();
        self.made.begin(node, parent, fh, attr);
        let made = self.made.clone();
        let (pending, rpc, cache, owned, c) = (
            self.pending.clone(),
            self.out.rpc.clone(),
            self.no_xattrs.clone(),
            name.to_vec(),
            coh.clone(),
        );
        let finish = move |r: Result<Response<'_>, Errno>| {
            c.touched(parent);
            let r = match r {
                Ok(Response::Created { entry, fh: got }) if entry.node == node && got == fh => {
                    Ok(entry)
                }
                Ok(Response::Error(e)) => Err(Errno(e)),
                Ok(_) => Err(Errno::EIO),
                Err(e) => Err(e),
            };
            match r {
                Ok(e) => {
                    c.keep_attr(node, e.attr, Source::Entry, stamp);
                    cache.note(&e, ttl.attr);
                    c.provisional_done(node);
                    pending.done(node, parent, Ok(()));
                    behind.unhold(seq, Some(fh), None);
                }
                Err(e) => {
                    tracing::debug!(
                        parent,
                        node,
                        errno = e.0,
                        "a create sent behind was refused: the next write, close or fsync of the file reports it"
                    );
                    made.forget(node);
                    c.refused(parent, &owned);
                    pending.done(node, parent, Err(e));
                    behind.unhold(seq, Some(fh), Some(e));
                }
            }
        };
        self.pending.after(
            parent,
            Box::new(move |r| match r {
                Ok(()) => {
                    let _bg = crate::mount::waits::background();
                    rpc.call(&req, Box::new(finish))
                }
                Err(e) => finish(Err(e)),
            }),
        );
        let opened = Opened {
            fh: Fh(fh),
            passthrough: None,
        };
        Self::answer_open(
            &coh,
            writes,
            node,
            |(_, _, o)| o.fh.0,
            reply,
            Ok((entry, ttl, opened)),
        );
        None
    }

    /// Reads up to `size` bytes; never hands on more than asked. Answered
    /// here when the open brought the file's contents and they are current.
    pub(crate) fn read(&self, who: &Who, Fh(fh): Fh, offset: u64, size: u32, cb: BytesCb) {
        // The read moves the atime in the container.
        self.made_done(fh);
        if let Some((data, range)) = self.heads.read(fh, offset, size) {
            return cb(Ok(&data[range]));
        }
        // A read in the container may move the file's atime (relatime).
        let coh = self.coherence.clone();
        coh.read_through(fh);
        let cb: BytesCb = Box::new(move |r| {
            coh.read_through(fh);
            cb(r)
        });
        let done = move |cb: BytesCb| -> Done {
            Box::new(move |r| match r {
                Ok(Response::Data(d)) => cb(Ok(&d[..d.len().min(size as usize)])),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            })
        };
        if !Fh(fh).is_host() {
            return self
                .out
                .send(who, &Request::Read { fh, offset, size }, done(cb));
        }
        // Opened lazily: the open may have brought the contents.
        let (out, owner, heads) = (self.out.clone(), who.clone(), self.heads.clone());
        self.remote_file(
            who,
            fh,
            Box::new(move |r| match r {
                Ok(remote) => match heads.read(fh, offset, size) {
                    Some((data, range)) => cb(Ok(&data[range])),
                    None => {
                        let req = Request::Read {
                            fh: remote,
                            offset,
                            size,
                        };
                        out.send(&owner, &req, done(cb))
                    }
                },
                Err(e) => cb(Err(e)),
            }),
        );
    }

    /// Writes `data` at `offset` of `fh`, an open file of `node`.
    /// `kill_suidgid`: the writer lacks CAP_FSETID, so the write clears
    /// the setuid bit, and the setgid bit of a group-executable file
    /// (FUSE_HANDLE_KILLPRIV_V2: the kernel asks this of us with a flag on
    /// the write instead of probing `security.capability` before every
    /// write(2) and sending the chmod itself). Performed as the caller,
    /// the write does it in the container's kernel; otherwise the bits go
    /// first here, then the write, both for the caller.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        Fh(fh): Fh,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
        cb: Cb<u32>,
    ) {
        let cb = match kill_suidgid {
            true => self.changing(self.expiring(node, cb)),
            false => self.changing(cb),
        };
        let cb = self.touching(node, cb);
        let cb: Cb<u32> = match kill_suidgid {
            true => {
                self.made.forget(node);
                cb
            }
            false => {
                let made = self.made.clone();
                Box::new(move |r| {
                    if let Ok(n) = r {
                        made.wrote(node, offset.saturating_add(n.into()));
                    }
                    cb(r)
                })
            }
        };
        let writer = Writer {
            out: self.out.clone(),
            who: who.clone(),
            // After a setattr sent behind, which the queued writes do
            // not wait for.
            through: self.made.fenced(node),
        };
        if !kill_suidgid || self.opts.per_caller {
            return writer.write(fh, offset, data, cb);
        }
        let data = data.to_vec();
        self.drop_suidgid(
            who,
            node,
            Box::new(move |r| match r {
                Ok(()) => writer.write(fh, offset, &data, cb),
                Err(e) => cb(Err(e)),
            }),
        )
    }

    /// Clears the setuid bit, and the setgid bit of a group-executable
    /// file, of `node`: what a write by a caller without CAP_FSETID does.
    fn drop_suidgid(&self, who: &Who, node: u64, cb: Cb<()>) {
        let (out, coh, owner) = (self.out.clone(), self.coherence.clone(), who.clone());
        self.getattr(
            who,
            NodeId(node),
            None,
            Box::new(move |r| match r {
                Ok((a, _)) => match suidgid_cleared(a.mode) {
                    Some(mode) => {
                        let attr = SetAttr {
                            mode: Some(mode),
                            ..Default::default()
                        };
                        let req = Request::SetAttr {
                            node,
                            fh: None,
                            attr,
                        };
                        let done = Box::new(move |r: Result<_, Errno>| cb(r.map(|_| ())));
                        out.send(&owner, &req, attr_done(node, coh, done))
                    }
                    None => cb(Ok(())),
                },
                Err(e) => cb(Err(e)),
            }),
        )
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

    /// FLUSH needs no round trip: the satellite's flush closes nothing.
    /// It waits for the handle's writes still behind, and reports their
    /// error (close(2) returns it).
    pub(crate) fn flush(&self, Fh(fh): Fh, cb: Cb<()>) {
        match self.out.behind.clone() {
            Some(b) => b
                .clone()
                .after_writes(Box::new(move || cb(b.take_error(fh).map_or(Ok(()), Err)))),
            None => cb(Ok(())),
        }
    }

    /// RELEASE is answered at once (the kernel ignores its outcome); the
    /// satellite closes the file when the request gets there, after the
    /// handle's writes, or, for a file whose reads were answered here (it
    /// was opened read-only), with others in a batch ([`releases`]).
    /// Handle `fh` is read or released: a file it created is no longer
    /// followed on the host ([`made`]), and the kernel, which got its
    /// times on the host's clock, asks the container next time.
    fn made_done(&self, fh: u64) {
        if let Some(node) = self.made.handle_done(fh) {
            self.coherence.provisional_done(node);
        }
    }

    pub(crate) fn release(&self, Fh(fh): Fh, cb: Cb<()>) {
        self.made_done(fh);
        self.coherence.released(fh);
        if Fh(fh).is_host() {
            // Opened lazily: closed in the container only if it was opened
            // there, with others in a batch (read-only, no writes).
            self.heads.release(fh);
            if let Some(pt) = self.passthrough.get() {
                pt.release(fh);
            }
            if let Some(remote) = self.files.release(fh) {
                self.releases.defer(remote, &self.out.rpc);
            }
            return cb(Ok(()));
        }
        self.coherence.writers().released(fh);
        if let Some(pt) = self.passthrough.get() {
            pt.release(fh);
        }
        if self.heads.release(fh) {
            if let Some(b) = &self.out.behind {
                b.forget(fh);
            }
            self.releases.defer(fh, &self.out.rpc);
            return cb(Ok(()));
        }
        let req = Request::Release { fh };
        match self.out.behind.clone() {
            Some(b) => {
                let _bg = crate::mount::waits::background();
                self.out
                    .send(&Who::Mount, &req, Box::new(move |_| b.forget(fh)))
            }
            None => self.out.send_and_forget(&Who::Mount, &req),
        }
        cb(Ok(()))
    }

    /// FSYNC also reports the error of a write sent behind.
    pub(crate) fn fsync(&self, who: &Who, Fh(fh): Fh, datasync: bool, cb: Cb<()>) {
        let behind = self.out.behind.clone();
        let cb: Cb<()> = Box::new(move |r| match behind.and_then(|b| b.take_error(fh)) {
            Some(e) => cb(Err(e)),
            None => cb(r),
        });
        let req = move |fh| Request::Fsync { fh, datasync };
        self.on_file(who, fh, req, Box::new(move |r| cb(r.and_then(replies::ok))))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fallocate(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        Fh(fh): Fh,
        offset: u64,
        length: u64,
        mode: i32,
        cb: Cb<()>,
    ) {
        self.made.forget(node);
        let cb = self.touching(node, self.changing(self.expiring(node, cb)));
        let req = Request::Fallocate {
            fh,
            offset,
            length,
            mode,
        };
        self.call(who, req, replies::ok, cb)
    }

    pub(crate) fn lseek(&self, who: &Who, Fh(fh): Fh, offset: i64, whence: i32, cb: Cb<i64>) {
        let req = move |fh| Request::Lseek { fh, offset, whence };
        self.on_file(
            who,
            fh,
            req,
            Box::new(move |r| cb(r.and_then(replies::offset))),
        )
    }

    /// Copies inside the container into `fh_out`, an open file of
    /// `node_out`; never reports more than `len` copied.
    pub(crate) fn copy_file_range(
        &self,
        who: &Who,
        (Fh(fh_in), offset_in): (Fh, u64),
        (NodeId(node_out), Fh(fh_out), offset_out): (NodeId, Fh, u64),
        len: u64,
        flags: u32,
        cb: Cb<u32>,
    ) {
        self.made.forget(node_out);
        let cb = self.touching(node_out, self.changing(self.expiring(node_out, cb)));
        // The source's atime may move too.
        self.coherence.read_through(fh_in);
        let coh = self.coherence.clone();
        let cb: Cb<u32> = Box::new(move |r| {
            coh.read_through(fh_in);
            cb(r)
        });
        let req = move |fh_in| Request::CopyFileRange {
            fh_in,
            offset_in,
            fh_out,
            offset_out,
            len,
            flags,
        };
        self.on_file(
            who,
            fh_in,
            req,
            Box::new(move |r| cb(r.and_then(|r| replies::written(r, len)))),
        );
    }

    /// Opens a directory; true with the handle when the kernel may keep
    /// its listing (the feed watches it).
    pub(crate) fn opendir(&self, who: &Who, NodeId(node): NodeId, cb: Cb<(Fh, bool)>) {
        if !self.opts.per_caller && self.coherence.cache_dir(node) {
            return cb(Ok((Fh(self.dirs.open(node)), true)));
        }
        let coh = self.coherence.clone();
        self.out.send(
            who,
            &Request::OpenDir { node },
            Box::new(move |r| {
                cb(r.and_then(replies::fh)
                    .map(|fh| (Fh(fh), coh.cache_dir(node))))
            }),
        );
    }

    /// Sends a request for `who` on the satellite's handle of directory
    /// handle `fh` (opening it in the container first for a host handle).
    fn on_dir(
        &self,
        who: &Who,
        fh: u64,
        req: impl FnOnce(u64) -> Request<'static> + Send + 'static,
        done: Done,
    ) {
        if !LazyDirs::is_host(fh) {
            return self.out.send(who, &req(fh), done);
        }
        let (out, who) = (self.out.clone(), who.clone());
        self.dirs.with_remote(
            &self.out.rpc,
            fh,
            Box::new(move |r| match r {
                Ok(remote) => out.send(&who, &req(remote), done),
                Err(e) => done(Err(e)),
            }),
        );
    }

    pub(crate) fn readdir(&self, who: &Who, Fh(fh): Fh, offset: u64, size: u32, cb: DirCb) {
        let req = move |fh| Request::ReadDir {
            fh,
            offset,
            size,
            plus: false,
        };
        self.on_dir(
            who,
            fh,
            req,
            Box::new(move |r| match r {
                Ok(Response::Dir(v) | Response::DirEnd(v)) => cb(Ok(listing::plain(v))),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    /// A readdirplus chunk: `cb` gives the items to the kernel and returns
    /// how many it took; the lookups of the others are dropped.
    pub(crate) fn readdirplus(
        &self,
        who: &Who,
        NodeId(dir): NodeId,
        Fh(fh): Fh,
        offset: u64,
        _size: u32,
        cb: PlusCb,
    ) {
        let giver = Giver {
            dir,
            fh,
            cache: self.no_xattrs.clone(),
            coh: self.coherence.clone(),
            prefetched: self.prefetched.clone(),
        };
        let stale = match self
            .prefetched
            .take(fh, offset, self.coherence.generation())
        {
            Ok(buf) => return giver.give(buf, cb),
            Err(stale) => stale,
        };
        if !stale.is_empty() {
            self.out.rpc.post(&Request::Forget { nodes: stale });
        }
        let path = PlusPath {
            out: self.out.clone(),
            dirs: self.dirs.clone(),
            streams: self.streams.clone(),
            per_caller: self.opts.per_caller,
            open_read_dir: self.opts.open_read_dir,
        };
        let stream = offset == 0 && self.opts.stream && !self.opts.per_caller;
        if stream && LazyDirs::is_host(fh) && self.dirs.unopened(fh).is_some() {
            return path.streamed(who.clone(), giver, cb);
        }
        path.read(who, giver, offset, cb)
    }

    pub(crate) fn releasedir(&self, Fh(fh): Fh, cb: Cb<()>) {
        self.coherence.listings().release(fh);
        let nodes = self.prefetched.release(fh);
        if !nodes.is_empty() {
            self.out.rpc.post(&Request::Forget { nodes });
        }
        let remote = match LazyDirs::is_host(fh) {
            false => Some(fh),
            true => self.dirs.release(fh),
        };
        if let Some(fh) = remote {
            self.out
                .send_and_forget(&Who::Mount, &Request::ReleaseDir { fh });
        }
        cb(Ok(()))
    }

    /// Also reports a create or mkdir in the directory sent behind and
    /// refused since its last fsync (it waits for everything before it).
    pub(crate) fn fsyncdir(
        &self,
        who: &Who,
        NodeId(dir): NodeId,
        Fh(fh): Fh,
        datasync: bool,
        cb: Cb<()>,
    ) {
        let pending = self.pending.clone();
        let cb: Cb<()> = Box::new(move |r| match pending.take_failed(dir) {
            Some(e) => cb(Err(e)),
            None => cb(r),
        });
        self.on_dir(
            who,
            fh,
            move |fh| Request::FsyncDir { fh, datasync },
            Box::new(move |r| cb(r.and_then(replies::ok))),
        );
    }

    pub(crate) fn statfs(&self, who: &Who, NodeId(node): NodeId, cb: Cb<StatFs>) {
        self.call(who, Request::StatFs { node }, replies::statfs, cb)
    }

    pub(crate) fn access(&self, who: &Who, NodeId(node): NodeId, mask: i32, cb: Cb<()>) {
        self.call(who, Request::Access { node, mask }, replies::ok, cb)
    }

    pub(crate) fn getxattr(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        name: &[u8],
        size: u32,
        cb: XattrCb,
    ) {
        if self.no_xattrs.known_empty(node) {
            return cb(Err(Errno::ENODATA));
        }
        let name = name.into();
        self.call_xattr(who, Request::GetXattr { node, name, size }, size, cb)
    }

    pub(crate) fn listxattr(&self, who: &Who, NodeId(node): NodeId, size: u32, cb: XattrCb) {
        if self.no_xattrs.known_empty(node) {
            return cb(Ok(if size == 0 {
                Xattr::Size(0)
            } else {
                Xattr::Data(&[])
            }));
        }
        self.call_xattr(who, Request::ListXattr { node, size }, size, cb)
    }

    /// getxattr/listxattr: a value that does not fit `size` is ERANGE.
    fn call_xattr(&self, who: &Who, req: Request<'_>, size: u32, cb: XattrCb) {
        self.out.send(
            who,
            &req,
            Box::new(move |r| match r {
                Ok(Response::XattrSize(n)) => cb(Ok(Xattr::Size(n))),
                Ok(Response::Data(d)) if d.len() <= size as usize => cb(Ok(Xattr::Data(&d))),
                Ok(Response::Data(_)) => cb(Err(Errno::ERANGE)),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    pub(crate) fn setxattr(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        name: &[u8],
        value: &[u8],
        flags: i32,
        cb: Cb<()>,
    ) {
        // GNU cp -a's trivial ACL on a file created behind: a chmod, when
        // the file has no ACL of its own (its directory, made, has no
        // xattrs, so no default ACL). (Were the node dropped meanwhile,
        // the chmod waits: the same.)
        let plain_dir = |dir: u64| !self.pending.is_pending(dir) && self.no_xattrs.known_empty(dir);
        let acl = (name == b"system.posix_acl_access" && flags == 0 && self.opts.pipeline)
            .then(|| made::trivial_acl(value))
            .flatten()
            .filter(|_| self.made.parent(node).is_some_and(plain_dir));
        if let Some((perms, a)) = acl.zip(self.made.attr(node)) {
            let set = SetAttr {
                mode: Some((a.mode & 0o7000) | perms),
                ..Default::default()
            };
            let cb: Cb<(Attr, Duration)> = Box::new(move |r| cb(r.map(|_| ())));
            match self.setattr_behind(node, None, &set, cb) {
                None => return,
                Some(cb) => {
                    return self.call_attr(
                        who,
                        Request::SetAttr {
                            node,
                            fh: None,
                            attr: set,
                        },
                        node,
                        cb,
                    )
                }
            }
        }
        self.no_xattrs.forget(node);
        self.made.forget(node);
        // The ctime changes.
        let cb = self.touching(node, cb);
        let req = Request::SetXattr {
            node,
            name: name.into(),
            value: value.into(),
            flags,
        };
        self.call(who, req, replies::ok, cb)
    }

    pub(crate) fn removexattr(&self, who: &Who, NodeId(node): NodeId, name: &[u8], cb: Cb<()>) {
        self.no_xattrs.forget(node);
        self.made.forget(node);
        let cb = self.touching(node, cb);
        let name = name.into();
        self.call(who, Request::RemoveXattr { node, name }, replies::ok, cb)
    }
}

/// The permission bits of `mode` without setuid and (for a
/// group-executable file) setgid, if a write must clear any.
fn suidgid_cleared(mode: u32) -> Option<u32> {
    let mut kill = libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 {
        kill |= libc::S_ISGID;
    }
    (mode & kill != 0).then_some(mode & 0o7777 & !kill)
}

/// A create or mkdir that may be answered before the container made it
/// ([`Core::may_pipeline`]).
struct Pipelined {
    node: u64,
    fh: u64,
    behind: Arc<WriteBehind>,
    /// The directory's mode and group.
    dir: (u32, u32),
    /// The new node's atime and mtime.
    time: (i64, u32),
}

/// A write on its way out, possibly after the setuid/setgid bits went.
struct Writer<T> {
    out: Outbox<T>,
    who: Who,
    /// Sent after everything before it, never queued.
    through: bool,
}

impl<T: Transport> Writer<T> {
    /// Accepted behind when write-behind takes it, else sent.
    fn write(&self, fh: u64, offset: u64, data: &[u8], cb: Cb<u32>) {
        if let Some(b) = self.out.behind.as_ref().filter(|_| !self.through) {
            match b.write(fh, offset, data) {
                Accepted::Queued(n) => return cb(Ok(n)),
                Accepted::Failed(e) => return cb(Err(e)),
                Accepted::Full => {}
            }
        }
        let len = data.len() as u64;
        let req = Request::Write {
            fh,
            offset,
            data: data.into(),
        };
        self.out.send(
            &self.who,
            &req,
            Box::new(move |r| cb(r.and_then(|r| replies::written(r, len)))),
        );
    }
}

/// The ways a readdirplus reaches the satellite: a read on the
/// directory's handle, or a stream of the subtree below it.
struct PlusPath<T> {
    out: Outbox<T>,
    dirs: Arc<LazyDirs>,
    streams: Arc<stream::Streams>,
    per_caller: bool,
    open_read_dir: bool,
}

/// Sends a request for `who` on the satellite's handle of directory
/// handle `fh` (opening it in the container first for a host handle).
fn on_dir<T: Transport>(
    out: &Outbox<T>,
    dirs: &Arc<LazyDirs>,
    who: &Who,
    fh: u64,
    req: impl FnOnce(u64) -> Request<'static> + Send + 'static,
    done: Done,
) {
    if !LazyDirs::is_host(fh) {
        return out.send(who, &req(fh), done);
    }
    let (out2, who) = (out.clone(), who.clone());
    dirs.with_remote(
        &out.rpc,
        fh,
        Box::new(move |r| match r {
            Ok(remote) => out2.send(&who, &req(remote), done),
            Err(e) => done(Err(e)),
        }),
    );
}

/// A whole listing of `dir` read on `fh` is known: the names of a
/// watched directory are complete (as after a read that reached the end
/// and the empty one after it).
fn listed_whole(coh: &Coherence, fh: u64, dir: u64, items: &[PlusItem<'_>]) {
    if !coh.cache_dir(dir) {
        return;
    }
    let listings = coh.listings();
    let Some(seq) = listings.begin_read(fh, dir, 0) else {
        return;
    };
    let watched = coh.holds(dir);
    let names = items.iter().map(|i| (&i.name[..], i.offset));
    listings.read_done(fh, seq, Some(names), watched);
    if let Some(last) = items.last() {
        if let Some(seq) = listings.begin_read(fh, dir, last.offset) {
            let none: [(&[u8], u64); 0] = [];
            listings.read_done(fh, seq, Some(none), watched);
        }
    }
}

impl<T: Transport> PlusPath<T> {
    /// A chunk from the satellite, on the directory's handle.
    fn read(&self, who: &Who, giver: Giver, offset: u64, cb: PlusCb) {
        let (dir, fh) = (giver.dir, giver.fh);
        let req = move |fh| Request::ReadDir {
            fh,
            offset,
            size: prefetch::PREFETCH,
            plus: true,
        };
        let generation = giver.coh.generation();
        let stamp = giver.coh.attr_stamp();
        let first = (offset == 0 && self.open_read_dir)
            .then(|| self.dirs.unopened(fh))
            .flatten();
        // Reads of a watched directory gather its names, complete at the
        // empty reply that ends it.
        let listed = (!self.per_caller && giver.coh.cache_dir(dir))
            .then(|| giver.coh.listings().begin_read(fh, dir, offset))
            .flatten();
        // A reply that reaches the end also stands for the empty reply
        // the kernel's next read would have had.
        let listed_done =
            move |coh: &Coherence, v: Option<&[dockerfuse_proto::DirEntry<'_>]>, end: bool| {
                let Some(seq) = listed else { return };
                let names = v.map(|v| v.iter().map(|e| (&e.name[..], e.offset)));
                let watched = coh.cache_dir(dir) && coh.holds(dir);
                let listings = coh.listings();
                listings.read_done(fh, seq, names, watched);
                let last = v.and_then(|v| v.last()).map_or(offset, |e| e.offset);
                if end && !v.is_some_and(<[_]>::is_empty) {
                    if let Some(seq) = listings.begin_read(fh, dir, last) {
                        let none: [(&[u8], u64); 0] = [];
                        listings.read_done(fh, seq, Some(none), watched);
                    }
                }
            };
        let done: Done = Box::new(move |r| match r {
            Ok(r @ (Response::Dir(_) | Response::DirEnd(_))) => {
                let (v, end) = match r {
                    Response::DirEnd(v) => (v, true),
                    Response::Dir(v) => (v, false),
                    _ => unreachable!("matched above"),
                };
                listed_done(&giver.coh, Some(&v), end);
                let items = listing::plus(v, giver.coh.short())
                    .into_iter()
                    .map(listing::PlusItem::into_owned)
                    .collect();
                let buf = Buffer {
                    next: offset,
                    generation,
                    stamp,
                    items,
                    end,
                };
                giver.give(buf, cb)
            }
            Ok(r) => {
                listed_done(&giver.coh, None, false);
                cb(Err(unexpected(r)));
            }
            Err(e) => {
                listed_done(&giver.coh, None, false);
                cb(Err(e));
            }
        });
        let Some(node) = first else {
            return on_dir(&self.out, &self.dirs, who, fh, req, done);
        };
        // A host handle's first read opens the directory in the container
        // with it, in one round trip.
        let (dirs, rpc) = (self.dirs.clone(), self.out.rpc.clone());
        let req = Request::OpenReadDir {
            node,
            size: prefetch::PREFETCH,
            plus: true,
        };
        self.out.send(
            who,
            &req,
            Box::new(move |r| match r {
                Ok(Response::DirOpened {
                    fh: remote,
                    entries,
                    end,
                }) => {
                    if let Some(extra) = dirs.opened(fh, remote) {
                        rpc.post(&Request::ReleaseDir { fh: extra });
                    }
                    done(Ok(match end {
                        true => Response::DirEnd(entries),
                        false => Response::Dir(entries),
                    }))
                }
                r => done(r),
            }),
        );
    }

    /// The first chunk of a directory opened on the host, from a streamed
    /// listing when one is kept, else from a stream of the subtree below
    /// it (the rest kept for the kernel's next reads and opens).
    fn streamed(self, who: Who, giver: Giver, cb: PlusCb) {
        let (dir, fh, coh) = (giver.dir, giver.fh, giver.coh.clone());
        let sent = self.out.stream_generation(&coh);
        let (kept, stale) = self.streams.take_dir(dir, sent);
        if !stale.is_empty() {
            self.out.rpc.post(&Request::Forget { nodes: stale });
        }
        let generation = coh.generation();
        if let Some(d) = kept {
            listed_whole(&coh, fh, dir, &d.items);
            let buf = Buffer {
                next: 0,
                generation,
                stamp: d.stamp,
                items: d.items,
                end: true,
            };
            return giver.give(buf, cb);
        }
        let stamp = coh.attr_stamp();
        let budget = stream::BUDGET;
        let req = Request::Stream { node: dir, budget };
        let out = self.out.clone();
        out.send(
            &who.clone(),
            &req,
            Box::new(move |r| match r {
                Ok(Response::Streamed { dirs, files }) => {
                    let mut tree = match stream::check(dir, budget, stamp, dirs, files) {
                        Ok(t) => t,
                        Err(refs) => {
                            tracing::debug!(dir, "a stream broke the rules: refused");
                            if !refs.is_empty() {
                                self.out.rpc.post(&Request::Forget { nodes: refs });
                            }
                            return self.read(&who, giver, 0, cb);
                        }
                    };
                    if tree.dirs.is_empty() {
                        // Not even the directory fits: read it as usual.
                        return self.read(&who, giver, 0, cb);
                    }
                    let (_, first) = tree.dirs.remove(0);
                    let now = self.out.stream_generation(&coh);
                    let forget = self.streams.put(sent, now, tree);
                    if !forget.is_empty() {
                        self.out.rpc.post(&Request::Forget { nodes: forget });
                    }
                    if sent == now {
                        listed_whole(&coh, fh, dir, &first.items);
                    }
                    let buf = Buffer {
                        next: 0,
                        generation,
                        stamp,
                        items: first.items,
                        end: true,
                    };
                    giver.give(buf, cb)
                }
                Ok(r) => {
                    cb(Err(unexpected(r)));
                }
                Err(e) => {
                    cb(Err(e));
                }
            }),
        );
    }
}

/// Hands prefetched readdirplus entries to the kernel a chunk at a time.
struct Giver {
    dir: u64,
    fh: u64,
    cache: Arc<NoXattrs>,
    coh: Arc<Coherence>,
    prefetched: Arc<Prefetched>,
}

impl Giver {
    /// Offers the first entries of `buf`; keeps what the kernel leaves for
    /// its next chunk.
    fn give(&self, mut buf: Buffer, cb: PlusCb) {
        let n = buf.items.len().min(prefetch::OFFER);
        // The kernel takes them in order; register each as it would be
        // taken (those it leaves are unregistered below and stay buffered).
        for i in buf.items[..n].iter_mut().filter(|i| i.counted) {
            i.ttl = self.coh.entry(self.dir, &i.name, i.node, i.attr.mode).min();
            self.coh
                .keep_attr(i.node, i.attr, Source::Listing, buf.stamp);
            if i.no_xattrs {
                self.cache.note_empty(i.node, i.ttl);
            }
        }
        let taken = cb(Ok(&buf.items[..n])).min(n);
        for &(node, count) in &listing::untaken(&buf.items[..n], taken) {
            self.coh.forgotten(node, count);
        }
        if taken > 0 {
            buf.next = buf.items[taken - 1].offset;
            buf.items.drain(..taken);
        }
        self.prefetched.put(self.fh, buf);
    }
}

/// The completion of a getattr/setattr: the attributes, reported under
/// `node`, and how long the kernel may keep them.
/// Made when the request is sent: the ledger keeps the attributes if
/// nothing changed meanwhile.
fn attr_done(node: u64, coh: Arc<Coherence>, cb: Cb<(Attr, Duration)>) -> Done {
    let stamp = coh.attr_stamp();
    Box::new(move |r| {
        cb(r.and_then(replies::attr).map(|mut a| {
            a.ino = node;
            coh.keep_attr(node, a, Source::Attr, stamp);
            (a, coh.attr_ttl(node, a.mode))
        }))
    })
}
