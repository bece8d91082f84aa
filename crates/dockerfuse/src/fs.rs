//! The filesystem core: turns filesystem operations into requests and the
//! satellite's responses into checked, typed results.
//!
//! It knows nothing of fuser or the kernel (the adapter in `fuse.rs` does
//! that), so tests drive it through a fake [`Transport`]. Every response is
//! validated here, because the satellite is not trusted: a reply of the
//! wrong kind becomes EIO, node id 0 is refused, data longer than asked is
//! cut, a count larger than sent is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockerfuse_proto::{Attr, DirEntry, Entry, Errno, Request, Response, SetAttr, StatFs};

use crate::rpc::Transport;

/// Caching and I/O choices of a mount.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long the kernel may trust names and attributes.
    pub ttl: Duration,
    /// The kernel caches writes (open flags are adjusted for it).
    pub writeback: bool,
    /// Opt-in: show absolute symlinks under the mount point.
    pub links: Option<LinkRewrite>,
    /// Perform each request as the host user who made it (`--allow-other`):
    /// requests are wrapped in `Request::As` with the caller set by
    /// [`with_caller`].
    pub per_caller: bool,
}

thread_local! {
    /// The host user (uid, gid) of the kernel request being handled on this
    /// thread; set by the FUSE adapter around each call into [`Core`].
    static CALLER: std::cell::Cell<Option<(u32, u32)>> = const { std::cell::Cell::new(None) };
}

/// Sets the caller of the requests sent from this thread until the guard
/// drops. Calls into [`Core`] are synchronous up to the send, so a
/// thread-local is exact even when the session runs on several threads.
pub fn with_caller(uid: u32, gid: u32) -> CallerGuard {
    CALLER.with(|c| c.set(Some((uid, gid))));
    CallerGuard(())
}

pub struct CallerGuard(());

impl Drop for CallerGuard {
    fn drop(&mut self) {
        CALLER.with(|c| c.set(None));
    }
}

/// Rewriting of absolute symlink targets between the container's view and
/// the host's. By default targets are shown as they are (so an absolute
/// one points into the host's tree when followed); with this, a target
/// under the mounted directory is shown under the mount point instead, and
/// a symlink created through the mount is stored in the container's terms.
/// Nothing is ever resolved on the host side: only the text changes.
#[derive(Clone, Debug)]
pub struct LinkRewrite {
    /// The mounted directory in the container (`--path`), e.g. `/`.
    pub root: Vec<u8>,
    /// The mount point on the host (absolute).
    pub mountpoint: Vec<u8>,
}

/// `rest` when `path` is `prefix` or lies under it (component-wise).
fn under<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

impl LinkRewrite {
    /// Container target -> what the host is shown.
    pub fn to_host(&self, target: &[u8]) -> Option<Vec<u8>> {
        if !target.starts_with(b"/") {
            return None;
        }
        let rest = under(target, &self.root)?;
        let mut out = self
            .mountpoint
            .strip_suffix(b"/")
            .unwrap_or(&self.mountpoint)
            .to_vec();
        out.extend_from_slice(if rest.is_empty() { b"/" } else { rest });
        Some(out)
    }

    /// Host target -> what the container stores.
    pub fn to_container(&self, target: &[u8]) -> Option<Vec<u8>> {
        let rest = under(target, &self.mountpoint)?;
        let mut out = self.root.strip_suffix(b"/").unwrap_or(&self.root).to_vec();
        out.extend_from_slice(rest);
        if out.is_empty() {
            out.push(b'/');
        }
        Some(out)
    }
}

/// Outcome callback of one operation.
pub type Cb<T> = Box<dyn FnOnce(Result<T, Errno>) + Send>;
/// Outcome callback of an operation whose data borrows the receive buffer.
pub type BytesCb = Box<dyn for<'a> FnOnce(Result<&'a [u8], Errno>) + Send>;
/// Outcome callback of a readdir.
pub type DirCb = Box<dyn for<'a> FnOnce(Result<Vec<DirEntry<'a>>, Errno>) + Send>;
/// Outcome of getxattr/listxattr: `Ok(Err(n))` answers a size probe.
pub type XattrCb = Box<dyn for<'a> FnOnce(Result<Result<&'a [u8], u32>, Errno>) + Send>;

