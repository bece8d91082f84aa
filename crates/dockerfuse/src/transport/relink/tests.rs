//! Unit tests of id translation, handles and queueing against fake
//! satellites that number their nodes each in their own way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dockerfuse_proto::{Attr, DirEntry, ROOT_NODE};

use super::*;

const DIR: u32 = 0o040755;
const FILE: u32 = 0o100644;

/// An in-memory satellite: a tree of names with node ids from `base` up.
struct Sat {
    tree: Mutex<Tree>,
    seen: Arc<Mutex<Vec<Request<'static>>>>,
    /// The connection has ended: every call fails with EIO.
    ended: Arc<AtomicBool>,
    /// The connection ends under the next call.
    dies: Arc<AtomicBool>,
    /// Open and create replies carry a descriptor (the local channel).
    fds: AtomicBool,
}

impl Ends for Sat {
    fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }
}

struct Tree {
    /// (parent sid, name) → (sid, mode).
    names: HashMap<(u64, Vec<u8>), (u64, u32)>,
    next: u64,
}

impl Sat {
    /// A satellite serving `paths` ("d/", "d/f": a trailing slash is a
    /// directory), numbering nodes from `base`.
    fn new(base: u64, paths: &[&str]) -> (Self, Arc<Mutex<Vec<Request<'static>>>>) {
        let mut t = Tree {
            names: HashMap::new(),
            next: base,
        };
        for p in paths {
            t.add(p);
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        (
            Sat {
                tree: Mutex::new(t),
                seen: seen.clone(),
                ended: Arc::default(),
                dies: Arc::default(),
                fds: AtomicBool::new(false),
            },
            seen,
        )
    }
}

impl Tree {
    fn add(&mut self, path: &str) {
        let mode = if path.ends_with('/') { DIR } else { FILE };
        let mut parent = ROOT_NODE;
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let key = (parent, part.as_bytes().to_vec());
            let next = &mut self.next;
            let (sid, _) = *self.names.entry(key).or_insert_with(|| {
                *next += 1;
                (*next, if last { mode } else { DIR })
            });
            parent = sid;
        }
    }

    fn entry(&self, parent: u64, name: &[u8]) -> Option<Entry> {
        let &(sid, mode) = self.names.get(&(parent, name.to_vec()))?;
        Some(Entry {
            node: sid,
            attr: Attr {
                ino: sid,
                mode,
                ..Attr::default()
            },
            no_xattrs: true,
        })
    }
}

fn err(e: i32) -> Response<'static> {
    Response::Error(e)
}

impl Transport for Sat {
    fn call(&self, req: &Request<'_>, done: Done) {
        self.seen.lock().unwrap().push(req.clone().into_owned());
        if self.dies.load(Ordering::SeqCst) {
            self.ended.store(true, Ordering::SeqCst);
        }
        if self.has_ended() {
            return done(Err(Errno::EIO));
        }
        if let Request::As { req, .. } = req {
            // Answered as the request it wraps (recorded once, as sent).
            self.call(req, done);
            self.seen.lock().unwrap().pop();
            return;
        }
        let mut t = self.tree.lock().unwrap();
        let resp = match req {
            Request::Lookup { parent, name } => t
                .entry(*parent, name)
                .map_or(err(libc::ENOENT), Response::Entry),
            Request::GetAttr { node, .. } => Response::Attr(Attr {
                ino: *node,
                ..Attr::default()
            }),
            Request::Open { .. } if self.fds.load(Ordering::SeqCst) => {
                Response::OpenedFd { fh: 7, fd: 3 }
            }
            Request::Open { .. } | Request::OpenDir { .. } => Response::Opened { fh: 7 },
            Request::OpenSmall { .. } => Response::OpenedSmall {
                fh: 7,
                fd: None,
                data: Some(b"data".as_slice().into()),
            },
            Request::Read { fh: 7, .. } => Response::Data(b"data".as_slice().into()),
            Request::Read { .. } => err(libc::EBADF),
            Request::Create { parent, name, .. } => {
                t.next += 1;
                let sid = t.next;
                t.names.insert((*parent, name.to_vec()), (sid, FILE));
                let entry = t.entry(*parent, name).unwrap();
                if self.fds.load(Ordering::SeqCst) {
                    Response::CreatedFd {
                        entry,
                        fh: 8,
                        fd: 4,
                    }
                } else {
                    Response::Created { entry, fh: 8 }
                }
            }
            Request::Unlink { parent, name } => {
                t.names.remove(&(*parent, name.to_vec()));
                Response::Ok
            }
            Request::Rename {
                parent,
                name,
                new_parent,
                new_name,
                ..
            } => {
                let v = t.names.remove(&(*parent, name.to_vec())).unwrap();
                t.names.insert((*new_parent, new_name.to_vec()), v);
                Response::Ok
            }
            Request::ReadDir { plus: true, .. } => {
                let mut items: Vec<_> = t
                    .names
                    .keys()
                    .filter(|(p, _)| *p == ROOT_NODE)
                    .map(|(_, n)| n.clone())
                    .collect();
                items.sort();
                Response::Dir(
                    items
                        .into_iter()
                        .map(|n| DirEntry {
                            entry: t.entry(ROOT_NODE, &n),
                            name: n.into(),
                            offset: 0,
                            kind: 0,
                            ino: 0,
                        })
                        .collect(),
                )
            }
            _ => Response::Ok,
        };
        drop(t);
        done(Ok(resp))
    }

