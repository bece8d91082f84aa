//! The id table of [`Relink`](super::Relink): our node ids and what each
//! one is on the current satellite, the path to look it up again, handle
//! epochs, and the rewriting of requests and replies between the two
//! numberings. Pure bookkeeping: no I/O, one lock held by the caller.

use std::collections::{HashMap, HashSet};

use dockerfuse_proto::{Change, Entry, Errno, Request, Response, ROOT_NODE};
use tracing::warn;

use crate::fs::ids::Fh;
/// Mode bits of the file type.
pub(super) const S_IFMT: u32 = 0o170000;

/// What we know of one node id the kernel holds.
pub(super) struct Node {
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

/// What a reply needs to be translated.
pub(super) enum Ctx {
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
    OpenReadDir {
        id: u64,
        plus: bool,
    },
    Plus {
        dir: u64,
    },
    Stream {
        id: u64,
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

/// Where an id is on the current satellite.
pub(super) enum Where {
    Bound(u64),
    /// Unknown, removed or replaced: stale.
    Nowhere,
    /// To be looked up again at this path; of this type.
    At {
        parent: u64,
        name: Vec<u8>,
        kind: u32,
    },
}

/// Our ids, the satellite's, and the paths between them.
pub(super) struct Table {
    /// Bumped by each new satellite.
    pub(super) epoch: u64,
    pub(super) nodes: HashMap<u64, Node>,
    /// Current satellite id → our id.
    pub(super) by_sid: HashMap<u64, u64>,
    /// (parent id, name) → our id.
    names: HashMap<(u64, Vec<u8>), u64>,
    /// Open directory handles → the directory's id (readdirplus entries).
    pub(super) dirs: HashMap<u64, u64>,
    next_id: u64,
    /// Satellite ids the feed said it does not watch before we gave them
    /// an id of ours (the change precedes the reply that introduces the
    /// node); at most [`MAX_PENDING_UNWATCHED`].
    unwatched: HashSet<u64>,
    /// More of them than that: every node bound in this epoch counts as
    /// unwatched (short TTLs, never wrong).
    all_unwatched: bool,
    /// Our ids just bound to a node the feed does not watch, for the core
    /// to hear of before the reply that binds them reaches it.
    pub(super) newly_unwatched: Vec<u64>,
}

/// Unwatched satellite ids remembered until they are bound.
pub(super) const MAX_PENDING_UNWATCHED: usize = 100_000;

impl Default for Table {
    fn default() -> Self {
        let root = Node {
            parent: 0,
            name: Vec::new(),
            kind: 0o040000,
            sid: ROOT_NODE,
            epoch: 0,
            kernel_refs: 1,
            sat_refs: 0,
        };
        Table {
            epoch: 0,
            nodes: HashMap::from([(ROOT_NODE, root)]),
            by_sid: HashMap::from([(ROOT_NODE, ROOT_NODE)]),
            names: HashMap::new(),
            dirs: HashMap::new(),
            next_id: ROOT_NODE + 1,
            unwatched: HashSet::new(),
            all_unwatched: false,
            newly_unwatched: Vec::new(),
        }
    }
}

impl Table {
    pub(super) fn sid(&self, id: u64) -> Result<u64, Errno> {
        match self.nodes.get(&id) {
            Some(n) if n.epoch == self.epoch => Ok(n.sid),
            _ => Err(Errno::ESTALE),
        }
    }

    /// The satellite's handle for one of ours: EIO for one from before.
    pub(super) fn sfh(&self, fh: u64) -> Result<u64, Errno> {
        Fh(fh).in_epoch(self.epoch).ok_or(Errno::EIO)
    }

    /// Ours for the satellite's handle (the layout: [`crate::fs::ids`]).
    fn fh(&self, sfh: u64) -> Result<u64, Errno> {
        Fh::of_epoch(self.epoch, sfh)
            .map(|Fh(f)| f)
            .ok_or(Errno::EIO)
    }

    /// The request for the satellite, and what its reply needs: the
    /// request's own ids and handles replaced by the satellite's.
    pub(super) fn outbound<'a>(&self, req: &Request<'a>) -> Result<(Request<'a>, Ctx), Errno> {
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
            R::Open { node, .. } | R::OpenSmall { node, .. } => {
                *node = self.sid(*node)?;
                Ctx::Open
            }
            R::OpenDir { node } => {
                let id = *node;
                *node = self.sid(id)?;
                Ctx::OpenDir { id }
            }
            R::OpenReadDir { node, plus, .. } => {
                let id = *node;
                *node = self.sid(id)?;
                Ctx::OpenReadDir { id, plus: *plus }
            }
            R::Stream { node, .. } => {
                let id = *node;
                *node = self.sid(id)?;
                Ctx::Stream { id }
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
            // Without ids or handles.
            R::Hello(_)
            | R::RemovePaths { .. }
            | R::Shutdown
            | R::OpenChannel
            | R::UseChannel { .. }
            | R::Watch => Ctx::Plain,
            // Posted, never called: `Relink::post` translates them.
            R::Forget { .. } | R::ReleaseMany { .. } => return Err(Errno::EIO),
            // Ids the host chose are the satellite's: never sent with
            // --reconnect (the kernel holds relink's ids).
            R::CreateNew { .. } | R::MkdirNew { .. } | R::SymlinkNew { .. } => {
                return Err(Errno::EINVAL)
            }
        })
    }

