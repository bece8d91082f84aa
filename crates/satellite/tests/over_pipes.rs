//! Runs the satellite binary as a local child process over pipes, as the
//! host does through `docker exec`, and drives it with real frames.
//!
//! By default the satellite is this build's own. `DOCKERFUSE_TEST_SATELLITE`
//! names another binary (a satellite of another architecture, which the
//! kernel runs through qemu-user's binfmt handler), and
//! `DOCKERFUSE_TEST_SATELLITE_RUNNER` a command to start it with (such as
//! `qemu-arm-static -cpu arm1176` for arm/v6, words split on spaces).
//! The harness that starts it is `dockerfuse-testkit`'s, which the host's
//! model test uses too.

use std::io::{BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use dockerfuse_proto::frame::{decode, encode, read_frame};
use dockerfuse_proto::*;
use dockerfuse_testkit::{Satellite, Spawn};

struct Sat {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next: u64,
    buf: Vec<u8>,
}

impl Sat {
    fn start(root: &std::path::Path) -> (Sat, SatelliteHello) {
        Sat::start_with_nofile(root, None)
    }

    /// Starts it with RLIMIT_NOFILE set to `nofile` (soft and hard).
    fn start_with_nofile(root: &std::path::Path, nofile: Option<u64>) -> (Sat, SatelliteHello) {
        Sat::start_with(root, nofile, &[])
    }

    /// Starts it with RLIMIT_NOFILE `nofile` and more arguments.
    fn start_with(
        root: &std::path::Path,
        nofile: Option<u64>,
        args: &[&str],
    ) -> (Sat, SatelliteHello) {
        Sat::start_speaking(root, nofile, args, PROTOCOL_VERSION)
    }

    /// Starts it and answers its hello with `protocol`.
    fn start_speaking(
        root: &std::path::Path,
        nofile: Option<u64>,
        args: &[&str],
        protocol: u32,
    ) -> (Sat, SatelliteHello) {
        let how = Spawn {
            nofile,
            args,
            quiet: false,
        };
        let mut child = satellite().spawn(root, &how);
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut s = Sat {
            child,
            input,
            output,
            next: 1,
            buf: Vec::new(),
        };
        assert_eq!(
            read_frame(&mut s.output, &mut s.buf).unwrap(),
            Some(HELLO_ID)
        );
        let hello = match decode::<Response<'_>>(&s.buf).unwrap() {
            Response::Hello(h) => h,
            other => panic!("expected hello, got {other:?}"),
        };
        s.send_raw(
            HELLO_ID,
            &Request::Hello(HostHello {
                protocol,
                version: "test".into(),
                max_io: MAX_IO,
            }),
        );
        (s, hello)
    }

    fn send_raw(&mut self, id: u64, req: &Request<'_>) {
        let mut f = Vec::new();
        encode(id, req, &mut f).unwrap();
        self.input.write_all(&f).unwrap();
        self.input.flush().unwrap();
    }

    fn call(&mut self, req: Request<'_>) -> Response<'static> {
        let id = self.next;
        self.next += 1;
        self.send_raw(id, &req);
        let got = read_frame(&mut self.output, &mut self.buf)
            .unwrap()
            .expect("a reply");
        assert_eq!(got, id);
        into_static(decode::<Response<'_>>(&self.buf).unwrap())
    }

    fn entry(&mut self, req: Request<'_>) -> Entry {
        match self.call(req) {
            Response::Entry(e) => e,
            other => panic!("expected entry, got {other:?}"),
        }
    }
}

fn owned_entries(v: Vec<DirEntry<'_>>) -> Vec<DirEntry<'static>> {
    v.into_iter()
        .map(|e| DirEntry {
            name: e.name.into_owned().into(),
            offset: e.offset,
            kind: e.kind,
            ino: e.ino,
            entry: e.entry,
        })
        .collect()
}

/// The satellite under test (see the top of the file).
fn satellite() -> Satellite {
    Satellite::from_env(std::path::Path::new(env!(
        "CARGO_BIN_EXE_dockerfuse-satellite"
    )))
}

fn into_static(r: Response<'_>) -> Response<'static> {
    match r {
        Response::Data(d) => Response::Data(d.into_owned().into()),
        Response::Dir(v) => Response::Dir(owned_entries(v)),
        Response::DirEnd(v) => Response::DirEnd(owned_entries(v)),
        Response::DirOpened { fh, entries, end } => Response::DirOpened {
            fh,
            entries: owned_entries(entries),
            end,
        },
        Response::Streamed { dirs, files } => Response::Streamed {
            dirs: dirs
                .into_iter()
                .map(|d| StreamedDir {
                    node: d.node,
                    entries: owned_entries(d.entries),
                })
                .collect(),
            files: files
                .into_iter()
                .map(|f| StreamedFile {
                    node: f.node,
                    data: f.data.into_owned().into(),
                })
                .collect(),
        },
        Response::Hello(h) => Response::Hello(h),
        Response::Error(e) => Response::Error(e),
        Response::Ok => Response::Ok,
        Response::Entry(e) => Response::Entry(e),
        Response::Attr(a) => Response::Attr(a),
        Response::Written(n) => Response::Written(n),
        Response::WrittenAttr { n, attr } => Response::WrittenAttr { n, attr },
        Response::Opened { fh } => Response::Opened { fh },
        Response::Created { entry, fh } => Response::Created { entry, fh },
        Response::StatFs(s) => Response::StatFs(s),
        Response::XattrSize(n) => Response::XattrSize(n),
        Response::Offset(o) => Response::Offset(o),
        Response::Channel { fd } => Response::Channel { fd },
        Response::OpenedFd { fh, fd } => Response::OpenedFd { fh, fd },
        Response::CreatedFd { entry, fh, fd } => Response::CreatedFd { entry, fh, fd },
        Response::OpenedSmall { fh, fd, data } => Response::OpenedSmall {
            fh,
            fd,
            data: data.map(|d| d.into_owned().into()),
        },
        Response::Changes(v) => Response::Changes(
            v.into_iter()
                .map(|c| match c {
                    Change::Entry { dir, name } => Change::Entry {
                        dir,
                        name: name.into_owned().into(),
                    },
                    Change::Removed { dir, name, node } => Change::Removed {
                        dir,
                        name: name.into_owned().into(),
                        node,
                    },
                    Change::Attr { node } => Change::Attr { node },
                    Change::Data { node } => Change::Data { node },
                    Change::Unwatched { node } => Change::Unwatched { node },
                    Change::All => Change::All,
                })
                .collect(),
        ),
    }
}

/// `pidfd_getfd`: a copy of descriptor `fd` of process `pid`.
fn take_fd(pid: u32, fd: u32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: raw syscalls with integer arguments; the results are new
    // descriptors owned here.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = std::os::fd::OwnedFd::from_raw_fd(pidfd as i32);
        use std::os::fd::AsRawFd;
        let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd as i32, 0);
        assert!(got >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        std::os::fd::OwnedFd::from_raw_fd(got as i32)
    }
}

#[test]
fn the_conversation_moves_to_the_channel_and_opens_carry_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"through the kernel").unwrap();
    let (mut s, hello) = Sat::start(dir.path());
    // Before the switch, opens carry no descriptor.
    let f = s.entry(Request::Lookup {
        parent: ROOT_NODE,
        name: name("f"),
    });
    assert!(matches!(
        s.call(Request::Open {
            node: f.node,
            flags: OpenFlags::from_native(libc::O_RDONLY)
        }),
        Response::Opened { .. }
    ));
    let fd = match s.call(Request::OpenChannel) {
        Response::Channel { fd } => fd,
        other => panic!("expected a channel, got {other:?}"),
    };
    let sock = take_fd(s.child.id(), fd);
    assert_eq!(s.call(Request::UseChannel { fds: true }), Response::Ok);
    let mut sock_in = std::os::unix::net::UnixStream::from(sock);
    let mut sock_out = BufReader::new(sock_in.try_clone().unwrap());
    let mut buf = Vec::new();
    assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(HELLO_ID));
    assert_eq!(
        decode::<Response<'_>>(&buf).unwrap(),
        Response::Hello(hello)
    );
    // Answers now come over the socket, with the file's descriptor.
    let mut frame = Vec::new();
    encode(
        40,
        &Request::Open {
            node: f.node,
            flags: OpenFlags::from_native(libc::O_RDONLY),
        },
        &mut frame,
    )
    .unwrap();
    sock_in.write_all(&frame).unwrap();
    assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(40));
    let (fh, fd) = match decode::<Response<'_>>(&buf).unwrap() {
        Response::OpenedFd { fh, fd } => (fh, fd),
        other => panic!("expected an open with a descriptor, got {other:?}"),
    };
    assert!(fh > 0);
    let file = std::fs::File::from(take_fd(s.child.id(), fd));
    let mut text = String::new();
    use std::io::Read;
    (&file).read_to_string(&mut text).unwrap();
    assert_eq!(text, "through the kernel");
    // An open with contents carries both.
    frame.clear();
    encode(
        42,
        &Request::OpenSmall {
            node: f.node,
            flags: OpenFlags::from_native(libc::O_RDONLY),
            max: MAX_OPEN_DATA,
        },
        &mut frame,
    )
    .unwrap();
    sock_in.write_all(&frame).unwrap();
    assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(42));
    match decode::<Response<'_>>(&buf).unwrap() {
        Response::OpenedSmall {
            fh,
            fd: Some(_),
            data: Some(d),
        } => {
            assert!(fh > 0);
            assert_eq!(&d[..], b"through the kernel");
        }
        other => panic!("expected an open with a descriptor and contents, got {other:?}"),
    }
    // A second switch is refused.
    frame.clear();
    encode(41, &Request::OpenChannel, &mut frame).unwrap();
    sock_in.write_all(&frame).unwrap();
    assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(41));
    assert_eq!(
        decode::<Response<'_>>(&buf).unwrap(),
        Response::Error(libc::EINVAL)
    );
    // Closing the channel ends the satellite, as closing stdin does.
    drop(sock_in);
    drop(sock_out);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// An OpenSmall's handle and data (its descriptor is never reported
