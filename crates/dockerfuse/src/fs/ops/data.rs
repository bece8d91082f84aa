//! An open file's data: read, write (behind, with the setuid/setgid
//! bits dropped first where the kernel asks), flush, release, fsync,
//! fallocate, lseek and copy_file_range.

use super::super::*;
use super::attrs::attr_done;

impl<T: Transport, B: Send + Sync + 'static> Core<T, B> {
    /// Reads up to `size` bytes; never hands on more than asked. Answered
    /// here when the open brought the file's contents and they are current.
    pub(crate) fn read(&self, who: &Who, Fh(fh): Fh, offset: u64, size: u32, cb: BytesCb) {
        // The read moves the atime in the container.
        self.made_done(fh);
        if let Some((data, range)) = self.heads.read(fh, offset, size) {
            return cb(Ok(&data[range]));
        }
        // A read in the container may move the file's atime (relatime):
        // its attributes go as it is sent and again when it is done.
        let coh = self.coherence.clone();
        let done = move |cb: BytesCb| -> Sent {
            coh.read_through(fh);
            Box::new(move |r| {
                coh.read_through(fh);
                match r {
                    Ok(Response::Data(d)) => cb(Ok(&d[..d.len().min(size as usize)])),
                    Ok(r) => cb(Err(unexpected(r))),
                    Err(e) => cb(Err(e)),
                }
            })
        };
        if !Fh(fh).is_host() {
            let done = done(cb);
            return self
                .out
                .send(who, &Request::Read { fh, offset, size }, done);
        }
        // Opened lazily: the open may have brought the contents (read with
        // O_NOATIME: the attributes stay).
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
                        let done = done(cb);
                        out.send(&owner, &req, done)
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
        if self.out.transport.handle_gone(fh) {
            return cb(Err(Failure::transport(Errno::EIO)));
        }
        let end = offset.saturating_add(data.len() as u64);
        if fh & dockerfuse_proto::HOST_FH_BIT != 0 && end > LARGE_CREATED {
            self.created_large();
        }
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
    pub(in crate::fs) fn drop_suidgid(&self, who: &Who, node: u64, cb: Cb<()>) {
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
                        let done = Box::new(move |r: Result<_, Failure>| cb(r.map(|_| ())));
                        out.send(&owner, &req, attr_done(node, coh, done))
                    }
                    None => cb(Ok(())),
                },
                Err(e) => cb(Err(e)),
            }),
        )
    }

    /// FLUSH sends nothing: the satellite's flush closes nothing. It
    /// waits for the writes still behind (and a create sent behind), and
    /// reports their error (close(2) returns it). When some are in
    /// flight, that is a wait like any round trip, and counted as one.
    /// With `--close-behind` it reports only an error already back and
    /// answers at once ([`WriteBehind::close`]), unless too many handles
    /// are closed with work behind.
    pub(crate) fn flush(&self, Fh(fh): Fh, cb: Cb<()>) {
        if let Some(b) = self.out.behind.as_ref().filter(|_| self.opts.close_behind) {
            match b.close(fh) {
                Closed::Now => return cb(Ok(())),
                Closed::Failed(e) => return cb(Err(Failure::behind(e))),
                Closed::Wait => {}
            }
        }
        match self.out.behind.clone() {
            Some(b) => {
                if !b.is_idle() {
                    crate::mount::waits::deferred();
                }
                b.clone().after_writes(Box::new(move || {
                    cb(b.take_error(fh).map_or(Ok(()), |e| Err(Failure::behind(e))))
                }))
            }
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
    pub(in crate::fs) fn made_done(&self, fh: u64) {
        if let Some(node) = self.made.handle_done(fh) {
            self.coherence.provisional_done(node);
        }
    }

    pub(crate) fn release(&self, Fh(fh): Fh, cb: Cb<()>) {
        // With `--close-behind` the file's create and writes may still be
        // behind: the host keeps answering its stat (the `stat` cp makes
        // after close) from the attributes it holds until they landed,
        // when the release's reply comes.
        let later = self.opts.close_behind
            && !Fh(fh).is_host()
            && self.out.behind.as_ref().is_some_and(|b| !b.is_idle());
        if !later {
            self.made_done(fh);
        }
        self.coherence.released(fh);
        if Fh(fh).is_host() {
            // Opened lazily: closed in the container only if it was opened
            // there, with others in a batch (read-only, no writes).
            self.heads.release(fh);
            if let Some(pt) = self.passthrough.get() {
                pt.release(fh);
            }
            if let Some(remote) = self.files.release(fh) {
                self.releases.defer(remote, &self.out.transport);
            }
            return cb(Ok(()));
        }
        self.coherence.writers().released(fh);
        if let Some(pt) = self.passthrough.get() {
            pt.release(fh);
        }
        if self.heads.release(fh) {
            if later {
                self.made_done(fh);
            }
            if let Some(b) = &self.out.behind {
                b.forget(fh);
            }
            self.releases.defer(fh, &self.out.transport);
            return cb(Ok(()));
        }
        let req = Request::Release { fh };
        match self.out.behind.clone() {
            Some(b) => {
                let _bg = crate::mount::waits::background();
                let made = later.then(|| (self.made.clone(), self.coherence.clone()));
                let done = move |_: Result<Response<'_>, Failure>| {
                    b.forget(fh);
                    if let Some((made, coh)) = made {
                        if let Some(node) = made.handle_done(fh) {
                            coh.provisional_done(node);
                        }
                    }
                };
                self.out.send(&Who::Mount, &req, Box::new(done))
            }
            None => self.out.send_and_forget(&Who::Mount, &req),
        }
        cb(Ok(()))
    }

    /// FSYNC also reports the error of a write sent behind.
    pub(crate) fn fsync(&self, who: &Who, Fh(fh): Fh, datasync: bool, cb: Cb<()>) {
        let behind = self.out.behind.clone();
        let cb: Cb<()> = Box::new(move |r| match behind.and_then(|b| b.take_error(fh)) {
            Some(e) => cb(Err(Failure::behind(e))),
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
}

/// The permission bits of `mode` without setuid and (for a
/// group-executable file) setgid, if a write must clear any.
pub(in crate::fs) fn suidgid_cleared(mode: u32) -> Option<u32> {
    let mut kill = libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 {
        kill |= libc::S_ISGID;
    }
    (mode & kill != 0).then_some(mode & 0o7777 & !kill)
}

/// A write on its way out, possibly after the setuid/setgid bits went.
pub(in crate::fs) struct Writer<T> {
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
                Accepted::Failed(e) => return cb(Err(Failure::behind(e))),
                Accepted::Full => {}
            }
        }
        let len = data.len() as u64;
        let req = Request::Write {
            fh,
            offset,
            data: data.into(),
        };
        // Sent after the writes and creates behind before it: a handle
        // whose create was refused meanwhile was never opened in the
        // container (EBADF there); the program is owed the create's
        // error, once, as a queued write would report it.
        let behind = self.out.behind.clone();
        self.out.send(
            &self.who,
            &req,
            Box::new(move |r| match behind.and_then(|b| b.take_error(fh)) {
                Some(e) => cb(Err(Failure::behind(e))),
                None => cb(r.and_then(|r| replies::written(r, len))),
            }),
        );
    }
}
