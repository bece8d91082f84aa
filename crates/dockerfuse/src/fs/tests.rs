//! Unit tests of the core against a transport with canned answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockerfuse_proto::{DirEntry, Request, Response};

use super::failure::Cause;
use super::ops::suidgid_cleared;
use super::*;

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

type Seen = Arc<Mutex<Vec<Request<'static>>>>;

fn core_with(
    answer: impl Fn(&Request<'_>) -> Response<'static> + Send + Sync + 'static,
    opts: Options,
) -> (Core<Canned>, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = Core::new(
        Canned {
            answer: Box::new(answer),
            seen: seen.clone(),
        },
        opts,
    );
    (c, seen)
}

fn opts() -> Options {
    Options {
        ttl: Duration::from_secs(1),
        fixed_ttl: false,
        writeback: false,
        links: None,
        per_caller: true,
        open_small: true,
        write_behind: false,
        host_attrs: true,
        legacy_flags: None,
        lazy_open: false,
        open_read_dir: false,
        stream: false,
        pipeline: false,
        kernel_acls: false,
        symlink_new: true,
        close_behind: false,
    }
}

fn core(
    answer: impl Fn(&Request<'_>) -> Response<'static> + Send + Sync + 'static,
) -> (Core<Canned>, Seen) {
    core_with(answer, opts())
}

type Slot<T> = Arc<Mutex<Option<Result<T, Errno>>>>;

fn capture<T: Send + 'static>() -> (Cb<T>, Slot<T>) {
    let slot = Arc::new(Mutex::new(None));
    let s = slot.clone();
    (
        Box::new(move |r| *s.lock().unwrap() = Some(r.map_err(|f| f.errno))),
        slot,
    )
}

fn entry(node: u64, no_xattrs: bool) -> Entry {
    Entry {
        node,
        attr: Attr {
            ino: 7,
            ..Default::default()
        },
        no_xattrs,
    }
}

fn found(got: &Slot<Lookup>) -> Option<u64> {
    match got.lock().unwrap().take() {
        Some(Ok(Lookup::Found(e, _))) => Some(e.attr.ino),
        _ => None,
    }
}

#[test]
fn wrong_kind_of_reply_is_eio_and_errno_passes_through() {
    let (c, _) = core(|_| Response::Ok);
    let (cb, got) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"x", 0o755, cb);
    assert_eq!(
        got.lock().unwrap().take().map(|r| r.err()),
        Some(Some(Errno::EIO))
    );

    let (c, _) = core(|_| Response::Error(libc::EACCES));
    let (cb, got) = capture();
    c.unlink(&Who::Mount, NodeId(1), b"x", cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno(libc::EACCES))));

    // A negative or absurd errno from the satellite is not trusted.
    let (c, _) = core(|_| Response::Error(-3));
    let (cb, got) = capture();
    c.unlink(&Who::Mount, NodeId(1), b"x", cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));
}

#[test]
fn entries_report_node_id_as_inode_and_refuse_node_zero() {
    let (c, _) = core(|_| Response::Entry(entry(42, false)));
    let (cb, got) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"x", cb);
    assert_eq!(found(&got), Some(42));

    let (c, _) = core(|_| Response::Entry(entry(0, false)));
    let (cb, got) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"x", 0o755, cb);
    assert!(matches!(got.lock().unwrap().take(), Some(Err(Errno::EIO))));
}

#[test]
fn absent_names_are_negative_entries_only_with_a_ttl() {
    let (c, _) = core(|_| Response::Error(libc::ENOENT));
    let (cb, got) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"x", cb);
    assert!(matches!(
        got.lock().unwrap().take(),
        Some(Ok(Lookup::Absent(_)))
    ));

    let mut o = opts();
    o.ttl = Duration::ZERO;
    let (c, _) = core_with(|_| Response::Error(libc::ENOENT), o);
    let (cb, got) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"x", cb);
    assert!(matches!(
        got.lock().unwrap().take(),
        Some(Err(Errno::ENOENT))
    ));
}

#[test]
fn getxattr_of_a_node_known_to_have_none_needs_no_round_trip() {
    let (c, seen) = core(|r| match r {
        Request::As { req, .. } if matches!(**req, Request::Lookup { .. }) => {
            Response::Entry(entry(9, true))
        }
        Request::Lookup { .. } => Response::Entry(entry(9, true)),
        Request::SetXattr { .. } => Response::Ok,
        _ => Response::Error(libc::ENODATA),
    });
    let (cb, _) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"f", cb);
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    c.getxattr(
        &Who::Mount,
        NodeId(9),
        b"security.capability",
        0,
        Box::new(move |r| *g.lock().unwrap() = Some(r.map_err(|f| f.errno).map(|_| ()))),
    );
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::ENODATA)));
    // The SELinux label: not supported (`ls -l` stops asking for it).
    let g = got.clone();
    c.getxattr(
        &Who::Mount,
        NodeId(9),
        b"security.selinux",
        255,
        Box::new(move |r| *g.lock().unwrap() = Some(r.map_err(|f| f.errno).map(|_| ()))),
    );
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EOPNOTSUPP)));
    let g = got.clone();
    c.listxattr(
        &Who::Mount,
        NodeId(9),
        0,
        Box::new(move |r| {
            *g.lock().unwrap() = Some(match r {
                Ok(Xattr::Size(0)) => Ok(()),
                _ => Err(Errno::EIO),
            })
        }),
    );
    assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
    assert_eq!(seen.lock().unwrap().len(), 1, "only the lookup went out");
    // A change through the mount makes it ask again.
    let (cb, _) = capture();
    c.setxattr(&Who::Mount, NodeId(9), b"user.a", b"1", 0, cb);
    c.getxattr(
        &Who::Mount,
        NodeId(9),
        b"security.capability",
        0,
        Box::new(|_| {}),
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    // Other nodes are always asked.
    c.listxattr(&Who::Mount, NodeId(10), 0, Box::new(|_| {}));
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[test]
fn an_xattr_value_larger_than_the_buffer_is_erange() {
    let (c, _) = core(|_| Response::Data(vec![1u8; 10].into()));
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    c.getxattr(
        &Who::Mount,
        NodeId(3),
        b"user.x",
        4,
        Box::new(move |r| *g.lock().unwrap() = Some(r.map_err(|f| f.errno).map(|_| ()))),
    );
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::ERANGE)));
}

#[test]
fn read_never_returns_more_than_asked_and_write_counts_are_checked() {
    let (c, _) = core(|_| Response::Data(vec![1u8; 100].into()));
    let len = Arc::new(Mutex::new(0));
    let l = len.clone();
    c.read(
        &Who::Mount,
        Fh(3),
        0,
        10,
        Box::new(move |r| *l.lock().unwrap() = r.unwrap().len()),
    );
    assert_eq!(*len.lock().unwrap(), 10);

    let (c, _) = core(|_| Response::Written(11));
    let (cb, got) = capture();
    c.write(&Who::Mount, NodeId(2), Fh(3), 0, b"0123456789", false, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));

    let (c, _) = core(|_| Response::Written(11));
    let (cb, got) = capture();
    c.copy_file_range(&Who::Mount, (Fh(3), 0), (NodeId(5), Fh(4), 0), 10, 0, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));
}

/// What a read through the core hands over (`None`: an error).
fn read_bytes<T: Transport>(c: &Core<T>, fh: u64, offset: u64, size: u32) -> Option<Vec<u8>> {
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    c.read(
        &Who::Mount,
        Fh(fh),
        offset,
        size,
        Box::new(move |r| *g.lock().unwrap() = r.ok().map(<[u8]>::to_vec)),
    );
    let r = got.lock().unwrap().take();
    r
}

fn open_fh<T: Transport>(c: &Core<T>, node: u64, flags: i32) -> u64 {
    let (cb, got) = capture();
    let reply: Cb<Opened> = Box::new(move |r| cb(r.map(|o| o.fh.0)));
    c.open(&Who::Mount, NodeId(node), flags, reply);
    let fh = got.lock().unwrap().take();
    fh.expect("answered").expect("opened")
}

/// A satellite whose small files hold `contents`; reads of the handle
/// answer `from satellite`.
fn small_files(contents: &'static [u8]) -> (Core<Canned>, Seen) {
    core(move |r| match unwrapped(r) {
        Request::OpenSmall { max, .. } => Response::OpenedSmall {
            fh: 5,
            fd: None,
            data: Some(contents[..contents.len().min(*max as usize + 100)].into()),
        },
        Request::Open { .. } => Response::Opened { fh: 6 },
        Request::Read { .. } => Response::Data(b"from satellite".as_slice().into()),
        Request::Write { data, .. } => Response::Written(data.len() as u32),
        Request::GetAttr { .. } => Response::Attr(Attr::default()),
        _ => Response::Ok,
    })
}

/// The request inside an `As`.
fn unwrapped<'r, 'a>(r: &'r Request<'a>) -> &'r Request<'a> {
    match r {
        Request::As { req, .. } => req,
        r => r,
    }
}

fn reads_sent(seen: &Seen) -> usize {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|r| matches!(unwrapped(r), Request::Read { .. }))
        .count()
}

#[test]
fn a_small_file_read_after_its_open_needs_no_round_trip() {
    let (c, seen) = small_files(b"0123456789");
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    assert_eq!(fh, 5);
    assert_eq!(read_bytes(&c, fh, 0, 4096).unwrap(), b"0123456789");
    assert_eq!(read_bytes(&c, fh, 4, 3).unwrap(), b"456");
    assert_eq!(read_bytes(&c, fh, 10, 4096).unwrap(), b"");
    assert_eq!(reads_sent(&seen), 0);
    // After the release, reads go to the satellite.
    let (cb, got) = capture();
    c.release(Fh(fh), cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
    assert_eq!(read_bytes(&c, fh, 0, 4096).unwrap(), b"from satellite");
    assert_eq!(reads_sent(&seen), 1);
    // The release itself goes later, in a batch without a reply.
    let batched = || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| *r == Request::ReleaseMany { fhs: vec![5] })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !batched() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(batched());
    let sent = seen.lock().unwrap().clone();
    assert!(!sent
        .iter()
        .any(|r| matches!(unwrapped(r), Request::Release { .. })));
}

#[test]
fn opens_that_may_write_or_bypass_the_cache_ask_for_no_contents() {
    let (c, seen) = small_files(b"x");
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_DIRECT,
        libc::O_RDONLY | libc::O_TRUNC,
    ] {
        assert_eq!(open_fh(&c, 2, flags), 6, "flags {flags:#o}");
    }
    assert_eq!(read_bytes(&c, 6, 0, 100).unwrap(), b"from satellite");
    let sent = seen.lock().unwrap().clone();
    assert!(!sent
        .iter()
        .any(|r| matches!(unwrapped(r), Request::OpenSmall { .. })));
    // Nor with the writeback cache, a satellite before protocol 5, or a
    // TTL of zero without the feed.
    for o in [
        Options {
            writeback: true,
            ..opts()
        },
        Options {
            open_small: false,
            ..opts()
        },
        Options {
            ttl: Duration::ZERO,
            ..opts()
        },
    ] {
        let (c, _) = core_with(
            |r| match unwrapped(r) {
                Request::Open { .. } => Response::Opened { fh: 6 },
                _ => Response::Error(libc::ENOSYS),
            },
            o,
        );
        assert_eq!(open_fh(&c, 2, libc::O_RDONLY), 6);
    }
}

#[test]
fn contents_longer_than_asked_are_not_trusted() {
    let big: &'static [u8] = Box::leak(vec![9u8; MAX_OPEN_DATA as usize + 1].into_boxed_slice());
    let (c, seen) = small_files(big);
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    assert_eq!(read_bytes(&c, fh, 0, 100).unwrap(), b"from satellite");
    assert_eq!(reads_sent(&seen), 1);
}

#[test]
fn this_mounts_writes_and_the_feeds_changes_drop_held_contents() {
    let (c, seen) = small_files(b"old");
    // A write through any handle: the written node is not known here.
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(8), Fh(9), 0, b"new", false, cb);
    assert_eq!(read_bytes(&c, fh, 0, 100).unwrap(), b"from satellite");
    // A truncation.
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    let (cb, _) = capture();
    let size = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    c.setattr(&Who::Mount, NodeId(3), None, size, cb);
    assert_eq!(read_bytes(&c, fh, 0, 100).unwrap(), b"from satellite");
    // A chmod changes no contents.
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    let (cb, _) = capture();
    let mode = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    c.setattr(&Who::Mount, NodeId(3), None, mode, cb);
    assert_eq!(read_bytes(&c, fh, 0, 10).unwrap(), b"old");
    // A change the feed reports for the node, and not for another.
    let coh = c.coherence();
    coh.apply(&[dockerfuse_proto::Change::Data { node: 3 }]);
    assert_eq!(read_bytes(&c, fh, 0, 10).unwrap(), b"old");
    coh.apply(&[dockerfuse_proto::Change::Data { node: 2 }]);
    assert_eq!(read_bytes(&c, fh, 0, 100).unwrap(), b"from satellite");
    // Everything (a lost event).
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    coh.everything();
    assert_eq!(read_bytes(&c, fh, 0, 100).unwrap(), b"from satellite");
    // Fresh attributes of the node for the kernel (which then drops its
    // pages if they show a change), and not of another.
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    let (cb, _) = capture();
    c.getattr(&Who::Mount, NodeId(3), None, cb);
    assert_eq!(read_bytes(&c, fh, 0, 10).unwrap(), b"old");
    let (cb, _) = capture();
    c.getattr(&Who::Mount, NodeId(2), None, cb);
    assert_eq!(read_bytes(&c, fh, 0, 100).unwrap(), b"from satellite");
    assert_eq!(reads_sent(&seen), 5);
}

