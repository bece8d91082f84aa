//! Names in a directory: lookup, readlink, symlink, mknod, mkdir (made
//! behind where the host knows the name is absent), unlink, rmdir,
//! rename and link.

use std::sync::atomic::Ordering;

use super::super::*;

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
    /// Looks `name` up in `parent`; a name a complete listing of the
    /// watched directory does not hold is absent without asking.
    pub(crate) fn lookup(&self, who: &Who, NodeId(parent): NodeId, name: &[u8], cb: Cb<Lookup>) {
        let cb = self.owing_name(parent, name, cb);
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
            .then(|| (self.listing.clone(), self.out.transport.clone()));
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
                    Err(Failure {
                        errno: Errno::ENOENT,
                        ..
                    }) if stamp.is_some() => coh.listings().not_found(parent, &absent, stamp),
                    Err(Failure {
                        errno: Errno::ENOENT,
                        ..
                    }) => {
                        if let Some((listing, transport)) = &list {
                            listing.start(transport, &coh, parent);
                        }
                    }
                    Ok(_) | Err(_) => {}
                }
                cb(match r {
                    Ok((e, ttl)) => Ok(Lookup::Found(e, ttl)),
                    Err(
                        f @ Failure {
                            errno: Errno::ENOENT,
                            ..
                        },
                    ) => match coh.absent(parent, &absent) {
                        ttl if ttl.is_zero() => Err(f),
                        ttl => Ok(Lookup::Absent(ttl)),
                    },
                    Err(e) => Err(e),
                })
            }),
        )
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
        let stored = stored.as_deref().unwrap_or(target);
        let Some(cb) = self.symlink_behind(parent, name, stored, cb) else {
            return;
        };
        self.call_entry(
            who,
            Request::Symlink {
                parent,
                name: name.into(),
                target: stored.into(),
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
    pub(in crate::fs) fn may_pipeline(&self, parent: u64, name: &[u8]) -> Option<Pipelined> {
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
    pub(in crate::fs) fn provisional_attr(&self, p: &Pipelined, mode: u32) -> Attr {
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
    pub(in crate::fs) fn note_made(
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
    pub(in crate::fs) fn mkdir_behind(
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
        let req = Request::MkdirNew {
            parent,
            name: name.to_vec().into(),
            mode,
            node,
            time,
        };
        let (pending, c) = (self.pending.clone(), coh.clone());
        self.send_made((parent, name), node, behind, ttl, req, move |e| {
            pending.learn_empty_dir(&e.attr);
            c.learn_dir_mode(node, e.attr.mode, e.attr.gid);
        });
        cb(Ok((entry, ttl)));
        None
    }

    /// Sends `req`, which makes node `node` as `name` in `parent` (the
    /// kernel was answered with its entry), once `parent` is made and the
    /// removals in it are done; everything sent after waits for it. Made:
    /// the container's attributes replace the provisional ones and
    /// `made` runs; refused: the name is unknown and forgotten by the
    /// kernel, what waited for the node fails, the directory's fsync
    /// reports it.
    pub(in crate::fs) fn send_made(
        &self,
        (parent, name): (u64, &[u8]),
        node: u64,
        behind: Arc<WriteBehind>,
        ttl: Ttl,
        req: Request<'static>,
        made: impl FnOnce(&Entry) + Send + 'static,
    ) {
        let seq = behind.hold(None);
        let coh = self.coherence.clone();
        let stamp = coh.attr_stamp();
        let (pending, transport, cache, owned) = (
            self.pending.clone(),
            self.out.transport.clone(),
            self.no_xattrs.clone(),
            name.to_vec(),
        );
        let finish = move |r: Result<Response<'_>, Failure>| {
            coh.touched(parent);
            let r = r
                .and_then(replies::entry)
                .and_then(|e| match e.node == node {
                    true => Ok(e),
                    false => Err(Failure::bad_reply()),
                });
            match r {
                Ok(e) => {
                    coh.keep_attr(node, e.attr, Source::Entry, stamp);
                    cache.note(&e, ttl.attr);
                    coh.provisional_done(node);
                    made(&e);
                    pending.done(node, parent, Ok(()));
                }
                Err(e) => {
                    tracing::debug!(
                        parent,
                        node,
                        errno = e.errno.0,
                        cause = e.cause.as_str(),
                        "a node made behind was refused"
                    );
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
                    transport.call(
                        &req,
                        Box::new(move |r| finish(r.map_err(Failure::transport))),
                    )
                }
                Err(e) => finish(Err(e)),
            }),
        );
    }

    /// symlink answered at once and sent behind ([`pending`]), with the
    /// target as the container stores it; needs a satellite of protocol 9.
    /// Gives `cb` back when it may not be.
    pub(in crate::fs) fn symlink_behind(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        cb: Cb<(Entry, Ttl)>,
    ) -> Option<Cb<(Entry, Ttl)>> {
        if !self.opts.symlink_new || target.is_empty() || target.len() > 4095 || target.contains(&0)
        {
            return Some(cb);
        }
        let Some(p) = self.may_pipeline(parent, name) else {
            return Some(cb);
        };
        let coh = self.coherence.clone();
        let mut attr = self.provisional_attr(&p, libc::S_IFLNK | 0o777);
        attr.size = target.len() as u64;
        let Pipelined {
            node, behind, time, ..
        } = p;
        let (entry, ttl) = self.note_made(&coh, parent, name, node, attr);
        let req = Request::SymlinkNew {
            parent,
            name: name.to_vec().into(),
            target: target.to_vec().into(),
            node,
            time,
        };
        self.send_made((parent, name), node, behind, ttl, req, |_| {});
        cb(Ok((entry, ttl)));
        None
    }

    pub(crate) fn unlink(&self, who: &Who, NodeId(parent): NodeId, name: &[u8], cb: Cb<()>) {
        self.made.forget_all();
        let Some(cb) = self.remove_behind(parent, name, false, cb) else {
            return;
        };
        let cb = self.noting(parent, name, false, cb);
        let req = Request::Unlink {
            parent,
            name: name.to_vec().into(),
        };
        self.call_settled(who, req, cb)
    }

    pub(crate) fn rmdir(&self, who: &Who, NodeId(parent): NodeId, name: &[u8], cb: Cb<()>) {
        self.made.forget_all();
        let Some(cb) = self.remove_behind(parent, name, true, cb) else {
            return;
        };
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
        let Some(cb) = self.rename_behind((parent, name), (new_parent, new_name), flags, cb) else {
            return;
        };
        let (coh, old, new) = (self.coherence.clone(), name.to_vec(), new_name.to_vec());
        // Both parents' times, the moved node's ctime and a replaced
        // node's link count change.
        coh.name_changed(parent, &old);
        coh.name_changed(new_parent, &new);
        let cb: Cb<()> = Box::new(move |r| {
            coh.name_changed(parent, &old);
            coh.name_changed(new_parent, &new);
            if r.is_ok() {
                // The names hold other nodes, or none, now.
                coh.unnamed(parent, &old);
                coh.unnamed(new_parent, &new);
            }
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

    /// An unlink (or with `dir` an rmdir) answered at once and sent
    /// behind, in order ([`pending`]): pipelining is on, the host knows
    /// `name` is in `parent` and what it is (a directory for rmdir, which
    /// a complete listing says is empty; anything else for unlink), and
    /// no file is opened lazily (see [`Core::call_settled`]). The ledger
    /// forgets the name at once; a refusal makes it unknown again and is
    /// kept for the directory's fsync. Gives `cb` back when it may not be.
    pub(in crate::fs) fn remove_behind(
        &self,
        parent: u64,
        name: &[u8],
        dir: bool,
        cb: Cb<()>,
    ) -> Option<Cb<()>> {
        let Some(behind) = self.out.behind.clone().filter(|_| self.opts.pipeline) else {
            return Some(cb);
        };
        let coh = self.coherence.clone();
        let Some((node, kind)) = coh.known_present(parent, name) else {
            return Some(cb);
        };
        // The kernel refuses the wrong kind itself (EISDIR, ENOTDIR): the
        // container says which error, should one come.
        if (kind == libc::S_IFDIR) != dir
            || (dir && !coh.listings().empty(node))
            || !self.files.unopened().is_empty()
        {
            return Some(cb);
        }
        coh.counts.removed_here.fetch_add(1, Ordering::Relaxed);
        // The parent's times and the node's link count change.
        coh.name_changed(parent, name);
        coh.unnamed(parent, name);
        coh.listings().removed(parent, name);
        let id = self.pending.removing(parent);
        let owned = name.to_vec();
        let req = match dir {
            true => Request::Rmdir {
                parent,
                name: owned.clone().into(),
            },
            false => Request::Unlink {
                parent,
                name: owned.clone().into(),
            },
        };
        let (pending, b2) = (self.pending.clone(), behind.clone());
        let finish = move |seq: u64, r: Result<Response<'_>, Failure>| {
            coh.touched(parent);
            coh.touched(node);
            if let Err(e) = r.and_then(replies::ok) {
                tracing::debug!(
                    parent,
                    node,
                    errno = e.errno.0,
                    cause = e.cause.as_str(),
                    "a removal sent behind was refused: the directory's next fsync reports it"
                );
                coh.refused(parent, &owned);
                pending.fail(parent, e);
            }
            pending.removed(parent, id);
            b2.unhold(seq, None, None);
        };
        self.out.send_held(&behind, req, finish);
        cb(Ok(()));
        None
    }

    /// A rename answered at once and sent behind, in order ([`pending`]):
    /// no flags, the source is known present and not a directory, the
    /// target known absent or a known non-directory of another inode (a
    /// file replaced), no file opened lazily. A refusal makes both names
    /// unknown (the kernel forgets them) and is kept for both directories'
    /// fsync. Gives `cb` back when it may not be.
    pub(in crate::fs) fn rename_behind(
        &self,
        (parent, name): (u64, &[u8]),
        (new_parent, new_name): (u64, &[u8]),
        flags: u32,
        cb: Cb<()>,
    ) -> Option<Cb<()>> {
        let Some(behind) = self.out.behind.clone().filter(|_| self.opts.pipeline) else {
            return Some(cb);
        };
        let coh = self.coherence.clone();
        if flags != 0 || (parent, name) == (new_parent, new_name) {
            return Some(cb);
        }
        let Some((node, kind)) = coh.known_present(parent, name) else {
            return Some(cb);
        };
        let replaceable = match coh.known_present(new_parent, new_name) {
            Some((other, k)) => other != node && k != libc::S_IFDIR,
            None => coh.cache_dir(new_parent) && coh.listings().absent(new_parent, new_name),
        };
        if kind == libc::S_IFDIR || !replaceable || !self.files.unopened().is_empty() {
            return Some(cb);
        }
        coh.counts.removed_here.fetch_add(1, Ordering::Relaxed);
        // Both parents' times, the moved node's ctime and a replaced
        // node's link count change.
        coh.name_changed(parent, name);
        coh.name_changed(new_parent, new_name);
        coh.moved((parent, name), (new_parent, new_name), node);
        coh.listings().removed(parent, name);
        coh.listings().created(new_parent, new_name);
        let ids = (
            self.pending.removing(parent),
            self.pending.removing(new_parent),
        );
        let (old, new) = (name.to_vec(), new_name.to_vec());
        let req = Request::Rename {
            parent,
            name: old.clone().into(),
            new_parent,
            new_name: new.clone().into(),
            flags,
        };
        let (pending, b2) = (self.pending.clone(), behind.clone());
        let finish = move |seq: u64, r: Result<Response<'_>, Failure>| {
            coh.touched(parent);
            coh.touched(new_parent);
            coh.touched(node);
            if let Err(e) = r.and_then(replies::ok) {
                tracing::debug!(
                    parent,
                    new_parent,
                    node,
                    errno = e.errno.0,
                    cause = e.cause.as_str(),
                    "a rename sent behind was refused: the directories' next fsync reports it"
                );
                coh.refused(parent, &old);
                coh.refused(new_parent, &new);
                pending.fail(parent, e);
                pending.fail(new_parent, e);
            }
            pending.removed(parent, ids.0);
            pending.removed(new_parent, ids.1);
            b2.unhold(seq, None, None);
        };
        self.out.send_held(&behind, req, finish);
        cb(Ok(()));
        None
    }

    /// Sends `req`, an unlink or rename, once every file opened lazily
    /// and not yet in the container is opened there: the satellite finds
    /// a node past its descriptor budget by its last name, which `req`
    /// may remove, and a file opened before it must still read (and not
    /// fail with ESTALE). Waits only while such handles exist.
    pub(in crate::fs) fn call_settled(&self, who: &Who, req: Request<'static>, cb: Cb<()>) {
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
}

/// A create or mkdir that may be answered before the container made it
/// ([`Core::may_pipeline`]).
pub(in crate::fs) struct Pipelined {
    pub(in crate::fs) node: u64,
    pub(in crate::fs) fh: u64,
    pub(in crate::fs) behind: Arc<WriteBehind>,
    /// The directory's mode and group.
    pub(in crate::fs) dir: (u32, u32),
    /// The new node's atime and mtime.
    pub(in crate::fs) time: (i64, u32),
}