/// without the channel).
fn open_small(s: &mut Sat, node: u64, flags: i32, max: u32) -> (u64, Option<Vec<u8>>) {
    match s.call(Request::OpenSmall {
        node,
        flags: OpenFlags::from_native(flags),
        max,
    }) {
        Response::OpenedSmall { fh, fd: None, data } => (fh, data.map(|d| d.into_owned())),
        other => panic!("expected an open with contents, got {other:?}"),
    }
}

#[test]
fn the_contents_an_open_brings_leave_the_atime_alone() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"some bytes").unwrap();
    // An atime older than the mtime: any read would move it (relatime).
    let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    // SAFETY: a valid C path and two timespecs.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
        0
    );
    let (mut s, _) = Sat::start(dir.path());
    let node = s
        .entry(Request::Lookup {
            parent: ROOT_NODE,
            name: name("f"),
        })
        .node;
    let (fh, data) = open_small(&mut s, node, libc::O_RDONLY, MAX_OPEN_DATA);
    assert_eq!(data.as_deref(), Some(&b"some bytes"[..]));
    assert_eq!(std::fs::metadata(&f).unwrap().atime(), 1000);
    // A read through the handle is a read: it may move the atime again.
    assert!(matches!(
        s.call(Request::Read {
            fh,
            offset: 0,
            size: 4
        }),
        Response::Data(_)
    ));
    assert!(std::fs::metadata(&f).unwrap().atime() > 1000);
}

#[test]
fn an_open_of_a_small_file_read_only_brings_its_whole_contents() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("small"), b"a small file").unwrap();
    std::fs::write(p.join("empty"), b"").unwrap();
    let exact = vec![7u8; MAX_OPEN_DATA as usize];
    std::fs::write(p.join("exact"), &exact).unwrap();
    std::fs::write(p.join("large"), vec![1u8; MAX_OPEN_DATA as usize + 1]).unwrap();
    std::fs::create_dir(p.join("dir")).unwrap();
    let (mut s, _) = Sat::start(p);
    let node = |s: &mut Sat, n: &str| {
        s.entry(Request::Lookup {
            parent: ROOT_NODE,
            name: name(n),
        })
        .node
    };
    let small = node(&mut s, "small");
    let (fh, data) = open_small(&mut s, small, libc::O_RDONLY, MAX_OPEN_DATA);
    assert_eq!(data.as_deref(), Some(&b"a small file"[..]));
    // The handle is a real one: a read through it agrees.
    assert_eq!(
        s.call(Request::Read {
            fh,
            offset: 2,
            size: 100
        }),
        Response::Data(b"small file".to_vec().into())
    );
    assert_eq!(s.call(Request::Release { fh }), Response::Ok);
    // Larger than `max`: nothing (and exactly `max`: all of it).
    assert_eq!(open_small(&mut s, small, libc::O_RDONLY, 5).1, None);
    assert_eq!(
        open_small(&mut s, small, libc::O_RDONLY, 12).1.as_deref(),
        Some(&b"a small file"[..])
    );
    let empty = node(&mut s, "empty");
    assert_eq!(
        open_small(&mut s, empty, libc::O_RDONLY, 10).1,
        Some(Vec::new())
    );
    // The satellite never sends more than MAX_OPEN_DATA, whatever is asked.
    let exact_node = node(&mut s, "exact");
    assert_eq!(
        open_small(&mut s, exact_node, libc::O_RDONLY, u32::MAX).1,
        Some(exact)
    );
    let large = node(&mut s, "large");
    assert_eq!(open_small(&mut s, large, libc::O_RDONLY, u32::MAX).1, None);
    // Open for writing: no contents, but a working handle.
    let (fh, data) = open_small(&mut s, small, libc::O_RDWR, MAX_OPEN_DATA);
    assert_eq!(data, None);
    assert_eq!(
        s.call(Request::Write {
            fh,
            offset: 0,
            data: name("A"),
        }),
        Response::Written(1)
    );
    assert_eq!(
        open_small(&mut s, small, libc::O_WRONLY, MAX_OPEN_DATA).1,
        None
    );
    assert_eq!(std::fs::read(p.join("small")).unwrap(), b"A small file");
    // A directory is no regular file.
    let d = node(&mut s, "dir");
    assert_eq!(
        open_small(&mut s, d, libc::O_RDONLY | libc::O_DIRECTORY, MAX_OPEN_DATA).1,
        None
    );
    // A batch of releases closes each open handle and has no reply (the
    // next reply is the next request's: `call` checks the id).
    let (a, _) = open_small(&mut s, small, libc::O_RDONLY, MAX_OPEN_DATA);
    let (b, _) = open_small(&mut s, empty, libc::O_RDONLY, MAX_OPEN_DATA);
    let id = s.next;
    s.next += 1;
    s.send_raw(
        id,
        &Request::ReleaseMany {
            fhs: vec![a, 999_999, b],
        },
    );
    // (Workers run requests in parallel: the batch may come after a read.)
    for fh in [a, b] {
        let closed = (0..200).any(|_| {
            let r = s.call(Request::Read {
                fh,
                offset: 0,
                size: 1,
            });
            std::thread::sleep(std::time::Duration::from_millis(5));
            r == Response::Error(libc::EBADF)
        });
        assert!(closed, "handle {fh} is closed by the batch");
    }
    // Errors are those of Open.
    assert_eq!(
        s.call(Request::OpenSmall {
            node: 999,
            flags: OpenFlags::from_native(libc::O_RDONLY),
            max: 10
        }),
        s.call(Request::Open {
            node: 999,
            flags: OpenFlags::from_native(libc::O_RDONLY)
        })
    );
    drop(s.input);
    assert!(s.child.wait().unwrap().success());
}

fn name(s: &str) -> std::borrow::Cow<'_, [u8]> {
    s.as_bytes().into()
}

#[test]
fn hello_names_arch_and_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, hello) = Sat::start(dir.path());
    assert_eq!(hello.protocol, PROTOCOL_VERSION);
    assert_eq!(hello.arch, satellite().arch());
    assert_eq!(hello.max_io, MAX_IO);
    s.send_raw(9, &Request::Shutdown);
    assert!(s.child.wait().unwrap().success());
}

/// Open flags travel in the protocol's numbering; a host before protocol
/// 6 sent them in the satellite's own, which it still takes from such a
/// host.
#[test]
fn open_flags_are_read_in_the_numbering_the_host_speaks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let abi = Abi::of_arch(satellite().arch());
    for protocol in [PROTOCOL_VERSION, 5] {
        let (mut s, _) = Sat::start_speaking(dir.path(), None, &[], protocol);
        let f = s
            .entry(Request::Lookup {
                parent: ROOT_NODE,
                name: name("f"),
            })
            .node;
        let flags = |bits: u32| match protocol {
            5 => OpenFlags(OpenFlags(bits).to_abi(abi) as u32),
            _ => OpenFlags(bits),
        };
        // O_DIRECTORY on a regular file: refused, so it was read as such.
        assert_eq!(
            s.call(Request::Open {
                node: f,
                flags: flags(OpenFlags::DIRECTORY),
            }),
            Response::Error(libc::ENOTDIR),
            "protocol {protocol}"
        );
        assert!(
            matches!(
                s.call(Request::Open {
                    node: f,
                    flags: flags(OpenFlags::RDWR | OpenFlags::APPEND),
                }),
                Response::Opened { .. }
            ),
            "protocol {protocol}"
        );
        drop(s.input);
        assert!(s.child.wait().unwrap().success());
    }
}