#[test]
fn links_are_shown_and_stored_in_the_right_terms() {
    let (c, _) = core(|_| Response::Data(b"/etc/x".to_vec().into()));
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    c.readlink(
        &Who::Mount,
        NodeId(5),
        Box::new(move |r| *g.lock().unwrap() = r.unwrap().to_vec()),
    );
    assert_eq!(&got.lock().unwrap()[..], b"/etc/x", "unchanged by default");

    let mut o = opts();
    o.per_caller = false;
    o.links = Some(LinkRewrite {
        root: b"/".to_vec(),
        mountpoint: b"/mnt/c".to_vec(),
    });
    let (c, seen) = core_with(
        |r| match r {
            Request::ReadLink { .. } => Response::Data(b"/etc/x".to_vec().into()),
            _ => Response::Entry(entry(8, false)),
        },
        o,
    );
    let g = got.clone();
    c.readlink(
        &Who::Mount,
        NodeId(5),
        Box::new(move |r| *g.lock().unwrap() = r.unwrap().to_vec()),
    );
    assert_eq!(&got.lock().unwrap()[..], b"/mnt/c/etc/x");
    c.symlink(
        &Who::Mount,
        NodeId(1),
        b"l",
        b"/mnt/c/etc/y",
        Box::new(|_| {}),
    );
    c.symlink(
        &Who::Mount,
        NodeId(1),
        b"m",
        b"/elsewhere",
        Box::new(|_| {}),
    );
    c.symlink(&Who::Mount, NodeId(1), b"n", b"rel/z", Box::new(|_| {}));
    let seen = seen.lock().unwrap();
    let targets: Vec<Vec<u8>> = seen
        .iter()
        .filter_map(|r| match r {
            Request::Symlink { target, .. } => Some(target.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, [&b"/etc/y"[..], b"/elsewhere", b"rel/z"]);
}

fn caller(uid: u32, groups: &[u32]) -> Who {
    Who::Caller(Caller {
        uid,
        gid: 100,
        groups: groups.into(),
        pid: 4321,
    })
}

/// The user a request was sent as (None: the satellite's own).
fn sent_as(r: &Request<'_>) -> Option<u32> {
    match r {
        Request::As { uid, .. } => Some(*uid),
        _ => None,
    }
}

#[test]
fn requests_carry_the_caller_when_asked_and_forget_never_does() {
    let (c, seen) = core(|_| Response::Ok);
    let me = caller(1000, &[10, 20]);
    c.unlink(&me, NodeId(1), b"x", Box::new(|_| {}));
    c.forget(vec![(NodeId(5), 1)]);
    c.unlink(&Who::Mount, NodeId(1), b"y", Box::new(|_| {}));
    // Without --allow-other the caller is known but not sent.
    let mut o = opts();
    o.per_caller = false;
    let (own, own_seen) = core_with(|_| Response::Ok, o);
    own.unlink(&me, NodeId(1), b"z", Box::new(|_| {}));
    let seen = seen.lock().unwrap();
    assert!(matches!(
        &seen[0],
        Request::As { uid: 1000, gid: 100, groups, req }
            if groups == &[10, 20] && matches!(**req, Request::Unlink { .. })
    ));
    assert!(matches!(seen[1], Request::Forget { .. }));
    assert!(matches!(seen[2], Request::Unlink { .. }));
    assert!(matches!(
        own_seen.lock().unwrap()[0],
        Request::Unlink { .. }
    ));
}

#[test]
fn the_kernels_mtime_flush_is_not_sent_as_the_caller() {
    let mut o = opts();
    o.writeback = true;
    let (c, seen) = core_with(|_| Response::Attr(Attr::default()), o);
    let mtime = |mtime| SetAttr {
        mtime: Some(mtime),
        ..Default::default()
    };
    let at = SetTime::At { sec: 5, nsec: 6 };
    let me = caller(1000, &[]);
    // The kernel's flush: an explicit mtime alone, with or without the
    // open file.
    c.setattr(&me, NodeId(3), Some(Fh(7)), mtime(at), Box::new(|_| {}));
    c.setattr(&me, NodeId(3), None, mtime(at), Box::new(|_| {}));
    // "now" is sent as it is, as the caller.
    c.setattr(
        &me,
        NodeId(3),
        Some(Fh(7)),
        mtime(SetTime::Now),
        Box::new(|_| {}),
    );
    let mut truncate = mtime(at);
    truncate.size = Some(0);
    c.setattr(&me, NodeId(3), Some(Fh(7)), truncate, Box::new(|_| {}));
    // utimensat(now, now) of a writer: the kernel made the mtime explicit.
    let mut touch = mtime(at);
    touch.atime = Some(SetTime::Now);
    c.setattr(&me, NodeId(3), None, touch, Box::new(|_| {}));
    let seen = seen.lock().unwrap();
    assert!(matches!(seen[0], Request::SetAttr { fh: Some(7), .. }));
    assert!(matches!(seen[1], Request::SetAttr { fh: None, .. }));
    assert!(matches!(seen[2], Request::As { .. }));
    // A truncation: the size as the caller, then the kernel's mtime.
    let size_only = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    assert!(matches!(
        &seen[3],
        Request::As { req, .. } if matches!(&**req, Request::SetAttr { attr, .. } if *attr == size_only)
    ));
    assert!(matches!(&seen[4], Request::SetAttr { attr, .. } if *attr == mtime(at)));
    let now = SetAttr {
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::Now),
        ..Default::default()
    };
    assert!(matches!(
        &seen[5],
        Request::As { req, .. } if matches!(&**req, Request::SetAttr { attr, .. } if *attr == now)
    ));
    assert!(matches!(&seen[6], Request::SetAttr { attr, .. } if *attr == mtime(at)));
    assert_eq!(seen.len(), 7);
}

/// Answers like a satellite holding one setuid file.
fn setuid_file(r: &Request<'_>) -> Response<'static> {
    match unwrapped(r) {
        Request::GetAttr { .. } | Request::SetAttr { .. } => Response::Attr(Attr {
            mode: libc::S_IFREG | 0o4777,
            ..Default::default()
        }),
        Request::Write { data, .. } => Response::Written(data.len() as u32),
        _ => Response::Ok,
    }
}

#[test]
fn follow_up_requests_are_sent_for_the_caller_of_the_operation() {
    // The setattr's follow-up runs from the reply of its first request
    // (on the reader's thread): the caller's part as the caller, the
    // kernel's mtime as the mount's own, on purpose.
    let mut o = opts();
    o.writeback = true;
    let (c, seen) = core_with(|_| Response::Attr(Attr::default()), o);
    let truncate = SetAttr {
        size: Some(0),
        mtime: Some(SetTime::At { sec: 5, nsec: 6 }),
        ..Default::default()
    };
    c.setattr(
        &caller(1000, &[7]),
        NodeId(3),
        Some(Fh(7)),
        truncate,
        Box::new(|_| {}),
    );
    let got: Vec<_> = seen.lock().unwrap().iter().map(sent_as).collect();
    assert_eq!(got, [Some(1000), None]);

    // KILLPRIV: a write that must clear setuid. Per caller, the write
    // alone, as the caller (the container's kernel clears the bit).
    let (c, seen) = core(setuid_file);
    let (cb, got) = capture();
    c.write(&caller(1000, &[7]), NodeId(3), Fh(9), 0, b"z", true, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(1)));
    let seen: Vec<_> = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(sent_as(&seen[0]), Some(1000));
    assert!(matches!(unwrapped(&seen[0]), Request::Write { .. }));

    // Otherwise the core clears it first: getattr, chmod, then the write,
    // each sent for the write's caller, from the replies of the others.
    let mut o = opts();
    o.per_caller = false;
    let (c, seen) = core_with(setuid_file, o);
    let (cb, got) = capture();
    c.write(&caller(1000, &[7]), NodeId(3), Fh(9), 0, b"z", true, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(1)));
    let seen = seen.lock().unwrap();
    assert!(matches!(seen[0], Request::GetAttr { node: 3, .. }));
    let mode = SetAttr {
        mode: Some(0o777),
        ..Default::default()
    };
    assert!(matches!(&seen[1], Request::SetAttr { node: 3, attr, .. } if *attr == mode));
    assert!(matches!(seen[2], Request::Write { fh: 9, .. }));
    assert_eq!(seen.len(), 3);
    // The same sequence with a per-caller core carries the caller on
    // every request, the ones sent from replies included.
    let (c, seen) = core(setuid_file);
    let (cb, got) = capture();
    c.drop_suidgid(&caller(1000, &[7]), 3, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
    let got: Vec<_> = seen.lock().unwrap().iter().map(sent_as).collect();
    assert_eq!(got, [Some(1000), Some(1000)]);
}

#[test]
fn writeback_cache_adjusts_open_flags() {
    let mut o = opts();
    o.writeback = true;
    o.per_caller = false;
    let (c, seen) = core_with(|_| Response::Opened { fh: 9 }, o);
    let (cb, got) = capture();
    c.open(
        &Who::Mount,
        NodeId(5),
        libc::O_WRONLY | libc::O_APPEND,
        Box::new(move |r: Result<Opened, Failure>| cb(r.map(|o| o.fh.0))) as Cb<Opened>,
    );
    assert_eq!(got.lock().unwrap().take(), Some(Ok(9)));
    assert_eq!(
        seen.lock().unwrap()[0],
        Request::Open {
            node: 5,
            flags: OpenFlags(OpenFlags::RDWR)
        }
    );
    let (c, _) = core(|_| Response::Opened { fh: 9 });
    assert_eq!(
        c.open_flags(libc::O_WRONLY | libc::O_APPEND),
        libc::O_WRONLY | libc::O_APPEND
    );
}

#[test]
fn readdirplus_fetches_a_whole_directory_and_forgets_what_the_kernel_did_not_take() {
    let mut o = opts();
    o.per_caller = false;
    let (c, seen) = core_with(
        |r| match r {
            Request::ReadDir { offset: 0, .. } => {
                let e = |name: &'static [u8], off: u64, node: Option<u64>| DirEntry {
                    name: name.into(),
                    offset: off,
                    kind: libc::S_IFREG,
                    ino: 3,
                    entry: node.map(|n| entry(n, true)),
                };
                Response::Dir(vec![
                    e(b".", 1, None),
                    e(b"..", 2, None),
                    e(b"a", 3, Some(10)),
                    e(b"b", 4, Some(11)),
                    e(b"c", 5, Some(12)),
                ])
            }
            Request::ReadDir { .. } => Response::Dir(vec![]),
            _ => Response::Ok,
        },
        o,
    );
    let names = Arc::new(Mutex::new(Vec::new()));
    let chunk = |offset: u64, take: usize| {
        let n = names.clone();
        c.readdirplus(
            &Who::Mount,
            NodeId(1),
            Fh(7),
            offset,
            4096,
            Box::new(move |r| {
                let items = r.unwrap();
                n.lock().unwrap().extend(
                    items
                        .iter()
                        .take(take)
                        .map(|i| (i.name.to_vec(), i.attr.ino)),
                );
                take
            }),
        );
    };
    chunk(0, 3); // the kernel's page held ".", ".." and "a"
    assert!(matches!(
        seen.lock().unwrap()[0],
        Request::ReadDir { offset: 0, size, plus: true, .. } if size > 4096
    ));
    chunk(3, 1); // "b", from what was fetched
    assert_eq!(seen.lock().unwrap().len(), 1, "one round trip so far");
    assert_eq!(names.lock().unwrap().len(), 4);
    assert_eq!(names.lock().unwrap()[2], (b"a".to_vec(), 10));
    assert_eq!(names.lock().unwrap()[3], (b"b".to_vec(), 11));
    // Another offset: the rest ("c") is forgotten, the satellite asked.
    chunk(99, 0);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[1],
            Request::Forget {
                nodes: vec![(12, 1)]
            }
        );
        assert!(matches!(seen[2], Request::ReadDir { offset: 99, .. }));
    }
    // Fetched again from the start and released with entries left over.
    chunk(0, 3);
    let (cb, _) = capture();
    c.releasedir(Fh(7), cb);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[4],
            Request::Forget {
                nodes: vec![(11, 1), (12, 1)]
            }
        );
        assert_eq!(seen[5], Request::ReleaseDir { fh: 7 });
    }
    // The xattr news of the entries the kernel took was kept: no round
    // trip for `ls -l`; that of the ones it left went with them.
    drop(seen);
    let xattr = |node: u64| {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        c.getxattr(
            &Who::Mount,
            NodeId(node),
            b"system.posix_acl_access",
            0,
            Box::new(move |r| *g.lock().unwrap() = Some(r.map_err(|f| f.errno).map(|_| ()))),
        );
        let r = got.lock().unwrap().take();
        r
    };
    assert_eq!(xattr(10), Some(Err(Errno::ENODATA)));
    assert_ne!(xattr(12), Some(Err(Errno::ENODATA)), "asked the satellite");
}

/// A transport whose satellite "opened" a file read-only as descriptor 7.
struct HandsOut {
    file: std::path::PathBuf,
}

impl Transport for HandsOut {
    fn call(&self, req: &Request<'_>, done: Done) {
        done(Ok(match req {
            Request::Open { .. } => Response::OpenedFd { fh: 3, fd: 7 },
            Request::OpenSmall { .. } => Response::OpenedSmall {
                fh: 3,
                fd: Some(7),
                data: None,
            },
            _ => Response::Error(libc::ENOSYS),
        }))
    }
    fn post(&self, _req: &Request<'_>) {}
    fn take_fd(&self, fd: u32) -> Option<std::os::fd::OwnedFd> {
        assert_eq!(fd, 7);
        Some(std::fs::File::open(&self.file).ok()?.into())
    }
}

/// The kernel's side of an open with passthrough: registers every
/// backing file, records (handle, served from a backing file).
struct Registers(Slot<(u64, bool)>);

impl OpenReply<(), Opened> for Registers {
    fn register(&self, _fd: &std::os::fd::OwnedFd) -> std::io::Result<()> {
        Ok(())
    }
    fn answer(self, r: Result<Opened, Failure>) {
        *self.0.lock().unwrap() = Some(
            r.map_err(|f| f.errno)
                .map(|o| (o.fh.0, o.passthrough.is_some())),
        );
    }
}

#[test]
fn a_handed_descriptor_backs_only_an_open_of_its_access_mode() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"data").unwrap();
    let c = Core::new(HandsOut { file }, opts());
    c.enable_passthrough();
    let open = |node, flags| {
        let got: Slot<(u64, bool)> = Arc::default();
        c.open(&Who::Mount, NodeId(node), flags, Registers(got.clone()));
        let r = got.lock().unwrap().take();
        r
    };
    for (node, flags, backed) in [
        (1, libc::O_RDONLY, true),
        (2, libc::O_RDWR, false),
        (3, libc::O_WRONLY, false),
    ] {
        assert_eq!(open(node, flags), Some(Ok((3, backed))), "flags {flags:#o}");
    }
    // A node the kernel serves from a backing file cannot also be opened
    // without one: refused, the handle closed.
    assert_eq!(open(1, libc::O_RDWR), Some(Err(Errno::EIO)));
    // Without passthrough the descriptor is not used.
    let c = Core::new(
        HandsOut {
            file: dir.path().join("f"),
        },
        opts(),
    );
    let got: Slot<(u64, bool)> = Arc::default();
    c.open(
        &Who::Mount,
        NodeId(1),
        libc::O_RDONLY,
        Registers(got.clone()),
    );
    assert_eq!(got.lock().unwrap().take(), Some(Ok((3, false))));
    // Without a way to take descriptors the number is ignored.
    let (c, _) = core(|_| Response::OpenedFd { fh: 4, fd: 7 });
    c.enable_passthrough();
    let got: Slot<(u64, bool)> = Arc::default();
    c.open(
        &Who::Mount,
        NodeId(1),
        libc::O_RDONLY,
        Registers(got.clone()),
    );
    assert_eq!(got.lock().unwrap().take(), Some(Ok((4, false))));
}

