//! Whole-tree snapshots, taken on disk and through the core, and their
//! comparison.
//!
//! A snapshot maps each path to what both sides must agree on: type,
//! owner and group, permission bits, size (not of directories: it depends
//! on block allocation), nlink, which earlier path shares the inode,
//! contents, symlink target, xattrs, and the mtime when it was set
//! explicitly; or why a file, a directory or an xattr cannot be read.
//! Left out by nature: inode numbers themselves, atime, ctime, and mtimes
//! stamped by the clock (the two sides run at different instants).

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;

use dockerfuse_proto::{Errno, ROOT_NODE};

use super::identity::Ids;
use super::ops::{explicit, Stat};
use super::twin::split_names;
use crate::fs::{Core, Failure, Fh, NodeId, Who, Xattr};
use crate::transport::rpc::Rpc;

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Node {
    stat: Stat,
    /// The first path (in walk order) with the same inode, if not this one.
    same_as: Option<String>,
    /// A file's data, or why it cannot be read (a test that is not root
    /// meets files and directories its own sequences made unreadable).
    contents: Option<Result<Vec<u8>, Errno>>,
    /// Whether a directory could be listed.
    listed: Option<Result<(), Errno>>,
    target: Option<Vec<u8>>,
    xattrs: Result<Xattrs, Errno>,
    mtime: Option<(i64, u32)>,
}

pub(super) type Tree = BTreeMap<String, Node>;

/// xattr names and their values (or why a value cannot be read).
type Xattrs = Vec<(Vec<u8>, Result<Vec<u8>, Errno>)>;

/// Fills in `same_as` from each path's inode key, in path order.
fn link_groups(tree: &mut Tree, keys: &HashMap<String, u64>) {
    let mut first: HashMap<u64, String> = HashMap::new();
    for (path, node) in tree.iter_mut() {
        let k = keys[path];
        match first.get(&k) {
            Some(p) => node.same_as = Some(p.clone()),
            None => {
                first.insert(k, path.clone());
            }
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

fn lxattrs(path: &Path) -> Result<Xattrs, Errno> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: p is a valid C string, buf valid for its length.
    let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io_errno(std::io::Error::last_os_error()));
    }
    Ok(split_names(&buf[..n as usize])
        .into_iter()
        .map(|name| {
            let c = CString::new(name.clone()).unwrap();
            let mut v = vec![0u8; 4096];
            // SAFETY: valid C strings, v valid for its length.
            let n =
                unsafe { libc::lgetxattr(p.as_ptr(), c.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
            if n < 0 {
                return (name, Err(io_errno(std::io::Error::last_os_error())));
            }
            v.truncate(n as usize);
            (name, Ok(v))
        })
        .collect())
}

/// The tree under `root`, read directly.
pub(super) fn on_disk(root: &Path) -> Tree {
    fn walk(
        root: &Path,
        rel: &str,
        tree: &mut Tree,
        keys: &mut HashMap<String, u64>,
    ) -> Result<(), Errno> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(io_errno)?
            .map(|e| {
                e.expect("a directory entry")
                    .file_name()
                    .into_string()
                    .unwrap()
            })
            .collect();
        names.sort();
        for name in names {
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = root.join(&path);
            let m = std::fs::symlink_metadata(&full).map_err(io_errno)?;
            let stat = Stat::new(m.mode(), m.size(), m.nlink() as u32, (m.uid(), m.gid()));
            let kind = stat.kind;
            keys.insert(path.clone(), m.ino());
            tree.insert(
                path.clone(),
                Node {
                    stat,
                    same_as: None,
                    contents: (kind == libc::S_IFREG)
                        .then(|| std::fs::read(&full).map_err(io_errno)),
                    listed: None,
                    target: (kind == libc::S_IFLNK).then(|| {
                        std::fs::read_link(&full)
                            .expect("read a link")
                            .as_os_str()
                            .as_bytes()
                            .to_vec()
                    }),
                    xattrs: lxattrs(&full),
                    mtime: explicit(m.mtime(), m.mtime_nsec() as u32),
                },
            );
            if kind == libc::S_IFDIR {
                let listed = if Ids::get().own_may_list(&tree[&path].stat) {
                    walk(root, &path, tree, keys)
                } else {
                    Err(Errno(libc::EACCES))
                };
                tree.get_mut(&path).expect("just inserted").listed = Some(listed);
            }
        }
        Ok(())
    }
    let (mut tree, mut keys) = (Tree::new(), HashMap::new());
    walk(root, "", &mut tree, &mut keys).expect("list the root");
    link_groups(&mut tree, &keys);
    tree
}

fn wait<T: Send + 'static>(
    start: impl FnOnce(Box<dyn FnOnce(Result<T, Failure>) + Send>),
) -> Result<T, Errno> {
    let (tx, rx) = mpsc::sync_channel(1);
    start(Box::new(move |r: Result<T, Failure>| {
        let _ = tx.send(r.map_err(|f| f.errno));
    }));
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the core answers every call")
}