#[test]
fn file_lifecycle_matches_the_real_tree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("existing"), b"hello world").unwrap();
    let (mut s, _) = Sat::start(dir.path());

    // lookup + read of a file made outside
    let e = s.entry(Request::Lookup {
        parent: ROOT_NODE,
        name: name("existing"),
    });
    assert_eq!(e.attr.size, 11);
    assert_eq!(e.attr.ino, e.node, "st_ino is the node id");
    let fh = match s.call(Request::Open {
        node: e.node,
        flags: OpenFlags::from_native(libc::O_RDONLY),
    }) {
        Response::Opened { fh } => fh,
        o => panic!("{o:?}"),
    };
    assert_eq!(
        s.call(Request::Read {
            fh,
            offset: 6,
            size: 100
        }),
        Response::Data(b"world".to_vec().into())
    );
    // FLUSH must not close: a read after it still works.
    assert_eq!(s.call(Request::Flush { fh }), Response::Ok);
    assert_eq!(
        s.call(Request::Read {
            fh,
            offset: 0,
            size: 5
        }),
        Response::Data(b"hello".to_vec().into())
    );
    assert_eq!(s.call(Request::Release { fh }), Response::Ok);
    assert_eq!(
        s.call(Request::Release { fh }),
        Response::Error(libc::EBADF)
    );

    // create + write + setattr, seen on disk
    let (c, cfh) = match s.call(Request::Create {
        parent: ROOT_NODE,
        name: name("new"),
        mode: libc::S_IFREG | 0o640,
        flags: OpenFlags::from_native(libc::O_WRONLY | libc::O_EXCL),
    }) {
        Response::Created { entry, fh } => (entry, fh),
        o => panic!("{o:?}"),
    };
    assert_eq!(
        c.attr.mode & 0o7777,
        0o640,
        "umask of the satellite does not apply"
    );
    assert_eq!(
        s.call(Request::Write {
            fh: cfh,
            offset: 0,
            data: name("abcdef")
        }),
        Response::Written(6)
    );
    let a = match s.call(Request::SetAttr {
        node: c.node,
        fh: None,
        attr: SetAttr {
            size: Some(3),
            mode: Some(0o600),
            mtime: Some(SetTime::At {
                sec: 1_600_000_000,
                nsec: 123_456_789,
            }),
            ..Default::default()
        },
    }) {
        Response::Attr(a) => a,
        o => panic!("{o:?}"),
    };
    assert_eq!(
        (a.size, a.mode & 0o7777, a.mtime, a.mtime_nsec),
        (3, 0o600, 1_600_000_000, 123_456_789)
    );
    s.call(Request::Release { fh: cfh });
    let md = std::fs::metadata(dir.path().join("new")).unwrap();
    assert_eq!(std::fs::read(dir.path().join("new")).unwrap(), b"abc");
    assert_eq!((md.mode() & 0o7777, md.mtime_nsec()), (0o600, 123_456_789));
    // O_EXCL on an existing name
    assert_eq!(
        s.call(Request::Create {
            parent: ROOT_NODE,
            name: name("new"),
            mode: libc::S_IFREG | 0o600,
            flags: OpenFlags::from_native(libc::O_WRONLY | libc::O_EXCL)
        }),
        Response::Error(libc::EEXIST)
    );

    // hard link: same node, nlink 2
    let l = s.entry(Request::Link {
        node: c.node,
        new_parent: ROOT_NODE,
        new_name: name("hard"),
    });
    assert_eq!(l.node, c.node);
    assert_eq!(l.attr.nlink, 2);

    // mkdir, symlink, rename, readlink
    let d = s.entry(Request::Mkdir {
        parent: ROOT_NODE,
        name: name("d"),
        mode: 0o755,
    });
    assert_eq!(d.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    let sl = s.entry(Request::Symlink {
        parent: d.node,
        name: name("ln"),
        target: name("../new"),
    });
    assert_eq!(
        s.call(Request::ReadLink { node: sl.node }),
        Response::Data(b"../new".to_vec().into())
    );
    assert_eq!(
        s.call(Request::Rename {
            parent: ROOT_NODE,
            name: name("new"),
            new_parent: d.node,
            new_name: name("moved"),
            flags: 0
        }),
        Response::Ok
    );
    assert!(dir.path().join("d/moved").exists());
    // The node survives the rename: getattr still works through its fd.
    assert!(matches!(
        s.call(Request::GetAttr {
            node: c.node,
            fh: None
        }),
        Response::Attr(_)
    ));
    assert_eq!(
        s.call(Request::Rename {
            parent: d.node,
            name: name("moved"),
            new_parent: ROOT_NODE,
            new_name: name("hard"),
            flags: libc::RENAME_NOREPLACE
        }),
        Response::Error(libc::EEXIST)
    );

    // errors carry errno
    assert_eq!(
        s.call(Request::Lookup {
            parent: ROOT_NODE,
            name: name("nope")
        }),
        Response::Error(libc::ENOENT)
    );
    assert_eq!(
        s.call(Request::Rmdir {
            parent: ROOT_NODE,
            name: name("d")
        }),
        Response::Error(libc::ENOTEMPTY)
    );
    assert_eq!(
        s.call(Request::GetAttr {
            node: 999_999,
            fh: None
        }),
        Response::Error(libc::ESTALE)
    );
    assert_eq!(
        s.call(Request::Lookup {
            parent: ROOT_NODE,
            name: name("a/b")
        }),
        Response::Error(libc::EINVAL)
    );

    // forget drops the node (it has no reply, and another worker may still
    // be on it when the next request is answered: ask until it took effect)
    s.send_raw(
        0xFFFF,
        &Request::Forget {
            nodes: vec![(sl.node, 1)],
        },
    );
    let mut got = s.call(Request::ReadLink { node: sl.node });
    for _ in 0..100 {
        if got == Response::Error(libc::ESTALE) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        got = s.call(Request::ReadLink { node: sl.node });
    }
    assert_eq!(got, Response::Error(libc::ESTALE));

    drop(s.input);
    assert!(s.child.wait().unwrap().success(), "exits 0 on stdin EOF");
}

#[test]
fn readdirplus_lists_everything_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..500 {
        std::fs::write(dir.path().join(format!("file-{i:04}")), b"x").unwrap();
    }
    let (mut s, _) = Sat::start(dir.path());
    let fh = match s.call(Request::OpenDir { node: ROOT_NODE }) {
        Response::Opened { fh } => fh,
        o => panic!("{o:?}"),
    };
    let mut names = Vec::new();
    let mut offset = 0;
    let (mut calls, mut ended) = (0, false);
    loop {
        // The reply that reaches the end says so (protocol 6), and so does
        // the empty one past it.
        let (entries, end) = match s.call(Request::ReadDir {
            fh,
            offset,
            size: 4096,
            plus: true,
        }) {
            Response::Dir(v) => (v, false),
            Response::DirEnd(v) => (v, true),
            o => panic!("{o:?}"),
        };
        if entries.is_empty() {
            assert!(end, "the empty reply at the end is marked");
            break;
        }
        assert!(!ended, "entries after a reply that reached the end");
        ended = end;
        calls += 1;
        for e in entries {
            offset = e.offset;
            let n = String::from_utf8(e.name.into_owned()).unwrap();
            if n != "." && n != ".." {
                let ent = e.entry.expect("plus entries carry attributes");
                assert_eq!(ent.attr.size, 1);
            } else {
                assert!(e.entry.is_none());
            }
            names.push(n);
        }
    }
    assert!(ended, "the last chunk said it reached the end");
    names.sort();
    assert_eq!(names.len(), 502);
    assert_eq!(names[2], "file-0000");
    assert!(calls > 10, "a 4 KiB budget needs many chunks, got {calls}");
    s.call(Request::ReleaseDir { fh });
}

#[test]
fn a_slow_operation_does_not_stall_others() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert_eq!(
        unsafe {
            libc::mkfifo(
                std::ffi::CString::new(fifo.to_str().unwrap())
                    .unwrap()
                    .as_ptr(),
                0o600,
            )
        },
        0
    );
    let (mut s, _) = Sat::start(dir.path());
    let f = s.entry(Request::Lookup {
        parent: ROOT_NODE,
        name: name("fifo"),
    });
    // Opening a FIFO for reading blocks until a writer comes: send it
    // without waiting for the reply...
    s.send_raw(
        1000,
        &Request::Open {
            node: f.node,
            flags: OpenFlags::from_native(libc::O_RDONLY),
        },
    );
    // ...and other requests must still be answered.
    for _ in 0..3 {
        assert!(matches!(
            s.call(Request::GetAttr {
                node: ROOT_NODE,
                fh: None
            }),
            Response::Attr(_)
        ));
    }
    s.send_raw(1001, &Request::Shutdown);
    assert!(s.child.wait().unwrap().success());
}