#[test]
fn with_the_feed_replies_carry_long_ttls_and_only_held_nodes_are_invalidated() {
    use super::coherence::LONG_TTL;
    use dockerfuse_proto::Change;
    let (c, _) = core(|r| match r {
        Request::Lookup { .. } => Response::Entry(Entry {
            node: 5,
            attr: Attr {
                mode: libc::S_IFREG | 0o644,
                ..Default::default()
            },
            no_xattrs: true,
        }),
        _ => Response::Ok,
    });
    let (cb, got) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"f", cb);
    match got.lock().unwrap().take() {
        Some(Ok(Lookup::Found(_, t))) => assert_eq!(t.attr, Duration::from_secs(1)),
        _ => panic!("expected an entry"),
    }
    c.coherence().feed_on();
    let (cb, got) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"f", cb);
    match got.lock().unwrap().take() {
        Some(Ok(Lookup::Found(e, t))) => {
            assert_eq!(e.node, 5);
            assert_eq!((t.attr, t.entry), (LONG_TTL, LONG_TTL));
        }
        _ => panic!("expected an entry"),
    }
    let coh = c.coherence();
    // Its name and its data.
    assert_eq!(coh.apply(&[Change::Data { node: 5 }]).len(), 2);
    // The kernel forgets both lookups: the node's changes are dropped.
    c.forget(vec![(NodeId(5), 2)]);
    assert!(coh.apply(&[Change::Data { node: 5 }]).is_empty());
}

#[test]
fn a_watched_directory_is_opened_in_the_container_only_when_read() {
    let mut o = opts();
    o.per_caller = false;
    let (c, seen) = core_with(
        |r| match r {
            Request::OpenDir { .. } => Response::Opened { fh: 77 },
            Request::ReadDir { .. } => Response::Dir(vec![]),
            _ => Response::Ok,
        },
        o,
    );
    // Without the feed: opened in the container at once.
    let (cb, got) = capture();
    c.opendir(&Who::Mount, NodeId(1), cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok((Fh(77), false))));
    assert_eq!(seen.lock().unwrap().len(), 1);
    seen.lock().unwrap().clear();

    c.coherence().feed_on();
    let (cb, got) = capture();
    c.opendir(&Who::Mount, NodeId(1), cb);
    let fh = match got.lock().unwrap().take() {
        Some(Ok((Fh(fh), true))) => fh,
        other => panic!(
            "expected a cached host handle, got {:?}",
            other.map(|r| r.err())
        ),
    };
    assert_ne!(fh, 77);
    assert!(seen.lock().unwrap().is_empty(), "nothing sent for the open");
    // Released unread: nothing sent either.
    let (cb, _) = capture();
    c.releasedir(Fh(fh), cb);
    assert!(seen.lock().unwrap().is_empty());

    // Read: opened first, then read on the satellite's handle, closed at
    // release.
    let (cb, got) = capture();
    c.opendir(&Who::Mount, NodeId(1), cb);
    let fh = match got.lock().unwrap().take() {
        Some(Ok((Fh(fh), true))) => fh,
        _ => panic!("expected a host handle"),
    };
    let n = Arc::new(Mutex::new(None));
    let n2 = n.clone();
    c.readdir(
        &Who::Mount,
        Fh(fh),
        0,
        4096,
        Box::new(move |r| *n2.lock().unwrap() = Some(r.map_err(|f| f.errno).map(|v| v.len()))),
    );
    assert_eq!(n.lock().unwrap().take(), Some(Ok(0)));
    let (cb, _) = capture();
    c.releasedir(Fh(fh), cb);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], Request::OpenDir { node: 1 });
    assert!(matches!(seen[1], Request::ReadDir { fh: 77, .. }));
    assert_eq!(seen[2], Request::ReleaseDir { fh: 77 });
}

#[test]
fn absent_names_of_a_completely_listed_watched_directory_are_answered_here() {
    use dockerfuse_proto::Change;
    use std::sync::atomic::Ordering::Relaxed;
    let mut o = opts();
    o.per_caller = false;
    let (c, seen) = core_with(
        |r| match r {
            Request::ReadDir { offset: 0, .. } => Response::Dir(vec![DirEntry {
                name: b"a".as_slice().into(),
                offset: 1,
                kind: libc::S_IFREG,
                ino: 3,
                entry: Some(entry(10, true)),
            }]),
            Request::ReadDir { .. } => Response::Dir(vec![]),
            Request::Lookup { .. } => Response::Error(libc::ENOENT),
            Request::Mkdir { .. } => Response::Entry(entry(11, true)),
            _ => Response::Ok,
        },
        o,
    );
    let list = |c: &Core<Canned>| {
        for offset in [0, 1] {
            c.readdirplus(
                &Who::Mount,
                NodeId(1),
                Fh(7),
                offset,
                4096,
                Box::new(|r| r.unwrap().len()),
            );
        }
    };
    let lookup = |c: &Core<Canned>, name: &[u8]| {
        let before = seen.lock().unwrap().len();
        let (cb, got) = capture();
        c.lookup(&Who::Mount, NodeId(1), name, cb);
        let asked = seen.lock().unwrap().len() > before;
        let absent = matches!(got.lock().unwrap().take(), Some(Ok(Lookup::Absent(_))));
        (asked, absent)
    };
    // Without the feed nothing is kept.
    list(&c);
    assert_eq!(lookup(&c, b"x"), (true, true), "asked");
    c.coherence().feed_on();
    assert_eq!(lookup(&c, b"x"), (true, true));
    list(&c);
    assert_eq!(lookup(&c, b"x"), (false, true), "answered here");
    assert_eq!(c.coherence().counts.absent_here.load(Relaxed), 1);
    assert!(lookup(&c, b"a").0, "a listed name is asked for");
    // The mount's own creation: asked from now on.
    let (cb, _) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"x", 0o755, cb);
    assert!(lookup(&c, b"x").0);
    // A change from the container: asked; the answer settles it.
    c.coherence().apply(&[Change::Entry {
        dir: 1,
        name: b"y".to_vec().into(),
    }]);
    assert_eq!(lookup(&c, b"y"), (true, true));
    assert_eq!(lookup(&c, b"y"), (false, true));
    // A lost event drops the listing.
    c.coherence().lost();
    assert!(lookup(&c, b"z").0);
    // Per caller, nothing is answered here.
    let (pc, _) = core(|r| match r {
        Request::ReadDir { .. } => Response::Dir(vec![]),
        _ => Response::Error(libc::ENOENT),
    });
    pc.coherence().feed_on();
    pc.readdirplus(
        &Who::Mount,
        NodeId(1),
        Fh(7),
        0,
        4096,
        Box::new(|r| r.unwrap().len()),
    );
    let (cb, _) = capture();
    pc.lookup(&Who::Mount, NodeId(1), b"x", cb);
    assert_eq!(pc.coherence().counts.absent_here.load(Relaxed), 0);
}

#[test]
fn a_write_without_cap_fsetid_clears_setuid_and_group_executable_setgid() {
    assert_eq!(suidgid_cleared(libc::S_IFREG | 0o4755), Some(0o755));
    assert_eq!(suidgid_cleared(libc::S_IFREG | 0o6755), Some(0o755));
    // setgid without group execute is mandatory locking: kept.
    assert_eq!(suidgid_cleared(libc::S_IFREG | 0o2644), None);
    assert_eq!(suidgid_cleared(libc::S_IFREG | 0o6744), Some(0o2744));
    assert_eq!(suidgid_cleared(libc::S_IFREG | 0o755), None);
}

#[test]
fn side_effects_the_kernel_cannot_see_expire_the_nodes_attributes_before_the_reply() {
    let (c, _) = core(setuid_file);
    let expired = Arc::new(Mutex::new(Vec::new()));
    let e = expired.clone();
    c.coherence()
        .set_expire_attrs(Box::new(move |node| e.lock().unwrap().push(node)));
    // Each callback sees the expiry already done.
    fn at_reply<T: 'static>(expired: &Arc<Mutex<Vec<u64>>>) -> Cb<T> {
        let e = expired.clone();
        Box::new(move |_| {
            let n = e.lock().unwrap().len();
            e.lock().unwrap().push(1000 + n as u64);
        })
    }
    let me = caller(1000, &[]);
    // A plain write clears nothing.
    c.write(&me, NodeId(3), Fh(9), 0, b"z", false, Box::new(|_| {}));
    assert!(expired.lock().unwrap().is_empty());
    // A write that clears setuid (either way), a fallocate and a copy
    // into a file; not an O_TRUNC open (the kernel expires everything
    // after one itself).
    c.write(&me, NodeId(3), Fh(9), 0, b"z", true, at_reply(&expired));
    c.open(
        &me,
        NodeId(4),
        libc::O_WRONLY | libc::O_TRUNC,
        at_reply::<Opened>(&expired),
    );
    let plain: Cb<Opened> = Box::new(|_| {});
    c.open(&me, NodeId(5), libc::O_WRONLY, plain);
    c.fallocate(&me, NodeId(6), Fh(9), 0, 10, 0, at_reply(&expired));
    c.copy_file_range(
        &me,
        (Fh(8), 0),
        (NodeId(7), Fh(9), 0),
        1,
        0,
        at_reply(&expired),
    );
    let mut o = opts();
    o.per_caller = false;
    let (own, _) = core_with(setuid_file, o);
    let e = expired.clone();
    own.coherence()
        .set_expire_attrs(Box::new(move |node| e.lock().unwrap().push(node)));
    own.write(&me, NodeId(2), Fh(9), 0, b"z", true, at_reply(&expired));
    assert_eq!(
        *expired.lock().unwrap(),
        [3, 1001, 1002, 6, 1004, 7, 1006, 2, 1008]
    );
}

/// Log lines written while `f` runs, at debug level.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    tracing::subscriber::with_default(sub, f);
    let out = buf.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_failure_is_logged_once_in_its_requests_span_with_its_cause() {
    let out = logged(|| {
        let span = |op: &'static str| tracing::debug_span!("request", id = 1, op, node = 1);
        let log: Cb<()> = Box::new(|r| {
            if let Err(e) = r {
                failure::log(e)
            }
        });
        let (c, _) = core(|_| Response::Error(libc::ENOTEMPTY));
        span("rmdir").in_scope(|| c.rmdir(&Who::Mount, NodeId(1), b"d", log));
        let log: Cb<u32> = Box::new(|r| {
            if let Err(e) = r {
                failure::log(e)
            }
        });
        let (c, _) = core(|_| Response::Ok);
        span("write").in_scope(|| c.write(&Who::Mount, NodeId(1), Fh(2), 0, b"x", false, log));
    });
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("op=\"rmdir\"") && lines[0].contains("cause=\"satellite\""));
    assert!(lines[0].contains("errno 39"), "{}", lines[0]);
    assert!(lines[1].contains("op=\"write\"") && lines[1].contains("cause=\"bad reply\""));
}

/// Answers on a thread of its own, as the RPC reader does: with a canned
/// response, or as a closed connection (`None`: the transport's EIO). The
/// thread logs through the test's subscriber, as the reader logs through
/// the process's.
struct Threaded(Option<Response<'static>>);

impl Transport for Threaded {
    fn call(&self, _req: &Request<'_>, done: Done) {
        let r = self.0.clone().ok_or(Errno::EIO);
        let d = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::spawn(move || tracing::dispatcher::with_default(&d, || done(r)))
            .join()
            .unwrap();
    }
    fn post(&self, _req: &Request<'_>) {}
}

/// A satellite's errno, a reply of the wrong kind and a closed
/// connection reach the adapter's callback on the reader's thread as
/// three distinct causes, and its one log line names the request's
/// operation and node, the errno and the cause.
#[test]
fn failures_reach_the_adapter_from_the_reader_thread_with_their_causes() {
    let cases = [
        (
            Some(Response::Error(libc::ENOTEMPTY)),
            Errno(libc::ENOTEMPTY),
            Cause::Satellite,
        ),
        (Some(Response::Offset(0)), Errno::EIO, Cause::BadReply),
        (None, Errno::EIO, Cause::Transport),
    ];
    let here = std::thread::current().id();
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = logged(|| {
        for (i, (answer, _, _)) in cases.iter().enumerate() {
            let c: Core<Threaded> = Core::new(Threaded(answer.clone()), opts());
            let g = got.clone();
            let cb: Cb<()> = Box::new(move |r| {
                let f = r.expect_err("fails");
                let _ = crate::kernel::fuse::errno(f);
                g.lock().unwrap().push((f, std::thread::current().id()));
            });
            let span = tracing::debug_span!("request", id = i, op = "rmdir", node = 40 + i);
            span.in_scope(|| c.rmdir(&Who::Mount, NodeId(40 + i as u64), b"d", cb));
        }
    });
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 3);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (i, (_, errno, cause)) in cases.iter().enumerate() {
        let (f, thread) = got[i];
        assert_eq!((f.errno, f.cause), (*errno, *cause));
        assert_ne!(thread, here, "answered on the reader's thread");
        let l = lines[i];
        assert!(
            l.contains("op=\"rmdir\"") && l.contains(&format!("node={}", 40 + i)),
            "{l}"
        );
        assert!(l.contains(&format!("errno {}", errno.0)), "{l}");
        assert!(l.contains(&format!("cause=\"{}\"", cause.as_str())), "{l}");
    }
}

/// Open flags travel in the protocol's numbering, whatever this kernel's
/// are (x86's O_DIRECT is arm's O_DIRECTORY); a satellite before protocol
/// 6 gets them in its own kernel's numbers. O_DIRECT never travels (the
/// core strips it: see `Core::open_flags`).
#[test]
fn open_flags_travel_in_the_protocols_numbering() {
    let flags = libc::O_RDONLY | libc::O_DIRECT | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let wire = OpenFlags(OpenFlags::DIRECTORY | OpenFlags::NOFOLLOW);
    let sent = |legacy| {
        let o = Options {
            open_small: false,
            legacy_flags: legacy,
            ..opts()
        };
        let (c, seen) = core_with(|_| Response::Opened { fh: 9 }, o);
        let me = caller(1000, &[]);
        let opened: Cb<Opened> = Box::new(|_| {});
        c.open(&me, NodeId(5), flags, opened);
        let created: Cb<(Entry, Ttl, Opened)> = Box::new(|_| {});
        c.create(&me, NodeId(1), b"n", 0o644, flags | libc::O_CREAT, created);
        let seen = seen.lock().unwrap();
        let open = match unwrapped(&seen[0]) {
            Request::Open { flags, .. } => *flags,
            other => panic!("expected an open, got {other:?}"),
        };
        let create = match unwrapped(&seen[1]) {
            Request::Create { flags, .. } => *flags,
            other => panic!("expected a create, got {other:?}"),
        };
        (open, create)
    };
    assert_eq!(sent(None), (wire, OpenFlags(wire.0 | OpenFlags::CREAT)));
    // arm's O_DIRECTORY 0o40000 and O_NOFOLLOW 0o100000 for an old arm64
    // satellite; x86's for an old amd64 one.
    let arm = sent(Some(dockerfuse_proto::Abi::Arm)).0;
    assert_eq!(arm, OpenFlags(0o40000 | 0o100000));
    let x86 = sent(Some(dockerfuse_proto::Abi::Generic)).0;
    assert_eq!(x86, OpenFlags(0o200000 | 0o400000));
}

/// A mount with write-behind whose satellite refuses every write with
/// ENOSPC.
fn full_container() -> (Core<Canned>, Seen) {
    let mut o = opts();
    o.per_caller = false;
    o.write_behind = true;
    core_with(
        |r| match r {
            Request::Open { .. } => Response::Opened { fh: 9 },
            Request::OpenSmall { .. } => Response::OpenedSmall {
                fh: 8,
                fd: None,
                data: None,
            },
            Request::Write { .. } => Response::Error(libc::ENOSPC),
            _ => Response::Ok,
        },
        o,
    )
}

#[test]
fn o_direct_stays_on_the_host_and_its_writes_are_not_held() {
    let (c, seen) = full_container();
    let fh = open_fh(&c, 5, libc::O_WRONLY | libc::O_DIRECT);
    assert_eq!(
        seen.lock().unwrap()[0],
        Request::Open {
            node: 5,
            flags: OpenFlags::from_native(libc::O_WRONLY)
        }
    );
    // Written through: the write itself reports the container's answer.
    let (cb, got) = capture();
    c.write(&Who::Mount, NodeId(5), Fh(fh), 0, b"abc", false, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno(libc::ENOSPC))));
    let (cb, got) = capture();
    c.flush(Fh(fh), cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
}