pub struct Core<T: Transport> {
    pub rpc: Arc<T>,
    pub opts: Options,
    no_xattrs: Arc<NoXattrs>,
}

/// Nodes known to have no extended attributes, until when. `ls -l` asks
/// for two xattrs of every file; answered from here, a listing needs no
/// round trip per file. Filled from the entries the satellite sends
/// (lookup, readdirplus, create...), valid for the attribute TTL, dropped
/// by any xattr change made through the mount.
#[derive(Default)]
struct NoXattrs {
    until: Mutex<HashMap<u64, Instant>>,
}

/// Bound on remembered nodes; past it the memory starts over.
const NO_XATTRS_MAX: usize = 200_000;

impl NoXattrs {
    fn note(&self, e: &Entry, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut m = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if e.no_xattrs {
            if m.len() >= NO_XATTRS_MAX {
                m.clear();
            }
            m.insert(e.node, Instant::now() + ttl);
        } else {
            m.remove(&e.node);
        }
    }

    fn known_empty(&self, node: u64) -> bool {
        let m = self.until.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&node).is_some_and(|t| *t > Instant::now())
    }

    fn forget(&self, node: u64) {
        self.until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&node);
    }
}

fn unexpected(r: Response<'_>) -> Errno {
    match r {
        Response::Error(n) if n > 0 && n < 4096 => Errno(n),
        _ => Errno::EIO,
    }
}

fn entry(r: Response<'_>) -> Result<Entry, Errno> {
    match r {
        Response::Entry(e) => checked_entry(e),
        r => Err(unexpected(r)),
    }
}

fn checked_entry(mut e: Entry) -> Result<Entry, Errno> {
    if e.node == 0 {
        return Err(Errno::EIO);
    }
    e.attr.ino = e.node;
    Ok(e)
}

/// Completion of getattr/setattr: the attributes, reported under `node`.
fn attr_of_node(node: u64, cb: Cb<Attr>) -> crate::rpc::Done {
    Box::new(move |r| {
        cb(r.and_then(|r| match r {
            Response::Attr(mut a) => {
                a.ino = node;
                Ok(a)
            }
            r => Err(unexpected(r)),
        }))
    })
}

fn ok(r: Response<'_>) -> Result<(), Errno> {
    match r {
        Response::Ok => Ok(()),
        r => Err(unexpected(r)),
    }
}

fn fh(r: Response<'_>) -> Result<u64, Errno> {
    match r {
        Response::Opened { fh } => Ok(fh),
        r => Err(unexpected(r)),
    }
}

impl<T: Transport> Core<T> {
    pub fn new(rpc: T, opts: Options) -> Self {
        Core {
            rpc: Arc::new(rpc),
            opts,
            no_xattrs: Arc::default(),
        }
    }

    /// Wraps an entry callback so that the entry is remembered first.
    fn noting(&self, cb: Cb<Entry>) -> Cb<Entry> {
        let (cache, ttl) = (self.no_xattrs.clone(), self.opts.ttl);
        Box::new(move |r| {
            if let Ok(e) = &r {
                cache.note(e, ttl);
            }
            cb(r)
        })
    }