#[test]
fn on_the_channel_slow_operations_do_not_stall_others() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (mut s, _) = Sat::start(dir.path());
    let f = s.entry(Request::Lookup {
        parent: ROOT_NODE,
        name: name("fifo"),
    });
    let fd = match s.call(Request::OpenChannel) {
        Response::Channel { fd } => fd,
        other => panic!("expected a channel, got {other:?}"),
    };
    let sock = take_fd(s.child.id(), fd);
    assert_eq!(s.call(Request::UseChannel { fds: false }), Response::Ok);
    let mut sock_in = std::os::unix::net::UnixStream::from(sock);
    let sock_read = sock_in.try_clone().unwrap();
    // A stalled channel fails the test instead of hanging it.
    sock_read
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut sock_out = BufReader::new(sock_read);
    let mut buf = Vec::new();
    assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(HELLO_ID));
    // More blocked opens of the FIFO than the channel starts workers
    // with: each that waits must leave another to read the channel.
    let mut frame = Vec::new();
    for id in 100..110 {
        let open = Request::Open {
            node: f.node,
            flags: OpenFlags::from_native(libc::O_RDONLY),
        };
        frame.clear();
        encode(id, &open, &mut frame).unwrap();
        sock_in.write_all(&frame).unwrap();
    }
    for id in 200..203 {
        let getattr = Request::GetAttr {
            node: ROOT_NODE,
            fh: None,
        };
        frame.clear();
        encode(id, &getattr, &mut frame).unwrap();
        sock_in.write_all(&frame).unwrap();
        assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(id));
        assert!(matches!(
            decode::<Response<'_>>(&buf).unwrap(),
            Response::Attr(_)
        ));
    }
    // A writer lets every open through.
    let w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let mut opened = Vec::new();
    for _ in 100..110 {
        let id = read_frame(&mut sock_out, &mut buf).unwrap().unwrap();
        assert!(matches!(
            decode::<Response<'_>>(&buf).unwrap(),
            Response::Opened { .. }
        ));
        opened.push(id);
    }
    opened.sort();
    assert_eq!(opened, (100..110).collect::<Vec<_>>());
    drop(w);
    drop(sock_in);
    drop(sock_out);
    assert!(s.child.wait().unwrap().success());
}

/// A quick request (one the channel's reader runs itself) that waits after
/// all loses the turn to the watchdog: here the open for writing of a
/// regular file on which this process holds a read lease, which waits
/// until the lease is given up.
#[test]
fn on_the_channel_a_quick_request_that_waits_does_not_stall_others() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leased");
    std::fs::write(&path, b"x").unwrap();
    let (mut s, _) = Sat::start(dir.path());
    let f = s.entry(Request::Lookup {
        parent: ROOT_NODE,
        name: name("leased"),
    });
    let fd = match s.call(Request::OpenChannel) {
        Response::Channel { fd } => fd,
        other => panic!("expected a channel, got {other:?}"),
    };
    let sock = take_fd(s.child.id(), fd);
    assert_eq!(s.call(Request::UseChannel { fds: false }), Response::Ok);
    let mut sock_in = std::os::unix::net::UnixStream::from(sock);
    let sock_read = sock_in.try_clone().unwrap();
    // A stalled channel fails the test instead of hanging it.
    sock_read
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut sock_out = BufReader::new(sock_read);
    let mut buf = Vec::new();
    assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(HELLO_ID));
    let leased = std::fs::File::open(&path).unwrap();
    // SAFETY: ignoring SIGIO (the lease break's signal, whose default
    // ends the process) touches no memory; an owned descriptor.
    unsafe {
        libc::signal(libc::SIGIO, libc::SIG_IGN);
        assert_eq!(
            libc::fcntl(leased.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
    let mut frame = Vec::new();
    let open = Request::Open {
        node: f.node,
        flags: OpenFlags::from_native(libc::O_WRONLY),
    };
    encode(100, &open, &mut frame).unwrap();
    sock_in.write_all(&frame).unwrap();
    for id in 200..203 {
        let getattr = Request::GetAttr {
            node: ROOT_NODE,
            fh: None,
        };
        frame.clear();
        encode(id, &getattr, &mut frame).unwrap();
        sock_in.write_all(&frame).unwrap();
        assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(id));
        assert!(matches!(
            decode::<Response<'_>>(&buf).unwrap(),
            Response::Attr(_)
        ));
    }
    // Given up, the lease lets the open through.
    // SAFETY: an owned descriptor.
    assert_eq!(
        unsafe { libc::fcntl(leased.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) },
        0
    );
    assert_eq!(read_frame(&mut sock_out, &mut buf).unwrap(), Some(100));
    assert!(matches!(
        decode::<Response<'_>>(&buf).unwrap(),
        Response::Opened { .. }
    ));
    drop(sock_in);
    drop(sock_out);
    assert!(s.child.wait().unwrap().success());
}

#[test]
fn garbage_input_does_not_crash_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Sat::start(dir.path());
    // A frame whose payload is not a request gets EPROTO for its id.
    let mut f = Vec::new();
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&77u64.to_le_bytes());
    f.extend_from_slice(&[0xff; 5]);
    s.input.write_all(&f).unwrap();
    assert_eq!(read_frame(&mut s.output, &mut s.buf).unwrap(), Some(77));
    assert_eq!(
        decode::<Response<'_>>(&s.buf).unwrap(),
        Response::Error(libc::EPROTO)
    );
    // An oversize length ends the session instead of allocating it.
    let mut f = Vec::new();
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    f.extend_from_slice(&1u64.to_le_bytes());
    s.input.write_all(&f).unwrap();
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn delete_self_removes_the_executable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("sat");
    std::fs::copy(env!("CARGO_BIN_EXE_dockerfuse-satellite"), &exe).unwrap();
    let mut child = Command::new(&exe)
        .args(["--delete-self", "--root", "/"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut buf = Vec::new();
    assert_eq!(read_frame(&mut out, &mut buf).unwrap(), Some(HELLO_ID));
    assert!(!exe.exists(), "the binary is gone while it runs");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[test]
fn random_requests_get_answers_and_never_kill_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let (mut s, _) = Sat::start(dir.path());
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let names = ["f", "d", "g", "..", ".", "", "a/b", "d/../f"];
    for _ in 0..3000 {
        // Small ids so that some hit real nodes and handles.
        let (a, b, c) = (next() % 8, next() % 8, next());
        let name = name(names[(c % names.len() as u64) as usize]);
        let req = match next() % 16 {
            0 => Request::Lookup { parent: a, name },
            1 => Request::GetAttr {
                node: a,
                fh: Some(b),
            },
            2 if c % 3 == 0 => Request::OpenSmall {
                node: a,
                flags: OpenFlags((c % 4) as u32),
                max: (c >> 8) as u32,
            },
            2 => Request::Open {
                node: a,
                flags: OpenFlags((c % 4) as u32),
            },
            3 => Request::Read {
                fh: a,
                offset: c % 100,
                size: (c % 5000) as u32,
            },
            4 => Request::Write {
                fh: a,
                offset: c % 100,
                data: name,
            },
            5 => Request::Release { fh: a },
            6 => Request::OpenDir { node: a },
            7 => Request::ReadDir {
                fh: a,
                offset: c % 5,
                size: (c % 10_000) as u32,
                plus: c % 2 == 0,
            },
            8 => Request::Mkdir {
                parent: a,
                name,
                mode: 0o755,
            },
            9 => Request::Unlink { parent: a, name },
            10 => Request::Rename {
                parent: a,
                name: name.clone(),
                new_parent: b,
                new_name: name,
                flags: (c % 8) as u32,
            },
            11 => Request::SetAttr {
                node: a,
                fh: None,
                attr: SetAttr {
                    size: Some(c % 10),
                    ..Default::default()
                },
            },
            12 => Request::ReadLink { node: a },
            13 => Request::Link {
                node: a,
                new_parent: b,
                new_name: name,
            },
            14 => Request::GetXattr {
                node: a,
                name,
                size: (c % 100) as u32,
            },
            _ => Request::StatFs { node: a },
        };
        assert!(
            !matches!(s.call(req), Response::Hello(_)),
            "a hello in the middle"
        );
    }
    assert!(matches!(
        s.call(Request::GetAttr {
            node: ROOT_NODE,
            fh: None
        }),
        Response::Attr(_)
    ));
    drop(s.input);
    assert!(s.child.wait().unwrap().success());
}

/// `Request::As` performs a request as another user when the satellite is
/// root (the test then checks the owner and a permission refusal), and as
/// the satellite itself otherwise.
#[test]
fn requests_as_a_caller_get_its_owner_and_its_permissions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), b"s").unwrap();
    std::fs::set_permissions(
        dir.path().join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (mut s, hello) = Sat::start(dir.path());
    let as_user = |req: Request<'static>| Request::As {
        uid: 204321,
        gid: 204322,
        groups: vec![],
        req: Box::new(req),
    };
    let d = s.entry(as_user(Request::Mkdir {
        parent: ROOT_NODE,
        name: name("made-as-user").into_owned().into(),
        mode: 0o755,
    }));
    let meta = std::fs::metadata(dir.path().join("made-as-user")).unwrap();
    let secret = s.entry(Request::Lookup {
        parent: ROOT_NODE,
        name: name("secret"),
    });
    let open_secret = s.call(as_user(Request::Open {
        node: secret.node,
        flags: OpenFlags::from_native(libc::O_RDONLY),
    }));
    if hello.uid == 0 {
        assert_eq!((meta.uid(), meta.gid()), (204321, 204322));
        assert_eq!((d.attr.uid, d.attr.gid), (204321, 204322));
        assert_eq!(open_secret, Response::Error(libc::EACCES));
    } else {
        assert_eq!(meta.uid(), hello.uid);
        assert!(matches!(open_secret, Response::Opened { .. }));
    }
    // The worker is root again afterwards: a plain request can read it.
    assert!(matches!(
        s.call(Request::Open {
            node: secret.node,
            flags: OpenFlags::from_native(libc::O_RDONLY),
        }),
        Response::Opened { .. }
    ));
    // Nested or forget-wrapping requests are refused.
    assert_eq!(
        s.call(as_user(as_user(Request::StatFs { node: ROOT_NODE }))),
        Response::Error(libc::EINVAL)
    );
}