#[test]
fn a_write_behind_failure_is_reported_by_close_once() {
    let (c, _) = full_container();
    let fh = open_fh(&c, 5, libc::O_WRONLY);
    let (cb, got) = capture();
    c.write(&Who::Mount, NodeId(5), Fh(fh), 0, b"abc", false, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(3)));
    // close(2): FLUSH brings the error, once.
    let (cb, got) = capture();
    c.flush(Fh(fh), cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno(libc::ENOSPC))));
    let (cb, got) = capture();
    c.flush(Fh(fh), cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
    // Or fsync, when it comes first.
    let fh = open_fh(&c, 6, libc::O_WRONLY);
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(5), Fh(fh), 0, b"abc", false, cb);
    let (cb, got) = capture();
    c.fsync(&Who::Mount, Fh(fh), false, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno(libc::ENOSPC))));
}

#[test]
fn handles_that_may_write_spare_their_pages_from_invalidations() {
    let (c, _) = full_container();
    let ro = open_fh(&c, 5, libc::O_RDONLY);
    let writers = || c.coherence.writers().dropping_pages(5, || ()).is_some();
    assert!(writers(), "a read-only handle leaves the pages droppable");
    let rw = open_fh(&c, 5, libc::O_RDWR);
    assert!(!writers(), "a handle that may write keeps them");
    let (cb, _) = capture();
    c.release(Fh(rw), cb);
    assert!(writers(), "released, its pages were written back");
    let (cb, _) = capture();
    c.release(Fh(ro), cb);
}

#[test]
fn a_write_only_open_the_caller_may_not_read_gets_the_read_side_as_the_satellite() {
    let mut o = opts();
    o.writeback = true;
    let (c, seen) = core_with(
        |r| match r {
            // As the caller: read-write refused, write-only allowed.
            Request::As { req, .. } => match **req {
                Request::Open { flags, .. }
                    if flags.0 & OpenFlags::ACCMODE == OpenFlags::from_native(libc::O_RDWR).0 =>
                {
                    Response::Error(libc::EACCES)
                }
                Request::Open { .. } => Response::Opened { fh: 7 },
                _ => Response::Ok,
            },
            Request::Open { .. } => Response::Opened { fh: 8 },
            _ => Response::Ok,
        },
        o,
    );
    let me = caller(1000, &[]);
    let fh = {
        let (cb, got) = capture();
        let reply: Cb<Opened> = Box::new(move |r| cb(r.map(|o| o.fh.0)));
        c.open(&me, NodeId(5), libc::O_WRONLY | libc::O_TRUNC, reply);
        let fh = got.lock().unwrap().take();
        fh.expect("answered").expect("opened")
    };
    assert_eq!(fh, 8);
    let sent: Vec<_> = seen.lock().unwrap().clone();
    let open = |flags| Request::Open {
        node: 5,
        flags: OpenFlags::from_native(flags),
    };
    assert_eq!(unwrapped(&sent[0]), &open(libc::O_RDWR | libc::O_TRUNC));
    assert_eq!(unwrapped(&sent[1]), &open(libc::O_WRONLY | libc::O_TRUNC));
    assert!(matches!(sent[1], Request::As { .. }));
    // The satellite's own open neither truncates again nor is the caller's.
    assert_eq!(sent[2], open(libc::O_RDWR));
    assert_eq!(sent[3], Request::Release { fh: 7 });
    // A caller refused the write-only open too gets EACCES.
    let (c, _) = core_with(|_| Response::Error(libc::EACCES), {
        let mut o = opts();
        o.writeback = true;
        o
    });
    let (cb, got) = capture();
    let reply: Cb<Opened> = Box::new(move |r| cb(r.map(|o| o.fh.0)));
    c.open(&me, NodeId(5), libc::O_WRONLY, reply);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno(libc::EACCES))));
}

#[test]
fn getattr_of_a_watched_node_is_answered_from_the_ledger_until_something_changes_it() {
    let size = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let s = size.clone();
    let answer = move |r: &Request<'_>| {
        let attr = Attr {
            mode: libc::S_IFREG | 0o644,
            size: s.load(std::sync::atomic::Ordering::SeqCst),
            // A file with a name (one with none keeps nothing on the host).
            nlink: 1,
            ..Default::default()
        };
        match r {
            Request::Lookup { .. } => Response::Entry(Entry {
                node: 5,
                attr,
                no_xattrs: false,
            }),
            Request::Write { data, .. } => Response::Written(data.len() as u32),
            _ => Response::Attr(attr),
        }
    };
    let getattrs = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, Request::GetAttr { .. }))
            .count()
    };
    let getattr = |c: &Core<Canned>| {
        let (cb, got) = capture();
        c.getattr(&Who::Mount, NodeId(5), None, cb);
        let r = got.lock().unwrap().take();
        r.expect("answered").expect("attributes").0.size
    };
    let (c, seen) = core_with(answer.clone(), opts());
    c.coherence().feed_on();
    let (cb, _) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"f", cb);
    // Kept from the lookup's reply: no round trip.
    assert_eq!((getattr(&c), getattrs(&seen)), (1, 0));
    // The mount's own write changes size and times: asked again, then kept.
    size.store(3, std::sync::atomic::Ordering::SeqCst);
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(5), Fh(9), 0, b"abc", false, cb);
    assert_eq!((getattr(&c), getattrs(&seen)), (3, 1));
    assert_eq!((getattr(&c), getattrs(&seen)), (3, 1));
    // A change in the container drops them; so does a lost event.
    size.store(4, std::sync::atomic::Ordering::SeqCst);
    c.coherence()
        .apply(&[dockerfuse_proto::Change::Attr { node: 5 }]);
    assert_eq!((getattr(&c), getattrs(&seen)), (4, 2));
    c.coherence().lost();
    assert_eq!((getattr(&c), getattrs(&seen)), (4, 3));
    assert_eq!((getattr(&c), getattrs(&seen)), (4, 3));
    // An unlink through the mount of a name the ledger does not know may
    // have been any node's last but one: everything goes.
    let (cb, _) = capture();
    c.unlink(&Who::Mount, NodeId(1), b"other", cb);
    assert_eq!((getattr(&c), getattrs(&seen)), (4, 4));
    // Forgotten by the kernel: nothing kept.
    c.forget(vec![(NodeId(5), 1)]);
    assert!(c.coherence().ledger_view().1.is_empty());

    // A fixed TTL, or the switch off: always asked.
    for o in [
        Options {
            fixed_ttl: true,
            ..opts()
        },
        Options {
            host_attrs: false,
            ..opts()
        },
    ] {
        let (c, seen) = core_with(answer.clone(), o);
        c.coherence().feed_on();
        let (cb, _) = capture();
        c.lookup(&Who::Mount, NodeId(1), b"f", cb);
        getattr(&c);
        getattr(&c);
        assert_eq!(getattrs(&seen), 2);
    }
}

/// Options for lazy opens: the mount's own identity, lazy opens on.
fn lazy_opts() -> Options {
    let mut o = opts();
    o.per_caller = false;
    o.lazy_open = true;
    o
}

/// A satellite whose files are small (`OpenSmall` brings "0123456789")
/// unless `big` (no contents come with the open); opens of node 13 fail
/// with ESTALE (a node the satellite no longer knows).
fn lazy_core(big: bool) -> (Core<Canned>, Seen) {
    core_with(
        move |r| match r {
            Request::OpenSmall { node: 13, .. } | Request::Open { node: 13, .. } => {
                Response::Error(libc::ESTALE)
            }
            Request::OpenSmall { .. } => Response::OpenedSmall {
                fh: 5,
                fd: None,
                data: (!big).then(|| b"0123456789".as_slice().into()),
            },
            Request::Open { .. } => Response::Opened { fh: 6 },
            Request::Read { fh, .. } => Response::Data(format!("read {fh}").into_bytes().into()),
            Request::GetAttr { .. } => Response::Attr(Attr::default()),
            _ => Response::Ok,
        },
        lazy_opts(),
    )
}

fn wait_for(seen: &Seen, what: &Request<'static>) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if seen.lock().unwrap().iter().any(|r| r == what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_read_only_open_of_a_watched_file_is_made_in_the_container_on_its_first_read() {
    let (c, seen) = lazy_core(false);
    // Without the feed: opened in the container at open(2).
    assert_eq!(open_fh(&c, 2, libc::O_RDONLY), 5);
    assert_eq!(seen.lock().unwrap().len(), 1);
    seen.lock().unwrap().clear();

    c.coherence().feed_on();
    // Opened and released without a read (the page cache served it):
    // nothing at all goes to the satellite.
    let fh = open_fh(&c, 2, libc::O_RDONLY | libc::O_NOATIME);
    assert!(Fh(fh).is_host());
    let (cb, got) = capture();
    c.release(Fh(fh), cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
    assert!(seen.lock().unwrap().is_empty());

    // The first read opens it (bringing the small file's contents, which
    // answer this read and the next), with the open's flags.
    let fh = open_fh(&c, 2, libc::O_RDONLY | libc::O_NOATIME);
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(read_bytes(&c, fh, 0, 4096).unwrap(), b"0123456789");
    assert_eq!(read_bytes(&c, fh, 4, 3).unwrap(), b"456");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(matches!(
            seen[0],
            Request::OpenSmall { node: 2, flags, .. } if flags == OpenFlags::from_native(libc::O_RDONLY | libc::O_NOATIME)
        ));
    }
    // fstat on the handle asks on the satellite's handle, not the host's.
    let (cb, _) = capture();
    c.getattr(&Who::Mount, NodeId(2), Some(Fh(fh)), cb);
    assert_eq!(
        seen.lock().unwrap()[1],
        Request::GetAttr {
            node: 2,
            fh: Some(5)
        }
    );
    // The release closes the satellite's handle, in a batch.
    let (cb, _) = capture();
    c.release(Fh(fh), cb);
    assert!(wait_for(&seen, &Request::ReleaseMany { fhs: vec![5] }));
    assert_eq!(c.files.len(), 0);
}

#[test]
fn a_lazily_opened_large_file_reads_on_the_satellites_handle() {
    let (c, seen) = lazy_core(true);
    c.coherence().feed_on();
    let fh = open_fh(&c, 2, libc::O_RDONLY);
    assert!(Fh(fh).is_host());
    assert_eq!(read_bytes(&c, fh, 0, 4096).unwrap(), b"read 5");
    assert_eq!(read_bytes(&c, fh, 4096, 4096).unwrap(), b"read 5");
    let (cb, got) = capture();
    c.lseek(&Who::Mount, Fh(fh), 0, libc::SEEK_DATA, cb);
    assert!(got.lock().unwrap().take().is_some());
    let seen = seen.lock().unwrap();
    let opens = seen
        .iter()
        .filter(|r| matches!(r, Request::OpenSmall { .. } | Request::Open { .. }))
        .count();
    assert_eq!(opens, 1, "opened once: {seen:?}");
    assert!(matches!(
        seen[1],
        Request::Read {
            fh: 5,
            offset: 0,
            ..
        }
    ));
    assert!(matches!(seen[3], Request::Lseek { fh: 5, .. }));
}

#[test]
fn a_lazy_open_the_container_refuses_fails_the_read_and_is_tried_again() {
    let (c, seen) = lazy_core(false);
    c.coherence().feed_on();
    let fh = open_fh(&c, 13, libc::O_RDONLY);
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    c.read(
        &Who::Mount,
        Fh(fh),
        0,
        10,
        Box::new(move |r| *g.lock().unwrap() = Some(r.map_err(|f| f.errno).map(<[u8]>::to_vec))),
    );
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::ESTALE)));
    assert_eq!(read_bytes(&c, fh, 0, 10), None);
    assert_eq!(seen.lock().unwrap().len(), 2, "each read tries the open");
    let (cb, _) = capture();
    c.release(Fh(fh), cb);
    assert_eq!(seen.lock().unwrap().len(), 2, "nothing to close");
    // A handle the core never gave.
    assert_eq!(read_bytes(&c, Fh::host(999).0, 0, 10), None);
}

