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
//!   A connection that has ended counts as none, and a request that
//!   changes nothing (lookup, getattr, open...) caught in flight by the
//!   end is sent again to the next satellite: a lookup failing with EIO
//!   would make the kernel drop the name and forget its id.
//!
//! Forget counts stay consistent: each id counts the kernel's references
//! and, apart, the lookups made on the current satellite; the satellite is
//! told to forget only what it was given.
//!
//! The change feed names the satellite's ids: [`Relink::changes`] turns
//! them into ours through the same table (its reverse map holds only the
//! ids the kernel holds) and drops what it cannot map. A node the feed
//! does not watch is reported before the reply that introduces it, so
//! before it has an id of ours: the table remembers it and, when the reply
//! binds it, the core hears of it ([`Relink::on_unwatched`]) before the
//! reply reaches it.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use dockerfuse_proto::{Change, Entry, Errno, OpenFlags, Request, Response};
use tracing::{debug, info};

use crate::fs::{Done, Transport};

mod ids;

use ids::{Ctx, Table, Where};

/// Requests kept while disconnected; more fail at once.
const MAX_QUEUED: usize = 8192;

/// A connection that can tell it has ended (its requests then fail with
/// EIO at once).
pub(crate) trait Ends {
    fn has_ended(&self) -> bool;
}

impl Ends for crate::transport::local::Peer {
    fn has_ended(&self) -> bool {
        self.is_closed()
    }
}

/// Either the plain connection (no `--reconnect`) or one that survives
/// the satellite's restart.
pub(crate) enum Conn<T: Transport + Ends> {
    Plain(T),
    Relink(Relink<T>),
}

impl<T: Transport + Ends> Transport for Conn<T> {
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
    fn take_fd(&self, fd: u32) -> Option<OwnedFd> {
        match self {
            Conn::Plain(t) => t.take_fd(fd),
            Conn::Relink(r) => r.take_fd(fd),
        }
    }
    fn handle_gone(&self, fh: u64) -> bool {
        match self {
            Conn::Plain(t) => t.handle_gone(fh),
            Conn::Relink(r) => r.handle_gone(fh),
        }
    }
}

struct Queued {
    req: Request<'static>,
    done: Done,
    since: Instant,
}

struct State<T> {
    current: Option<Arc<T>>,
    gone: bool,
    queue: Vec<Queued>,
    ids: Table,
}

/// The transport wrapper; cheap to clone (one shared state).
pub(crate) struct Relink<T: Transport + Ends> {
    shared: Arc<Shared<T>>,
}