/// Supplementary groups ride with the caller's identity: group rights,
/// chgrp to one of them, and the container's own setuid/setgid clearing on
/// a write by someone without CAP_FSETID.
#[test]
fn requests_as_a_caller_carry_its_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, hello) = Sat::start(dir.path());
    // Too many groups are refused, not cut, by any satellite.
    let many = Request::As {
        uid: 204321,
        gid: 204322,
        groups: (1..=MAX_GROUPS as u32 + 1).collect(),
        req: Box::new(Request::StatFs { node: ROOT_NODE }),
    };
    assert_eq!(s.call(many), Response::Error(libc::EINVAL));
    if hello.uid != 0 {
        // A satellite that is not root performs requests as itself.
        assert!(matches!(
            s.call(Request::As {
                uid: 204321,
                gid: 204322,
                groups: vec![205555],
                req: Box::new(Request::StatFs { node: ROOT_NODE }),
            }),
            Response::StatFs(_)
        ));
        return;
    }
    let p = |n: &str| dir.path().join(n);
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o777)).unwrap();
    // A group-readable file of a group the caller is only a supplementary
    // member of.
    std::fs::write(p("grp"), b"g").unwrap();
    std::os::unix::fs::chown(p("grp"), Some(0), Some(205555)).unwrap();
    std::fs::set_permissions(p("grp"), PermissionsExt::from_mode(0o640)).unwrap();
    // A setuid+setgid group-executable file everyone may write.
    std::fs::write(p("suid"), b"x").unwrap();
    std::os::unix::fs::chown(p("suid"), Some(0), Some(205555)).unwrap();
    std::fs::set_permissions(p("suid"), PermissionsExt::from_mode(0o6777)).unwrap();
    // A file the caller owns.
    std::fs::write(p("mine"), b"m").unwrap();
    std::os::unix::fs::chown(p("mine"), Some(204321), Some(204322)).unwrap();

    let as_user = |groups: &[u32], req: Request<'static>| Request::As {
        uid: 204321,
        gid: 204322,
        groups: groups.to_vec(),
        req: Box::new(req),
    };
    let node = |s: &mut Sat, n: &'static str| {
        s.entry(Request::Lookup {
            parent: ROOT_NODE,
            name: name(n),
        })
        .node
    };
    let (grp, suid, mine) = (
        node(&mut s, "grp"),
        node(&mut s, "suid"),
        node(&mut s, "mine"),
    );
    let open = |node| Request::Open {
        node,
        flags: OpenFlags::from_native(libc::O_RDONLY),
    };
    assert_eq!(
        s.call(as_user(&[], open(grp))),
        Response::Error(libc::EACCES)
    );
    assert!(matches!(
        s.call(as_user(&[7, 205555], open(grp))),
        Response::Opened { .. }
    ));

    let chgrp = |node, gid| Request::SetAttr {
        node,
        fh: None,
        attr: SetAttr {
            gid: Some(gid),
            ..Default::default()
        },
    };
    assert_eq!(
        s.call(as_user(&[205555], chgrp(mine, 205556))),
        Response::Error(libc::EPERM)
    );
    assert!(matches!(
        s.call(as_user(&[205555], chgrp(mine, 205555))),
        Response::Attr(a) if a.gid == 205555
    ));

    let fh = match s.call(as_user(
        &[],
        Request::Open {
            node: suid,
            flags: OpenFlags::from_native(libc::O_WRONLY),
        },
    )) {
        Response::Opened { fh } => fh,
        other => panic!("expected an open file, got {other:?}"),
    };
    assert_eq!(
        s.call(as_user(
            &[],
            Request::Write {
                fh,
                offset: 0,
                data: name("y"),
            }
        )),
        Response::Written(1)
    );
    let mode = std::fs::metadata(p("suid")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o777, "setuid and setgid cleared by the write");

    // A directory the caller may read but not search: readdirplus still
    // gives its entries (the host kernel checks search permission on the
    // walks to them).
    std::fs::create_dir(p("ronly")).unwrap();
    std::fs::write(p("ronly/inner"), b"i").unwrap();
    std::fs::set_permissions(p("ronly"), PermissionsExt::from_mode(0o754)).unwrap();
    let ronly = node(&mut s, "ronly");
    assert_eq!(
        s.call(as_user(
            &[],
            Request::Lookup {
                parent: ronly,
                name: name("inner"),
            }
        )),
        Response::Error(libc::EACCES)
    );
    let dh = match s.call(as_user(&[], Request::OpenDir { node: ronly })) {
        Response::Opened { fh } => fh,
        other => panic!("expected an open directory, got {other:?}"),
    };
    let listed = s.call(as_user(
        &[],
        Request::ReadDir {
            fh: dh,
            offset: 0,
            size: 4096,
            plus: true,
        },
    ));
    let (Response::Dir(entries) | Response::DirEnd(entries)) = listed else {
        panic!("expected entries, got {listed:?}");
    };
    let inner = entries.iter().find(|e| &e.name[..] == b"inner").unwrap();
    assert!(inner.entry.is_some());

    // The worker is root again, with root's groups.
    assert!(matches!(s.call(open(grp)), Response::Opened { .. }));
}

/// 100,000 entries list completely in chunks, and offsets stay valid while
/// entries are added and removed between the chunks: every entry present
/// from start to end is listed exactly once.
#[test]
fn a_huge_directory_lists_completely_while_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 100_000;
    for i in 0..N {
        std::fs::File::create(dir.path().join(format!("f{i:06}"))).unwrap();
    }
    let (mut s, _) = Sat::start(dir.path());
    let fh = match s.call(Request::OpenDir { node: ROOT_NODE }) {
        Response::Opened { fh } => fh,
        o => panic!("{o:?}"),
    };
    let mut seen = std::collections::HashMap::<String, u32>::new();
    let (mut offset, mut chunks, mut removed) = (0u64, 0usize, Vec::new());
    loop {
        let entries = match s.call(Request::ReadDir {
            fh,
            offset,
            size: 64 * 1024,
            plus: false,
        }) {
            Response::Dir(v) => v,
            o => panic!("{o:?}"),
        };
        if entries.is_empty() {
            break;
        }
        chunks += 1;
        for e in entries {
            offset = e.offset;
            *seen
                .entry(String::from_utf8(e.name.into_owned()).unwrap())
                .or_default() += 1;
        }
        // Between chunks: add a new entry, remove one (seen or not).
        std::fs::File::create(dir.path().join(format!("new{chunks:06}"))).unwrap();
        let victim = format!("f{:06}", (chunks * 7919) % N);
        if std::fs::remove_file(dir.path().join(&victim)).is_ok() {
            removed.push(victim);
        }
    }
    s.call(Request::ReleaseDir { fh });
    assert!(chunks > 20, "64 KiB chunks: expected many, got {chunks}");
    let dup: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dup.is_empty(), "listed more than once: {dup:?}");
    for i in 0..N {
        let n = format!("f{i:06}");
        assert!(
            seen.contains_key(&n) || removed.contains(&n),
            "{n} was never listed"
        );
    }
}

