//! Directories: opendir, readdir, readdirplus (from a prefetch, the
//! subtree stream or the satellite), releasedir and fsyncdir.

use super::super::*;
use std::sync::Mutex;

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
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
    pub(in crate::fs) fn on_dir(
        &self,
        who: &Who,
        fh: u64,
        req: impl FnOnce(u64) -> Request<'static> + Send + 'static,
        done: Sent,
    ) {
        if !LazyDirs::is_host(fh) {
            return self.out.send(who, &req(fh), done);
        }
        let (out, who) = (self.out.clone(), who.clone());
        self.dirs.with_remote(
            &self.out.transport,
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
            self.out.transport.post(&Request::Forget { nodes: stale });
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
            self.out.transport.post(&Request::Forget { nodes });
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
}

/// The ways a readdirplus reaches the satellite: a read on the
/// directory's handle, or a stream of the subtree below it.
pub(in crate::fs) struct PlusPath<T> {
    out: Outbox<T>,
    dirs: Arc<LazyDirs>,
    streams: Arc<stream::Streams>,
    per_caller: bool,
    open_read_dir: bool,
}

/// Sends a request for `who` on the satellite's handle of directory
/// handle `fh` (opening it in the container first for a host handle).
pub(in crate::fs) fn on_dir<T: Transport>(
    out: &Outbox<T>,
    dirs: &Arc<LazyDirs>,
    who: &Who,
    fh: u64,
    req: impl FnOnce(u64) -> Request<'static> + Send + 'static,
    done: Sent,
) {
    if !LazyDirs::is_host(fh) {
        return out.send(who, &req(fh), done);
    }
    let (out2, who) = (out.clone(), who.clone());
    dirs.with_remote(
        &out.transport,
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
pub(in crate::fs) fn listed_whole(coh: &Coherence, fh: u64, dir: u64, items: &[PlusItem<'_>]) {
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
        let done: Sent = Box::new(move |r| match r {
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
        let (dirs, transport) = (self.dirs.clone(), self.out.transport.clone());
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
                        transport.post(&Request::ReleaseDir { fh: extra });
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
            self.out.transport.post(&Request::Forget { nodes: stale });
        }
        let generation = coh.generation();
        if let Some(d) = kept {
            self.read_ahead(&who, &coh);
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
        // The read-ahead of this directory is on its way: its reply serves.
        let slot = Arc::new(Mutex::new(Some((giver, cb))));
        let (path, again, mine) = (self.clone(), who.clone(), slot.clone());
        let waiter: stream::Waiter = Box::new(move || {
            let taken = mine.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((giver, cb)) = taken {
                path.streamed(again, giver, cb);
            }
        });
        if self.streams.wait_for(dir, waiter).is_ok() {
            // Answered after a round trip, though not its own: a wait.
            crate::mount::waits::deferred();
            return;
        }
        let Some((giver, cb)) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        // A walk got ahead of the streams: they go on, with it.
        let walking = self.streams.named(dir);
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
                                self.out.transport.post(&Request::Forget { nodes: refs });
                            }
                            return self.read(&who, giver, 0, cb);
                        }
                    };
                    if tree.dirs.is_empty() {
                        // Not even the directory fits: read it as usual.
                        return self.read(&who, giver, 0, cb);
                    }
                    let now = self.out.stream_generation(&coh);
                    let follow = match sent == now {
                        true => tree.cut_short(budget, stream::FOLLOW_UPS),
                        false => Vec::new(),
                    };
                    let (_, first) = tree.dirs.remove(0);
                    let forget = self.streams.put(sent, now, tree);
                    if !forget.is_empty() {
                        self.out.transport.post(&Request::Forget { nodes: forget });
                    }
                    if walking {
                        self.read_ahead(&who, &coh);
                    }
                    if sent == now {
                        listed_whole(&coh, fh, dir, &first.items);
                    }
                    for f in follow {
                        self.follow_up(&coh, now, f);
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

impl<T: Transport> PlusPath<T> {
    /// Streams, in the background, the next directories the streams so
    /// far named without bringing ([`stream::Streams::ahead`]): a walk
    /// finds them kept when it gets there, and the satellite lists them
    /// while the kernel reads what came before. Each reply is kept as a
    /// stream's is. Called when the kernel reads a directory the streams
    /// named (a walk is on): a program that lists one directory and
    /// stops sets nothing off.
    fn read_ahead(&self, who: &Who, coh: &Arc<Coherence>) {
        let (go, stale) = self.streams.ahead(self.out.stream_generation(coh));
        if !stale.is_empty() {
            self.out.transport.post(&Request::Forget { nodes: stale });
        }
        for dir in go {
            let sent = self.out.stream_generation(coh);
            let stamp = coh.attr_stamp();
            let budget = stream::BUDGET;
            let (path, who2, coh2) = (self.clone(), who.clone(), coh.clone());
            let _bg = crate::mount::waits::background();
            self.out.send(
                who,
                &Request::Stream { node: dir, budget },
                Box::new(move |r| {
                    // The next ones only after a reply (not after a failed
                    // transport, which may answer at once: no recursion).
                    let answered = r.is_ok();
                    let mut forget = Vec::new();
                    if let Ok(Response::Streamed { dirs, files }) = r {
                        match stream::check(dir, budget, stamp, dirs, files) {
                            Ok(tree) => {
                                let now = path.out.stream_generation(&coh2);
                                forget = path.streams.put(sent, now, tree);
                            }
                            Err(refs) => {
                                tracing::debug!(dir, "a stream broke the rules: refused");
                                forget = refs;
                            }
                        }
                    }
                    if !forget.is_empty() {
                        path.out.transport.post(&Request::Forget { nodes: forget });
                    }
                    // Kept (or not) first: what waited finds it.
                    let waiting = path.streams.landed(dir);
                    waiting.into_iter().for_each(|w| w());
                    if answered {
                        path.read_ahead(&who2, &coh2);
                    }
                }),
            );
        }
    }
}

impl<T> Clone for PlusPath<T> {
    fn clone(&self) -> Self {
        PlusPath {
            out: self.out.clone(),
            dirs: self.dirs.clone(),
            streams: self.streams.clone(),
            per_caller: self.per_caller,
            open_read_dir: self.open_read_dir,
        }
    }
}

impl<T: Transport> PlusPath<T> {
    /// Asks, behind the kernel's walk, for the contents of the small files
    /// of a streamed directory that did not fit its stream, while what
    /// that stream brought is current (`sent`): kept with it when still
    /// so and the files are as it listed them, before the kernel opens
    /// them (which would otherwise each wait, and the first one's reply
    /// drop everything the stream brought).
    fn follow_up(&self, coh: &Arc<Coherence>, sent: u64, f: stream::FollowUp) {
        let req = Request::Stream {
            node: f.dir,
            budget: stream::ONE_DIR,
        };
        let (out, streams, coh) = (self.out.clone(), self.streams.clone(), coh.clone());
        let _bg = crate::mount::waits::background();
        self.out.send(
            &Who::Mount,
            &req,
            Box::new(move |r| {
                let Ok(Response::Streamed { dirs, files }) = r else {
                    return;
                };
                let (files, mut forget) = f.keep(dirs, files);
                let now = out.stream_generation(&coh);
                let tree = stream::Subtree {
                    dirs: Vec::new(),
                    files,
                    frontier: Vec::new(),
                };
                forget.extend(streams.put(sent, now, tree));
                if !forget.is_empty() {
                    out.transport.post(&Request::Forget { nodes: forget });
                }
            }),
        );
    }
}

/// Hands prefetched readdirplus entries to the kernel a chunk at a time.
pub(in crate::fs) struct Giver {
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