    fn post(&self, req: &Request<'_>) {
        self.seen.lock().unwrap().push(req.clone().into_owned());
    }
}

/// What a reply said, detached from the receive buffer.
#[derive(Debug, PartialEq)]
enum Got {
    Entry(u64, u64),
    Attr(u64),
    Fh(u64),
    Data(Vec<u8>),
    Dir(Vec<u64>),
    Ok,
    Err(Errno),
    Other,
}

type Slot = Arc<Mutex<Vec<Got>>>;

fn slot() -> Slot {
    Arc::default()
}

fn into(slot: &Slot) -> Done {
    let slot = slot.clone();
    Box::new(move |r| {
        let got = match r {
            Ok(Response::Entry(e)) => Got::Entry(e.node, e.attr.ino),
            Ok(Response::Created { entry, fh } | Response::CreatedFd { entry, fh, .. }) => {
                slot.lock().unwrap().push(Got::Fh(fh));
                Got::Entry(entry.node, entry.attr.ino)
            }
            Ok(Response::Attr(a)) => Got::Attr(a.ino),
            Ok(
                Response::Opened { fh }
                | Response::OpenedFd { fh, .. }
                | Response::OpenedSmall { fh, .. },
            ) => Got::Fh(fh),
            Ok(Response::Data(d)) => Got::Data(d.to_vec()),
            Ok(Response::Dir(items)) => Got::Dir(
                items
                    .iter()
                    .filter_map(|i| i.entry)
                    .map(|e| e.node)
                    .collect(),
            ),
            Ok(Response::Ok) => Got::Ok,
            Ok(Response::Error(e)) => Got::Err(Errno(e)),
            Ok(_) => Got::Other,
            Err(e) => Got::Err(e),
        };
        slot.lock().unwrap().push(got);
    })
}

/// Sends `req` and returns what came back (synchronously: fakes answer
/// at once).
fn ask(r: &Relink<Sat>, req: Request<'_>) -> Got {
    let s = slot();
    r.call(&req, into(&s));
    let mut v = s.lock().unwrap();
    assert!(!v.is_empty(), "no reply to {req:?}");
    v.pop().unwrap()
}

fn lookup(r: &Relink<Sat>, parent: u64, name: &str) -> Got {
    ask(
        r,
        Request::Lookup {
            parent,
            name: name.as_bytes().into(),
        },
    )
}

fn id_of(g: Got) -> u64 {
    match g {
        Got::Entry(id, ino) => {
            assert_eq!(id, ino, "st_ino is the node id");
            id
        }
        other => panic!("not an entry: {other:?}"),
    }
}

fn getattr(node: u64) -> Request<'static> {
    Request::GetAttr { node, fh: None }
}

type Seen = Arc<Mutex<Vec<Request<'static>>>>;

fn take(seen: &Seen) -> Vec<Request<'static>> {
    std::mem::take(&mut *seen.lock().unwrap())
}