    /// Translates a reply of the satellite of `epoch`.
    pub(super) fn inbound<'a>(
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
            (
                Ctx::Entry { parent, name },
                Response::Created { entry, fh, .. } | Response::CreatedFd { entry, fh, .. },
            ) => {
                *fh = self.fh(*fh)?;
                self.entry(parent, name, entry)
            }
            (Ctx::Attr { id }, Response::Attr(a)) => a.ino = id,
            (
                Ctx::Open,
                Response::Opened { fh, .. }
                | Response::OpenedFd { fh, .. }
                | Response::OpenedSmall { fh, .. },
            ) => *fh = self.fh(*fh)?,
            (Ctx::OpenDir { id }, Response::Opened { fh, .. } | Response::OpenedFd { fh, .. }) => {
                *fh = self.fh(*fh)?;
                self.dirs.insert(*fh, id);
            }
            (Ctx::OpenReadDir { id, plus }, Response::DirOpened { fh, entries, .. }) => {
                *fh = self.fh(*fh)?;
                self.dirs.insert(*fh, id);
                if plus {
                    for item in entries.iter_mut() {
                        if let Some(e) = &mut item.entry {
                            self.entry(id, item.name.to_vec(), e);
                        }
                    }
                }
            }
            (Ctx::Plus { dir }, Response::Dir(items) | Response::DirEnd(items)) if dir != 0 => {
                for item in items.iter_mut() {
                    if let Some(e) = &mut item.entry {
                        self.entry(dir, item.name.to_vec(), e);
                    }
                }
            }
            (Ctx::Stream { id }, Response::Streamed { dirs, files }) => {
                self.streamed(id, dirs, files)?
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
            (Ctx::Plus { dir: 0 }, _) | (_, Response::Error(_)) => {}
            // A reply of a kind that carries ids we do not translate: never
            // let the satellite's ids through to the kernel.
            (
                Ctx::Entry { .. }
                | Ctx::Attr { .. }
                | Ctx::Open
                | Ctx::OpenDir { .. }
                | Ctx::OpenReadDir { .. }
                | Ctx::Plus { .. }
                | Ctx::Stream { .. },
                r,
            ) => {
                warn!(reply = ?std::mem::discriminant(r), "a reply the id table cannot translate");
                return Err(Errno::EIO);
            }
            _ => {}
        }
        Ok(resp)
    }