/// With few descriptors, nodes past the budget keep none: they still work,
/// follow renames made through the satellite, and go stale (ESTALE, not a
/// wrong file) when the name is taken by something else.
#[test]
fn nodes_past_the_descriptor_budget_still_work() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..400 {
        std::fs::write(dir.path().join(format!("f{i:03}")), format!("{i}")).unwrap();
    }
    // 128 descriptors: 64 for nodes, far fewer than the 400 files.
    let (mut s, _) = Sat::start_with_nofile(dir.path(), Some(128));
    let mut nodes = Vec::new();
    for i in 0..400 {
        nodes.push(s.entry(Request::Lookup {
            parent: ROOT_NODE,
            name: format!("f{i:03}").into_bytes().into(),
        }));
    }
    for (i, e) in nodes.iter().enumerate() {
        match s.call(Request::GetAttr {
            node: e.node,
            fh: None,
        }) {
            Response::Attr(a) => assert_eq!(a.size, format!("{i}").len() as u64),
            o => panic!("getattr f{i:03}: {o:?}"),
        }
    }
    let last = nodes[399].node;
    let fh = match s.call(Request::Open {
        node: last,
        flags: OpenFlags::from_native(libc::O_RDONLY),
    }) {
        Response::Opened { fh } => fh,
        o => panic!("{o:?}"),
    };
    assert_eq!(
        s.call(Request::Read {
            fh,
            offset: 0,
            size: 10
        }),
        Response::Data(b"399".to_vec().into())
    );
    // Renamed through the satellite: the node follows.
    assert_eq!(
        s.call(Request::Rename {
            parent: ROOT_NODE,
            name: name("f399"),
            new_parent: ROOT_NODE,
            new_name: name("moved"),
            flags: 0,
        }),
        Response::Ok
    );
    assert!(matches!(
        s.call(Request::SetAttr {
            node: last,
            fh: None,
            attr: SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        }),
        Response::Attr(a) if a.mode & 0o777 == 0o600
    ));
    let meta = std::fs::metadata(dir.path().join("moved")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    // Replaced behind its back: stale, never the other file.
    let victim = nodes[398].node;
    std::fs::remove_file(dir.path().join("f398")).unwrap();
    std::fs::write(dir.path().join("f398"), b"imposter").unwrap();
    assert_eq!(
        s.call(Request::GetAttr {
            node: victim,
            fh: None
        }),
        Response::Error(libc::ESTALE)
    );
    // The open file is unaffected.
    assert!(matches!(s.call(Request::Release { fh }), Response::Ok));
}

impl Sat {
    /// Reads frames until one carries changes; replies seen on the way are
    /// returned too. Gives up after `limit`.
    fn next_changes(&mut self, limit: std::time::Duration) -> Vec<Change<'static>> {
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        while t.elapsed() < limit && got.is_empty() {
            let id = read_frame(&mut self.output, &mut self.buf)
                .unwrap()
                .expect("a frame");
            if id == EVENT_ID {
                if let Response::Changes(v) = into_static(decode(&self.buf).unwrap()) {
                    got = v;
                }
            }
        }
        got
    }
}

#[test]
fn past_its_watch_cap_a_node_is_announced_unwatched_before_its_reply() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(dir.path().join(f), b"x").unwrap();
    }
    // The root's watch and one more.
    let (mut s, _) = Sat::start_with(dir.path(), None, &["--max-watches", "2"]);
    assert_eq!(s.call(Request::Watch), Response::Ok);
    let mut unwatched = Vec::new();
    let mut nodes = Vec::new();
    for (i, f) in ["a", "b", "c"].into_iter().enumerate() {
        let id = 500 + i as u64;
        s.send_raw(
            id,
            &Request::Lookup {
                parent: ROOT_NODE,
                name: name(f),
            },
        );
        loop {
            let got = read_frame(&mut s.output, &mut s.buf).unwrap().unwrap();
            match into_static(decode(&s.buf).unwrap()) {
                Response::Changes(v) if got == EVENT_ID => unwatched.extend(v),
                Response::Entry(e) if got == id => {
                    nodes.push(e.node);
                    break;
                }
                other => panic!("frame {got}: {other:?}"),
            }
        }
    }
    assert_eq!(
        unwatched,
        vec![
            Change::Unwatched { node: nodes[1] },
            Change::Unwatched { node: nodes[2] }
        ]
    );
    // The watched one still reports its changes.
    std::fs::write(dir.path().join("a"), b"changed").unwrap();
    let c = s.next_changes(std::time::Duration::from_secs(5));
    assert!(c.contains(&Change::Data { node: nodes[0] }), "{c:?}");
}

#[test]
fn a_bad_watch_cap_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_dockerfuse-satellite"))
        .args(["--max-watches", "0", "--root", "/"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-watches needs a positive number"));
}

#[test]
fn the_feed_reports_changes_of_held_nodes_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/f"), b"one").unwrap();
    std::fs::write(dir.path().join("other"), b"x").unwrap();
    let (mut s, hello) = Sat::start(dir.path());
    assert_eq!(hello.protocol, PROTOCOL_VERSION);
    assert_eq!(s.call(Request::Watch), Response::Ok);
    let d = s.entry(Request::Lookup {
        parent: ROOT_NODE,
        name: name("d"),
    });
    let f = s.entry(Request::Lookup {
        parent: d.node,
        name: name("f"),
    });

    // A file not held by the kernel changes: nothing for it.
    std::fs::write(dir.path().join("other"), b"yy").unwrap();
    // Contents of a held file.
    std::fs::write(dir.path().join("d/f"), b"two").unwrap();
    let c = s.next_changes(std::time::Duration::from_secs(5));
    assert!(c.contains(&Change::Data { node: f.node }), "{c:?}");
    assert!(
        !c.iter()
            .any(|c| matches!(c, Change::Data { node } if *node != f.node)),
        "{c:?}"
    );

    // A name created in a held directory.
    std::fs::write(dir.path().join("d/new"), b"").unwrap();
    let c = s.next_changes(std::time::Duration::from_secs(5));
    assert!(
        c.contains(&Change::Entry {
            dir: d.node,
            name: name("new").into_owned().into()
        }),
        "{c:?}"
    );

    // Removal of a held name names the node that went.
    std::fs::remove_file(dir.path().join("d/f")).unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.extend(s.next_changes(std::time::Duration::from_secs(2)));
        if seen.iter().any(|c| matches!(c, Change::Removed { .. })) {
            break;
        }
    }
    assert!(
        seen.contains(&Change::Removed {
            dir: d.node,
            name: name("f").into_owned().into(),
            node: f.node
        }),
        "{seen:?}"
    );

    // Once forgotten, a directory is no longer watched.
    s.send_raw(
        99_999,
        &Request::Forget {
            nodes: vec![(d.node, 1)],
        },
    );
    let _ = s.call(Request::GetAttr {
        node: ROOT_NODE,
        fh: None,
    });
    // The forget has no reply and another worker may still be on it when
    // the getattr's reply comes: give it time.
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(dir.path().join("d/later"), b"").unwrap();
    std::fs::write(dir.path().join("root-new"), b"").unwrap();
    let c = s.next_changes(std::time::Duration::from_secs(5));
    assert!(
        c.iter()
            .all(|c| !matches!(c, Change::Entry { dir, .. } if *dir == d.node)),
        "{c:?}"
    );
    assert!(
        c.contains(&Change::Entry {
            dir: ROOT_NODE,
            name: name("root-new").into_owned().into()
        }),
        "{c:?}"
    );
}

/// A directory opened with its first read: one reply with the handle and
/// the entries, the end marked when they reach it; the handle reads on.
#[test]
fn a_directory_opens_with_its_first_read() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
    }
    let (mut s, _) = Sat::start(dir.path());
    let (fh, entries, end) = match s.call(Request::OpenReadDir {
        node: ROOT_NODE,
        size: 64 * 1024,
        plus: true,
    }) {
        Response::DirOpened { fh, entries, end } => (fh, entries, end),
        o => panic!("{o:?}"),
    };
    assert!(end, "three files fit one reply");
    assert_eq!(entries.len(), 5);
    assert!(entries
        .iter()
        .filter(|e| e.name.starts_with(b"f"))
        .all(|e| e.entry.is_some()));
    let last = entries.last().unwrap().offset;
    match s.call(Request::ReadDir {
        fh,
        offset: last,
        size: 4096,
        plus: true,
    }) {
        Response::DirEnd(v) => assert!(v.is_empty()),
        o => panic!("{o:?}"),
    }
    assert_eq!(s.call(Request::ReleaseDir { fh }), Response::Ok);
    // A node that is not a directory: the error, and no handle is left.
    assert_eq!(
        s.call(Request::OpenReadDir {
            node: 999_999,
            size: 4096,
            plus: false,
        }),
        Response::Error(libc::ESTALE)
    );
}