fn relink(paths: &[&str]) -> (Relink<Sat>, Seen) {
    let (sat, seen) = Sat::new(100, paths);
    (Relink::new(sat, Duration::from_secs(30)), seen)
}

/// Swaps in a new satellite serving `paths`, numbering from 500.
fn restart(r: &Relink<Sat>, paths: &[&str]) -> Seen {
    r.disconnect();
    let (sat, seen) = Sat::new(500, paths);
    r.connect(sat);
    seen
}

#[test]
fn the_kernel_sees_ids_of_our_own_and_the_satellite_its_own() {
    let (r, seen) = relink(&["a", "d/f"]);
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    let d = id_of(lookup(&r, ROOT_NODE, "d"));
    let f = id_of(lookup(&r, d, "f"));
    assert!(a > ROOT_NODE && d > ROOT_NODE && f > ROOT_NODE);
    assert!(a < 100 && d < 100 && f < 100, "not the satellite's ids");
    let sat_d = match &take(&seen)[2] {
        Request::Lookup { parent, .. } => *parent,
        other => panic!("{other:?}"),
    };
    assert!(sat_d > 100, "the satellite got its own id for d");
    assert_eq!(ask(&r, getattr(f)), Got::Attr(f));
    assert!(matches!(take(&seen)[0], Request::GetAttr { node, .. } if node > 100));
    // The same node looked up again keeps its id.
    assert_eq!(id_of(lookup(&r, ROOT_NODE, "a")), a);
}

#[test]
fn after_a_reconnect_old_ids_are_looked_up_again_by_path_and_keep_their_number() {
    let (r, _) = relink(&["d/f"]);
    let d = id_of(lookup(&r, ROOT_NODE, "d"));
    let f = id_of(lookup(&r, d, "f"));
    let seen = restart(&r, &["x", "d/f"]);
    assert_eq!(ask(&r, getattr(f)), Got::Attr(f), "st_ino stays the same");
    let sent = take(&seen);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(matches!(&sent[0], Request::Lookup { parent: 1, name } if &name[..] == b"d"));
    assert!(
        matches!(&sent[1], Request::Lookup { parent, name } if *parent > 500 && &name[..] == b"f")
    );
    assert!(matches!(&sent[2], Request::GetAttr { node, .. } if *node > 500));
    // Bound now: no more lookups.
    assert_eq!(ask(&r, getattr(d)), Got::Attr(d));
    assert_eq!(take(&seen).len(), 1);
    // A fresh lookup of the same path gives the kernel the same id.
    assert_eq!(id_of(lookup(&r, d, "f")), f);
}

#[test]
fn a_fresh_lookup_after_a_reconnect_reuses_the_id_the_path_had() {
    let (r, _) = relink(&["a"]);
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    let _ = restart(&r, &["a"]);
    assert_eq!(id_of(lookup(&r, ROOT_NODE, "a")), a);
}

#[test]
fn an_old_id_whose_path_is_gone_or_changed_type_is_stale() {
    let (r, _) = relink(&["gone", "kind"]);
    let gone = id_of(lookup(&r, ROOT_NODE, "gone"));
    let kind = id_of(lookup(&r, ROOT_NODE, "kind"));
    let seen = restart(&r, &["kind/"]);
    assert_eq!(ask(&r, getattr(gone)), Got::Err(Errno::ESTALE));
    assert_eq!(ask(&r, getattr(kind)), Got::Err(Errno::ESTALE));
    // The reference the check took is given back.
    assert!(take(&seen)
        .iter()
        .any(|q| matches!(q, Request::Forget { nodes } if nodes.len() == 1)));
    // An unknown id is stale too, and the root always works.
    assert_eq!(ask(&r, getattr(12345)), Got::Err(Errno::ESTALE));
    assert_eq!(ask(&r, getattr(ROOT_NODE)), Got::Attr(ROOT_NODE));
}

