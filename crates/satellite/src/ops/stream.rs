//! Subtree streaming: the listings of a directory and of the directories
//! below it, breadth first, with each entry's attributes and the
//! contents of small files, in one reply within the host's budget.
//!
//! Every entry is looked up as readdirplus looks it up (one reference
//! each, its watch added with the feed on), so a directory is watched
//! before its own listing is read and a file before its contents are:
//! a change while the subtree is read is reported, never lost; and a
//! stream during which any change came keeps only the directory asked
//! for, without contents ([`crate::watch::Watch::quiet_since`]). Only
//! whole directories go in: one whose listing does not fit what is left
//! of the budget ends the walk, and the references its entries took are
//! dropped again. The walk does not cross into another filesystem, and
//! only contents as long as the file's attributes say go along.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;

use dockerfuse_proto::{
    DirEntry, Entry, Response, StreamBudget, StreamedDir, StreamedFile, MAX_OPEN_DATA,
    MAX_STREAM_BYTES, MAX_STREAM_ENTRIES,
};

use super::attrs::key_of;
use super::dirs::dirent_size;
use super::{reopen, Fs};
use crate::sys::{self, SysResult};

/// d_type of a regular file.
const DT_REG: u8 = 8;

/// What a file's record costs in the reply besides its bytes.
const FILE_COST: usize = 16;

