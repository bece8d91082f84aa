//! The filesystem core: typed operations on node ids, turned into
//! requests to the satellite, with the satellite's replies checked and
//! typed on the way back.
//!
//! It knows nothing of fuser or the kernel (the adapter in `fuse.rs` maps
//! kernel requests to these methods and results to replies) and nothing
//! of Docker (it talks to a [`Transport`]), so tests drive it with canned
//! answers or with the real satellite over pipes. Besides the mapping it
//! holds the mount's policies:
//! * TTLs: short, or long for what the satellite's change feed watches
//!   ([`coherence`]); negative entries likewise ([`Lookup::Absent`]),
//!   answered on the host for names a fully listed, watched directory
//!   does not hold ([`dir_names`]);
//! * xattr absence: `ls -l`'s getxattr calls are answered here for nodes
//!   the satellite said have none ([`xattr_cache`]);
//! * readdirplus references: entries the kernel did not take are forgotten
//!   ([`listing`]);
//! * symlink targets are rewritten both ways when asked ([`links`]);
//! * the caller's identity (uid, gid, groups) rides with each request when
//!   asked ([`caller`]);
//! * on the local channel, open files come with the satellite's descriptor
//!   for FUSE passthrough, checked before use ([`backing`]);
//! * a read-only open of a small file brings its contents, and reads on
//!   that handle are answered here while they are current ([`heads`]);
//!   the releases of such handles go in batches ([`releases`]);
//! * writes are answered at once and sent in batches, other requests
//!   waiting for the writes before them ([`write_behind`]);
//! * the handles that may write are known, so that the change feed never
//!   makes the kernel wait on their writeback ([`writers`]).

mod backing;
mod caller;
mod coherence;
mod dir_names;
mod heads;
mod lazy_dir;
mod links;
mod listing;
mod prefetch;
mod releases;
mod replies;
mod transport;
mod write_behind;
mod write_only;
mod writers;
mod xattr_cache;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use dockerfuse_proto::{Attr, Entry, Errno, SetAttr, SetTime, StatFs};
use dockerfuse_proto::{Request, Response, MAX_OPEN_DATA};

pub(crate) use caller::{with_caller, Caller, CallerGuard};
pub(crate) use coherence::{Coherence, Inval, Ttl};
pub(crate) use links::LinkRewrite;
pub(crate) use listing::{DirItem, PlusItem};
pub use transport::{Done, Transport};

use heads::Heads;
use lazy_dir::LazyDirs;
use prefetch::{Buffer, Prefetched};
use releases::Releases;
use replies::unexpected;
use write_behind::{Accepted, WriteBehind};
use xattr_cache::NoXattrs;

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

/// An open file: the satellite's handle and, on the local channel, a
/// copy of the satellite's descriptor that may back the file in the kernel.
pub(crate) struct Opened {
    pub(crate) fh: u64,
    pub(crate) backing: Option<OwnedFd>,
}

/// Outcome of a lookup.
pub(crate) enum Lookup {
    Found(Entry, Ttl),
    /// The name does not exist; the kernel may remember that for the TTL.
    Absent(Duration),
}

/// The filesystem core of one mount.
pub(crate) struct Core<T: Transport> {
    rpc: Arc<T>,
    opts: Options,
    no_xattrs: Arc<NoXattrs>,
    coherence: Arc<Coherence>,
    dirs: Arc<LazyDirs>,
    prefetched: Arc<Prefetched>,
    heads: Arc<Heads>,
    releases: Arc<Releases>,
    behind: Option<Arc<WriteBehind>>,
}