#[test]
fn handles_from_before_the_gap_fail_and_release_quietly() {
    let (r, _) = relink(&["a"]);
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    let Got::Fh(old) = ask(
        &r,
        Request::Open {
            node: a,
            flags: OpenFlags(0),
        },
    ) else {
        panic!()
    };
    let read = |fh| Request::Read {
        fh,
        offset: 0,
        size: 4,
    };
    assert_eq!(ask(&r, read(old)), Got::Data(b"data".to_vec()));
    assert!(
        !r.handle_gone(old),
        "a handle of this satellite is not gone"
    );
    let seen = restart(&r, &["a"]);
    assert!(r.handle_gone(old), "the core refuses writes on it at once");
    assert!(
        !r.handle_gone(crate::fs::Fh::host(1).0),
        "host handles are never gone"
    );
    assert_eq!(ask(&r, read(old)), Got::Err(Errno::EIO));
    assert_eq!(ask(&r, Request::Flush { fh: old }), Got::Err(Errno::EIO));
    assert_eq!(ask(&r, Request::Release { fh: old }), Got::Ok);
    assert!(take(&seen).is_empty(), "nothing reached the new satellite");
    let Got::Fh(new) = ask(
        &r,
        Request::Open {
            node: a,
            flags: OpenFlags(0),
        },
    ) else {
        panic!()
    };
    assert_ne!(
        new, old,
        "the new handle differs though the satellite's is 7 again"
    );
    assert!(!r.handle_gone(new));
    assert_eq!(ask(&r, read(new)), Got::Data(b"data".to_vec()));
    assert!(matches!(
        take(&seen).last(),
        Some(Request::Read { fh: 7, .. })
    ));
}

#[test]
fn an_open_that_brings_contents_is_translated_as_an_open() {
    let (r, seen) = relink(&["a"]);
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    let small = |node| Request::OpenSmall {
        node,
        flags: OpenFlags(0),
        max: 10,
    };
    let Got::Fh(old) = ask(&r, small(a)) else {
        panic!()
    };
    // Each satellite is asked with its own node id (numbered from 100,
    // then from 500).
    let asked = |seen: &Seen| {
        take(seen).into_iter().find_map(|q| match q {
            Request::OpenSmall { node, .. } => Some(node),
            _ => None,
        })
    };
    assert!(asked(&seen).is_some_and(|n| n > 100 && n < 500));
    let seen = restart(&r, &["a"]);
    let Got::Fh(new) = ask(&r, small(a)) else {
        panic!()
    };
    assert!(asked(&seen).is_some_and(|n| n > 500));
    assert_ne!(new, old, "a handle of our own, not the satellite's 7");
    let read = |fh| Request::Read {
        fh,
        offset: 0,
        size: 4,
    };
    assert_eq!(ask(&r, read(old)), Got::Err(Errno::EIO));
    assert_eq!(ask(&r, read(new)), Got::Data(b"data".to_vec()));
    // A batch of releases reaches the satellite with its own handle, less
    // those of the satellite that is gone.
    r.post(&Request::ReleaseMany {
        fhs: vec![old, new],
    });
    assert_eq!(
        take(&seen).last(),
        Some(&Request::ReleaseMany { fhs: vec![7] })
    );
}

#[test]
fn requests_wait_while_disconnected_then_go_out_or_time_out() {
    let (sat, _) = Sat::new(100, &["a"]);
    let r = Relink::new(sat, Duration::ZERO);
    r.disconnect();
    let s = slot();
    r.call(&getattr(ROOT_NODE), into(&s));
    assert!(s.lock().unwrap().is_empty(), "waits");
    assert_eq!(r.queued(), 1);
    let (sat, _) = Sat::new(500, &["a"]);
    r.connect(sat);
    assert_eq!(s.lock().unwrap().pop(), Some(Got::Attr(ROOT_NODE)));
    r.disconnect();
    r.call(&getattr(ROOT_NODE), into(&s));
    r.expire();
    assert_eq!(s.lock().unwrap().pop(), Some(Got::Err(Errno::EIO)));
    r.call(&getattr(ROOT_NODE), into(&s));
    r.give_up();
    assert_eq!(s.lock().unwrap().pop(), Some(Got::Err(Errno::EIO)));
    r.call(&getattr(ROOT_NODE), into(&s));
    assert_eq!(s.lock().unwrap().pop(), Some(Got::Err(Errno::EIO)));
    assert_eq!(r.queued(), 0);
}

