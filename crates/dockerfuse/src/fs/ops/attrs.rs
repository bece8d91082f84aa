//! Attributes: getattr, setattr (answered on the host for a file made
//! behind, else sent behind or waited for), statfs and access.

use super::super::*;

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
    pub(crate) fn getattr(
        &self,
        who: &Who,
        NodeId(node): NodeId,
        fh: Option<Fh>,
        cb: Cb<(Attr, Duration)>,
    ) {
        let cb = self.owing(node, cb);
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
        let cb = self.owing(node, cb);
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
    pub(in crate::fs) fn setattr_behind(
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
        let (made, pending, b2, heads) = (
            self.made.clone(),
            self.pending.clone(),
            behind.clone(),
            self.heads.clone(),
        );
        let finish = move |seq: u64, r: Result<Response<'_>, Failure>| {
            coh.touched(node);
            heads.clear();
            let r = r.and_then(replies::attr);
            if let Err(e) = r {
                tracing::debug!(
                    node,
                    errno = e.errno.0,
                    cause = e.cause.as_str(),
                    "a setattr sent behind was refused: the next write, close or fsync of the file reports it"
                );
                b2.fail(made_fh, e.errno);
                pending.fail(parent, e);
                coh.provisional_done(node);
            }
            made.landed(node, r.is_ok());
            b2.unhold(seq, None, None);
        };
        self.out.send_held(&behind, req, finish);
        cb(Ok((a, self.coherence.attr_ttl(node, a.mode))));
        None
    }

    /// getattr/setattr: the attributes, reported under `node`, and their TTL.
    pub(in crate::fs) fn call_attr(
        &self,
        who: &Who,
        req: Request<'_>,
        node: u64,
        cb: Cb<(Attr, Duration)>,
    ) {
        let coh = self.coherence.clone();
        let done = attr_done(node, coh, cb);
        self.out.send(who, &req, done);
    }

    /// Answered on the host from a recent answer when nothing changed
    /// since ([`statfs_cache`]); not per caller (the caller's search
    /// permission is the container's to check).
    pub(crate) fn statfs(&self, who: &Who, NodeId(node): NodeId, cb: Cb<StatFs>) {
        let coh = &self.coherence;
        let generation = coh.stream_generation();
        if self.opts.per_caller {
            return self.call(who, Request::StatFs { node }, replies::statfs, cb);
        }
        if let Some(s) = self.statfs.get(node, generation) {
            return cb(Ok(s));
        }
        let ttl = match coh.feeding() {
            true => statfs_cache::KEEP,
            false => coh.short(),
        };
        let recent = self.statfs.clone();
        let done: Cb<StatFs> = Box::new(move |r| {
            if let Ok(s) = &r {
                recent.put(node, generation, *s, ttl);
            }
            cb(r)
        });
        self.call(who, Request::StatFs { node }, replies::statfs, done)
    }

    pub(crate) fn access(&self, who: &Who, NodeId(node): NodeId, mask: i32, cb: Cb<()>) {
        self.call(who, Request::Access { node, mask }, replies::ok, cb)
    }
}

/// The completion of a getattr/setattr: the attributes, reported under
/// `node`, and how long the kernel may keep them.
/// Made when the request is sent: the ledger keeps the attributes if
/// nothing changed meanwhile.
pub(in crate::fs) fn attr_done(node: u64, coh: Arc<Coherence>, cb: Cb<(Attr, Duration)>) -> Sent {
    let stamp = coh.attr_stamp();
    Box::new(move |r| {
        cb(r.and_then(replies::attr).map(|mut a| {
            a.ino = node;
            coh.keep_attr(node, a, Source::Attr, stamp);
            (a, coh.attr_ttl(node, a.mode))
        }))
    })
}