    /// A handle that drops lookup references later, from a callback.
    pub fn forgetter(&self) -> impl FnOnce(Vec<(u64, u64)>) + Send + 'static {
        let rpc = self.rpc.clone();
        move |nodes| {
            if !nodes.is_empty() {
                rpc.post(&Request::Forget { nodes });
            }
        }
    }

    /// Sends `req`, wrapped as the current caller's when the mount performs
    /// requests per caller (forget is never wrapped: it has no reply).
    fn send(&self, req: &Request<'_>, done: crate::rpc::Done) {
        let who = if self.opts.per_caller {
            CALLER.with(|c| c.get())
        } else {
            None
        };
        match who {
            Some((uid, gid)) if !matches!(req, Request::Forget { .. }) => self.rpc.call(
                &Request::As {
                    uid,
                    gid,
                    req: Box::new(req.clone()),
                },
                done,
            ),
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

    pub fn lookup(&self, parent: u64, name: &[u8], cb: Cb<Entry>) {
        self.call(
            Request::Lookup {
                parent,
                name: name.into(),
            },
            entry,
            self.noting(cb),
        )
    }

    pub fn forget(&self, nodes: Vec<(u64, u64)>) {
        if !nodes.is_empty() {
            self.rpc.post(&Request::Forget { nodes });
        }
    }

    pub fn getattr(&self, node: u64, fh: Option<u64>, cb: Cb<Attr>) {
        self.send(&Request::GetAttr { node, fh }, attr_of_node(node, cb));
    }

    pub fn setattr(&self, node: u64, fh: Option<u64>, attr: SetAttr, cb: Cb<Attr>) {
        self.send(&Request::SetAttr { node, fh, attr }, attr_of_node(node, cb));
    }

    pub fn readlink(&self, node: u64, cb: BytesCb) {
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

    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8], cb: Cb<Entry>) {
        self.call(
            Request::Symlink {
                parent,
                name: name.into(),
                target: target.into(),
            },
            entry,
            self.noting(cb),
        )
    }

    pub fn mknod(&self, parent: u64, name: &[u8], mode: u32, rdev: u64, cb: Cb<Entry>) {
        self.call(
            Request::Mknod {
                parent,
                name: name.into(),
                mode,
                rdev,
            },
            entry,
            self.noting(cb),
        )
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, cb: Cb<Entry>) {
        self.call(
            Request::Mkdir {
                parent,
                name: name.into(),
                mode,
            },
            entry,
            self.noting(cb),
        )
    }

    pub fn unlink(&self, parent: u64, name: &[u8], cb: Cb<()>) {
        self.call(
            Request::Unlink {
                parent,
                name: name.into(),
            },
            ok,
            cb,
        )
    }

    pub fn rmdir(&self, parent: u64, name: &[u8], cb: Cb<()>) {
        self.call(
            Request::Rmdir {
                parent,
                name: name.into(),
            },
            ok,
            cb,
        )
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
        cb: Cb<()>,
    ) {
        self.call(
            Request::Rename {
                parent,
                name: name.into(),
                new_parent,
                new_name: new_name.into(),
                flags,
            },
            ok,
            cb,
        )
    }

    pub fn link(&self, node: u64, new_parent: u64, new_name: &[u8], cb: Cb<Entry>) {
        self.call(
            Request::Link {
                node,
                new_parent,
                new_name: new_name.into(),
            },
            entry,
            self.noting(cb),
        )
    }

    /// open(2) flags as the satellite should use them. With a writeback
    /// cache the kernel may read back pages of a write-only file and does
    /// appends itself, so O_WRONLY becomes O_RDWR and O_APPEND goes.
    pub fn open_flags(&self, flags: i32) -> i32 {
        if self.opts.writeback {
            let mut f = flags & !libc::O_APPEND;
            if f & libc::O_ACCMODE == libc::O_WRONLY {
                f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
            }
            f
        } else {
            flags
        }
    }

    pub fn open(&self, node: u64, flags: i32, cb: Cb<u64>) {
        self.call(
            Request::Open {
                node,
                flags: self.open_flags(flags),
            },
            fh,
            cb,
        )
    }

    pub fn create(&self, parent: u64, name: &[u8], mode: u32, flags: i32, cb: Cb<(Entry, u64)>) {
        self.call(
            Request::Create {
                parent,
                name: name.into(),
                mode,
                flags: self.open_flags(flags),
            },
            |r| match r {
                Response::Created { entry, fh } => Ok((checked_entry(entry)?, fh)),
                r => Err(unexpected(r)),
            },
            cb,
        )
    }

    /// Reads up to `size` bytes; never hands on more than asked.
    pub fn read(&self, fh: u64, offset: u64, size: u32, cb: BytesCb) {
        self.send(
            &Request::Read { fh, offset, size },
            Box::new(move |r| match r {
                Ok(Response::Data(d)) => cb(Ok(&d[..d.len().min(size as usize)])),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8], cb: Cb<u32>) {
        let len = data.len() as u64;
        self.send(
            &Request::Write {
                fh,
                offset,
                data: data.into(),
            },
            Box::new(move |r| {
                cb(r.and_then(|r| match r {
                    Response::Written(n) if n as u64 <= len => Ok(n),
                    Response::Written(_) => Err(Errno::EIO),
                    r => Err(unexpected(r)),
                }))
            }),
        );
    }

    /// FLUSH needs no round trip: the satellite's flush closes nothing and
    /// writes are already in the container when they are acknowledged.
    pub fn flush(&self, _fh: u64, cb: Cb<()>) {
        cb(Ok(()))
    }

    /// RELEASE is answered at once (the kernel ignores its outcome); the
    /// satellite closes the file when the request gets there.
    pub fn release(&self, fh: u64, cb: Cb<()>) {
        self.send_and_ack(&Request::Release { fh }, cb)
    }

    /// Sends a request whose outcome nobody waits for and answers `cb` now.
    fn send_and_ack(&self, req: &Request<'_>, cb: Cb<()>) {
        self.rpc.call(req, Box::new(|_| {}));
        cb(Ok(()))
    }

    pub fn fsync(&self, fh: u64, datasync: bool, cb: Cb<()>) {
        self.call(Request::Fsync { fh, datasync }, ok, cb)
    }

    pub fn opendir(&self, node: u64, cb: Cb<u64>) {
        self.call(Request::OpenDir { node }, fh, cb)
    }

    pub fn readdir(&self, fh: u64, offset: u64, size: u32, plus: bool, cb: DirCb) {
        let (cache, ttl) = (self.no_xattrs.clone(), self.opts.ttl);
        self.send(
            &Request::ReadDir {
                fh,
                offset,
                size,
                plus,
            },
            Box::new(move |r| match r {
                Ok(Response::Dir(v)) => {
                    for e in v.iter().filter_map(|d| d.entry.as_ref()) {
                        cache.note(e, ttl);
                    }
                    cb(Ok(v))
                }
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    pub fn releasedir(&self, fh: u64, cb: Cb<()>) {
        self.send_and_ack(&Request::ReleaseDir { fh }, cb)
    }

    pub fn fsyncdir(&self, fh: u64, datasync: bool, cb: Cb<()>) {
        self.call(Request::FsyncDir { fh, datasync }, ok, cb)
    }

    pub fn statfs(&self, node: u64, cb: Cb<StatFs>) {
        self.call(
            Request::StatFs { node },
            |r| match r {
                Response::StatFs(s) => Ok(s),
                r => Err(unexpected(r)),
            },
            cb,
        )
    }

    pub fn access(&self, node: u64, mask: i32, cb: Cb<()>) {
        self.call(Request::Access { node, mask }, ok, cb)
    }

    pub fn xattr_get(&self, req: Request<'_>, size: u32, cb: XattrCb) {
        match req {
            Request::GetXattr { node, .. } if self.no_xattrs.known_empty(node) => {
                return cb(Err(Errno::ENODATA));
            }
            Request::ListXattr { node, .. } if self.no_xattrs.known_empty(node) => {
                return cb(Ok(if size == 0 { Err(0) } else { Ok(&[]) }));
            }
            _ => {}
        }
        self.send(
            &req,
            Box::new(move |r| match r {
                Ok(Response::XattrSize(n)) => cb(Ok(Err(n))),
                Ok(Response::Data(d)) if d.len() <= size as usize => cb(Ok(Ok(&d))),
                Ok(Response::Data(_)) => cb(Err(Errno::ERANGE)),
                Ok(r) => cb(Err(unexpected(r))),
                Err(e) => cb(Err(e)),
            }),
        );
    }

    pub fn simple(&self, req: Request<'_>, cb: Cb<()>) {
        if let Request::SetXattr { node, .. } | Request::RemoveXattr { node, .. } = req {
            self.no_xattrs.forget(node);
        }
        self.call(req, ok, cb)
    }

    pub fn lseek(&self, fh: u64, offset: i64, whence: i32, cb: Cb<i64>) {
        self.call(
            Request::Lseek { fh, offset, whence },
            |r| match r {
                Response::Offset(o) => i64::try_from(o).map_err(|_| Errno::EIO),
                r => Err(unexpected(r)),
            },
            cb,
        )
    }

    pub fn copy_file_range(&self, req: Request<'_>, len: u64, cb: Cb<u32>) {
        self.send(
            &req,
            Box::new(move |r| {
                cb(r.and_then(|r| match r {
                    Response::Written(n) if n as u64 <= len => Ok(n),
                    Response::Written(_) => Err(Errno::EIO),
                    r => Err(unexpected(r)),
                }))
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Done;
    use std::sync::Mutex;

    /// Answers every request with a canned response, recording requests.
    struct Canned {
        answer: Box<dyn Fn(&Request<'_>) -> Response<'static> + Send + Sync>,
        seen: Arc<Mutex<Vec<Request<'static>>>>,
    }

    impl Transport for Canned {
        fn call(&self, req: &Request<'_>, done: Done) {
            self.seen.lock().unwrap().push(req.clone().into_owned());
            done(Ok((self.answer)(req)))
        }
        fn post(&self, req: &Request<'_>) {
            self.seen.lock().unwrap().push(req.clone().into_owned());
        }
    }

    fn core(
        answer: impl Fn(&Request<'_>) -> Response<'static> + Send + Sync + 'static,
        writeback: bool,
    ) -> (Core<Canned>, Arc<Mutex<Vec<Request<'static>>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let c = Core::new(
            Canned {
                answer: Box::new(answer),
                seen: seen.clone(),
            },
            Options {
                ttl: Duration::from_secs(1),
                writeback,
                links: None,
                per_caller: true,
            },
        );
        (c, seen)
    }

    type Slot<T> = Arc<Mutex<Option<Result<T, Errno>>>>;

    fn capture<T: Send + 'static>() -> (Cb<T>, Slot<T>) {
        let slot = Arc::new(Mutex::new(None));
        let s = slot.clone();
        (Box::new(move |r| *s.lock().unwrap() = Some(r)), slot)
    }

    #[test]
    fn wrong_kind_of_reply_is_eio_and_errno_passes_through() {
        let (c, _) = core(|_| Response::Ok, false);
        let (cb, got) = capture();
        c.lookup(1, b"x", cb);
        assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));

        let (c, _) = core(|_| Response::Error(libc::ENOENT), false);
        let (cb, got) = capture();
        c.lookup(1, b"x", cb);
        assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::ENOENT)));

        // A negative or absurd errno from the satellite is not trusted.
        let (c, _) = core(|_| Response::Error(-3), false);
        let (cb, got) = capture();
        c.unlink(1, b"x", cb);
        assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));
    }

    #[test]
    fn entries_report_node_id_as_inode_and_refuse_node_zero() {
        let (c, _) = core(
            |_| {
                Response::Entry(Entry {
                    node: 42,
                    attr: Attr {
                        ino: 7,
                        ..Default::default()
                    },
                    no_xattrs: false,
                })
            },
            false,
        );
        let (cb, got) = capture();
        c.lookup(1, b"x", cb);
        assert_eq!(got.lock().unwrap().take().unwrap().unwrap().attr.ino, 42);

        let (c, _) = core(
            |_| {
                Response::Entry(Entry {
                    node: 0,
                    attr: Attr::default(),
                    no_xattrs: false,
                })
            },
            false,
        );
        let (cb, got) = capture();
        c.mkdir(1, b"x", 0o755, cb);
        assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));
    }

    #[test]
    fn getxattr_of_a_node_known_to_have_none_needs_no_round_trip() {
        let (c, seen) = core(
            |r| match r {
                Request::Lookup { .. } => Response::Entry(Entry {
                    node: 9,
                    attr: Attr::default(),
                    no_xattrs: true,
                }),
                _ => Response::Error(libc::ENODATA),
            },
            false,
        );
        let (cb, _) = capture();
        c.lookup(1, b"f", cb);
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        let req = Request::GetXattr {
            node: 9,
            name: b"security.capability".as_slice().into(),
            size: 0,
        };
        c.xattr_get(
            req.clone(),
            0,
            Box::new(move |r| *g.lock().unwrap() = Some(r.map(|_| ()))),
        );
        assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::ENODATA)));
        assert_eq!(seen.lock().unwrap().len(), 1, "only the lookup went out");
        // A change through the mount makes it ask again.
        let (cb, _) = capture();
        c.simple(
            Request::SetXattr {
                node: 9,
                name: b"user.a".as_slice().into(),
                value: b"1".as_slice().into(),
                flags: 0,
            },
            cb,
        );
        c.xattr_get(req, 0, Box::new(|_| {}));
        assert_eq!(seen.lock().unwrap().len(), 3);
        // Other nodes are always asked.
        c.xattr_get(
            Request::ListXattr { node: 10, size: 0 },
            0,
            Box::new(|_| {}),
        );
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[test]
    fn read_never_returns_more_than_asked_and_write_counts_are_checked() {
        let (c, _) = core(|_| Response::Data(vec![1u8; 100].into()), false);
        let len = Arc::new(Mutex::new(0));
        let l = len.clone();
        c.read(
            3,
            0,
            10,
            Box::new(move |r| *l.lock().unwrap() = r.unwrap().len()),
        );
        assert_eq!(*len.lock().unwrap(), 10);

        let (c, _) = core(|_| Response::Written(11), false);
        let (cb, got) = capture();
        c.write(3, 0, b"0123456789", cb);
        assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));
    }

    #[test]
    fn absolute_links_are_rewritten_only_when_asked_and_only_under_the_root() {
        let l = LinkRewrite {
            root: b"/".to_vec(),
            mountpoint: b"/home/u/mnt".to_vec(),
        };
        assert_eq!(
            l.to_host(b"/etc/passwd").as_deref(),
            Some(&b"/home/u/mnt/etc/passwd"[..])
        );
        assert_eq!(l.to_host(b"/").as_deref(), Some(&b"/home/u/mnt/"[..]));
        assert_eq!(l.to_host(b"rel/x"), None);
        assert_eq!(
            l.to_container(b"/home/u/mnt/etc").as_deref(),
            Some(&b"/etc"[..])
        );
        assert_eq!(l.to_container(b"/home/u/mntx/etc"), None);
        assert_eq!(l.to_container(b"/home/u/mnt").as_deref(), Some(&b"/"[..]));
        let sub = LinkRewrite {
            root: b"/srv/app".to_vec(),
            mountpoint: b"/m".to_vec(),
        };
        assert_eq!(
            sub.to_host(b"/srv/app/conf").as_deref(),
            Some(&b"/m/conf"[..])
        );
        assert_eq!(sub.to_host(b"/srv/application"), None);
        assert_eq!(
            sub.to_host(b"/etc/x"),
            None,
            "outside the mounted tree: unchanged"
        );
        assert_eq!(
            sub.to_container(b"/m/conf").as_deref(),
            Some(&b"/srv/app/conf"[..])
        );

        let (c, _) = core(|_| Response::Data(b"/etc/x".to_vec().into()), false);
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        c.readlink(
            5,
            Box::new(move |r| *g.lock().unwrap() = r.unwrap().to_vec()),
        );
        assert_eq!(&got.lock().unwrap()[..], b"/etc/x", "unchanged by default");
    }

    #[test]
    fn requests_carry_the_caller_when_asked_and_forget_never_does() {
        let (c, seen) = core(|_| Response::Ok, false);
        {
            let _as = with_caller(1000, 100);
            c.unlink(1, b"x", Box::new(|_| {}));
            c.forget(vec![(5, 1)]);
        }
        c.unlink(1, b"y", Box::new(|_| {}));
        let seen = seen.lock().unwrap();
        assert!(matches!(
            &seen[0],
            Request::As { uid: 1000, gid: 100, req } if matches!(**req, Request::Unlink { .. })
        ));
        assert!(matches!(seen[1], Request::Forget { .. }));
        assert!(matches!(seen[2], Request::Unlink { .. }));
    }

    #[test]
    fn writeback_cache_adjusts_open_flags() {
        let (c, seen) = core(|_| Response::Opened { fh: 9 }, true);
        let (cb, got) = capture();
        c.open(5, libc::O_WRONLY | libc::O_APPEND, cb);
        assert_eq!(got.lock().unwrap().take(), Some(Ok(9)));
        assert_eq!(
            seen.lock().unwrap()[0],
            Request::Open {
                node: 5,
                flags: libc::O_RDWR
            }
        );
        let (c, _) = core(|_| Response::Opened { fh: 9 }, false);
        assert_eq!(
            c.open_flags(libc::O_WRONLY | libc::O_APPEND),
            libc::O_WRONLY | libc::O_APPEND
        );
    }
}
