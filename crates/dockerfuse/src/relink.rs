//! A transport that survives the satellite's restart (`--reconnect`).
//!
//! [`Relink`] sits between the filesystem core and the current satellite
//! connection and can swap that connection for a new one. Three things
//! make the swap invisible where it can be:
//!
//! * **Stable node ids.** The kernel gets ids of our own, never reused,
//!   each bound to the current satellite's node id; `st_ino` is the same
//!   id, so it stays stable too. For every id the kernel holds we remember
//!   one path (parent id, name), learned from lookups, creations and
//!   readdirplus entries and kept up to date by renames and removals;
//!   forget drops the id, so memory follows what the kernel holds. After a
//!   reconnect, ids are re-bound lazily: the first request naming an old
//!   id looks its path up again on the new satellite (parents first) and
//!   fails with ESTALE when the path no longer resolves or now names a
//!   file of another type. The root is always bound.
//! * **Handles** carry the connection's epoch in their top 16 bits: a
//!   handle opened before the gap fails with EIO (release succeeds, as
//!   the satellite that held it is gone).
//! * **Queueing.** While disconnected, requests wait for the new
//!   connection up to the operation timeout ([`Relink::expire`]), then
//!   fail with EIO; after [`Relink::give_up`] everything fails at once.
//!
//! Forget counts stay consistent: each id counts the kernel's references
//! and, apart, the lookups made on the current satellite; the satellite is
//! told to forget only what it was given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dockerfuse_proto::{Entry, Errno, Request, Response, ROOT_NODE};
use tracing::{debug, info};

use crate::fs::{Done, Transport};

/// Requests kept while disconnected; more fail at once.
const MAX_QUEUED: usize = 8192;
/// Handles hold the epoch above this many bits.
const FH_BITS: u32 = 48;
const FH_MASK: u64 = (1 << FH_BITS) - 1;
/// Mode bits of the file type.
const S_IFMT: u32 = 0o170000;

/// Either the plain connection (no `--reconnect`) or one that survives
/// the satellite's restart.
pub(crate) enum Conn<T: Transport> {
    Plain(T),
    Relink(Relink<T>),
}

impl<T: Transport> Transport for Conn<T> {
    fn call(&self, req: &Request<'_>, done: Done) {
        match self {
            Conn::Plain(t) => t.call(req, done),
            Conn::Relink(r) => r.call(req, done),
        }
    }
    fn post(&self, req: &Request<'_>) {
        match self {
            Conn::Plain(t) => t.post(req),
            Conn::Relink(r) => r.post(req),
        }
    }
}

/// What we know of one node id the kernel holds.
struct Node {
    /// Where to look it up again: parent id and name (parent 0: nowhere,
    /// it was removed or replaced).
    parent: u64,
    name: Vec<u8>,
    /// File type bits, to refuse a path that now names something else.
    kind: u32,
    /// The current satellite's id for it and the epoch it belongs to.
    sid: u64,
    epoch: u64,
    /// References the kernel holds.
    kernel_refs: u64,
    /// Lookups of `sid` made on the current satellite.
    sat_refs: u64,
}

struct Queued {
    req: Request<'static>,
    done: Done,
    since: Instant,
}

struct State<T> {
    current: Option<Arc<T>>,
    epoch: u64,
    gone: bool,
    queue: Vec<Queued>,
    nodes: HashMap<u64, Node>,
    /// Current satellite id → our id.
    by_sid: HashMap<u64, u64>,
    /// (parent id, name) → our id.
    names: HashMap<(u64, Vec<u8>), u64>,
    /// Open directory handles → the directory's id (readdirplus entries).
    dirs: HashMap<u64, u64>,
    next_id: u64,
}

/// The transport wrapper; cheap to clone (one shared state).
pub(crate) struct Relink<T: Transport> {
    shared: Arc<Shared<T>>,
}