impl<T: Transport> Core<T> {
    pub(crate) fn new(rpc: T, opts: Options) -> Self {
        let coherence = Arc::new(Coherence::new(opts.ttl, opts.fixed_ttl));
        let no_xattrs = coherence.no_xattrs();
        let heads = coherence.heads();
        let rpc = Arc::new(rpc);
        let behind = (opts.write_behind && !opts.per_caller && !opts.writeback).then(|| {
            let rpc = rpc.clone();
            let send: write_behind::SendBatch = Arc::new(move |fh, offset, data, done| {
                let len = data.len() as u64;
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
        Core {
            rpc,
            opts,
            no_xattrs,
            coherence,
            dirs: Arc::default(),
            prefetched: Arc::default(),
            heads,
            releases: Arc::default(),
            behind,
        }
    }

    /// The cache policy and what the kernel holds (for the change feed).
    pub(crate) fn coherence(&self) -> Arc<Coherence> {
        self.coherence.clone()
    }

    /// The transport (to ask for the change feed).
    pub(crate) fn transport(&self) -> &T {
        &self.rpc
    }

    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    /// Sends `req`, wrapped as the current caller's when the mount performs
    /// requests per caller.
    fn send(&self, req: &Request<'_>, done: Done) {
        self.send_as(req, done, true)
    }

    /// Sends `req` as the current caller's when `as_caller` (and the mount
    /// performs requests per caller), else as the satellite's own.
    fn send_as(&self, req: &Request<'_>, done: Done, as_caller: bool) {
        let caller = (as_caller && self.opts.per_caller)
            .then(caller::current)
            .flatten();
        match caller {
            Some(c) => self.dispatch(
                &Request::As {
                    uid: c.uid,
                    gid: c.gid,
                    groups: c.groups.to_vec(),
                    req: Box::new(req.clone()),
                },
                done,
            ),
            None => self.dispatch(req, done),
        }
    }

    /// Sends `req` once the writes accepted before it have landed.
    fn dispatch(&self, req: &Request<'_>, done: Done) {
        match &self.behind {
            Some(b) if !b.is_idle() => {
                let (rpc, req) = (self.rpc.clone(), req.clone().into_owned());
                b.after_writes(Box::new(move || rpc.call(&req, done)))
            }
            _ => self.rpc.call(req, done),
        }
    }

    /// Sends `req` and maps its response with `map` into `cb`.
    fn call<R: 'static>(
        &self,
        req: Request<'_>,
        map: fn(Response<'_>) -> Result<R, Errno>,
        cb: Cb<R>,
    ) {
        self.send(&req, Box::new(move |r| cb(r.and_then(map))));
    }

    /// Sends a request whose reply is an entry found as `name` in
    /// `parent`: the kernel takes a reference, the TTLs are chosen and the
    /// xattr news remembered.
    fn call_entry(&self, req: Request<'_>, parent: u64, name: &[u8], cb: Cb<(Entry, Ttl)>) {
        let (cache, coh, name) = (
            self.no_xattrs.clone(),
            self.coherence.clone(),
            name.to_vec(),
        );
        self.send(
            &req,
            Box::new(move |r| {
                cb(r.and_then(replies::entry).map(|e| {
                    let ttl = coh.entry(parent, &name, e.node, e.attr.mode);
                    cache.note(&e, ttl.attr);
                    (e, ttl)
                }))
            }),
        );
    }

    /// Wraps `cb` to tell the listings what an operation on `name` in
    /// `dir` did: on success the name exists (`exists`) or not; on a
    /// failure it is unknown, but for EEXIST of a creation.
    fn noting<R: 'static>(&self, dir: u64, name: &[u8], exists: bool, cb: Cb<R>) -> Cb<R> {
        let (coh, name) = (self.coherence.clone(), name.to_vec());
        Box::new(move |r: Result<R, Errno>| {
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

    /// Sends a request whose outcome nobody waits for and answers `cb` now.
    fn send_and_ack(&self, req: &Request<'_>, cb: Cb<()>) {
        self.dispatch(req, Box::new(|_| {}));
        cb(Ok(()))
    }

    /// Looks `name` up in `parent`; a name a complete listing of the
    /// watched directory does not hold is absent without asking.
    pub(crate) fn lookup(&self, parent: u64, name: &[u8], cb: Cb<Lookup>) {
        let coh = self.coherence.clone();
        let local = !self.opts.per_caller;
        if local {
            if let Some(ttl) = coh.known_absent(parent, name) {
                return cb(Ok(Lookup::Absent(ttl)));
            }
        }
        let stamp = local.then(|| coh.listings().stamp(parent)).flatten();
        let absent = name.to_vec();
        self.call_entry(
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
    pub(crate) fn forget(&self, nodes: Vec<(u64, u64)>) {
        for &(node, count) in &nodes {
            self.coherence.forgotten(node, count);
        }
        if !nodes.is_empty() {
            self.rpc.post(&Request::Forget { nodes });
        }
    }

    pub(crate) fn getattr(&self, node: u64, fh: Option<u64>, cb: Cb<(Attr, Duration)>) {
        self.call_attr(Request::GetAttr { node, fh }, node, cb)
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
        node: u64,
        fh: Option<u64>,
        attr: SetAttr,
        cb: Cb<(Attr, Duration)>,
    ) {
        let cb = match attr.size {
            Some(_) => self.changing(cb),
            None => cb,
        };
        let kernel_mtime = self.opts.writeback
            && self.opts.per_caller
            && matches!(attr.mtime, Some(SetTime::At { .. }));
        if !kernel_mtime {
            return self.call_attr(Request::SetAttr { node, fh, attr }, node, cb);
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
            return self.send_attr(req, node, cb, false);
        }
        let (rpc, coh) = (self.rpc.clone(), self.coherence.clone());
        let then_mtime: Cb<(Attr, Duration)> = Box::new(move |r| match r {
            Ok(_) => {
                let req = Request::SetAttr {
                    node,
                    fh,
                    attr: mtime,
                };
                rpc.call(&req, attr_done(node, coh, cb))
            }
            Err(e) => cb(Err(e)),
        });
        self.call_attr(
            Request::SetAttr {
                node,
                fh,
                attr: rest,
            },
            node,
            then_mtime,
        )
    }

    /// getattr/setattr: the attributes, reported under `node`, and their TTL.
    fn call_attr(&self, req: Request<'_>, node: u64, cb: Cb<(Attr, Duration)>) {
        self.send_attr(req, node, cb, true)
    }

    fn send_attr(&self, req: Request<'_>, node: u64, cb: Cb<(Attr, Duration)>, as_caller: bool) {
        let coh = self.coherence.clone();
        self.send_as(&req, attr_done(node, coh, cb), as_caller);
    }

    pub(crate) fn readlink(&self, node: u64, cb: BytesCb) {
        let links = self.opts.links.clone();
        self.send(
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
    pub(crate) fn symlink(&self, parent: u64, name: &[u8], target: &[u8], cb: Cb<(Entry, Ttl)>) {
        let stored = self
            .opts
            .links
            .as_ref()
            .and_then(|l| l.to_container(target));
        self.call_entry(
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
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
        cb: Cb<(Entry, Ttl)>,
    ) {
        self.call_entry(
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

    pub(crate) fn mkdir(&self, parent: u64, name: &[u8], mode: u32, cb: Cb<(Entry, Ttl)>) {
        self.call_entry(
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

    pub(crate) fn unlink(&self, parent: u64, name: &[u8], cb: Cb<()>) {
        let cb = self.noting(parent, name, false, cb);
        let name = name.into();
        self.call(Request::Unlink { parent, name }, replies::ok, cb)
    }

    pub(crate) fn rmdir(&self, parent: u64, name: &[u8], cb: Cb<()>) {
        let cb = self.noting(parent, name, false, cb);
        let name = name.into();
        self.call(Request::Rmdir { parent, name }, replies::ok, cb)
    }

    pub(crate) fn rename(
        &self,
        (parent, name): (u64, &[u8]),
        (new_parent, new_name): (u64, &[u8]),
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
        let (coh, old, new) = (self.coherence.clone(), name.to_vec(), new_name.to_vec());
        let cb: Cb<()> = Box::new(move |r| {
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
        self.call(
            Request::Rename {
                parent,
                name: name.into(),
                new_parent,
                new_name: new_name.into(),
                flags,
            },
            replies::ok,
            cb,
        )
    }

    pub(crate) fn link(&self, node: u64, new_parent: u64, new_name: &[u8], cb: Cb<(Entry, Ttl)>) {
        self.call_entry(
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

    /// Wraps the callback of an open of `node` with `flags`: a handle that
    /// may write is recorded, and handed over once no data invalidation of
    /// the node is under way ([`writers`]).
    fn writing<R: Send + 'static>(
        &self,
        flags: i32,
        node: impl FnOnce(&R) -> (u64, u64) + Send + 'static,
        cb: Cb<R>,
    ) -> Cb<R> {
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            return cb;
        }
        let coh = self.coherence.clone();
        Box::new(move |r| match r {
            Ok(o) => {
                let (node, fh) = node(&o);
                coh.writers().opened(node, fh, Box::new(move || cb(Ok(o))))
            }
            Err(e) => cb(Err(e)),
        })
    }

    pub(crate) fn open(&self, node: u64, flags: i32, cb: Cb<Opened>) {
        let cb = self.writing(flags, move |o: &Opened| (node, o.fh), cb);
        let small = self.small_open(node, flags);
        let direct = flags & libc::O_DIRECT != 0;
        let write_only = flags & libc::O_ACCMODE == libc::O_WRONLY;
        let flags = self.open_flags(flags);
        let cb = match flags & libc::O_TRUNC {
            0 => cb,
            _ => self.changing(cb),
        };
        if write_only && self.opts.writeback && self.opts.per_caller {
            let rpc = self.rpc.clone();
            let cb = Box::new(move |r: Result<(u64, Option<u32>), Errno>| {
                cb(r.map(|(fh, fd)| Opened {
                    fh,
                    backing: fd.and_then(|fd| backing::take(&*rpc, fd, flags)),
                }))
            });
            return write_only::open(&self.rpc, caller::current(), node, flags, cb);
        }
        let (rpc, behind) = (self.rpc.clone(), self.behind.clone());
        let Some(lifetime) = small else {
            return self.send(
                &Request::Open { node, flags },
                Box::new(move |r| {
                    cb(r.and_then(replies::opened).map(|o| {
                        if let Some(b) = behind {
                            b.opened(o.fh, node, flags & libc::O_APPEND != 0, direct);
                        }
                        Opened {
                            fh: o.fh,
                            backing: o.fd.and_then(|fd| backing::take(&*rpc, fd, flags)),
                        }
                    }))
                }),
            );
        };
        let (heads, ticket) = (self.heads.clone(), self.heads.ticket());
        let max = MAX_OPEN_DATA;
        self.send(
            &Request::OpenSmall { node, flags, max },
            Box::new(move |r| {
                cb(r.and_then(replies::opened).map(|o| {
                    let fh = o.fh;
                    match o.data {
                        Some(d) if d.len() <= max as usize => {
                            heads.keep(fh, node, &d, ticket, lifetime);
                        }
                        Some(d) => {
                            tracing::debug!(
                                fh,
                                len = d.len(),
                                "open brought more than asked: ignored"
                            )
                        }
                        None => {}
                    }
                    if let Some(b) = behind {
                        b.opened(fh, node, flags & libc::O_APPEND != 0, direct);
                    }
                    Opened {
                        fh,
                        backing: o.fd.and_then(|fd| backing::take(&*rpc, fd, flags)),
                    }
                }))
            }),
        )
    }

    /// The kernel reads the file `fh` without us (passthrough): its held
    /// contents are of no use.
    pub(crate) fn contents_unused(&self, fh: u64) {
        self.heads.release(fh);
    }

    pub(crate) fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        cb: Cb<(Entry, Ttl, Opened)>,
    ) {
        let (cache, coh, owned, rpc) = (
            self.no_xattrs.clone(),
            self.coherence.clone(),
            name.to_vec(),
            self.rpc.clone(),
        );
        let behind = self.behind.clone();
        let cb = self.writing(flags, |(e, _, o): &(Entry, Ttl, Opened)| (e.node, o.fh), cb);
        let cb = self.noting(parent, name, true, cb);
        let direct = flags & libc::O_DIRECT != 0;
        let flags = self.open_flags(flags);
        let cb = match flags & libc::O_TRUNC {
            0 => cb,
            _ => self.changing(cb),
        };
        let req = Request::Create {
            parent,
            name: name.into(),
            mode,
            flags,
        };
        self.send(
            &req,
            Box::new(move |r| {
                cb(r.and_then(replies::created).map(|(e, fh, fd)| {
                    let ttl = coh.entry(parent, &owned, e.node, e.attr.mode);
                    cache.note(&e, ttl.attr);
                    let backing = fd.and_then(|fd| backing::take(&*rpc, fd, flags));
                    if let Some(b) = behind {
                        b.opened(fh, e.node, flags & libc::O_APPEND != 0, direct);
                    }
                    (e, ttl, Opened { fh, backing })
                }))
            }),
        );
    }

    /// Reads up to `size` bytes; never hands on more than asked. Answered
    /// here when the open brought the file's contents and they are current.
    pub(crate) fn read(&self, fh: u64, offset: u64, size: u32, cb: BytesCb) {
        if let Some((data, range)) = self.heads.read(fh, offset, size) {
            return cb(Ok(&data[range]));
        }
        self.send(
            &Request::Read { fh, offset, size },
            Box::new(move |r| match r {
                Ok(Response::Data(d)) => cb(Ok(&d[..d.len().min(size as usize)])),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    /// Clears the setuid bit, and the setgid bit of a group-executable
    /// file, of `node`: what a write by a caller without CAP_FSETID does.
    /// With FUSE_HANDLE_KILLPRIV_V2 the kernel asks this of us (a flag on
    /// the write) instead of probing `security.capability` before every
    /// write(2) and sending the chmod itself.
    pub(crate) fn drop_suidgid(self: &Arc<Self>, node: u64, cb: Cb<()>) {
        let me = self.clone();
        self.getattr(
            node,
            None,
            Box::new(move |r| match r {
                Ok((a, _)) => match suidgid_cleared(a.mode) {
                    Some(mode) => {
                        let attr = SetAttr {
                            mode: Some(mode),
                            ..Default::default()
                        };
                        me.setattr(node, None, attr, Box::new(move |r| cb(r.map(|_| ()))))
                    }
                    None => cb(Ok(())),
                },
                Err(e) => cb(Err(e)),
            }),
        )
    }

    pub(crate) fn write(&self, fh: u64, offset: u64, data: &[u8], cb: Cb<u32>) {
        let cb = self.changing(cb);
        if let Some(b) = &self.behind {
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
        self.send(
            &req,
            Box::new(move |r| cb(r.and_then(|r| replies::written(r, len)))),
        );
    }

    /// FLUSH needs no round trip: the satellite's flush closes nothing.
    /// It waits for the handle's writes still behind, and reports their
    /// error (close(2) returns it).
    pub(crate) fn flush(&self, fh: u64, cb: Cb<()>) {
        match self.behind.clone() {
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
    pub(crate) fn release(&self, fh: u64, cb: Cb<()>) {
        self.coherence.writers().released(fh);
        if self.heads.release(fh) {
            if let Some(b) = &self.behind {
                b.forget(fh);
            }
            self.releases.defer(fh, &self.rpc);
            return cb(Ok(()));
        }
        let Some(b) = self.behind.clone() else {
            return self.send_and_ack(&Request::Release { fh }, cb);
        };
        self.dispatch(&Request::Release { fh }, Box::new(move |_| b.forget(fh)));
        cb(Ok(()))
    }

    /// FSYNC also reports the error of a write sent behind.
    pub(crate) fn fsync(&self, fh: u64, datasync: bool, cb: Cb<()>) {
        let behind = self.behind.clone();
        let cb: Cb<()> = Box::new(move |r| match behind.and_then(|b| b.take_error(fh)) {
            Some(e) => cb(Err(e)),
            None => cb(r),
        });
        self.call(Request::Fsync { fh, datasync }, replies::ok, cb)
    }

    pub(crate) fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32, cb: Cb<()>) {
        let cb = self.changing(cb);
        let req = Request::Fallocate {
            fh,
            offset,
            length,
            mode,
        };
        self.call(req, replies::ok, cb)
    }

    pub(crate) fn lseek(&self, fh: u64, offset: i64, whence: i32, cb: Cb<i64>) {
        let req = Request::Lseek { fh, offset, whence };
        self.call(req, replies::offset, cb)
    }

    /// Copies inside the container; never reports more than `len` copied.
    pub(crate) fn copy_file_range(
        &self,
        (fh_in, offset_in): (u64, u64),
        (fh_out, offset_out): (u64, u64),
        len: u64,
        flags: u32,
        cb: Cb<u32>,
    ) {
        let cb = self.changing(cb);
        let req = Request::CopyFileRange {
            fh_in,
            offset_in,
            fh_out,
            offset_out,
            len,
            flags,
        };
        self.send(
            &req,
            Box::new(move |r| cb(r.and_then(|r| replies::written(r, len)))),
        );
    }

    /// Opens a directory; true with the handle when the kernel may keep
    /// its listing (the feed watches it).
    pub(crate) fn opendir(&self, node: u64, cb: Cb<(u64, bool)>) {
        if !self.opts.per_caller && self.coherence.cache_dir(node) {
            return cb(Ok((self.dirs.open(node), true)));
        }
        let coh = self.coherence.clone();
        self.send(
            &Request::OpenDir { node },
            Box::new(move |r| cb(r.and_then(replies::fh).map(|fh| (fh, coh.cache_dir(node))))),
        );
    }

    /// Sends a request on the satellite's handle of directory handle
    /// `fh` (opening it in the container first for a host handle).
    fn on_dir(
        &self,
        fh: u64,
        req: impl FnOnce(u64) -> Request<'static> + Send + 'static,
        done: Done,
    ) {
        if !LazyDirs::is_host(fh) {
            return self.send(&req(fh), done);
        }
        let (rpc, behind) = (self.rpc.clone(), self.behind.clone());
        self.dirs.with_remote(
            &self.rpc,
            fh,
            Box::new(move |r| match r {
                Ok(remote) => {
                    let req = req(remote);
                    match behind {
                        Some(b) => b.after_writes(Box::new(move || rpc.call(&req, done))),
                        None => rpc.call(&req, done),
                    }
                }
                Err(e) => done(Err(e)),
            }),
        );
    }

    pub(crate) fn readdir(&self, fh: u64, offset: u64, size: u32, cb: DirCb) {
        let req = move |fh| Request::ReadDir {
            fh,
            offset,
            size,
            plus: false,
        };
        self.on_dir(
            fh,
            req,
            Box::new(move |r| match r {
                Ok(Response::Dir(v)) => cb(Ok(listing::plain(v))),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    /// A readdirplus chunk: `cb` gives the items to the kernel and returns
    /// how many it took; the lookups of the others are dropped.
    pub(crate) fn readdirplus(&self, dir: u64, fh: u64, offset: u64, _size: u32, cb: PlusCb) {
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
            self.rpc.post(&Request::Forget { nodes: stale });
        }
        let req = move |fh| Request::ReadDir {
            fh,
            offset,
            size: prefetch::PREFETCH,
            plus: true,
        };
        let generation = self.coherence.generation();
        // Reads of a watched directory gather its names, complete at the
        // empty reply that ends it.
        let listed = (!self.opts.per_caller && self.coherence.cache_dir(dir))
            .then(|| self.coherence.listings().begin_read(fh, dir, offset))
            .flatten();
        let listed_done = move |coh: &Coherence, v: Option<&[dockerfuse_proto::DirEntry<'_>]>| {
            if let Some(seq) = listed {
                let names = v.map(|v| v.iter().map(|e| (&e.name[..], e.offset)));
                coh.listings()
                    .read_done(fh, seq, names, coh.cache_dir(dir) && coh.holds(dir));
            }
        };
        self.on_dir(
            fh,
            req,
            Box::new(move |r| match r {
                Ok(Response::Dir(v)) => {
                    listed_done(&giver.coh, Some(&v));
                    let items = listing::plus(v, giver.coh.short())
                        .into_iter()
                        .map(listing::PlusItem::into_owned)
                        .collect();
                    let buf = Buffer {
                        next: offset,
                        generation,
                        items,
                    };
                    giver.give(buf, cb)
                }
                Ok(r) => {
                    listed_done(&giver.coh, None);
                    cb(Err(unexpected(r)));
                }
                Err(e) => {
                    listed_done(&giver.coh, None);
                    cb(Err(e));
                }
            }),
        );
    }

    pub(crate) fn releasedir(&self, fh: u64, cb: Cb<()>) {
        self.coherence.listings().release(fh);
        let nodes = self.prefetched.release(fh);
        if !nodes.is_empty() {
            self.rpc.post(&Request::Forget { nodes });
        }
        if !LazyDirs::is_host(fh) {
            return self.send_and_ack(&Request::ReleaseDir { fh }, cb);
        }
        match self.dirs.release(fh) {
            Some(remote) => self.send_and_ack(&Request::ReleaseDir { fh: remote }, cb),
            None => cb(Ok(())),
        }
    }

    pub(crate) fn fsyncdir(&self, fh: u64, datasync: bool, cb: Cb<()>) {
        self.on_dir(
            fh,
            move |fh| Request::FsyncDir { fh, datasync },
            Box::new(move |r| cb(r.and_then(replies::ok))),
        );
    }

    pub(crate) fn statfs(&self, node: u64, cb: Cb<StatFs>) {
        self.call(Request::StatFs { node }, replies::statfs, cb)
    }

    pub(crate) fn access(&self, node: u64, mask: i32, cb: Cb<()>) {
        self.call(Request::Access { node, mask }, replies::ok, cb)
    }

    pub(crate) fn getxattr(&self, node: u64, name: &[u8], size: u32, cb: XattrCb) {
        if self.no_xattrs.known_empty(node) {
            return cb(Err(Errno::ENODATA));
        }
        let name = name.into();
        self.call_xattr(Request::GetXattr { node, name, size }, size, cb)
    }

    pub(crate) fn listxattr(&self, node: u64, size: u32, cb: XattrCb) {
        if self.no_xattrs.known_empty(node) {
            return cb(Ok(if size == 0 {
                Xattr::Size(0)
            } else {
                Xattr::Data(&[])
            }));
        }
        self.call_xattr(Request::ListXattr { node, size }, size, cb)
    }

    /// getxattr/listxattr: a value that does not fit `size` is ERANGE.
    fn call_xattr(&self, req: Request<'_>, size: u32, cb: XattrCb) {
        self.send(
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

    pub(crate) fn setxattr(&self, node: u64, name: &[u8], value: &[u8], flags: i32, cb: Cb<()>) {
        self.no_xattrs.forget(node);
        let req = Request::SetXattr {
            node,
            name: name.into(),
            value: value.into(),
            flags,
        };
        self.call(req, replies::ok, cb)
    }

    pub(crate) fn removexattr(&self, node: u64, name: &[u8], cb: Cb<()>) {
        self.no_xattrs.forget(node);
        let name = name.into();
        self.call(Request::RemoveXattr { node, name }, replies::ok, cb)
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
fn attr_done(node: u64, coh: Arc<Coherence>, cb: Cb<(Attr, Duration)>) -> Done {
    Box::new(move |r| {
        cb(r.and_then(replies::attr).map(|mut a| {
            a.ino = node;
            (a, coh.attr_ttl(node, a.mode))
        }))
    })
}