fn bytes(start: impl FnOnce(crate::fs::BytesCb)) -> Result<Vec<u8>, Errno> {
    let (tx, rx) = mpsc::sync_channel(1);
    start(Box::new(move |r: Result<&[u8], Failure>| {
        let r = r.map_err(|f| f.errno);
        let _ = tx.send(r.map(<[u8]>::to_vec));
    }));
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the core answers every call")
}

fn xattr(start: impl FnOnce(crate::fs::XattrCb)) -> Result<Vec<u8>, Errno> {
    let (tx, rx) = mpsc::sync_channel(1);
    start(Box::new(move |r: Result<Xattr<'_>, Failure>| {
        let r = r.map_err(|f| f.errno);
        let _ = tx.send(r.and_then(|x| match x {
            Xattr::Data(d) => Ok(d.to_vec()),
            Xattr::Size(_) => Err(Errno::EIO),
        }));
    }));
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the core answers every call")
}

/// Bytes asked per readdirplus: two entries at most, so listings go
/// through the satellite's offsets.
const LISTING_CHUNK: u32 = 400;

/// One entry of a listing through the core.
struct Listed {
    name: String,
    node: u64,
    attr: dockerfuse_proto::Attr,
}

/// Lists a directory node through opendir/readdirplus/releasedir. The
/// references of the entries are kept (the callback takes them all) and
/// returned for the caller to forget.
fn list(core: &Core<Rpc>, dir: u64) -> Result<Vec<Listed>, Errno> {
    let (Fh(fh), _) = wait(|cb| core.opendir(&Who::Mount, NodeId(dir), cb))?;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (tx, rx) = mpsc::sync_channel(1);
        core.readdirplus(
            &Who::Mount,
            NodeId(dir),
            Fh(fh),
            offset,
            LISTING_CHUNK,
            Box::new(move |r: Result<&[crate::fs::PlusItem<'_>], Failure>| {
                let r = r.map_err(|f| f.errno);
                let got = r.map(|items| {
                    items
                        .iter()
                        .map(|i| (i.name.to_vec(), i.node, i.attr, i.offset))
                        .collect::<Vec<_>>()
                });
                let taken = got.as_ref().map(Vec::len).unwrap_or(0);
                let _ = tx.send(got);
                taken
            }),
        );
        let items = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the core answers every call")?;
        let Some(last) = items.last() else { break };
        offset = last.3;
        for (name, node, attr, _) in items {
            if name != b"." && name != b".." {
                out.push(Listed {
                    name: String::from_utf8(name).expect("names are ASCII"),
                    node,
                    attr,
                });
            }
        }
    }
    wait(|cb| core.releasedir(Fh(fh), cb))?;
    Ok(out)
}