impl<T: Transport> Clone for Relink<T> {
    fn clone(&self) -> Self {
        Relink {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    op_timeout: Duration,
}

/// What a reply needs to be translated.
enum Ctx {
    Plain,
    Entry {
        parent: u64,
        name: Vec<u8>,
    },
    Attr {
        id: u64,
    },
    Open,
    OpenDir {
        id: u64,
    },
    Plus {
        dir: u64,
    },
    Rename {
        from: (u64, Vec<u8>),
        to: (u64, Vec<u8>),
        exchange: bool,
    },
    Remove {
        parent: u64,
        name: Vec<u8>,
    },
    ReleaseDir {
        fh: u64,
    },
    /// Answered here: the release of a handle of a satellite that is gone.
    Gone,
}

type IdCb = Box<dyn FnOnce(Result<u64, Errno>) + Send>;

impl<T: Transport> Relink<T> {
    pub(crate) fn new(first: T, op_timeout: Duration) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_NODE,
            Node {
                parent: 0,
                name: Vec::new(),
                kind: 0o040000,
                sid: ROOT_NODE,
                epoch: 0,
                kernel_refs: 1,
                sat_refs: 0,
            },
        );
        let state = State {
            current: Some(Arc::new(first)),
            epoch: 0,
            gone: false,
            queue: Vec::new(),
            nodes,
            by_sid: HashMap::from([(ROOT_NODE, ROOT_NODE)]),
            names: HashMap::new(),
            dirs: HashMap::new(),
            next_id: ROOT_NODE + 1,
        };
        Relink {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                op_timeout,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection is lost: requests wait from now on.
    pub(crate) fn disconnect(&self) {
        let mut st = self.lock();
        st.current = None;
    }

    /// A new satellite runs: old ids are re-bound lazily, old handles are
    /// dead, and the waiting requests go out.
    pub(crate) fn connect(&self, next: T) {
        let queued = {
            let mut st = self.lock();
            st.epoch += 1;
            let epoch = st.epoch;
            for (id, n) in st.nodes.iter_mut() {
                n.sat_refs = 0;
                if *id == ROOT_NODE {
                    n.epoch = epoch;
                }
            }
            st.by_sid = HashMap::from([(ROOT_NODE, ROOT_NODE)]);
            st.current = Some(Arc::new(next));
            info!(
                epoch,
                nodes = st.nodes.len(),
                queued = st.queue.len(),
                "satellite reconnected"
            );
            std::mem::take(&mut st.queue)
        };
        for q in queued {
            self.call(&q.req, q.done);
        }
    }

    /// Fails the requests that have waited longer than the operation
    /// timeout.
    pub(crate) fn expire(&self) {
        let timeout = self.shared.op_timeout;
        let expired: Vec<Done> = {
            let mut st = self.lock();
            let (old, keep) = std::mem::take(&mut st.queue)
                .into_iter()
                .partition(|q| q.since.elapsed() >= timeout);
            st.queue = keep;
            old.into_iter().map(|q: Queued| q.done).collect()
        };
        if !expired.is_empty() {
            debug!(
                requests = expired.len(),
                "no satellite yet: failing requests with EIO"
            );
        }
        for d in expired {
            d(Err(Errno::EIO));
        }
    }

    /// No satellite will come back: everything fails with EIO from now on.
    pub(crate) fn give_up(&self) {
        let queued = {
            let mut st = self.lock();
            st.gone = true;
            st.current = None;
            std::mem::take(&mut st.queue)
        };
        for q in queued {
            (q.done)(Err(Errno::EIO));
        }
    }

    /// Requests waiting for a connection.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Re-binds `id` to the current satellite (parents first), then runs
    /// `cb` with its satellite id.
    fn resolve(&self, id: u64, cb: IdCb) {
        let (parent, name, kind, rpc, epoch) = {
            let st = self.lock();
            let Some(n) = st.nodes.get(&id) else {
                drop(st);
                return cb(Err(Errno::ESTALE));
            };
            if n.epoch == st.epoch {
                let sid = n.sid;
                drop(st);
                return cb(Ok(sid));
            }
            let Some(rpc) = st.current.clone() else {
                drop(st);
                return cb(Err(Errno::EIO));
            };
            if n.parent == 0 {
                drop(st);
                return cb(Err(Errno::ESTALE));
            }
            (n.parent, n.name.clone(), n.kind, rpc, st.epoch)
        };
        let this = self.clone();
        self.resolve(
            parent,
            Box::new(move |psid| {
                let psid = match psid {
                    Ok(p) => p,
                    Err(e) => return cb(Err(e)),
                };
                let req = Request::Lookup {
                    parent: psid,
                    name: name.into(),
                };
                rpc.call(
                    &req,
                    Box::new(move |r| {
                        let out = match r {
                            Ok(Response::Entry(e)) => this.bind(id, epoch, kind, &e),
                            Ok(Response::Error(code)) if code == libc::ENOENT => {
                                Err(Errno::ESTALE)
                            }
                            Ok(Response::Error(code)) => Err(Errno(code)),
                            Ok(_) => Err(Errno::EIO),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = out {
                            debug!(node = id, error = ?e, "an id held across the reconnect does not resolve");
                        }
                        cb(out)
                    }),
                );
            }),
        );
    }

    /// Records the new satellite's entry for an old id.
    fn bind(&self, id: u64, epoch: u64, kind: u32, e: &Entry) -> Result<u64, Errno> {
        let mut st = self.lock();
        let forget = |st: &State<T>| {
            if let Some(rpc) = &st.current {
                rpc.post(&Request::Forget {
                    nodes: vec![(e.node, 1)],
                });
            }
        };
        if st.epoch != epoch {
            return Err(Errno::EIO);
        }
        if e.attr.mode & S_IFMT != kind {
            forget(&st);
            return Err(Errno::ESTALE);
        }
        let Some(n) = st.nodes.get_mut(&id) else {
            forget(&st);
            return Err(Errno::ESTALE);
        };
        if n.epoch != epoch {
            n.epoch = epoch;
            n.sid = e.node;
        } else if n.sid != e.node {
            // Bound meanwhile by a racing request to another node.
            forget(&st);
            return Err(Errno::ESTALE);
        }
        n.sat_refs += 1;
        let sid = n.sid;
        st.by_sid.entry(sid).or_insert(id);
        Ok(sid)
    }

    /// Our ids a request names, that are not bound to the current
    /// satellite yet.
    fn unbound(st: &State<T>, req: &Request<'_>) -> Vec<u64> {
        let mut ids = Vec::new();
        node_ids(req, &mut |id| ids.push(id));
        ids.retain(|id| st.nodes.get(id).is_some_and(|n| n.epoch != st.epoch));
        ids.dedup();
        ids
    }

    fn resolve_all(&self, mut ids: Vec<u64>, then: Box<dyn FnOnce(Result<(), Errno>) + Send>) {
        let Some(id) = ids.pop() else {
            return then(Ok(()));
        };
        let this = self.clone();
        self.resolve(
            id,
            Box::new(move |r| match r {
                Ok(_) => this.resolve_all(ids, then),
                Err(e) => then(Err(e)),
            }),
        );
    }

    /// Sends a request: translated when every id it names is bound,
    /// after re-binding otherwise, queued while disconnected.
    fn send(&self, req: &Request<'_>, done: Done) {
        let mut st = self.lock();
        if st.gone {
            drop(st);
            return done(Err(Errno::EIO));
        }
        let Some(rpc) = st.current.clone() else {
            if st.queue.len() >= MAX_QUEUED {
                drop(st);
                return done(Err(Errno::EIO));
            }
            st.queue.push(Queued {
                req: req.clone().into_owned(),
                done,
                since: Instant::now(),
            });
            return;
        };
        let stale = Self::unbound(&st, req);
        if !stale.is_empty() {
            drop(st);
            let req = req.clone().into_owned();
            let this = self.clone();
            return self.resolve_all(
                stale,
                Box::new(move |r| match r {
                    Ok(()) => this.send(&req, done),
                    Err(e) => done(Err(e)),
                }),
            );
        }
        let epoch = st.epoch;
        let (out, ctx) = match st.outbound(req) {
            Ok((_, Ctx::Gone)) => {
                let inner = match req {
                    Request::As { req, .. } => req,
                    r => r,
                };
                if let Request::ReleaseDir { fh } = inner {
                    st.dirs.remove(fh);
                }
                drop(st);
                return done(Ok(Response::Ok));
            }
            Ok(x) => x,
            Err(e) => {
                drop(st);
                return done(Err(e));
            }
        };
        drop(st);
        let this = self.clone();
        rpc.call(
            &out,
            Box::new(move |r| {
                let r = r.and_then(|resp| this.lock().inbound(epoch, ctx, resp));
                done(r)
            }),
        );
    }
}

impl<T: Transport> Transport for Relink<T> {
    fn call(&self, req: &Request<'_>, done: Done) {
        self.send(req, done)
    }

    fn post(&self, req: &Request<'_>) {
        let Request::Forget { nodes } = req else {
            return;
        };
        let mut st = self.lock();
        let out = st.forget(nodes);
        if let (Some(rpc), false) = (&st.current, out.is_empty()) {
            rpc.post(&Request::Forget { nodes: out });
        }
    }
}

/// Calls `f` with every node id in `req` (not handles).
fn node_ids(req: &Request<'_>, f: &mut dyn FnMut(u64)) {
    use Request as R;
    match req {
        R::Lookup { parent, .. }
        | R::Symlink { parent, .. }
        | R::Mknod { parent, .. }
        | R::Mkdir { parent, .. }
        | R::Unlink { parent, .. }
        | R::Rmdir { parent, .. }
        | R::Create { parent, .. } => f(*parent),
        R::GetAttr { node, .. }
        | R::SetAttr { node, .. }
        | R::ReadLink { node }
        | R::Open { node, .. }
        | R::OpenDir { node }
        | R::StatFs { node }
        | R::Access { node, .. }
        | R::GetXattr { node, .. }
        | R::ListXattr { node, .. }
        | R::SetXattr { node, .. }
        | R::RemoveXattr { node, .. } => f(*node),
        R::Rename {
            parent, new_parent, ..
        } => {
            f(*parent);
            f(*new_parent)
        }
        R::Link {
            node, new_parent, ..
        } => {
            f(*node);
            f(*new_parent)
        }
        R::As { req, .. } => node_ids(req, f),
        _ => {}
    }
}

impl<T: Transport> State<T> {
    fn sid(&self, id: u64) -> Result<u64, Errno> {
        match self.nodes.get(&id) {
            Some(n) if n.epoch == self.epoch => Ok(n.sid),
            _ => Err(Errno::ESTALE),
        }
    }

    /// The satellite's handle for one of ours: EIO for one from before.
    fn sfh(&self, fh: u64) -> Result<u64, Errno> {
        if fh >> FH_BITS == self.epoch & 0xffff {
            Ok(fh & FH_MASK)
        } else {
            Err(Errno::EIO)
        }
    }

    fn fh(&self, sfh: u64) -> Result<u64, Errno> {
        if sfh > FH_MASK {
            return Err(Errno::EIO);
        }
        Ok(((self.epoch & 0xffff) << FH_BITS) | sfh)
    }

    /// The request for the satellite, and what its reply needs: the
    /// request's own ids and handles replaced by the satellite's.
    fn outbound<'a>(&self, req: &Request<'a>) -> Result<(Request<'a>, Ctx), Errno> {
        let mut out = req.clone();
        let ctx = self.rewrite(&mut out)?;
        Ok((out, ctx))
    }

    fn rewrite(&self, req: &mut Request<'_>) -> Result<Ctx, Errno> {
        use Request as R;
        let entry = |parent: u64, name: &[u8]| Ctx::Entry {
            parent,
            name: name.to_vec(),
        };
        let fh_opt = |fh: &mut Option<u64>| -> Result<(), Errno> {
            if let Some(f) = fh {
                *f = self.sfh(*f)?;
            }
            Ok(())
        };
        Ok(match req {
            R::As { req, .. } => self.rewrite(req)?,
            R::Lookup { parent, name }
            | R::Symlink { parent, name, .. }
            | R::Mknod { parent, name, .. }
            | R::Mkdir { parent, name, .. }
            | R::Create { parent, name, .. } => {
                let ctx = entry(*parent, name);
                *parent = self.sid(*parent)?;
                ctx
            }
            R::Link {
                node,
                new_parent,
                new_name,
            } => {
                let ctx = entry(*new_parent, new_name);
                *node = self.sid(*node)?;
                *new_parent = self.sid(*new_parent)?;
                ctx
            }
            R::Unlink { parent, name } | R::Rmdir { parent, name } => {
                let ctx = Ctx::Remove {
                    parent: *parent,
                    name: name.to_vec(),
                };
                *parent = self.sid(*parent)?;
                ctx
            }
            R::Rename {
                parent,
                name,
                new_parent,
                new_name,
                flags,
            } => {
                let ctx = Ctx::Rename {
                    from: (*parent, name.to_vec()),
                    to: (*new_parent, new_name.to_vec()),
                    exchange: *flags & libc::RENAME_EXCHANGE != 0,
                };
                *parent = self.sid(*parent)?;
                *new_parent = self.sid(*new_parent)?;
                ctx
            }
            R::GetAttr { node, fh } | R::SetAttr { node, fh, .. } => {
                let id = *node;
                *node = self.sid(id)?;
                fh_opt(fh)?;
                Ctx::Attr { id }
            }
            R::Open { node, .. } => {
                *node = self.sid(*node)?;
                Ctx::Open
            }
            R::OpenDir { node } => {
                let id = *node;
                *node = self.sid(id)?;
                Ctx::OpenDir { id }
            }
            R::ReadLink { node }
            | R::StatFs { node }
            | R::Access { node, .. }
            | R::GetXattr { node, .. }
            | R::ListXattr { node, .. }
            | R::SetXattr { node, .. }
            | R::RemoveXattr { node, .. } => {
                *node = self.sid(*node)?;
                Ctx::Plain
            }
            R::Read { fh, .. }
            | R::Write { fh, .. }
            | R::Flush { fh }
            | R::Fsync { fh, .. }
            | R::FsyncDir { fh, .. }
            | R::Fallocate { fh, .. }
            | R::Lseek { fh, .. } => {
                *fh = self.sfh(*fh)?;
                Ctx::Plain
            }
            R::CopyFileRange { fh_in, fh_out, .. } => {
                *fh_in = self.sfh(*fh_in)?;
                *fh_out = self.sfh(*fh_out)?;
                Ctx::Plain
            }
            R::ReadDir { fh, plus, .. } => {
                let dir = if *plus {
                    *self.dirs.get(fh).ok_or(Errno::EIO)?
                } else {
                    0
                };
                *fh = self.sfh(*fh)?;
                Ctx::Plus { dir }
            }
            // A handle of the satellite that is gone: nothing to release.
            R::Release { fh } => match self.sfh(*fh) {
                Ok(s) => {
                    *fh = s;
                    Ctx::Plain
                }
                Err(_) => Ctx::Gone,
            },
            R::ReleaseDir { fh } => match self.sfh(*fh) {
                Ok(s) => {
                    let ctx = Ctx::ReleaseDir { fh: *fh };
                    *fh = s;
                    ctx
                }
                Err(_) => Ctx::Gone,
            },
            _ => Ctx::Plain,
        })
    }

    /// Translates a reply of the satellite of `epoch`.
    fn inbound<'a>(
        &mut self,
        epoch: u64,
        ctx: Ctx,
        mut resp: Response<'a>,
    ) -> Result<Response<'a>, Errno> {
        if epoch != self.epoch {
            return Err(Errno::EIO);
        }
        match (ctx, &mut resp) {
            (Ctx::Entry { parent, name }, Response::Entry(e)) => self.entry(parent, name, e),
            (Ctx::Entry { parent, name }, Response::Created { entry, fh, .. }) => {
                *fh = self.fh(*fh)?;
                self.entry(parent, name, entry)
            }
            (Ctx::Attr { id }, Response::Attr(a)) => a.ino = id,
            (Ctx::Open, Response::Opened { fh, .. }) => *fh = self.fh(*fh)?,
            (Ctx::OpenDir { id }, Response::Opened { fh, .. }) => {
                *fh = self.fh(*fh)?;
                self.dirs.insert(*fh, id);
            }
            (Ctx::Plus { dir }, Response::Dir(items)) if dir != 0 => {
                for item in items.iter_mut() {
                    if let Some(e) = &mut item.entry {
                        self.entry(dir, item.name.to_vec(), e);
                    }
                }
            }
            (Ctx::Remove { parent, name }, Response::Ok) => {
                if let Some(id) = self.names.remove(&(parent, name)) {
                    if let Some(n) = self.nodes.get_mut(&id) {
                        n.parent = 0;
                    }
                }
            }
            (Ctx::Rename { from, to, exchange }, Response::Ok) => self.renamed(from, to, exchange),
            (Ctx::ReleaseDir { fh }, _) => {
                self.dirs.remove(&fh);
                return Ok(Response::Ok);
            }
            _ => {}
        }
        Ok(resp)
    }