fn streamed(r: Response<'static>) -> (Vec<StreamedDir<'static>>, Vec<StreamedFile<'static>>) {
    match r {
        Response::Streamed { dirs, files } => (dirs, files),
        o => panic!("expected a stream, got {o:?}"),
    }
}

/// The names of a streamed directory (without `.` and `..`), sorted.
fn streamed_names(d: &StreamedDir<'_>) -> Vec<String> {
    let mut v: Vec<String> = d
        .entries
        .iter()
        .filter(|e| e.entry.is_some())
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    v.sort();
    v
}

const WIDE: StreamBudget = StreamBudget {
    entries: 1000,
    bytes: 1 << 20,
    depth: 8,
    file_max: 4096,
};

/// A subtree in one reply: breadth first, whole directories with their
/// entries' attributes, the contents of the small files; each limit of
/// the budget cuts it where it says.
#[test]
fn a_subtree_streams_breadth_first_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("a")).unwrap();
    std::fs::create_dir_all(p.join("b/c")).unwrap();
    std::fs::write(p.join("f"), b"hello").unwrap();
    std::fs::write(p.join("big"), vec![7u8; 10_000]).unwrap();
    std::fs::write(p.join("a/x"), b"").unwrap();
    std::fs::write(p.join("b/c/z"), b"zz").unwrap();
    let (mut s, _) = Sat::start(dir.path());
    let stream = |s: &mut Sat, budget| {
        streamed(s.call(Request::Stream {
            node: ROOT_NODE,
            budget,
        }))
    };
    let (dirs, files) = stream(&mut s, WIDE);
    assert_eq!(dirs.len(), 4, "root, a, b, b/c");
    assert_eq!(dirs[0].node, ROOT_NODE);
    assert_eq!(streamed_names(&dirs[0]), ["a", "b", "big", "f"]);
    let node_of = |d: &StreamedDir<'_>, n: &str| {
        d.entries
            .iter()
            .find(|e| &e.name[..] == n.as_bytes())
            .and_then(|e| e.entry)
            .map(|e| e.node)
            .unwrap()
    };
    let (a, b) = (node_of(&dirs[0], "a"), node_of(&dirs[0], "b"));
    let mut level1 = [dirs[1].node, dirs[2].node];
    level1.sort();
    let mut want1 = [a, b];
    want1.sort();
    assert_eq!(level1, want1, "breadth first, in the order listed");
    assert_eq!(streamed_names(&dirs[3]), ["z"]);
    let b_dir = dirs.iter().find(|d| d.node == b).unwrap();
    let a_dir = dirs.iter().find(|d| d.node == a).unwrap();
    let c = node_of(b_dir, "c");
    assert_eq!(dirs[3].node, c);
    let mut got: Vec<(u64, Vec<u8>)> = files.iter().map(|f| (f.node, f.data.to_vec())).collect();
    got.sort();
    let mut want = vec![
        (node_of(&dirs[0], "f"), b"hello".to_vec()),
        (node_of(a_dir, "x"), Vec::new()),
        (node_of(&dirs[3], "z"), b"zz".to_vec()),
    ];
    want.sort();
    assert_eq!(got, want, "small files only, not the 10,000-byte one");
    // Each entry holds a reference: the nodes answer.
    assert!(matches!(
        s.call(Request::GetAttr { node: c, fh: None }),
        Response::Attr(_)
    ));
    // Depth 1: the root and its directories.
    let (dirs, _) = stream(&mut s, StreamBudget { depth: 1, ..WIDE });
    assert_eq!(dirs.len(), 3);
    // Depth 0, no contents: the root alone, bare.
    let (dirs, files) = stream(
        &mut s,
        StreamBudget {
            depth: 0,
            file_max: 0,
            ..WIDE
        },
    );
    assert_eq!((dirs.len(), files.len()), (1, 0));
    // Entries: the root has 6 with . and ..; a has 3; b 3: the walk ends
    // at the directory that does not fit.
    let (dirs, _) = stream(
        &mut s,
        StreamBudget {
            entries: 10,
            ..WIDE
        },
    );
    assert_eq!(dirs.len(), 2);
    // Bytes: not even the root fits; contents go only while bytes last.
    let (dirs, files) = stream(&mut s, StreamBudget { bytes: 300, ..WIDE });
    assert!(dirs.is_empty() && files.is_empty());
    let (_, files) = stream(
        &mut s,
        StreamBudget {
            bytes: 6 * 160 + 3 * 160 + 3 * 160 + 3 * 160 + 30,
            ..WIDE
        },
    );
    assert!(files.len() < 3, "{files:?}");
    // A file is not a directory to stream.
    let f = node_of(&stream(&mut s, WIDE).0[0], "f");
    assert_eq!(
        s.call(Request::Stream {
            node: f,
            budget: WIDE
        }),
        Response::Error(libc::ENOTDIR)
    );
}

/// With the feed on, a subtree past the budget streams the directories
/// that fit, each with its small files' contents: the one that does not
/// fit ends the walk, and watches the satellite drops itself (references
/// forgotten meanwhile) are no change that would cut the reply to the
/// directory asked for.
#[test]
fn a_subtree_past_its_budget_streams_what_fits_with_the_feed_on() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        let d = dir.path().join(format!("d{i}"));
        std::fs::create_dir(&d).unwrap();
        for j in 0..10 {
            std::fs::write(d.join(format!("f{j}")), b"0123456789").unwrap();
        }
    }
    let tagged = (0..4).all(|i| xattr_set(&dir.path().join(format!("d{i}/f1")), "user.k", b"v"));
    let (mut s, _) = Sat::start(dir.path());
    assert_eq!(s.call(Request::Watch), Response::Ok);
    // Every name here costs 160 bytes: the root has 6 with . and .., each
    // directory 12; a file's contents cost 10 + 16.
    let by_entries = StreamBudget {
        entries: 6 + 12 + 12 + 11,
        ..WIDE
    };
    let mut refs = Vec::new();
    for round in 0..3 {
        let (dirs, files) = streamed(s.call(Request::Stream {
            node: ROOT_NODE,
            budget: by_entries,
        }));
        assert_eq!((dirs.len(), files.len()), (3, 20), "round {round}");
        refs.extend(dirs.iter().flat_map(|d| {
            d.entries
                .iter()
                .filter_map(|e| e.entry.map(|e| (e.node, 1)))
        }));
        // Forgotten at once: their watches go while the next one streams.
        s.send_raw(
            50_000 + round,
            &Request::Forget {
                nodes: std::mem::take(&mut refs),
            },
        );
    }
    // Files' "no xattrs" notes (probed through the descriptor their
    // contents were read with, or by node) are a lookup's; one has some.
    let (dirs, _) = streamed(s.call(Request::Stream {
        node: ROOT_NODE,
        budget: by_entries,
    }));
    assert_eq!(dirs.len(), 3);
    for d in &dirs[1..] {
        for e in d.entries.iter().filter(|e| e.entry.is_some()) {
            let looked = s.entry(Request::Lookup {
                parent: d.node,
                name: e.name.clone(),
            });
            assert_eq!(e.entry.unwrap().no_xattrs, looked.no_xattrs, "{:?}", e.name);
            if tagged && &e.name[..] == b"f1" {
                assert!(!looked.no_xattrs);
            }
        }
    }
    // d1's listing fits what is left, not with its contents: it stays out.
    let (dirs, files) = streamed(s.call(Request::Stream {
        node: ROOT_NODE,
        budget: StreamBudget {
            bytes: 6 * 160 + 12 * 160 + 10 * 26 + 12 * 160 + 100,
            ..WIDE
        },
    }));
    assert_eq!((dirs.len(), files.len()), (2, 10));
}