/// A file's whole data through open/read/release.
fn read_all(core: &Core<Rpc>, node: u64) -> Result<Vec<u8>, Errno> {
    let fh = wait(|cb| core.open(&Who::Mount, NodeId(node), libc::O_RDONLY, cb))?
        .fh
        .0;
    let mut data = Vec::new();
    let r = loop {
        let off = data.len() as u64;
        match bytes(|cb| core.read(&Who::Mount, Fh(fh), off, 128 * 1024, cb)) {
            Ok(chunk) if chunk.is_empty() => break Ok(data),
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(e) => break Err(e),
        }
    };
    wait(|cb| core.release(Fh(fh), cb))?;
    r
}

/// The tree served by the core's satellite, read through the core: the
/// listing, the attributes it carries, readlink, open/read/release, and
/// listxattr/getxattr. Hard links show as one node id.
pub(super) fn through_core(core: &Core<Rpc>) -> Result<Tree, Errno> {
    fn walk(
        core: &Core<Rpc>,
        dir: u64,
        rel: &str,
        tree: &mut Tree,
        keys: &mut HashMap<String, u64>,
        held: &mut Vec<(u64, u64)>,
    ) -> Result<(), Errno> {
        let mut items = list(core, dir)?;
        held.extend(items.iter().map(|i| (i.node, 1)));
        items.sort_by(|a, b| a.name.cmp(&b.name));
        for i in items {
            let path = if rel.is_empty() {
                i.name.clone()
            } else {
                format!("{rel}/{}", i.name)
            };
            let stat = Stat::of_attr(&i.attr);
            let kind = stat.kind;
            let contents = (kind == libc::S_IFREG).then(|| read_all(core, i.node));
            let target = if kind == libc::S_IFLNK {
                Some(bytes(|cb| core.readlink(&Who::Mount, NodeId(i.node), cb))?)
            } else {
                None
            };
            let xattrs =
                xattr(|cb| core.listxattr(&Who::Mount, NodeId(i.node), 4096, cb)).map(|names| {
                    split_names(&names)
                        .into_iter()
                        .map(|n| {
                            let v = xattr(|cb| {
                                core.getxattr(&Who::Mount, NodeId(i.node), &n, 4096, cb)
                            });
                            (n, v)
                        })
                        .collect()
                });
            keys.insert(path.clone(), i.node);
            tree.insert(
                path.clone(),
                Node {
                    stat,
                    same_as: None,
                    contents,
                    listed: None,
                    target,
                    xattrs,
                    mtime: explicit(i.attr.mtime, i.attr.mtime_nsec),
                },
            );
            if kind == libc::S_IFDIR {
                let listed = if Ids::get().own_may_list(&tree[&path].stat) {
                    walk(core, i.node, &path, tree, keys, held)
                } else {
                    Err(Errno(libc::EACCES))
                };
                tree.get_mut(&path).expect("just inserted").listed = Some(listed);
            }
        }
        Ok(())
    }
    let (mut tree, mut keys, mut held) = (Tree::new(), HashMap::new(), Vec::new());
    let r = walk(core, ROOT_NODE, "", &mut tree, &mut keys, &mut held);
    core.forget(held.into_iter().map(|(n, c)| (NodeId(n), c)).collect());
    r?;
    link_groups(&mut tree, &keys);
    Ok(tree)
}

/// Describes how two trees differ, path by path; None when they agree.
pub(super) fn differences(want: &Tree, got: &Tree) -> Option<String> {
    let mut out = String::new();
    for (path, w) in want {
        match got.get(path) {
            None => out.push_str(&format!("\n  {path}: missing, expected {w:?}")),
            Some(g) if g != w => out.push_str(&format!("\n  {path}: {g:?}, expected {w:?}")),
            Some(_) => {}
        }
    }
    for (path, g) in got {
        if !want.contains_key(path) {
            out.push_str(&format!("\n  {path}: unexpected {g:?}"));
        }
    }
    (!out.is_empty()).then_some(out)
}