    /// Gives a satellite entry found at (parent, name) our id: the one
    /// already bound to its node, the one the path had before the
    /// reconnect, or a new one. Counts the reference.
    fn entry(&mut self, parent: u64, name: Vec<u8>, e: &mut Entry) {
        let key = (parent, name);
        let id = match self.by_sid.get(&e.node) {
            Some(&id) => id,
            None => {
                let old = self.names.get(&key).copied().filter(|id| {
                    self.nodes
                        .get(id)
                        .is_some_and(|n| n.epoch != self.epoch && n.kind == e.attr.mode & S_IFMT)
                });
                let id = old.unwrap_or_else(|| {
                    let id = self.next_id;
                    self.next_id += 1;
                    id
                });
                self.by_sid.insert(e.node, id);
                id
            }
        };
        let epoch = self.epoch;
        let n = self.nodes.entry(id).or_insert_with(|| Node {
            parent: 0,
            name: Vec::new(),
            kind: 0,
            sid: e.node,
            epoch,
            kernel_refs: 0,
            sat_refs: 0,
        });
        if n.epoch != epoch {
            n.epoch = epoch;
            n.sat_refs = 0;
        }
        n.sid = e.node;
        n.kind = e.attr.mode & S_IFMT;
        n.kernel_refs += 1;
        n.sat_refs += 1;
        if id != ROOT_NODE {
            if n.parent != 0 {
                let prev = (n.parent, std::mem::take(&mut n.name));
                if self.names.get(&prev) == Some(&id) {
                    self.names.remove(&prev);
                }
            }
            let n = self.nodes.get_mut(&id).expect("inserted above");
            n.parent = key.0;
            n.name = key.1.clone();
            if let Some(other) = self.names.insert(key, id).filter(|&o| o != id) {
                if let Some(o) = self.nodes.get_mut(&other) {
                    o.parent = 0;
                }
            }
        }
        e.node = id;
        e.attr.ino = id;
    }