#[test]
fn opens_that_write_bypass_the_cache_or_are_not_watched_are_made_at_once() {
    let (c, seen) = lazy_core(false);
    c.coherence().feed_on();
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_RDONLY | libc::O_DIRECT,
    ] {
        let fh = open_fh(&c, 2, flags);
        assert!(!Fh(fh).is_host(), "flags {flags:#o}");
    }
    assert_eq!(seen.lock().unwrap().len(), 4);
    // A node the feed does not watch.
    c.coherence()
        .apply(&[dockerfuse_proto::Change::Unwatched { node: 3 }]);
    assert!(!Fh(open_fh(&c, 3, libc::O_RDONLY)).is_host());
    // Turned off, or performed per caller: at once too.
    for o in [
        Options {
            lazy_open: false,
            ..lazy_opts()
        },
        Options {
            per_caller: true,
            ..lazy_opts()
        },
        Options {
            fixed_ttl: true,
            ..lazy_opts()
        },
    ] {
        let (c, _) = core_with(|_| Response::Opened { fh: 6 }, o);
        c.coherence().feed_on();
        assert_eq!(open_fh(&c, 2, libc::O_RDONLY), 6);
    }
}

#[test]
fn a_readdirplus_reply_that_reaches_the_end_spares_the_next_round_trip() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut o = opts();
    o.per_caller = false;
    let (c, seen) = core_with(
        |r| match r {
            Request::ReadDir { offset: 0, .. } => Response::DirEnd(vec![DirEntry {
                name: b"a".as_slice().into(),
                offset: 1,
                kind: libc::S_IFREG,
                ino: 3,
                entry: Some(entry(10, true)),
            }]),
            Request::ReadDir { .. } => Response::Error(libc::EIO),
            Request::Lookup { .. } => Response::Error(libc::ENOENT),
            _ => Response::Ok,
        },
        o,
    );
    c.coherence().feed_on();
    let plus = |offset| {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        c.readdirplus(
            &Who::Mount,
            NodeId(1),
            Fh(7),
            offset,
            4096,
            Box::new(move |r| {
                let n = r.as_ref().map(|v| v.len()).map_err(|f| f.errno);
                *g.lock().unwrap() = Some(n);
                n.unwrap_or(0)
            }),
        );
        let n = got.lock().unwrap().take();
        n
    };
    assert_eq!(plus(0), Some(Ok(1)));
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The end, answered here (the satellite would fail it here).
    assert_eq!(plus(1), Some(Ok(0)));
    assert_eq!(plus(1), Some(Ok(0)));
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The listing is complete: an absent name is answered here.
    let (cb, got) = capture();
    c.lookup(&Who::Mount, NodeId(1), b"x", cb);
    assert!(matches!(
        got.lock().unwrap().take(),
        Some(Ok(Lookup::Absent(_)))
    ));
    assert_eq!(c.coherence().counts.absent_here.load(Relaxed), 1);
    // After a change, the chunk goes to the satellite again.
    c.coherence().lost();
    assert_eq!(plus(1), Some(Err(Errno::EIO)));
    // Released: nothing kept.
    let (cb, _) = capture();
    c.releasedir(Fh(7), cb);
    assert_eq!(plus(1), Some(Err(Errno::EIO)));
}

#[test]
fn a_host_directory_handle_is_opened_with_its_first_read() {
    let mut o = opts();
    o.per_caller = false;
    o.open_read_dir = true;
    let (c, seen) = core_with(
        |r| match r {
            Request::OpenReadDir { .. } => Response::DirOpened {
                fh: 77,
                entries: vec![DirEntry {
                    name: b"a".as_slice().into(),
                    offset: 1,
                    kind: libc::S_IFREG,
                    ino: 3,
                    entry: Some(entry(10, true)),
                }],
                end: false,
            },
            Request::ReadDir { .. } => Response::DirEnd(vec![]),
            _ => Response::Ok,
        },
        o,
    );
    c.coherence().feed_on();
    let (cb, got) = capture();
    c.opendir(&Who::Mount, NodeId(1), cb);
    let Some(Ok((Fh(fh), true))) = got.lock().unwrap().take() else {
        panic!("expected a cached host handle")
    };
    let plus = |offset| {
        let n = Arc::new(Mutex::new(None));
        let n2 = n.clone();
        c.readdirplus(
            &Who::Mount,
            NodeId(1),
            Fh(fh),
            offset,
            4096,
            Box::new(move |r| {
                let k = r.map(|v| v.len()).unwrap_or(99);
                *n2.lock().unwrap() = Some(k);
                k
            }),
        );
        let k = n.lock().unwrap().take();
        k
    };
    assert_eq!(plus(0), Some(1));
    assert_eq!(plus(1), Some(0));
    let (cb, _) = capture();
    c.releasedir(Fh(fh), cb);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0],
        Request::OpenReadDir {
            node: 1,
            size: prefetch::PREFETCH,
            plus: true
        }
    );
    assert!(matches!(
        seen[1],
        Request::ReadDir {
            fh: 77,
            offset: 1,
            ..
        }
    ));
    assert_eq!(seen[2], Request::ReleaseDir { fh: 77 });
    assert_eq!(seen.len(), 3);
}

/// Records requests with their completions, answered by the test.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<Vec<Sent>>>);

/// A request and, unless posted, its completion.
type Sent = (Request<'static>, Option<Done>);

impl Transport for Held {
    fn call(&self, req: &Request<'_>, done: Done) {
        self.0
            .lock()
            .unwrap()
            .push((req.clone().into_owned(), Some(done)));
    }
    fn post(&self, req: &Request<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((req.clone().into_owned(), None));
    }
}

impl Held {
    /// The requests sent so far and not answered.
    fn kinds(&self) -> Vec<u32> {
        let g = self.0.lock().unwrap();
        g.iter()
            .filter(|(_, d)| d.is_some())
            .map(|(r, _)| r.tag())
            .collect()
    }

    /// Answers the oldest request still open of kind `like` with `r`.
    fn answer(&self, like: &Request<'_>, r: Result<Response<'static>, Errno>) -> Request<'static> {
        let mut g = self.0.lock().unwrap();
        let i = g
            .iter()
            .position(|(q, d)| d.is_some() && q.tag() == like.tag())
            .expect("such a request was sent");
        let (q, done) = g.remove(i);
        drop(g);
        (done.expect("called"))(r);
        q
    }
}

/// fsync(2) of directory `node` through its handle `fh`, which the
/// container answers with success: what the program is told lands in
/// the returned slot.
fn fsyncdir_held(c: &Core<Held>, held: &Held, node: u64, fh: u64) -> Slot<()> {
    let (cb, synced) = capture();
    c.fsyncdir(&Who::Mount, NodeId(node), Fh(fh), false, cb);
    held.answer(
        &Request::FsyncDir {
            fh,
            datasync: false,
        },
        Ok(Response::Ok),
    );
    synced
}

fn pipelined() -> (Core<Held>, Held) {
    let held = Held::default();
    (pipelined_over(held.clone()), held)
}

/// A core over `t` that sends creates of names known absent behind.
fn pipelined_over<T: Transport, B: Send + Sync + 'static>(t: T) -> Core<T, B> {
    pipelined_with(t, false)
}

/// [`pipelined_over`], with `--close-behind` or not.
fn pipelined_with<T: Transport, B: Send + Sync + 'static>(t: T, close_behind: bool) -> Core<T, B> {
    let c = Core::new(
        t,
        Options {
            per_caller: false,
            write_behind: true,
            pipeline: true,
            close_behind,
            ..opts()
        },
    );
    c.coherence().feed_on();
    // The root was listed completely (empty), its attributes are kept.
    c.coherence().listings().made_empty(1);
    let root = Attr {
        ino: 1,
        mode: libc::S_IFDIR | 0o755,
        nlink: 2,
        ..Default::default()
    };
    let stamp = c.coherence().attr_stamp();
    c.coherence().keep_attr(1, root, Source::Attr, stamp);
    assert!(c.coherence().kept_attr(1).is_some());
    c
}

/// [`Held`], on a channel whose satellite hands out descriptor 7 (a
/// read-only file) with its opens.
#[derive(Clone)]
struct HeldFds(Held, std::path::PathBuf);

impl Transport for HeldFds {
    fn call(&self, req: &Request<'_>, done: Done) {
        self.0.call(req, done)
    }
    fn post(&self, req: &Request<'_>) {
        self.0.post(req)
    }
    fn take_fd(&self, fd: u32) -> Option<std::os::fd::OwnedFd> {
        assert_eq!(fd, 7);
        Some(std::fs::File::open(&self.1).ok()?.into())
    }
}

/// The kernel's side of a create with passthrough: registers every
/// backing file, records (handle, served from a backing file).
struct CreateRegisters(Slot<(u64, bool)>);

impl OpenReply<(), (Entry, Ttl, Opened)> for CreateRegisters {
    fn register(&self, _fd: &std::os::fd::OwnedFd) -> std::io::Result<()> {
        Ok(())
    }
    fn answer(self, r: Result<(Entry, Ttl, Opened), Failure>) {
        let r = r.map_err(|f| f.errno);
        *self.0.lock().unwrap() = Some(r.map(|(_, _, o)| (o.fh.0, o.passthrough.is_some())));
    }
}

#[test]
fn with_passthrough_creates_wait_for_a_while_after_a_file_created_behind_grew_large() {
    let dir = tempfile::tempdir().unwrap();
    let held = Held::default();
    let c: Core<HeldFds> = pipelined_over(HeldFds(held.clone(), dir.path().join("f")));
    let create = |name: &[u8]| {
        let got: Slot<(u64, bool)> = Arc::default();
        c.create(
            &Who::Mount,
            NodeId(1),
            name,
            0o644,
            libc::O_WRONLY,
            CreateRegisters(got.clone()),
        );
        got
    };
    // Without passthrough a large file changes nothing.
    let (fh, _) = create(b"a").lock().unwrap().take().unwrap().unwrap();
    let (cb, _) = capture();
    c.write(
        &Who::Mount,
        NodeId(2),
        Fh(fh),
        LARGE_CREATED,
        b"x",
        false,
        cb,
    );
    assert!(!c.creates_large());
    c.enable_passthrough();
    let (fh, _) = create(b"b").lock().unwrap().take().unwrap().unwrap();
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(3), Fh(fh), 0, b"small", false, cb);
    assert!(!c.creates_large());
    let (cb, _) = capture();
    c.write(
        &Who::Mount,
        NodeId(3),
        Fh(fh),
        LARGE_CREATED,
        b"x",
        false,
        cb,
    );
    assert!(c.creates_large());
    // The next create waits for the container (and its descriptor): a
    // plain Create, sent after the writes before it.
    let waiting = create(b"c");
    assert!(waiting.lock().unwrap().is_none());
    let named_c = |create_new: bool| {
        held.0.lock().unwrap().iter().any(|(r, _)| match r {
            Request::CreateNew { name, .. } => create_new && &name[..] == b"c",
            Request::Create { name, .. } => !create_new && &name[..] == b"c",
            _ => false,
        })
    };
    assert!(!named_c(true));
    // (the creates before it refused: their writes are dropped)
    for _ in 0..2 {
        held.answer(&create_new(), Err(Errno(libc::EROFS)));
    }
    assert!(named_c(false));
}

#[test]
fn with_passthrough_a_create_goes_behind_unbacked_and_later_opens_are_backed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"data").unwrap();
    let held = Held::default();
    let c: Core<HeldFds> = pipelined_over(HeldFds(held.clone(), file));
    c.enable_passthrough();
    let got: Slot<(u64, bool)> = Arc::default();
    c.create(
        &Who::Mount,
        NodeId(1),
        b"f",
        0o644,
        libc::O_WRONLY,
        CreateRegisters(got.clone()),
    );
    // Answered before the container made it, without a backing file.
    let (fh, backed) = got.lock().unwrap().take().unwrap().unwrap();
    assert!(!backed);
    assert_eq!(held.kinds(), vec![create_new().tag()]);
    let node = match &held.0.lock().unwrap()[0].0 {
        Request::CreateNew { node, .. } => *node,
        other => panic!("{other:?}"),
    };
    let (cb, wrote) = capture();
    c.write(&Who::Mount, NodeId(node), Fh(fh), 0, b"data", false, cb);
    assert_eq!(wrote.lock().unwrap().take(), Some(Ok(4)));
    let open = |flags| {
        let got: Slot<(u64, bool)> = Arc::default();
        c.open(&Who::Mount, NodeId(node), flags, Registers(got.clone()));
        got
    };
    // Another open while the created handle is open: after the create
    // and its writes, and through the page cache like it.
    let second = open(libc::O_RDONLY);
    assert_eq!(held.kinds(), vec![create_new().tag()]);
    let entry = Entry {
        node,
        attr: Attr {
            ino: 9,
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            ..Default::default()
        },
        no_xattrs: true,
    };
    held.answer(&create_new(), Ok(Response::Created { entry, fh }));
    held.answer(&write_req(), Ok(Response::Written(4)));
    // (a read-only open asks for a small file's contents)
    let opened = Response::OpenedSmall {
        fh: 3,
        fd: Some(7),
        data: None,
    };
    let open_req = Request::OpenSmall {
        node: 0,
        flags: Default::default(),
        max: 0,
    };
    held.answer(&open_req, Ok(opened.clone()));
    assert_eq!(second.lock().unwrap().take(), Some(Ok((3, false))));
    for h in [fh, 3] {
        let (cb, _) = capture();
        c.release(Fh(h), cb);
    }
    // Released: the file is served from its backing file again.
    let third = open(libc::O_RDONLY);
    held.answer(&open_req, Ok(opened));
    assert_eq!(third.lock().unwrap().take(), Some(Ok((3, true))));
}

#[test]
fn creates_of_names_known_absent_are_answered_at_once_and_sent_in_order() {
    let (c, held) = pipelined();
    let (cb, got) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"d", 0o755, cb);
    let (d, _) = got.lock().unwrap().take().unwrap().unwrap();
    assert_ne!(d.node & dockerfuse_proto::HOST_NODE_BIT, 0);
    let mkdir = Request::MkdirNew {
        parent: 1,
        name: b"d".to_vec().into(),
        mode: 0o755,
        node: d.node,
        time: (d.attr.mtime, d.attr.mtime_nsec),
    };
    assert_eq!(held.kinds(), vec![mkdir.tag()]);
    // Inside the new directory: known absent, answered at once, sent
    // only once the directory is made.
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(d.node), b"f", 0o644, libc::O_WRONLY, cb);
    let (f, _, opened) = got.lock().unwrap().take().unwrap().unwrap();
    assert_eq!(f.attr.mode, libc::S_IFREG | 0o644);
    assert_eq!(f.attr.size, 0);
    let (cb, wrote) = capture();
    c.write(&Who::Mount, NodeId(f.node), opened.fh, 0, b"hi", false, cb);
    assert_eq!(wrote.lock().unwrap().take(), Some(Ok(2)));
    let (cb, flushed) = capture();
    c.flush(opened.fh, cb);
    assert_eq!(held.kinds(), vec![mkdir.tag()]);
    assert!(
        flushed.lock().unwrap().is_none(),
        "close waits for the create"
    );
    let mut made = d;
    made.attr.ino = 99;
    held.answer(&mkdir, Ok(Response::Entry(made)));
    let create = held.answer(
        &Request::CreateNew {
            parent: 0,
            name: b"".to_vec().into(),
            mode: 0,
            flags: Default::default(),
            node: 0,
            fh: 0,
            time: (0, 0),
        },
        Ok(Response::Created {
            entry: f,
            fh: opened.fh.0,
        }),
    );
    assert!(matches!(create, Request::CreateNew { parent, node, fh, .. }
            if parent == d.node && node == f.node && fh == opened.fh.0));
    // Then the write, then close returns.
    let write = Request::Write {
        fh: opened.fh.0,
        offset: 0,
        data: b"hi".to_vec().into(),
    };
    assert_eq!(held.kinds(), vec![write.tag()]);
    held.answer(&write, Ok(Response::Written(2)));
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
}