    /// Gives the nodes of a streamed subtree our ids: the first directory
    /// is `id`; every other one, and every file, was named by an entry
    /// before it (anything else is not translated: EIO).
    fn streamed(
        &mut self,
        id: u64,
        dirs: &mut [dockerfuse_proto::StreamedDir<'_>],
        files: &mut [dockerfuse_proto::StreamedFile<'_>],
    ) -> Result<(), Errno> {
        for (i, d) in dirs.iter_mut().enumerate() {
            let dir = match i {
                0 => id,
                _ => *self.by_sid.get(&d.node).ok_or(Errno::EIO)?,
            };
            d.node = dir;
            for item in d.entries.iter_mut() {
                if let Some(e) = &mut item.entry {
                    self.entry(dir, item.name.to_vec(), e);
                }
            }
        }
        for f in files.iter_mut() {
            f.node = *self.by_sid.get(&f.node).ok_or(Errno::EIO)?;
        }
        Ok(())
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
        self.note_bound(e.node, id);
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
    pub(super) fn forget(&mut self, nodes: &[(u64, u64)], connected: bool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for &(id, count) in nodes {
            if id == ROOT_NODE {
                continue;
            }
            let Some(n) = self.nodes.get_mut(&id) else {
                continue;
            };
            n.kernel_refs = n.kernel_refs.saturating_sub(count);
            let current = n.epoch == self.epoch && connected;
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

    /// Binds an old id to the new satellite's entry for its path: ESTALE
    /// when the entry is of another type or the id went meanwhile, EIO
    /// when the satellite changed again.
    pub(super) fn bind(&mut self, id: u64, epoch: u64, kind: u32, e: &Entry) -> Result<u64, Errno> {
        if self.epoch != epoch {
            return Err(Errno::EIO);
        }
        if e.attr.mode & S_IFMT != kind {
            return Err(Errno::ESTALE);
        }
        let n = self.nodes.get_mut(&id).ok_or(Errno::ESTALE)?;
        if n.epoch != epoch {
            n.epoch = epoch;
            n.sid = e.node;
        } else if n.sid != e.node {
            // Bound meanwhile by a racing request to another node.
            return Err(Errno::ESTALE);
        }
        n.sat_refs += 1;
        let sid = n.sid;
        self.by_sid.entry(sid).or_insert(id);
        self.note_bound(sid, id);
        Ok(sid)
    }

    /// Satellite node `sid` is our `id` now: if the feed said it does not
    /// watch it, the core must hear so.
    fn note_bound(&mut self, sid: u64, id: u64) {
        if self.unwatched.remove(&sid) || self.all_unwatched {
            self.newly_unwatched.push(id);
        }
    }

    /// Rewrites the changes the feed of the satellite of `epoch` reports
    /// into our ids. Changes naming a node that has no id of ours are
    /// dropped (the kernel holds nothing of it; a node the kernel holds
    /// but that is not bound again since a reconnect was invalidated by
    /// the reconnect itself); all of them when the satellite was replaced
    /// meanwhile. A removed child without an id becomes node 0, which
    /// the core knows as no node. `Unwatched` of a node not bound yet is
    /// remembered for its binding (see [`Table::note_bound`]).
    pub(super) fn changes(&mut self, epoch: u64, changes: &mut Vec<Change<'_>>) {
        if epoch != self.epoch {
            changes.clear();
            return;
        }
        let by_sid = &self.by_sid;
        let ours = |sid: &mut u64| match by_sid.get(sid) {
            Some(&id) => {
                *sid = id;
                true
            }
            None => false,
        };
        let (unwatched, all) = (&mut self.unwatched, &mut self.all_unwatched);
        changes.retain_mut(|c| match c {
            Change::Entry { dir, .. } => ours(dir),
            Change::Removed { dir, node, .. } => {
                if !ours(node) {
                    *node = 0;
                }
                ours(dir)
            }
            Change::Attr { node } | Change::Data { node } => ours(node),
            Change::Unwatched { node } => {
                if ours(node) {
                    return true;
                }
                if unwatched.len() >= MAX_PENDING_UNWATCHED {
                    *all = true;
                } else {
                    unwatched.insert(*node);
                }
                false
            }
            Change::All => true,
        });
    }

    pub(super) fn locate(&self, id: u64) -> Where {
        match self.nodes.get(&id) {
            Some(n) if n.epoch == self.epoch => Where::Bound(n.sid),
            Some(n) if n.parent != 0 => Where::At {
                parent: n.parent,
                name: n.name.clone(),
                kind: n.kind,
            },
            _ => Where::Nowhere,
        }
    }

    /// A new satellite: every id but the root's must be bound again.
    pub(super) fn next_epoch(&mut self) {
        self.epoch += 1;
        let epoch = self.epoch;
        for (id, n) in self.nodes.iter_mut() {
            n.sat_refs = 0;
            if *id == ROOT_NODE {
                n.epoch = epoch;
            }
        }
        self.by_sid = HashMap::from([(ROOT_NODE, ROOT_NODE)]);
        self.unwatched.clear();
        self.all_unwatched = false;
    }

    /// Our ids a request names that are not bound to the current
    /// satellite yet.
    pub(super) fn unbound(&self, req: &Request<'_>) -> Vec<u64> {
        let mut ids = Vec::new();
        node_ids(req, &mut |id| ids.push(id));
        ids.retain(|id| self.nodes.get(id).is_some_and(|n| n.epoch != self.epoch));
        ids.dedup();
        ids
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
        | R::OpenSmall { node, .. }
        | R::OpenDir { node }
        | R::OpenReadDir { node, .. }
        | R::Stream { node, .. }
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