impl Fs {
    pub(super) fn stream(
        &self,
        node: u64,
        budget: StreamBudget,
        buf: &mut Vec<u8>,
    ) -> SysResult<Response<'static>> {
        let mark = self.watch.mark();
        let max_entries = budget.entries.min(MAX_STREAM_ENTRIES) as usize;
        let mut left = budget.bytes.min(MAX_STREAM_BYTES) as usize;
        let mut entries = 0usize;
        let mut dirs: Vec<StreamedDir<'static>> = Vec::new();
        let mut queue = VecDeque::from([(node, 0u32)]);
        // The walk stays on the filesystem it starts on (not into /proc,
        // /sys or a volume mounted below).
        let dev = self.stat_node(node).map(|st| st.st_dev);
        let file_max = budget.file_max.min(MAX_OPEN_DATA) as u64;
        // Budget set aside for the contents of the directories taken.
        let mut reserved = 0usize;
        let mut raw = Vec::new();
        while let Some((dir, depth)) = queue.pop_front() {
            let n = match self.nodes.get(dir) {
                Ok(n) => n,
                Err(e) if dirs.is_empty() => return Err(e),
                Err(_) => continue,
            };
            // O_NOATIME where the satellite may (root, the owner): reading
            // a directory nobody listed yet should not move its atime in
            // the container.
            let fd = match reopen(&n, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME)
                .or_else(|_| reopen(&n, libc::O_RDONLY | libc::O_DIRECTORY))
            {
                Ok(fd) => fd,
                Err(e) if dirs.is_empty() => return Err(e),
                Err(_) => continue,
            };
            // The names first: a directory that does not fit is not
            // looked up (nor watched) at all, and the walk ends there.
            let fits = whole_listing(fd.as_raw_fd(), max_entries - entries, left, &mut raw, buf);
            let (count, cost) = match fits {
                Ok(Some(fit)) => fit,
                Ok(None) => break,
                Err(e) if dirs.is_empty() => return Err(e),
                Err(_) => continue,
            };
            // Regular files' extended attributes are probed later, through
            // the descriptor their contents are read with when they are
            // (no walk of /proc/self/fd for each).
            let list: Vec<DirEntry<'static>> = sys::parse_dirents(&raw)
                .map(|e| self.dir_entry(dir, fd.as_raw_fd(), &e, true, e.dtype != DT_REG))
                .collect();
            // A directory goes with its small files' contents (those a
            // walk reading them would open), or not at all: past the
            // first, one whose contents do not fit what is left ends the
            // walk, and the references its entries took are dropped.
            let contents: usize = list
                .iter()
                .filter_map(|e| e.entry)
                .filter(|e| is_small(e, file_max))
                .map(|e| e.attr.size as usize + FILE_COST)
                .sum();
            if cost + contents > left && !dirs.is_empty() {
                let counted: Vec<(u64, u64)> = list
                    .iter()
                    .filter_map(|e| e.entry.map(|e| (e.node, 1)))
                    .collect();
                self.forget(&counted);
                break;
            }
            left -= cost;
            let contents = contents.min(left);
            left -= contents;
            reserved += contents;
            entries += count;
            if depth < budget.depth {
                for e in list.iter().filter_map(|e| e.entry) {
                    if e.attr.mode & libc::S_IFMT == libc::S_IFDIR && self.same_fs(e.node, dev) {
                        queue.push_back((e.node, depth + 1));
                    }
                }
            }
            dirs.push(StreamedDir {
                node: dir,
                entries: list,
            });
        }
        left += reserved;
        let mut files = self.stream_contents(&mut dirs, budget.file_max, &mut left, buf);
        if !self.watch.quiet_since(mark) && dirs.len() > 1 {
            // Something changed while the subtree was read: only the
            // directory asked for goes, as a readdirplus would give it.
            let rest: Vec<(u64, u64)> = dirs
                .drain(1..)
                .flat_map(|d| {
                    d.entries
                        .into_iter()
                        .filter_map(|e| e.entry.map(|e| (e.node, 1)))
                })
                .collect();
            self.forget(&rest);
            files.clear();
        } else if !self.watch.quiet_since(mark) {
            files.clear();
        }
        Ok(Response::Streamed { dirs, files })
    }

    /// Reads into `buf` the contents of the small file `e`, named `name` in
    /// directory `dir`: when they are as long as its attributes say,
    /// whether the file has no extended attributes.
    /// Nobody asked for them: without O_NOATIME (refused to a satellite
    /// that neither is root nor owns the file) the file stays out rather
    /// than have its atime moved. Opened by name (no trip through
    /// /proc/self/fd), it must be the node's inode; a file that changed
    /// since its lookup (reported: the host drops it all anyway) or whose
    /// size means nothing (procfs, sysfs) stays out.
    fn small_contents(
        &self,
        dir: &crate::nodes::NodeRef,
        name: &[u8],
        e: &Entry,
        buf: &mut Vec<u8>,
    ) -> Option<bool> {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOATIME | libc::O_NOFOLLOW;
        let fd = sys::cstr(name)
            .and_then(|name| sys::openat(dir.raw(), &name, flags, 0))
            .ok()?;
        let fd = fd.as_raw_fd();
        match sys::fstat(fd) {
            Ok(st)
                if st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && st.st_size as u64 == e.attr.size
                    && Some(key_of(&st)) == self.nodes.key(e.node) => {}
            _ => return None,
        }
        let size = e.attr.size as usize;
        buf.resize(size + 1, 0);
        let mut got = 0;
        // One read asking a byte more than the size: a shorter answer of
        // a regular file is its end.
        while got <= size {
            match sys::pread(fd, &mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => return None,
            }
            if got == size {
                break;
            }
        }
        buf.truncate(got);
        (got == size).then(|| sys::flistxattr(fd, &mut []) == Ok(0))
    }

    /// Whether directory `node` is on filesystem `dev`.
    fn same_fs(&self, node: u64, dev: Option<libc::dev_t>) -> bool {
        dev.is_some() && self.stat_node(node).map(|st| st.st_dev) == dev
    }

    /// The contents of the small regular files named in `dirs`, in their
    /// order, while `left` bytes of budget last.
    fn stream_contents(
        &self,
        dirs: &mut [StreamedDir<'_>],
        file_max: u32,
        left: &mut usize,
        buf: &mut Vec<u8>,
    ) -> Vec<StreamedFile<'static>> {
        let max = file_max.min(MAX_OPEN_DATA) as u64;
        let mut out = Vec::new();
        // Hard links name one node more than once: its contents go once.
        let mut seen = std::collections::HashSet::new();
        for d in dirs {
            let dir = self.nodes.get(d.node).ok();
            for e in d.entries.iter_mut() {
                let Some(entry) = e.entry.as_mut() else {
                    continue;
                };
                if e.kind != libc::S_IFREG {
                    continue; // probed at its lookup
                }
                let cost = entry.attr.size as usize + FILE_COST;
                let read = match &dir {
                    Some(dir)
                        if is_small(entry, max) && cost <= *left && !seen.contains(&entry.node) =>
                    {
                        self.small_contents(dir, &e.name, entry, buf)
                    }
                    _ => None,
                };
                match read {
                    Some(no_xattrs) => {
                        entry.no_xattrs = no_xattrs;
                        seen.insert(entry.node);
                        *left -= cost;
                        out.push(StreamedFile {
                            node: entry.node,
                            data: Cow::Owned(buf.clone()),
                        });
                    }
                    None => entry.no_xattrs = self.no_xattrs_of(entry.node),
                }
            }
        }
        out
    }

    /// The "no xattrs" note of node `node`, as a lookup takes it.
    fn no_xattrs_of(&self, node: u64) -> bool {
        match self.nodes.get(node) {
            Ok(n) if !n.is_symlink => sys::listxattr(&sys::proc_fd_path(n.raw()), &mut []) == Ok(0),
            _ => false,
        }
    }
}

/// A regular file whose contents may go along (at most `max` bytes).
fn is_small(e: &Entry, max: u64) -> bool {
    max > 0 && e.attr.mode & libc::S_IFMT == libc::S_IFREG && e.attr.size <= max
}

/// Reads the records of directory `fd` from its start into `raw`, if at
/// most `entries` of them, sized as readdirplus sizes them, fit `bytes`:
/// then their count and that size; `None` when they do not (what was read
/// is bounded by the budget). `buf` is the getdents buffer.
fn whole_listing(
    fd: std::os::fd::RawFd,
    entries: usize,
    bytes: usize,
    raw: &mut Vec<u8>,
    buf: &mut Vec<u8>,
) -> SysResult<Option<(usize, usize)>> {
    raw.clear();
    buf.resize(32 * 1024, 0);
    let (mut count, mut cost) = (0usize, 0usize);
    loop {
        let filled = sys::getdents64(fd, buf)?;
        if filled.is_empty() {
            return Ok(Some((count, cost)));
        }
        for e in sys::parse_dirents(filled) {
            count += 1;
            cost += dirent_size(e.name.len(), true);
        }
        if count > entries || cost > bytes {
            return Ok(None);
        }
        raw.extend_from_slice(filled);
    }
}