#[test]
fn a_create_the_container_refuses_is_reported_at_close_and_by_the_directorys_fsync() {
    let (c, held) = pipelined();
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(1), b"f", 0o644, libc::O_WRONLY, cb);
    let (f, _, opened) = got.lock().unwrap().take().unwrap().unwrap();
    let (cb, wrote) = capture();
    c.write(&Who::Mount, NodeId(f.node), opened.fh, 0, b"hi", false, cb);
    assert_eq!(wrote.lock().unwrap().take(), Some(Ok(2)));
    let (cb, flushed) = capture();
    c.flush(opened.fh, cb);
    let create = Request::CreateNew {
        parent: 0,
        name: b"".to_vec().into(),
        mode: 0,
        flags: Default::default(),
        node: 0,
        fh: 0,
        time: (0, 0),
    };
    held.answer(&create, Err(Errno(libc::ENOSPC)));
    // The writes go nowhere; close says why.
    assert_eq!(held.kinds(), Vec::<u32>::new());
    assert_eq!(
        flushed.lock().unwrap().take(),
        Some(Err(Errno(libc::ENOSPC)))
    );
    // The name is not known absent any more: a lookup asks the container.
    assert!(!c.coherence().listings().absent(1, b"f"));
    let synced = fsyncdir_held(&c, &held, 1, 5);
    assert_eq!(
        synced.lock().unwrap().take(),
        Some(Err(Errno(libc::ENOSPC)))
    );
    // A name not known absent is created as before, waiting.
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(1), b"f", 0o644, libc::O_WRONLY, cb);
    assert!(got.lock().unwrap().is_none());
    assert_eq!(
        held.kinds(),
        vec![Request::Create {
            parent: 1,
            name: b"f".to_vec().into(),
            mode: 0o644,
            flags: Default::default()
        }
        .tag()]
    );
}

#[test]
fn sync_metadata_creates_as_before() {
    let held = Held::default();
    let c: Core<Held> = Core::new(
        held.clone(),
        Options {
            per_caller: false,
            write_behind: true,
            pipeline: false,
            ..opts()
        },
    );
    c.coherence().feed_on();
    c.coherence().listings().made_empty(1);
    let (cb, got) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"d", 0o755, cb);
    assert!(got.lock().unwrap().is_none(), "waits for the container");
    held.answer(
        &Request::Mkdir {
            parent: 1,
            name: b"d".to_vec().into(),
            mode: 0o755,
        },
        Ok(Response::Entry(entry(42, true))),
    );
    assert!(got.lock().unwrap().take().unwrap().is_ok());
    // The directory it made is known empty: lookups in it stay here.
    let (cb, looked) = capture();
    c.lookup(&Who::Mount, NodeId(42), b"x", cb);
    assert!(matches!(
        looked.lock().unwrap().take(),
        Some(Ok(Lookup::Absent(_)))
    ));
}

#[test]
fn a_mkdir_the_container_refuses_fails_what_was_created_in_it() {
    let (c, held) = pipelined();
    let forgotten = Arc::new(Mutex::new(Vec::new()));
    let f = forgotten.clone();
    c.coherence().set_forget_name(Box::new(move |p, n| {
        f.lock().unwrap().push((p, n.to_vec()))
    }));
    let (cb, got) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"d", 0o755, cb);
    let (d, _) = got.lock().unwrap().take().unwrap().unwrap();
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(d.node), b"f", 0o644, libc::O_WRONLY, cb);
    let (_, _, opened) = got.lock().unwrap().take().unwrap().unwrap();
    let (cb, flushed) = capture();
    c.flush(opened.fh, cb);
    // The container made "d" meanwhile (the conflict rule: it wins).
    let mkdir = Request::MkdirNew {
        parent: 0,
        name: b"".to_vec().into(),
        mode: 0,
        node: 0,
        time: (0, 0),
    };
    held.answer(&mkdir, Err(Errno(libc::EEXIST)));
    // The create inside was never sent; close reports the directory's error.
    assert_eq!(held.kinds(), Vec::<u32>::new());
    assert_eq!(
        flushed.lock().unwrap().take(),
        Some(Err(Errno(libc::EEXIST)))
    );
    // Both names go from the kernel.
    assert_eq!(
        *forgotten.lock().unwrap(),
        vec![(1, b"d".to_vec()), (d.node, b"f".to_vec())]
    );
    assert!(!c.coherence().listings().absent(1, b"d"));
}

/// A create sent behind, of `f` in the root (a write-only handle).
fn created_behind(c: &Core<Held>) -> (Entry, Fh) {
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(1), b"f", 0o644, libc::O_WRONLY, cb);
    let (f, _, opened) = got.lock().unwrap().take().unwrap().unwrap();
    (f, opened.fh)
}

fn create_new() -> Request<'static> {
    Request::CreateNew {
        parent: 0,
        name: b"".to_vec().into(),
        mode: 0,
        flags: Default::default(),
        node: 0,
        fh: 0,
        time: (0, 0),
    }
}

fn set_attr() -> Request<'static> {
    Request::SetAttr {
        node: 0,
        fh: None,
        attr: SetAttr::default(),
    }
}

fn write_req() -> Request<'static> {
    Request::Write {
        fh: 0,
        offset: 0,
        data: b"".to_vec().into(),
    }
}

#[test]
fn a_setattr_of_a_file_created_behind_is_answered_at_once_and_sent_after_its_writes() {
    let (c, held) = pipelined();
    let (f, fh) = created_behind(&c);
    let (cb, wrote) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 0, b"hello", false, cb);
    assert_eq!(wrote.lock().unwrap().take(), Some(Ok(5)));
    let set = SetAttr {
        mode: Some(0o600),
        uid: Some(1000),
        mtime: Some(SetTime::At { sec: 7, nsec: 8 }),
        ..Default::default()
    };
    let (cb, got) = capture();
    c.setattr(&Who::Mount, NodeId(f.node), None, set.clone(), cb);
    let (a, _) = got.lock().unwrap().take().unwrap().unwrap();
    assert_eq!(a.mode, libc::S_IFREG | 0o600);
    assert_eq!((a.uid, a.size, a.mtime, a.mtime_nsec), (1000, 5, 7, 8));
    assert!(a.ctime >= f.attr.ctime);
    // fstat after it: on the host too.
    let (cb, stat) = capture();
    c.getattr(&Who::Mount, NodeId(f.node), None, cb);
    assert_eq!(stat.lock().unwrap().take().unwrap().unwrap().0, a);
    // A write after the setattr waits for it, not queued behind it.
    let (cb, later) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 5, b"!", false, cb);
    assert_eq!(held.kinds(), vec![create_new().tag()]);
    let mut made = f;
    made.attr.ino = 99;
    held.answer(
        &create_new(),
        Ok(Response::Created {
            entry: made,
            fh: fh.0,
        }),
    );
    // The create, then the write before the setattr, then the setattr,
    // then the write after it.
    assert_eq!(held.kinds(), vec![write_req().tag()]);
    held.answer(&write_req(), Ok(Response::Written(5)));
    assert_eq!(held.kinds(), vec![set_attr().tag()]);
    let sent = held.answer(&set_attr(), Ok(Response::Attr(a)));
    assert_eq!(
        sent,
        Request::SetAttr {
            node: f.node,
            fh: None,
            attr: set
        }
    );
    assert!(later.lock().unwrap().is_none());
    let w = held.answer(&write_req(), Ok(Response::Written(1)));
    assert!(matches!(w, Request::Write { offset: 5, .. }));
    assert_eq!(later.lock().unwrap().take(), Some(Ok(1)));
    let (cb, stat) = capture();
    c.getattr(&Who::Mount, NodeId(f.node), None, cb);
    assert_eq!(stat.lock().unwrap().take().unwrap().unwrap().0.size, 6);
    // Once released, the container answers again, and the kernel's copy
    // (times on the host's clock) is expired.
    let expired = Arc::new(Mutex::new(Vec::new()));
    let e = expired.clone();
    c.coherence()
        .set_expire_attrs(Box::new(move |node| e.lock().unwrap().push(node)));
    let (cb, _) = capture();
    c.release(fh, cb);
    assert_eq!(*expired.lock().unwrap(), vec![f.node]);
    let (cb, stat) = capture();
    c.getattr(&Who::Mount, NodeId(f.node), None, cb);
    assert!(stat.lock().unwrap().is_none());
    assert!(held
        .kinds()
        .contains(&Request::GetAttr { node: 0, fh: None }.tag()));
}

#[test]
fn a_file_created_behind_shows_the_containers_attributes_after_its_close_with_no_round_trip() {
    let (c, held) = pipelined();
    let (f, fh) = created_behind(&c);
    let node = f.node;
    let (cb, wrote) = capture();
    c.write(&Who::Mount, NodeId(node), fh, 0, b"hello", false, cb);
    assert_eq!(wrote.lock().unwrap().take(), Some(Ok(5)));
    let mut made = f;
    (made.attr.ctime, made.attr.mtime) = (100, 100);
    held.answer(
        &create_new(),
        Ok(Response::Created {
            entry: made,
            fh: fh.0,
        }),
    );
    // The container's word after the write: its own clock, its blocks.
    let after = Attr {
        ino: 0,
        size: 5,
        blocks: 1,
        mtime: 123,
        mtime_nsec: 4,
        ctime: 123,
        ctime_nsec: 5,
        ..made.attr
    };
    // Before the write lands, a stat shows the host's guess.
    let stat = |c: &Core<Held>| {
        let (cb, got) = capture();
        c.getattr(&Who::Mount, NodeId(node), None, cb);
        let got = got.lock().unwrap().take();
        got.map(|r| r.unwrap().0)
    };
    assert_eq!(stat(&c).map(|a| a.size), Some(5));
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    assert!(flushed.lock().unwrap().is_none(), "waits for the write");
    let expired = Arc::new(Mutex::new(Vec::new()));
    let e = expired.clone();
    c.coherence()
        .set_expire_attrs(Box::new(move |node| e.lock().unwrap().push(node)));
    held.answer(
        &write_req(),
        Ok(Response::WrittenAttr { n: 5, attr: after }),
    );
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
    assert_eq!(
        *expired.lock().unwrap(),
        vec![node],
        "the kernel asks again"
    );
    let want = Attr { ino: node, ..after };
    assert_eq!(stat(&c), Some(want), "answered on the host");
    let (cb, _) = capture();
    c.release(fh, cb);
    assert_eq!(stat(&c), Some(want), "past the release");
    assert!(held
        .kinds()
        .iter()
        .all(|&k| k != Request::GetAttr { node: 0, fh: None }.tag()));
    // A third party's change, which the feed reports, ends it.
    c.coherence()
        .apply(&[dockerfuse_proto::Change::Attr { node }]);
    assert_eq!(stat(&c), None, "asked of the container");
}

#[test]
fn a_file_created_behind_whose_writes_said_nothing_is_asked_of_the_container_after_its_close() {
    let (c, held) = pipelined();
    let (f, fh) = created_behind(&c);
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 0, b"hello", false, cb);
    held.answer(&create_new(), Ok(Response::Created { entry: f, fh: fh.0 }));
    // A satellite before protocol 10.
    held.answer(&write_req(), Ok(Response::Written(5)));
    let (cb, _) = capture();
    c.flush(fh, cb);
    let (cb, _) = capture();
    c.release(fh, cb);
    let (cb, got) = capture();
    c.getattr(&Who::Mount, NodeId(f.node), None, cb);
    assert!(got.lock().unwrap().is_none());
}

#[test]
fn a_setattr_sent_behind_the_container_refuses_is_reported_at_close_and_by_the_directorys_fsync() {
    let (c, held) = pipelined();
    let (f, fh) = created_behind(&c);
    let (cb, got) = capture();
    let set = SetAttr {
        uid: Some(1000),
        ..Default::default()
    };
    c.setattr(&Who::Mount, NodeId(f.node), None, set, cb);
    assert!(got.lock().unwrap().take().unwrap().is_ok());
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    held.answer(&create_new(), Ok(Response::Created { entry: f, fh: fh.0 }));
    assert!(flushed.lock().unwrap().is_none(), "close waits for it");
    held.answer(&set_attr(), Err(Errno(libc::EPERM)));
    assert_eq!(
        flushed.lock().unwrap().take(),
        Some(Err(Errno(libc::EPERM)))
    );
    // No longer answered on the host.
    let (cb, got) = capture();
    c.setattr(&Who::Mount, NodeId(f.node), None, SetAttr::default(), cb);
    assert!(got.lock().unwrap().is_none());
    held.answer(&set_attr(), Ok(Response::Attr(f.attr)));
    let synced = fsyncdir_held(&c, &held, 1, 5);
    assert_eq!(synced.lock().unwrap().take(), Some(Err(Errno(libc::EPERM))));
}

#[test]
fn sync_metadata_setattrs_wait_as_before() {
    let held = Held::default();
    let c: Core<Held> = Core::new(
        held.clone(),
        Options {
            per_caller: false,
            write_behind: true,
            pipeline: false,
            ..opts()
        },
    );
    c.coherence().feed_on();
    c.coherence().listings().made_empty(1);
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(1), b"f", 0o644, libc::O_WRONLY, cb);
    assert!(got.lock().unwrap().is_none());
    let mut e = entry(42, true);
    e.attr.mode = libc::S_IFREG | 0o644;
    held.answer(
        &Request::Create {
            parent: 0,
            name: b"".to_vec().into(),
            mode: 0,
            flags: Default::default(),
        },
        Ok(Response::Created { entry: e, fh: 3 }),
    );
    assert!(got.lock().unwrap().take().unwrap().is_ok());
    let (cb, got) = capture();
    let set = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    c.setattr(&Who::Mount, NodeId(42), None, set, cb);
    assert!(got.lock().unwrap().is_none(), "waits for the container");
    held.answer(&set_attr(), Ok(Response::Attr(e.attr)));
    assert!(got.lock().unwrap().take().unwrap().is_ok());
}