/// Sets a user xattr; false where the filesystem refuses them.
fn xattr_set(path: &std::path::Path, name: &str, value: &[u8]) -> bool {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a buffer of `value.len()` bytes.
    unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

/// Names made while a subtree is streamed are in the listing or reported
/// by the feed: every streamed directory is watched before it is read.
#[test]
fn a_subtree_changing_while_streamed_loses_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("d/e");
    std::fs::create_dir_all(&sub).unwrap();
    let (mut s, _) = Sat::start(dir.path());
    assert_eq!(s.call(Request::Watch), Response::Ok);
    let writer = {
        let sub = sub.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                std::fs::write(sub.join(format!("n{i}")), b"x").unwrap();
            }
        })
    };
    let mut listed = std::collections::HashSet::new();
    let mut e_node = None;
    let mut changes = Vec::new();
    for round in 0..3 {
        let id = 9000 + round;
        s.send_raw(
            id,
            &Request::Stream {
                node: ROOT_NODE,
                budget: WIDE,
            },
        );
        loop {
            let got = read_frame(&mut s.output, &mut s.buf).unwrap().unwrap();
            match into_static(decode(&s.buf).unwrap()) {
                Response::Changes(v) if got == EVENT_ID => changes.extend(v),
                r @ Response::Streamed { .. } if got == id => {
                    let (dirs, _) = streamed(r);
                    if let Some(d) = dirs.get(2) {
                        e_node = Some(d.node);
                        listed.extend(streamed_names(d));
                    }
                    break;
                }
                other => panic!("frame {got}: {other:?}"),
            }
        }
        if round == 0 {
            writer_done(&writer);
        }
    }
    let e = e_node.expect("d/e streamed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        // A request whose reply brings the changes sent before it.
        std::thread::sleep(std::time::Duration::from_millis(100));
        s.send_raw(1, &Request::GetAttr { node: e, fh: None });
        loop {
            let got = read_frame(&mut s.output, &mut s.buf).unwrap().unwrap();
            match into_static(decode(&s.buf).unwrap()) {
                Response::Changes(v) if got == EVENT_ID => changes.extend(v),
                _ if got == 1 => break,
                other => panic!("frame {got}: {other:?}"),
            }
        }
        let reported = |n: &str| {
            changes.iter().any(|c| match c {
                Change::Entry { dir, name } => *dir == e && &name[..] == n.as_bytes(),
                Change::All => true,
                _ => false,
            })
        };
        if (0..300)
            .map(|i| format!("n{i}"))
            .all(|n| listed.contains(&n) || reported(&n))
        {
            return;
        }
    }
    panic!("a name made during the stream was neither listed nor reported");
}

fn writer_done(w: &std::thread::JoinHandle<()>) {
    while !w.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn creates_with_the_hosts_ids_are_checked_and_registered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("there"), b"x").unwrap();
    let (mut s, hello) = Sat::start(dir.path());
    assert!(hello.protocol >= 8);
    let (node, fh) = (HOST_NODE_BIT | 5, HOST_FH_BIT | 5);
    let create = |n: &'static str, node: u64, fh: u64| Request::CreateNew {
        parent: ROOT_NODE,
        name: name(n),
        mode: 0o640,
        flags: OpenFlags::from_native(libc::O_WRONLY),
        node,
        fh,
        time: (1_000_000, 5),
    };
    // Ids outside the host's ranges are refused and nothing is made.
    assert_eq!(s.call(create("a", 5, fh)), Response::Error(libc::EINVAL));
    assert_eq!(s.call(create("a", node, 5)), Response::Error(libc::EINVAL));
    assert_eq!(
        s.call(create("a", node, HOST_FH_BIT << 1)),
        Response::Error(libc::EINVAL)
    );
    assert!(!dir.path().join("a").exists());
    // Always exclusive: an existing name is EEXIST.
    assert_eq!(
        s.call(create("there", node, fh)),
        Response::Error(libc::EEXIST)
    );
    let e = match s.call(create("a", node, fh)) {
        Response::Created { entry, fh: got } => {
            assert_eq!(got, fh);
            entry
        }
        o => panic!("{o:?}"),
    };
    assert_eq!((e.node, e.attr.ino), (node, node));
    assert_eq!(e.attr.mode & 0o7777, 0o640);
    // The host's times.
    assert_eq!((e.attr.mtime, e.attr.mtime_nsec), (1_000_000, 5));
    assert_eq!((e.attr.atime, e.attr.atime_nsec), (1_000_000, 5));
    // The handle writes, the node answers; each write brings the file's
    // attributes after it (protocol 10), as the node has them.
    let after = match s.call(Request::Write {
        fh,
        offset: 0,
        data: name("hi"),
    }) {
        Response::WrittenAttr { n: 2, attr } => attr,
        o => panic!("{o:?}"),
    };
    let now = match s.call(Request::GetAttr { node, fh: None }) {
        Response::Attr(a) => a,
        o => panic!("{o:?}"),
    };
    assert_eq!(now.size, 2);
    assert_eq!(
        Attr {
            ino: now.ino,
            ..after
        },
        now
    );
    // The container's clock, not the host's times the create set.
    assert!((after.mtime, after.mtime_nsec) > (1_000_000, 5));
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"hi");
    // A write clears the setuid bit (unless the writer may keep it): the
    // reply says what the node has.
    std::fs::set_permissions(
        dir.path().join("a"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let cleared = match s.call(Request::Write {
        fh,
        offset: 2,
        data: name("!"),
    }) {
        Response::WrittenAttr { n: 1, attr } => attr,
        o => panic!("{o:?}"),
    };
    let on_disk = std::fs::metadata(dir.path().join("a")).unwrap();
    assert_eq!((cleared.mode, cleared.size), (on_disk.mode(), 3));
    // A clash of either id is refused and makes nothing.
    assert_eq!(
        s.call(create("b", node, HOST_FH_BIT | 6)),
        Response::Error(libc::EEXIST)
    );
    assert_eq!(
        s.call(create("b", HOST_NODE_BIT | 6, fh)),
        Response::Error(libc::EEXIST)
    );
    assert!(!dir.path().join("b").exists());
    // mkdir with the host's id; a create inside it.
    let d = match s.call(Request::MkdirNew {
        parent: ROOT_NODE,
        name: name("d"),
        mode: 0o750,
        node: HOST_NODE_BIT | 7,
        time: (2_000_000, 7),
    }) {
        Response::Entry(e) => e,
        o => panic!("{o:?}"),
    };
    assert_eq!(d.node, HOST_NODE_BIT | 7);
    assert_eq!((d.attr.mtime, d.attr.mtime_nsec), (2_000_000, 7));
    assert_eq!(
        s.call(Request::MkdirNew {
            parent: ROOT_NODE,
            name: name("d2"),
            mode: 0o750,
            node: HOST_NODE_BIT | 7,
            time: (0, 0),
        }),
        Response::Error(libc::EEXIST)
    );
    assert!(!dir.path().join("d2").exists());
    assert!(matches!(
        s.call(Request::CreateNew {
            parent: d.node,
            name: name("in"),
            mode: 0o600,
            flags: OpenFlags::from_native(libc::O_RDWR),
            node: HOST_NODE_BIT | 8,
            fh: HOST_FH_BIT | 8,
            time: (0, 0),
        }),
        Response::Created { .. }
    ));
    assert!(dir.path().join("d/in").is_file());
    assert_eq!(s.call(Request::Release { fh }), Response::Ok);
    // symlink with the host's id: out of range, in use, or an existing
    // name is refused and makes nothing.
    let symlink = |n: &'static str, node: u64| Request::SymlinkNew {
        parent: ROOT_NODE,
        name: name(n),
        target: name("there"),
        node,
        time: (3_000_000, 9),
    };
    assert_eq!(s.call(symlink("l", 9)), Response::Error(libc::EINVAL));
    assert_eq!(
        s.call(symlink("l", HOST_NODE_BIT | 7)),
        Response::Error(libc::EEXIST)
    );
    assert!(dir.path().join("l").symlink_metadata().is_err());
    assert_eq!(
        s.call(symlink("there", HOST_NODE_BIT | 9)),
        Response::Error(libc::EEXIST)
    );
    assert!(dir.path().join("there").is_file());
    let l = match s.call(symlink("l", HOST_NODE_BIT | 9)) {
        Response::Entry(e) => e,
        o => panic!("{o:?}"),
    };
    assert_eq!((l.node, l.attr.ino), (HOST_NODE_BIT | 9, HOST_NODE_BIT | 9));
    assert_eq!(l.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!((l.attr.mtime, l.attr.mtime_nsec), (3_000_000, 9));
    assert_eq!(
        std::fs::read_link(dir.path().join("l")).unwrap(),
        std::path::Path::new("there")
    );
    // The node is registered, as a symlink.
    match s.call(Request::ReadLink { node: l.node }) {
        Response::Data(d) => assert_eq!(&d[..], b"there"),
        o => panic!("{o:?}"),
    }
    assert_eq!(
        s.call(symlink("l2", HOST_NODE_BIT | 9)),
        Response::Error(libc::EEXIST)
    );
    assert!(dir.path().join("l2").symlink_metadata().is_err());
}