#[test]
fn forgets_give_the_satellite_back_only_what_it_gave() {
    let (r, seen) = relink(&["a"]);
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    assert_eq!(id_of(lookup(&r, ROOT_NODE, "a")), a);
    take(&seen);
    r.post(&Request::Forget {
        nodes: vec![(a, 1)],
    });
    let sent = take(&seen);
    assert!(
        matches!(&sent[..], [Request::Forget { nodes }] if nodes.len() == 1 && nodes[0].1 == 1 && nodes[0].0 > 100)
    );
    // Two references after the reconnect, one lookup on the new satellite.
    assert_eq!(id_of(lookup(&r, ROOT_NODE, "a")), a);
    let seen = restart(&r, &["a"]);
    assert_eq!(ask(&r, getattr(a)), Got::Attr(a));
    take(&seen);
    r.post(&Request::Forget {
        nodes: vec![(a, 2)],
    });
    let sent = take(&seen);
    assert!(
        matches!(&sent[..], [Request::Forget { nodes }] if nodes == &vec![(nodes[0].0, 1)] && nodes[0].0 > 500),
        "{sent:?}"
    );
    // Gone from the table: the id is unknown now.
    assert_eq!(ask(&r, getattr(a)), Got::Err(Errno::ESTALE));
}

#[test]
fn renames_and_removals_keep_the_paths_current() {
    let (r, _) = relink(&["a", "b"]);
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    let b = id_of(lookup(&r, ROOT_NODE, "b"));
    let rename = Request::Rename {
        parent: ROOT_NODE,
        name: b"a".as_slice().into(),
        new_parent: ROOT_NODE,
        new_name: b"c".as_slice().into(),
        flags: 0,
    };
    assert_eq!(ask(&r, rename), Got::Ok);
    let unlink = Request::Unlink {
        parent: ROOT_NODE,
        name: b"b".as_slice().into(),
    };
    assert_eq!(ask(&r, unlink), Got::Ok);
    let seen = restart(&r, &["c", "b"]);
    assert_eq!(ask(&r, getattr(a)), Got::Attr(a));
    assert!(matches!(&take(&seen)[0], Request::Lookup { name, .. } if &name[..] == b"c"));
    // b was removed before the gap: a new b is another file.
    assert_eq!(ask(&r, getattr(b)), Got::Err(Errno::ESTALE));
    assert_ne!(id_of(lookup(&r, ROOT_NODE, "b")), b);
}

#[test]
fn readdirplus_and_create_entries_get_our_ids() {
    let (r, _) = relink(&["a", "b"]);
    let Got::Fh(dfh) = ask(&r, Request::OpenDir { node: ROOT_NODE }) else {
        panic!()
    };
    let rd = Request::ReadDir {
        fh: dfh,
        offset: 0,
        size: 4096,
        plus: true,
    };
    let Got::Dir(ids) = ask(&r, rd) else { panic!() };
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|&i| i > ROOT_NODE && i < 100), "{ids:?}");
    assert_eq!(id_of(lookup(&r, ROOT_NODE, "a")), ids[0]);
    let create = Request::Create {
        parent: ROOT_NODE,
        name: b"n".as_slice().into(),
        mode: 0o644,
        flags: OpenFlags(0),
    };
    let s = slot();
    r.call(&create, into(&s));
    let got = std::mem::take(&mut *s.lock().unwrap());
    assert!(
        matches!(got[..], [Got::Fh(_), Got::Entry(n, _)] if n < 100),
        "{got:?}"
    );
    let Got::Entry(n, _) = got[1] else { panic!() };
    let _ = restart(&r, &["a", "b", "n"]);
    assert_eq!(ask(&r, getattr(n)), Got::Attr(n));
    assert_eq!(ask(&r, Request::ReleaseDir { fh: dfh }), Got::Ok);
}