#[test]
fn cp_a_s_trivial_acl_on_a_file_created_behind_is_a_chmod_sent_behind() {
    let (c, held) = pipelined();
    // The directory has no xattrs: no default ACL the file inherits.
    c.no_xattrs.note_empty(1, Duration::from_secs(60));
    let (f, fh) = created_behind(&c);
    let acl = b"\x02\0\0\0\x01\0\x06\0\xff\xff\xff\xff\x04\0\x00\0\xff\xff\xff\xff\x20\0\x00\0\xff\xff\xff\xff";
    let (cb, got) = capture();
    c.setxattr(
        &Who::Mount,
        NodeId(f.node),
        b"system.posix_acl_access",
        acl,
        0,
        cb,
    );
    assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
    let (cb, stat) = capture();
    c.getattr(&Who::Mount, NodeId(f.node), None, cb);
    assert_eq!(
        stat.lock().unwrap().take().unwrap().unwrap().0.mode,
        libc::S_IFREG | 0o600
    );
    held.answer(&create_new(), Ok(Response::Created { entry: f, fh: fh.0 }));
    let sent = held.answer(&set_attr(), Ok(Response::Attr(f.attr)));
    assert_eq!(
        sent,
        Request::SetAttr {
            node: f.node,
            fh: None,
            attr: SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        }
    );
    // Another ACL goes as it is, and waits.
    let (cb, got) = capture();
    let named = b"\x02\0\0\0\x01\0\x06\0\xff\xff\xff\xff\x02\0\x06\0\xe8\x03\0\0\x04\0\x00\0\xff\xff\xff\xff\x10\0\x06\0\xff\xff\xff\xff\x20\0\x00\0\xff\xff\xff\xff";
    c.setxattr(
        &Who::Mount,
        NodeId(f.node),
        b"system.posix_acl_access",
        named,
        0,
        cb,
    );
    assert!(got.lock().unwrap().is_none());
    assert!(matches!(
        held.answer(
            &Request::SetXattr {
                node: 0,
                name: b"".to_vec().into(),
                value: b"".to_vec().into(),
                flags: 0
            },
            Ok(Response::Ok)
        ),
        Request::SetXattr { .. }
    ));
    // In a directory that may have a default ACL, the file may have an
    // ACL of its own: the xattr goes as it is.
    c.no_xattrs.forget(1);
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(1), b"g", 0o644, libc::O_WRONLY, cb);
    let (g, _, _) = got.lock().unwrap().take().unwrap().unwrap();
    let (cb, got) = capture();
    c.setxattr(
        &Who::Mount,
        NodeId(g.node),
        b"system.posix_acl_access",
        acl,
        0,
        cb,
    );
    assert!(got.lock().unwrap().is_none());
}

#[test]
fn removals_of_names_known_present_are_answered_at_once_and_sent_in_order() {
    let (c, held) = pipelined();
    let forgotten = Arc::new(Mutex::new(Vec::new()));
    let f = forgotten.clone();
    c.coherence().set_forget_name(Box::new(move |p, n| {
        f.lock().unwrap().push((p, n.to_vec()))
    }));
    let (cb, got) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"d", 0o755, cb);
    let (d, _) = got.lock().unwrap().take().unwrap().unwrap();
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(d.node), b"f", 0o644, libc::O_WRONLY, cb);
    let (file, _, opened) = got.lock().unwrap().take().unwrap().unwrap();
    // Known present and a file: answered at once, not sent yet.
    let (cb, unlinked) = capture();
    c.unlink(&Who::Mount, NodeId(d.node), b"f", cb);
    assert_eq!(unlinked.lock().unwrap().take(), Some(Ok(())));
    assert!(c.coherence().listings().absent(d.node, b"f"));
    // Not a directory: rmdir of it waits (the kernel refuses it first).
    // The directory is empty now: rmdir is answered at once too.
    let (cb, removed) = capture();
    c.rmdir(&Who::Mount, NodeId(1), b"d", cb);
    assert_eq!(removed.lock().unwrap().take(), Some(Ok(())));
    assert!(c.coherence().listings().absent(1, b"d"));
    // Made again at once, sent once the removal is done.
    let (cb, again) = capture();
    c.mkdir(&Who::Mount, NodeId(1), b"d", 0o700, cb);
    assert!(again.lock().unwrap().take().unwrap().is_ok());
    let mkdir = Request::MkdirNew {
        parent: 0,
        name: b"".to_vec().into(),
        mode: 0,
        node: 0,
        time: (0, 0),
    };
    assert_eq!(held.kinds(), vec![mkdir.tag()]);
    held.answer(&mkdir, Ok(Response::Entry(d)));
    let create = Request::CreateNew {
        parent: 0,
        name: b"".to_vec().into(),
        mode: 0,
        flags: Default::default(),
        node: 0,
        fh: 0,
        time: (0, 0),
    };
    held.answer(
        &create,
        Ok(Response::Created {
            entry: file,
            fh: opened.fh.0,
        }),
    );
    let unlink = Request::Unlink {
        parent: 0,
        name: b"".to_vec().into(),
    };
    assert_eq!(held.kinds(), vec![unlink.tag()]);
    let sent = held.answer(&unlink, Ok(Response::Ok));
    assert!(
        matches!(sent, Request::Unlink { parent, name } if parent == d.node && &name[..] == b"f")
    );
    let rmdir = Request::Rmdir {
        parent: 0,
        name: b"".to_vec().into(),
    };
    assert_eq!(held.kinds(), vec![rmdir.tag()]);
    // Someone put a file in it meanwhile: refused, the name is unknown
    // again and the kernel forgets it; the directory's fsync says so.
    held.answer(&rmdir, Err(Errno(libc::ENOTEMPTY)));
    assert!(!c.coherence().listings().absent(1, b"d"));
    assert!(forgotten.lock().unwrap().contains(&(1, b"d".to_vec())));
    assert_eq!(held.kinds(), vec![mkdir.tag()]);
    held.answer(&mkdir, Err(Errno(libc::EEXIST)));
    let synced = fsyncdir_held(&c, &held, 1, 5);
    assert_eq!(
        synced.lock().unwrap().take(),
        Some(Err(Errno(libc::ENOTEMPTY)))
    );
    // A name not known present is removed as before, waiting.
    let (cb, unlinked) = capture();
    c.unlink(&Who::Mount, NodeId(1), b"other", cb);
    assert!(unlinked.lock().unwrap().is_none());
    assert_eq!(held.kinds(), vec![unlink.tag()]);
}

#[test]
fn a_symlink_of_a_name_known_absent_is_answered_at_once_and_made_behind() {
    let (c, held) = pipelined();
    let (cb, got) = capture();
    c.symlink(&Who::Mount, NodeId(1), b"l", b"../target", cb);
    let (l, _) = got.lock().unwrap().take().unwrap().unwrap();
    assert_ne!(l.node & dockerfuse_proto::HOST_NODE_BIT, 0);
    assert_eq!(l.attr.mode, libc::S_IFLNK | 0o777);
    assert_eq!(l.attr.size, 9);
    let symlink = Request::SymlinkNew {
        parent: 1,
        name: b"l".to_vec().into(),
        target: b"../target".to_vec().into(),
        node: l.node,
        time: (l.attr.mtime, l.attr.mtime_nsec),
    };
    assert_eq!(held.kinds(), vec![symlink.tag()]);
    // Known present now: its unlink is answered at once, sent after it.
    let (cb, unlinked) = capture();
    c.unlink(&Who::Mount, NodeId(1), b"l", cb);
    assert_eq!(unlinked.lock().unwrap().take(), Some(Ok(())));
    let sent = held.answer(&symlink, Ok(Response::Entry(l)));
    assert_eq!(sent, symlink);
    let unlink = Request::Unlink {
        parent: 1,
        name: b"l".to_vec().into(),
    };
    assert_eq!(held.kinds(), vec![unlink.tag()]);
    held.answer(&unlink, Ok(Response::Ok));
    // Refused: the name is unknown again, the directory's fsync says so.
    let (cb, got) = capture();
    c.symlink(&Who::Mount, NodeId(1), b"m", b"t", cb);
    assert!(got.lock().unwrap().take().unwrap().is_ok());
    held.answer(&symlink, Err(Errno(libc::ENOSPC)));
    assert!(!c.coherence().listings().absent(1, b"m"));
    let synced = fsyncdir_held(&c, &held, 1, 5);
    assert_eq!(
        synced.lock().unwrap().take(),
        Some(Err(Errno(libc::ENOSPC)))
    );
}

#[test]
fn a_rename_of_a_file_known_present_is_answered_at_once_and_sent_in_order() {
    let (c, held) = pipelined();
    let (cb, got) = capture();
    c.create(&Who::Mount, NodeId(1), b"tmp", 0o644, libc::O_WRONLY, cb);
    let (tmp, _, opened) = got.lock().unwrap().take().unwrap().unwrap();
    // Over a name known absent: answered at once.
    let (cb, renamed) = capture();
    c.rename(&Who::Mount, (NodeId(1), b"tmp"), (NodeId(1), b"cfg"), 0, cb);
    assert_eq!(renamed.lock().unwrap().take(), Some(Ok(())));
    assert!(c.coherence().listings().absent(1, b"tmp"));
    assert!(c.coherence().listings().present(1, b"cfg"));
    // With a flag: waits, after the rest.
    let (cb, exchanged) = capture();
    c.rename(
        &Who::Mount,
        (NodeId(1), b"cfg"),
        (NodeId(1), b"tmp"),
        libc::RENAME_NOREPLACE,
        cb,
    );
    assert!(exchanged.lock().unwrap().is_none());
    let create = Request::CreateNew {
        parent: 0,
        name: b"".to_vec().into(),
        mode: 0,
        flags: Default::default(),
        node: 0,
        fh: 0,
        time: (0, 0),
    };
    held.answer(
        &create,
        Ok(Response::Created {
            entry: tmp,
            fh: opened.fh.0,
        }),
    );
    let rename = Request::Rename {
        parent: 0,
        name: b"".to_vec().into(),
        new_parent: 0,
        new_name: b"".to_vec().into(),
        flags: 0,
    };
    assert_eq!(held.kinds(), vec![rename.tag()]);
    let sent = held.answer(&rename, Err(Errno(libc::EACCES)));
    assert!(matches!(sent, Request::Rename { flags: 0, .. }));
    // Refused: both names unknown; the flagged rename goes now.
    assert!(!c.coherence().listings().absent(1, b"tmp"));
    assert!(!c.coherence().listings().present(1, b"cfg"));
    assert_eq!(held.kinds(), vec![rename.tag()]);
    held.answer(&rename, Err(Errno(libc::ENOENT)));
    assert_eq!(
        exchanged.lock().unwrap().take(),
        Some(Err(Errno(libc::ENOENT)))
    );
    let synced = fsyncdir_held(&c, &held, 1, 5);
    assert_eq!(
        synced.lock().unwrap().take(),
        Some(Err(Errno(libc::EACCES)))
    );
}

/// A create waits for the removals in its directory answered before it,
/// not for those answered after it (which wait for the create).
#[test]
fn a_create_between_two_renames_in_its_directory_goes_after_the_first() {
    let (c, held) = pipelined();
    let create = Request::CreateNew {
        parent: 0,
        name: b"".to_vec().into(),
        mode: 0,
        flags: Default::default(),
        node: 0,
        fh: 0,
        time: (0, 0),
    };
    let rename = Request::Rename {
        parent: 0,
        name: b"".to_vec().into(),
        new_parent: 0,
        new_name: b"".to_vec().into(),
        flags: 0,
    };
    let made = |name: &[u8]| {
        let (cb, got) = capture();
        c.create(&Who::Mount, NodeId(1), name, 0o644, libc::O_WRONLY, cb);
        let (e, _, opened) = got.lock().unwrap().take().unwrap().unwrap();
        (e, opened.fh.0)
    };
    let renamed = |from: &[u8], to: &[u8]| {
        let (cb, got) = capture();
        c.rename(&Who::Mount, (NodeId(1), from), (NodeId(1), to), 0, cb);
        assert_eq!(got.lock().unwrap().take(), Some(Ok(())));
    };
    let (a, fh) = made(b"a.lock");
    held.answer(&create, Ok(Response::Created { entry: a, fh }));
    renamed(b"a.lock", b"a");
    assert_eq!(held.kinds(), vec![rename.tag()]);
    let (b, fh) = made(b"b.lock");
    renamed(b"b.lock", b"b");
    // The create waits for the first rename, the second for the create.
    assert_eq!(held.kinds(), vec![rename.tag()]);
    held.answer(&rename, Ok(Response::Ok));
    assert_eq!(held.kinds(), vec![create.tag()]);
    held.answer(&create, Ok(Response::Created { entry: b, fh }));
    assert_eq!(held.kinds(), vec![rename.tag()]);
    held.answer(&rename, Ok(Response::Ok));
    assert_eq!(held.kinds(), Vec::<u32>::new());
}

/// A transport whose handle 9 belongs to a satellite that is gone.
struct GoneHandle(Seen);

impl Transport for GoneHandle {
    fn call(&self, req: &Request<'_>, done: Done) {
        self.0.lock().unwrap().push(req.clone().into_owned());
        done(Ok(Response::Written(4)))
    }
    fn post(&self, req: &Request<'_>) {
        self.0.lock().unwrap().push(req.clone().into_owned());
    }
    fn handle_gone(&self, fh: u64) -> bool {
        fh == 9
    }
}

#[test]
fn a_write_on_a_handle_of_a_gone_satellite_fails_at_once_even_behind() {
    let seen: Seen = Arc::default();
    let c: Core<GoneHandle> = Core::new(
        GoneHandle(seen.clone()),
        Options {
            write_behind: true,
            ..opts()
        },
    );
    let (cb, got) = capture();
    c.write(&Who::Mount, NodeId(2), Fh(9), 0, b"lost", false, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno::EIO)));
    let (cb, got) = capture();
    c.write(&Who::Mount, NodeId(2), Fh(8), 0, b"kept", false, cb);
    assert_eq!(got.lock().unwrap().take(), Some(Ok(4)), "accepted behind");
    let (cb, _) = capture();
    c.settle(cb);
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .all(|r| !matches!(unwrapped(r), Request::Write { fh: 9, .. })),
        "nothing is sent on the gone handle: {seen:?}"
    );
}

/// A small regular file's attributes; `ctime` tells versions apart.
fn small_file(size: u64, ctime: i64) -> Attr {
    Attr {
        mode: libc::S_IFREG | 0o644,
        size,
        nlink: 1,
        ctime,
        ..Default::default()
    }
}