impl<T: Transport + Ends> Clone for Relink<T> {
    fn clone(&self) -> Self {
        Relink {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    op_timeout: Duration,
    /// Told the ids of nodes the feed does not watch (set once).
    unwatched: OnceLock<Unwatched>,
}

/// Hears of an id of ours bound to a node the feed does not watch.
pub(crate) type Unwatched = Box<dyn Fn(u64) + Send + Sync>;

type IdCb = Box<dyn FnOnce(Result<u64, Errno>) + Send>;

impl<T: Transport + Ends> Relink<T> {
    pub(crate) fn new(first: T, op_timeout: Duration) -> Self {
        let state = State {
            current: Some(Arc::new(first)),
            gone: false,
            queue: Vec::new(),
            ids: Table::default(),
        };
        Relink {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                op_timeout,
                unwatched: OnceLock::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who hears of the ids bound to nodes the feed does not watch (once).
    pub(crate) fn on_unwatched(&self, hook: Unwatched) {
        let _ = self.shared.unwatched.set(hook);
    }

    /// The epoch the next satellite will have: its feed's changes are
    /// translated only while it is the current one.
    pub(crate) fn next_epoch(&self) -> u64 {
        self.lock().ids.epoch + 1
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().ids.epoch
    }

    /// Turns the changes reported by the feed of the satellite of `epoch`
    /// into our ids, dropping those we cannot map (see [`ids::Table::changes`]).
    pub(crate) fn changes(&self, epoch: u64, changes: &mut Vec<Change<'_>>) {
        self.lock().ids.changes(epoch, changes);
    }

    /// Tells the core of the ids just bound to unwatched nodes (never with
    /// the lock held).
    fn tell_unwatched(&self) {
        let ids = std::mem::take(&mut self.lock().ids.newly_unwatched);
        if ids.is_empty() {
            return;
        }
        if let Some(hook) = self.shared.unwatched.get() {
            for id in ids {
                hook(id);
            }
        }
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
            st.ids.next_epoch();
            st.current = Some(Arc::new(next));
            info!(
                epoch = st.ids.epoch,
                nodes = st.ids.nodes.len(),
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
            let (parent, name, kind) = match st.ids.locate(id) {
                Where::Bound(sid) => {
                    drop(st);
                    return cb(Ok(sid));
                }
                Where::Nowhere => {
                    drop(st);
                    return cb(Err(Errno::ESTALE));
                }
                Where::At { parent, name, kind } => (parent, name, kind),
            };
            let Some(rpc) = st.current.clone().filter(|r| !r.has_ended()) else {
                drop(st);
                return cb(Err(Errno::EIO));
            };
            (parent, name, kind, rpc, st.ids.epoch)
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

    /// Records the new satellite's entry for an old id; gives the lookup's
    /// reference back when the entry is refused.
    fn bind(&self, id: u64, epoch: u64, kind: u32, e: &Entry) -> Result<u64, Errno> {
        let mut st = self.lock();
        let bound = st.ids.bind(id, epoch, kind, e);
        if bound == Err(Errno::ESTALE) {
            if let Some(rpc) = &st.current {
                rpc.post(&Request::Forget {
                    nodes: vec![(e.node, 1)],
                });
            }
        }
        drop(st);
        self.tell_unwatched();
        bound
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
        // An ended connection not yet replaced counts as none: the request
        // waits for the next one rather than failing.
        let Some(rpc) = st.current.clone().filter(|r| !r.has_ended()) else {
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
        let stale = st.ids.unbound(req);
        if !stale.is_empty() {
            drop(st);
            let req = req.clone().into_owned();
            let this = self.clone();
            return self.resolve_all(
                stale,
                Box::new(move |r| match r {
                    Ok(()) => this.send(&req, done),
                    Err(Errno::EIO) if this.down() => this.send(&req, done),
                    Err(e) => done(Err(e)),
                }),
            );
        }
        let epoch = st.ids.epoch;
        let (out, ctx) = match st.ids.outbound(req) {
            Ok((_, Ctx::Gone)) => {
                let inner = match req {
                    Request::As { req, .. } => req,
                    r => r,
                };
                if let Request::ReleaseDir { fh } = inner {
                    st.ids.dirs.remove(fh);
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
        // What may be sent again if the connection ends under it.
        let again = replayable(req).then(|| req.clone().into_owned());
        let this = self.clone();
        let used = rpc.clone();
        rpc.call(
            &out,
            Box::new(move |r| {
                if let (Err(Errno::EIO), Some(again)) = (&r, again) {
                    if used.has_ended() {
                        return this.send(&again, done);
                    }
                }
                let r = r.and_then(|resp| this.lock().ids.inbound(epoch, ctx, resp));
                this.tell_unwatched();
                done(r)
            }),
        );
    }

    /// No live connection now.
    fn down(&self) -> bool {
        let st = self.lock();
        st.current.as_ref().is_none_or(|r| r.has_ended())
    }
}

impl<T: Transport + Ends> Transport for Relink<T> {
    fn call(&self, req: &Request<'_>, done: Done) {
        self.send(req, done)
    }

    /// A satellite handle of an earlier epoch (host handles are the
    /// core's own and never gone).
    fn handle_gone(&self, fh: u64) -> bool {
        let fh = crate::fs::Fh(fh);
        !fh.is_host() && self.lock().ids.sfh(fh.0).is_err()
    }

    /// The descriptor of the current satellite. Asked for from inside the
    /// reply to an open, which comes from the current satellite: replies
    /// of an older one have all run before it is replaced.
    fn take_fd(&self, fd: u32) -> Option<OwnedFd> {
        let rpc = self.lock().current.clone()?;
        if rpc.has_ended() {
            return None;
        }
        rpc.take_fd(fd)
    }

    fn post(&self, req: &Request<'_>) {
        if let Request::ReleaseMany { fhs } = req {
            // Handles of a satellite that is gone have nothing to release.
            let st = self.lock();
            let fhs: Vec<u64> = fhs.iter().filter_map(|&f| st.ids.sfh(f).ok()).collect();
            if let (Some(rpc), false) = (&st.current, fhs.is_empty()) {
                rpc.post(&Request::ReleaseMany { fhs });
            }
            return;
        }
        let Request::Forget { nodes } = req else {
            return;
        };
        let mut st = self.lock();
        let connected = st.current.is_some();
        let out = st.ids.forget(nodes, connected);
        if let (Some(rpc), false) = (&st.current, out.is_empty()) {
            rpc.post(&Request::Forget { nodes: out });
        }
    }
}

/// Requests that change nothing, so sending one again to a new satellite
/// after the connection ended under it is harmless.
fn replayable(req: &Request<'_>) -> bool {
    use Request as R;
    match req {
        R::As { req, .. } => replayable(req),
        R::Lookup { .. }
        | R::GetAttr { fh: None, .. }
        | R::ReadLink { .. }
        | R::StatFs { .. }
        | R::Access { .. }
        | R::GetXattr { .. }
        | R::ListXattr { .. }
        | R::OpenDir { .. } => true,
        R::Open { flags, .. } | R::OpenSmall { flags, .. } => !flags.contains(OpenFlags::CREAT),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
