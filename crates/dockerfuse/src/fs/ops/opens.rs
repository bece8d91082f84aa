//! Opening files: the open flags on the wire, the opens answered on
//! the host (small files' contents, lazy opens, streamed contents),
//! passthrough backings, and create (made behind where it may be).

use super::super::*;
use super::names::Pipelined;

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
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
    pub(in crate::fs) fn open_flags(&self, flags: i32) -> i32 {
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
    pub(in crate::fs) fn wire_flags(&self, flags: i32) -> OpenFlags {
        wire_flags(self.opts.legacy_flags, flags)
    }

    /// How long contents an open of `node` with `flags` brings may answer
    /// reads, when such an open is worth asking for: read-only, no
    /// O_DIRECT or O_TRUNC, no writeback cache (whose dirty pages are the
    /// kernel's), and a TTL that is not zero.
    pub(in crate::fs) fn may_open_small(&self, node: u64, flags: i32) -> Option<Duration> {
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
    pub(in crate::fs) fn lazy_open(&self, node: u64, flags: i32) -> bool {
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
    pub(in crate::fs) fn open_streamed(&self, node: u64, flags: i32) -> Option<Fh> {
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
            self.out.transport.post(&Request::Forget { nodes: stale });
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
    pub(in crate::fs) fn remote_file(&self, who: &Who, fh: u64, then: lazy_open::Then) {
        if !Fh(fh).is_host() {
            return then(Ok(fh));
        }
        match self.files.with_remote(fh, then) {
            (Remote::Open(remote), Some(then)) => then(Ok(remote)),
            (Remote::Unknown, Some(then)) => then(Err(Errno::EBADF.into())),
            (Remote::ToOpen { node, flags }, _) => self.open_late(who, fh, node, flags),
            _ => {}
        }
    }

    /// The request that opens `node` in the container: one that brings
    /// the contents (up to [`MAX_OPEN_DATA`]) when `small`.
    pub(in crate::fs) fn open_request(
        &self,
        node: u64,
        flags: i32,
        small: bool,
    ) -> Request<'static> {
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
    pub(in crate::fs) fn open_late(&self, who: &Who, fh: u64, node: u64, flags: i32) {
        let small = self
            .may_open_small(node, flags)
            .map(|lifetime| (lifetime, self.heads.ticket()));
        let max = MAX_OPEN_DATA;
        let req = self.open_request(node, flags, small.is_some());
        let (files, heads, transport, releases) = (
            self.files.clone(),
            self.heads.clone(),
            self.out.transport.clone(),
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
                    drop(o.fd.and_then(|fd| transport.take_fd(fd)));
                    o.fh
                });
                if let Some(remote) = files.opened(fh, node, flags, r) {
                    heads.release(fh);
                    releases.defer(remote, &transport);
                }
            }),
        )
    }

    /// Sends a request for `who` on the satellite's handle of file handle
    /// `fh` (opening a host handle's file in the container first).
    pub(in crate::fs) fn on_file(
        &self,
        who: &Who,
        fh: u64,
        req: impl FnOnce(u64) -> Request<'static> + Send + 'static,
        done: Sent,
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
    pub(in crate::fs) fn answer_open<X: Send + 'static, R: OpenReply<B, X>>(
        coh: &Coherence,
        writes: bool,
        node: u64,
        fh: impl FnOnce(&X) -> u64,
        reply: R,
        r: Result<X, Failure>,
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
        if let Some(e) = self.owed(node) {
            return reply.answer(Err(Failure::behind(e)));
        }
        self.made.forget(node);
        let small = self
            .may_open_small(node, flags)
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
        let (transport, behind, serving, coh) = (
            self.out.transport.clone(),
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
                    let fd = fd.and_then(|fd| backing::take(&*transport, fd, flags));
                    let passthrough = serving.serve(node, fh, fd, &reply)?;
                    Ok(Opened {
                        fh: Fh(fh),
                        passthrough,
                    })
                });
                after(Ok(()));
                Self::answer_open(&coh, writes, node, |o| o.fh.0, reply, r)
            });
            return write_only::open(&self.out.transport, caller, node, flags, legacy, done);
        }
        let max = MAX_OPEN_DATA;
        let req = self.open_request(node, flags, small.is_some());
        let heads = self.heads.clone();
        let owes = behind.clone().filter(|_| self.opts.close_behind);
        self.out.send(
            who,
            &req,
            Box::new(move |r| {
                let r = r.and_then(replies::opened);
                // Owed an error refused after a close (sent before this
                // open, back by now): the open reports it instead.
                if let Some(e) = owes.and_then(|b| b.take_owed(node)) {
                    if let Ok(o) = r {
                        drop(o.fd.and_then(|fd| backing::take(&*transport, fd, flags)));
                        let _bg = crate::mount::waits::background();
                        transport.call(&Request::Release { fh: o.fh }, Box::new(|_| {}));
                    }
                    after(Ok(()));
                    return reply.answer(Err(Failure::behind(e)));
                }
                let r = r.and_then(|o| {
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
                    let fd = o.fd.and_then(|fd| backing::take(&*transport, fd, flags));
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
        let (cache, coh, owned, transport) = (
            self.no_xattrs.clone(),
            self.coherence.clone(),
            name.to_vec(),
            self.out.transport.clone(),
        );
        let Some(reply) = self.create_behind(who, parent, name, mode, flags, reply) else {
            return;
        };
        let (behind, serving) = (self.out.behind.clone(), self.serving());
        let after = self.noting(parent, name, true, Box::new(|_: Result<(), Failure>| {}));
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
                    let fd = fd.and_then(|fd| backing::take(&*transport, fd, flags));
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
                            transport.post(&Request::Forget {
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

    /// A file created behind grew past [`LARGE_CREATED`] through its
    /// create's handle: with passthrough, creates wait for a while.
    pub(in crate::fs) fn created_large(&self) {
        if self.passthrough.get().is_some() {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.created_large
                .store(ms.max(1), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether creates wait (with passthrough, for the descriptor the
    /// kernel serves the new file from) since a file created behind grew
    /// large in the last [`LARGE_WINDOW`]: such files are written through
    /// write-behind, at a fraction of passthrough's speed (`dd bs=1M` of
    /// 64 MiB: 0.32–0.81 s against 0.21–0.58 s), which costs more than
    /// the waits of many creates.
    pub(in crate::fs) fn creates_large(&self) -> bool {
        let at = self
            .created_large
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        at != 0 && now.saturating_sub(at) < LARGE_WINDOW.as_millis() as u64
    }

    /// A create answered at once with the host's node id and handle and
    /// sent behind ([`pending`]); gives `reply` back when it may not be
    /// (`O_DIRECT`; with passthrough, for a while after a file so
    /// created grew large: [`Core::creates_large`]).
    ///
    /// With passthrough such a handle has no backing file (its
    /// descriptor would come with the container's reply): the kernel
    /// sends its reads and writes to us, where write-behind batches them,
    /// as on the exec transport. The new node is counted as open through
    /// the page cache, so another open of it while the handle lives is
    /// too (the kernel serves an inode one way at a time); once it is
    /// released, opens of the file are served from a backing file again.
    pub(in crate::fs) fn create_behind<R: OpenReply<B, (Entry, Ttl, Opened<B>)>>(
        &self,
        _who: &Who,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        reply: R,
    ) -> Option<R> {
        if flags & libc::O_DIRECT != 0 || self.creates_large() {
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
        if let Some(pt) = self.passthrough.get() {
            // A node nobody opened yet: never refused, always Cached.
            let unbacked = |_: &std::os::fd::OwnedFd| Err(std::io::ErrorKind::Unsupported.into());
            let _ = pt.open(node, fh, None, unbacked);
        }
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
        let (pending, transport, cache, owned, c) = (
            self.pending.clone(),
            self.out.transport.clone(),
            self.no_xattrs.clone(),
            name.to_vec(),
            coh.clone(),
        );
        let finish = move |r: Result<Response<'_>, Failure>| {
            c.touched(parent);
            let r = match r {
                Ok(Response::Created { entry, fh: got }) if entry.node == node && got == fh => {
                    Ok(entry)
                }
                Ok(r) => Err(unexpected(r)),
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
                        errno = e.errno.0,
                        cause = e.cause.as_str(),
                        "a create sent behind was refused: the next write, close or fsync of the file reports it"
                    );
                    made.forget(node);
                    c.refused(parent, &owned);
                    pending.done(node, parent, Err(e));
                    behind.unhold(seq, Some(fh), Some(e.errno));
                    behind.name_refused(parent, &owned, node);
                }
            }
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
}