#[test]
fn a_read_answered_from_the_contents_a_lazy_open_brought_keeps_the_files_attributes() {
    for big in [false, true] {
        let (c, seen) = core_with(
            move |r| match r {
                Request::Lookup { .. } => Response::Entry(Entry {
                    node: 2,
                    attr: small_file(10, 1),
                    no_xattrs: false,
                }),
                Request::OpenSmall { .. } => Response::OpenedSmall {
                    fh: 5,
                    fd: None,
                    data: (!big).then(|| b"0123456789".as_slice().into()),
                },
                Request::Read { .. } => Response::Data(b"0123456789".as_slice().into()),
                Request::GetAttr { .. } => Response::Attr(small_file(10, 1)),
                _ => Response::Ok,
            },
            lazy_opts(),
        );
        c.coherence().feed_on();
        let (cb, _) = capture();
        c.lookup(&Who::Mount, NodeId(1), b"f", cb);
        let fh = open_fh(&c, 2, libc::O_RDONLY);
        assert!(Fh(fh).is_host());
        assert_eq!(read_bytes(&c, fh, 0, 4096).unwrap(), b"0123456789");
        // tar's fstat after the read: the contents came with the open, read
        // with O_NOATIME, so the attributes kept from the lookup stand; a
        // read in the container may have moved the atime.
        let (cb, got) = capture();
        c.getattr(&Who::Mount, NodeId(2), Some(Fh(fh)), cb);
        assert!(matches!(got.lock().unwrap().take(), Some(Ok(_))));
        let asked = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, Request::GetAttr { .. }))
            .count();
        assert_eq!(asked, usize::from(big), "big: {big}");
    }
}

#[test]
fn small_files_a_stream_had_no_room_for_come_with_a_follow_up_stream_of_their_directory() {
    use super::stream::{BUDGET, ONE_DIR};
    const SIZE: u64 = BUDGET.file_max as u64;
    // 70 files of 16 KiB below directory 2: the stream of the root has
    // room for the contents of 59 of them; a stream of directory 2 alone
    // brings the others, of which f69 changed since the first stream.
    let ent = |name: &str, node: u64, attr: Attr| DirEntry {
        name: name.as_bytes().to_vec().into(),
        offset: node,
        kind: attr.mode & libc::S_IFMT,
        ino: node,
        entry: Some(Entry {
            node,
            attr,
            no_xattrs: true,
        }),
    };
    let dir2 = move |changed: bool| dockerfuse_proto::StreamedDir {
        node: 2,
        entries: (0..70)
            .map(|i| {
                let ctime = if changed && i == 69 { 2 } else { 1 };
                ent(&format!("f{i}"), 100 + i, small_file(SIZE, ctime))
            })
            .collect(),
    };
    let contents = |nodes: std::ops::Range<u64>| {
        nodes
            .map(|node| dockerfuse_proto::StreamedFile {
                node,
                data: vec![b'x'; SIZE as usize].into(),
            })
            .collect::<Vec<_>>()
    };
    let dir_attr = Attr {
        mode: libc::S_IFDIR | 0o755,
        nlink: 2,
        ..Default::default()
    };
    let mut o = lazy_opts();
    o.stream = true;
    let (c, seen) = core_with(
        move |r| match r {
            Request::Stream { node: 1, .. } => Response::Streamed {
                dirs: vec![
                    dockerfuse_proto::StreamedDir {
                        node: 1,
                        entries: vec![ent("d", 2, dir_attr)],
                    },
                    dir2(false),
                ],
                files: contents(100..159),
            },
            Request::Stream { node: 2, .. } => Response::Streamed {
                dirs: vec![dir2(true)],
                files: contents(159..170),
            },
            Request::OpenSmall { .. } => Response::OpenedSmall {
                fh: 5,
                fd: None,
                data: Some(vec![b'y'; SIZE as usize].into()),
            },
            _ => Response::Ok,
        },
        o,
    );
    c.coherence().feed_on();
    let list = |dir: u64| {
        let (cb, got) = capture();
        c.opendir(&Who::Mount, NodeId(dir), cb);
        let Some(Ok((Fh(fh), true))) = got.lock().unwrap().take() else {
            panic!("expected a cached host handle")
        };
        // The kernel's chunks, each from where the last one ended.
        let (mut offset, mut total) = (0, 0);
        loop {
            let n = Arc::new(Mutex::new(None));
            let n2 = n.clone();
            c.readdirplus(
                &Who::Mount,
                NodeId(dir),
                Fh(fh),
                offset,
                4096,
                Box::new(move |r| {
                    let v = r.expect("listed");
                    *n2.lock().unwrap() = Some((v.len(), v.last().map(|i| i.offset)));
                    v.len()
                }),
            );
            let got = n.lock().unwrap().take();
            match got {
                Some((k, Some(last))) => (offset, total) = (last, total + k),
                _ => return total,
            }
        }
    };
    assert_eq!(list(1), 1);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[1],
            Request::Stream {
                node: 2,
                budget: ONE_DIR
            },
            "{seen:?}"
        );
        // The follow-up's own lookup references go back at once.
        assert!(matches!(&seen[2], Request::Forget { nodes } if nodes.len() == 70));
    }
    // Directory 2's listing from the first stream, all of its files'
    // contents from one of the streams: no round trip...
    assert_eq!(list(2), 70);
    seen.lock().unwrap().clear();
    for node in 100..169 {
        let fh = open_fh(&c, node, libc::O_RDONLY);
        let data = read_bytes(&c, fh, 0, 4096).unwrap();
        assert!(data == vec![b'x'; 4096], "node {node}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    // ... but f69, changed since the first stream listed it: read in the
    // container.
    let fh = open_fh(&c, 169, libc::O_RDONLY);
    assert!(read_bytes(&c, fh, 0, 4096).unwrap() == vec![b'y'; 4096]);
    assert!(matches!(
        seen.lock().unwrap()[..],
        [Request::OpenSmall { node: 169, .. }]
    ));
}

#[test]
fn statfs_is_answered_from_a_recent_answer_until_something_changes() {
    let mut o = lazy_opts();
    o.stream = true;
    let (c, seen) = core_with(
        |r| match r {
            Request::StatFs { .. } => Response::StatFs(dockerfuse_proto::StatFs {
                blocks: 9,
                ..Default::default()
            }),
            _ => Response::Ok,
        },
        o,
    );
    let statfs = |c: &Core<Canned>| {
        let (cb, got) = capture();
        c.statfs(&Who::Mount, NodeId(1), cb);
        let r = got.lock().unwrap().take();
        r.expect("answered").expect("counts").blocks
    };
    let asked = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, Request::StatFs { .. }))
            .count()
    };
    c.coherence().feed_on();
    assert_eq!((statfs(&c), asked(&seen)), (9, 1));
    assert_eq!((statfs(&c), asked(&seen)), (9, 1));
    // A change in the container, or one the mount makes: asked again.
    c.coherence()
        .apply(&[dockerfuse_proto::Change::Attr { node: 5 }]);
    assert_eq!((statfs(&c), asked(&seen)), (9, 2));
    assert_eq!((statfs(&c), asked(&seen)), (9, 2));
    c.coherence().touched(5);
    assert_eq!((statfs(&c), asked(&seen)), (9, 3));
    // Per caller (the container checks the caller's permission), or with
    // a TTL of zero: always asked.
    for o in [
        opts(),
        Options {
            ttl: Duration::ZERO,
            fixed_ttl: true,
            ..lazy_opts()
        },
    ] {
        let (c, seen) = core_with(|_| Response::StatFs(Default::default()), o);
        c.coherence().feed_on();
        statfs(&c);
        statfs(&c);
        assert_eq!(asked(&seen), 2);
    }
}

/// [`pipelined`] with `--close-behind`.
fn closing_behind() -> (Core<Held>, Held) {
    let held = Held::default();
    (pipelined_with(held.clone(), true), held)
}

/// Answers a getattr of the core, if it asked the container, with `r`.
fn getattr_now(
    c: &Core<Held>,
    held: &Held,
    node: u64,
    r: Response<'static>,
) -> Option<Result<(Attr, Duration), Errno>> {
    let (cb, got) = capture();
    c.getattr(&Who::Mount, NodeId(node), None, cb);
    let get = Request::GetAttr { node: 0, fh: None };
    if held.kinds().contains(&get.tag()) {
        held.answer(&get, Ok(r));
    }
    let r = got.lock().unwrap().take();
    r
}

#[test]
fn with_close_behind_close_returns_at_once_and_a_refused_create_shows_at_the_next_stat_and_the_directorys_fsync(
) {
    let (c, held) = closing_behind();
    let (f, fh) = created_behind(&c);
    let (cb, wrote) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 0, b"hi", false, cb);
    assert_eq!(wrote.lock().unwrap().take(), Some(Ok(2)));
    // close(2) returns before the container made the file.
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
    assert_eq!(held.kinds(), vec![create_new().tag()]);
    c.release(fh, Box::new(|_| {}));
    held.answer(&create_new(), Err(Errno(libc::ENOSPC)));
    // The writes go nowhere; the release finds no file.
    let release = Request::Release { fh: 0 };
    assert_eq!(held.kinds(), vec![release.tag()]);
    held.answer(&release, Ok(Response::Error(libc::EBADF)));
    // The file's next stat says why, once.
    let r = getattr_now(&c, &held, f.node, Response::Error(libc::ENOENT));
    assert_eq!(r, Some(Err(Errno(libc::ENOSPC))));
    let r = getattr_now(&c, &held, f.node, Response::Error(libc::ENOENT));
    assert_eq!(r, Some(Err(Errno(libc::ENOENT))));
    // So does the directory's fsync.
    let synced = fsyncdir_held(&c, &held, 1, 5);
    assert_eq!(
        synced.lock().unwrap().take(),
        Some(Err(Errno(libc::ENOSPC)))
    );
}

#[test]
fn with_close_behind_a_write_refused_after_close_shows_at_the_files_next_open_or_write() {
    let (c, held) = closing_behind();
    let (f, fh) = created_behind(&c);
    held.answer(&create_new(), Ok(Response::Created { entry: f, fh: fh.0 }));
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 0, b"hi", false, cb);
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
    held.answer(&write_req(), Ok(Response::Error(libc::EDQUOT)));
    // An open of the file reports it, once.
    let (cb, got) = capture();
    let reply: Cb<Opened> = Box::new(move |r| cb(r.map(|o| o.fh.0)));
    c.open(&Who::Mount, NodeId(f.node), libc::O_RDONLY, reply);
    assert_eq!(got.lock().unwrap().take(), Some(Err(Errno(libc::EDQUOT))));
    // Or a write through another handle.
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 0, b"hi", false, cb);
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
    held.answer(&write_req(), Ok(Response::Error(libc::EIO)));
    let fh2 = Fh(77);
    c.write_behind_opened(fh2.0, f.node);
    let (cb, wrote) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh2, 0, b"x", false, cb);
    assert_eq!(wrote.lock().unwrap().take(), Some(Err(Errno(libc::EIO))));
}

#[test]
fn with_close_behind_an_error_already_back_is_reported_by_close_and_too_many_closes_behind_wait() {
    let (c, held) = closing_behind();
    let (f, fh) = created_behind(&c);
    held.answer(&create_new(), Ok(Response::Created { entry: f, fh: fh.0 }));
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 0, b"hi", false, cb);
    held.answer(&write_req(), Ok(Response::Error(libc::ENOSPC)));
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    assert_eq!(
        flushed.lock().unwrap().take(),
        Some(Err(Errno(libc::ENOSPC)))
    );
    // Handles closed with writes behind are bounded: past the bound a
    // close waits.
    for i in 0..write_behind::MAX_CLOSED as u64 {
        c.write_behind_opened(1000 + i, f.node);
        let (cb, _) = capture();
        c.write(
            &Who::Mount,
            NodeId(f.node),
            Fh(1000 + i),
            0,
            b"x",
            false,
            cb,
        );
        let (cb, flushed) = capture();
        c.flush(Fh(1000 + i), cb);
        assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
    }
    c.write_behind_opened(5000, f.node);
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(f.node), Fh(5000), 0, b"x", false, cb);
    let (cb, flushed) = capture();
    c.flush(Fh(5000), cb);
    assert!(flushed.lock().unwrap().is_none(), "waits at the bound");
    while held.kinds().contains(&write_req().tag()) {
        held.answer(&write_req(), Ok(Response::Written(1)));
    }
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
}

#[test]
fn with_close_behind_a_refused_create_shows_at_the_next_lookup_of_its_name_once() {
    let (c, held) = closing_behind();
    let (f, fh) = created_behind(&c);
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
    held.answer(&create_new(), Err(Errno(libc::EACCES)));
    // The kernel drops the name, and forgets the node, before the
    // program looks again.
    c.forget(vec![(NodeId(f.node), 1)]);
    let lookup = |held: &Held| {
        let (cb, got) = capture();
        c.lookup(&Who::Mount, NodeId(1), b"f", cb);
        let req = Request::Lookup {
            parent: 0,
            name: b"".to_vec().into(),
        };
        if held.kinds().contains(&req.tag()) {
            held.answer(&req, Ok(Response::Error(libc::ENOENT)));
        }
        let r = got.lock().unwrap().take().expect("answered");
        r.map(|l| matches!(l, Lookup::Found(..)))
    };
    assert_eq!(lookup(&held), Err(Errno(libc::EACCES)));
    assert!(matches!(
        lookup(&held),
        Err(Errno(libc::ENOENT)) | Ok(false)
    ));
}

#[test]
fn with_close_behind_a_stat_after_close_is_answered_on_the_host_until_the_writes_landed() {
    let (c, held) = closing_behind();
    let (f, fh) = created_behind(&c);
    let (cb, _) = capture();
    c.write(&Who::Mount, NodeId(f.node), fh, 0, b"hello", false, cb);
    let (cb, flushed) = capture();
    c.flush(fh, cb);
    assert_eq!(flushed.lock().unwrap().take(), Some(Ok(())));
    c.release(fh, Box::new(|_| {}));
    // cp's stat after close: no round trip, the size written.
    let (cb, got) = capture();
    c.getattr(&Who::Mount, NodeId(f.node), None, cb);
    let (a, _) = got.lock().unwrap().take().expect("answered").unwrap();
    assert_eq!(a.size, 5);
    assert_eq!(held.kinds(), vec![create_new().tag()]);
    held.answer(&create_new(), Ok(Response::Created { entry: f, fh: fh.0 }));
    held.answer(&write_req(), Ok(Response::Written(5)));
    held.answer(&Request::Release { fh: 0 }, Ok(Response::Ok));
    // Landed: the host follows the file no more.
    assert!(c.made.attr(f.node).is_none());
}