#[test]
fn per_caller_requests_are_translated_inside() {
    let (r, seen) = relink(&["a"]);
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    take(&seen);
    let seen = restart(&r, &["a"]);
    let wrapped = Request::As {
        uid: 5,
        gid: 5,
        groups: vec![5],
        req: Box::new(getattr(a)),
    };
    let s = slot();
    r.call(&wrapped, into(&s));
    assert_eq!(s.lock().unwrap().pop(), Some(Got::Attr(a)));
    let sent = take(&seen);
    assert!(
        matches!(sent.last(), Some(Request::As { req, .. }) if matches!(**req, Request::GetAttr { node, .. } if node > 500)),
        "{sent:?}"
    );
}

#[test]
fn an_ended_connection_makes_requests_wait_and_lookups_caught_in_flight_go_again() {
    let (sat, _) = Sat::new(100, &["a"]);
    let (ended, dies) = (sat.ended.clone(), sat.dies.clone());
    let r = Relink::new(sat, Duration::from_secs(30));
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    // The connection ends under a lookup: it is not failed but waits.
    dies.store(true, Ordering::SeqCst);
    let s = slot();
    r.call(
        &Request::Lookup {
            parent: ROOT_NODE,
            name: b"a".as_slice().into(),
        },
        into(&s),
    );
    assert!(ended.load(Ordering::SeqCst));
    assert!(s.lock().unwrap().is_empty(), "the lookup waits");
    // Sent after the end, before the loss is handled: waits too.
    r.call(&getattr(a), into(&s));
    assert_eq!(r.queued(), 2);
    let _ = restart(&r, &["a"]);
    let got = std::mem::take(&mut *s.lock().unwrap());
    assert_eq!(got, vec![Got::Entry(a, a), Got::Attr(a)]);
}

#[test]
fn replies_with_descriptors_are_translated_like_the_others() {
    let (sat, _) = Sat::new(100, &["a"]);
    sat.fds.store(true, Ordering::SeqCst);
    let r = Relink::new(sat, Duration::from_secs(30));
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    let _ = restart(&r, &["a"]);
    let Got::Fh(fh) = ask(
        &r,
        Request::Open {
            node: a,
            flags: OpenFlags(0),
        },
    ) else {
        panic!()
    };
    assert_ne!(fh, 7, "the handle carries the epoch");
    let create = Request::Create {
        parent: ROOT_NODE,
        name: b"n".as_slice().into(),
        mode: 0o644,
        flags: OpenFlags(0),
    };
    let s = slot();
    r.call(&create, into(&s));
    let got = std::mem::take(&mut *s.lock().unwrap());
    assert!(
        matches!(got[..], [Got::Fh(fh), Got::Entry(n, _)] if fh != 8 && n < 100),
        "{got:?}"
    );
}

fn attr_change(node: u64) -> Change<'static> {
    Change::Attr { node }
}

fn entry_change(dir: u64, name: &str) -> Change<'static> {
    Change::Entry {
        dir,
        name: name.as_bytes().to_vec().into(),
    }
}

#[test]
fn feed_changes_name_our_ids_and_those_without_one_are_dropped() {
    // The satellite numbers d 101 and f 102.
    let (r, _) = relink(&["d/f", "g"]);
    let d = id_of(lookup(&r, ROOT_NODE, "d"));
    let f = id_of(lookup(&r, d, "f"));
    let mut c = vec![
        entry_change(101, "x"),
        attr_change(102),
        Change::Data { node: 102 },
        // Never looked up (g is 103), or unknown: dropped.
        attr_change(103),
        Change::Data { node: 9999 },
        entry_change(9998, "y"),
        // A removed child the kernel never held: no node.
        Change::Removed {
            dir: 101,
            name: b"z".to_vec().into(),
            node: 9997,
        },
        Change::Removed {
            dir: 101,
            name: b"f".to_vec().into(),
            node: 102,
        },
        entry_change(ROOT_NODE, "new"),
        Change::All,
    ];
    r.changes(r.epoch(), &mut c);
    assert_eq!(
        c,
        vec![
            entry_change(d, "x"),
            attr_change(f),
            Change::Data { node: f },
            Change::Removed {
                dir: d,
                name: b"z".to_vec().into(),
                node: 0,
            },
            Change::Removed {
                dir: d,
                name: b"f".to_vec().into(),
                node: f,
            },
            entry_change(ROOT_NODE, "new"),
            Change::All,
        ]
    );
    // Forgotten by the kernel: its changes go nowhere.
    r.post(&Request::Forget {
        nodes: vec![(f, 1)],
    });
    let mut c = vec![attr_change(102), attr_change(101)];
    r.changes(r.epoch(), &mut c);
    assert_eq!(c, vec![attr_change(d)]);
}