    fn renamed(&mut self, from: (u64, Vec<u8>), to: (u64, Vec<u8>), exchange: bool) {
        let moved = self.names.remove(&from);
        let replaced = self.names.remove(&to);
        let mut place = |id: u64, at: &(u64, Vec<u8>), names: &mut HashMap<_, _>| {
            if let Some(n) = self.nodes.get_mut(&id) {
                n.parent = at.0;
                n.name = at.1.clone();
                names.insert(at.clone(), id);
            }
        };
        let mut names = std::mem::take(&mut self.names);
        if let Some(id) = moved {
            place(id, &to, &mut names);
        }
        match replaced {
            Some(id) if exchange => place(id, &from, &mut names),
            Some(id) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.parent = 0;
                }
            }
            None => {}
        }
        self.names = names;
    }

    /// Drops the kernel's references; returns what the current satellite
    /// must forget.
    fn forget(&mut self, nodes: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for &(id, count) in nodes {
            if id == ROOT_NODE {
                continue;
            }
            let Some(n) = self.nodes.get_mut(&id) else {
                continue;
            };
            n.kernel_refs = n.kernel_refs.saturating_sub(count);
            let current = n.epoch == self.epoch && self.current.is_some();
            let give = if n.kernel_refs == 0 {
                n.sat_refs
            } else {
                count.min(n.sat_refs.saturating_sub(1))
            };
            n.sat_refs -= give;
            if current && give > 0 {
                out.push((n.sid, give));
            }
            if n.kernel_refs == 0 {
                let (sid, key) = (n.sid, (n.parent, std::mem::take(&mut n.name)));
                let bound = n.epoch == self.epoch;
                self.nodes.remove(&id);
                if self.names.get(&key) == Some(&id) {
                    self.names.remove(&key);
                }
                if bound && self.by_sid.get(&sid) == Some(&id) {
                    self.by_sid.remove(&sid);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