#[test]
fn after_a_reconnect_only_the_new_satellites_changes_of_bound_ids_pass() {
    let (r, _) = relink(&["d/f"]);
    let old = r.epoch();
    let d = id_of(lookup(&r, ROOT_NODE, "d"));
    let f = id_of(lookup(&r, d, "f"));
    let next = r.next_epoch();
    // The new satellite numbers x 501, d 502, f 503.
    let _ = restart(&r, &["x", "d/f"]);
    assert_eq!(r.epoch(), next);
    // A late frame of the old satellite names its own ids: all dropped.
    let mut c = vec![attr_change(101), attr_change(102), Change::All];
    r.changes(old, &mut c);
    assert!(c.is_empty(), "{c:?}");
    // Old ids are not bound again yet; the old satellite's numbers mean
    // nothing now.
    let mut c = vec![attr_change(503), attr_change(102), attr_change(101)];
    r.changes(next, &mut c);
    assert!(c.is_empty(), "{c:?}");
    // Bound again (by path) on first use: the new numbers map to the same
    // ids the kernel holds.
    assert_eq!(ask(&r, getattr(f)), Got::Attr(f));
    let mut c = vec![attr_change(503), attr_change(502), attr_change(501)];
    r.changes(next, &mut c);
    assert_eq!(c, vec![attr_change(f), attr_change(d)]);
}

#[test]
fn a_node_reported_unwatched_before_its_reply_is_told_when_bound() {
    let told: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (r, _) = relink(&["a", "b", "d/f"]);
    let t = told.clone();
    r.on_unwatched(Box::new(move |id| t.lock().unwrap().push(id)));
    // a is 101, b 102: the feed says it does not watch a before the
    // lookup's reply that introduces it.
    let mut c = vec![Change::Unwatched { node: 101 }];
    r.changes(r.epoch(), &mut c);
    assert!(c.is_empty(), "no id of ours yet");
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    let _b = id_of(lookup(&r, ROOT_NODE, "b"));
    assert_eq!(*told.lock().unwrap(), vec![a]);
    // Once bound, a later loss of its watch names our id directly.
    let mut c = vec![Change::Unwatched { node: 101 }];
    r.changes(r.epoch(), &mut c);
    assert_eq!(c, vec![Change::Unwatched { node: a }]);
    // After a reconnect, an old id bound again by path is told too.
    let d = id_of(lookup(&r, ROOT_NODE, "d"));
    let f = id_of(lookup(&r, d, "f"));
    told.lock().unwrap().clear();
    let _ = restart(&r, &["d/f"]);
    // The new satellite numbers d 501, f 502.
    let mut c = vec![Change::Unwatched { node: 502 }];
    r.changes(r.epoch(), &mut c);
    assert_eq!(ask(&r, getattr(f)), Got::Attr(f));
    assert_eq!(*told.lock().unwrap(), vec![f]);
}

#[test]
fn too_many_pending_unwatched_nodes_make_every_new_binding_unwatched() {
    let told: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (r, _) = relink(&["a"]);
    let t = told.clone();
    r.on_unwatched(Box::new(move |id| t.lock().unwrap().push(id)));
    let mut flood: Vec<Change<'static>> = (0..ids::MAX_PENDING_UNWATCHED as u64 + 1)
        .map(|n| Change::Unwatched { node: 10_000 + n })
        .collect();
    r.changes(r.epoch(), &mut flood);
    assert!(flood.is_empty());
    let a = id_of(lookup(&r, ROOT_NODE, "a"));
    assert_eq!(*told.lock().unwrap(), vec![a]);
    // A new satellite starts with a clean slate.
    told.lock().unwrap().clear();
    let _ = restart(&r, &["b"]);
    let _ = id_of(lookup(&r, ROOT_NODE, "b"));
    assert!(told.lock().unwrap().is_empty());
}
