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
    Response, StreamBudget, StreamedDir, StreamedFile, MAX_OPEN_DATA, MAX_STREAM_BYTES,
    MAX_STREAM_ENTRIES,
};

use super::dirs::dirent_size;
use super::file_data::whole_contents;
use super::{reopen, Fs};
use crate::handles::DirStream;
use crate::sys::SysResult;

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
        while let Some((dir, depth)) = queue.pop_front() {
            let n = match self.nodes.get(dir) {
                Ok(n) => n,
                Err(e) if dirs.is_empty() => return Err(e),
                Err(_) => continue,
            };
            let d = DirStream {
                // O_NOATIME where the satellite may (root, the owner):
                // reading a directory nobody listed yet should not move
                // its atime in the container.
                fd: match reopen(&n, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME)
                    .or_else(|_| reopen(&n, libc::O_RDONLY | libc::O_DIRECTORY))
                {
                    Ok(fd) => fd,
                    Err(e) if dirs.is_empty() => return Err(e),
                    Err(_) => continue,
                },
                node: dir,
                lock: Default::default(),
            };
            let (list, end) = self.read_entries(&d, 0, left, true, buf)?;
            let counted: Vec<(u64, u64)> = list
                .iter()
                .filter_map(|e| e.entry.map(|e| (e.node, 1)))
                .collect();
            if !end || entries + list.len() > max_entries {
                // Not whole within the budget: the walk ends here.
                self.forget(&counted);
                break;
            }
            left -= list
                .iter()
                .map(|e| dirent_size(e.name.len(), true))
                .sum::<usize>();
            entries += list.len();
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
        let mut files = self.stream_contents(&dirs, budget.file_max, &mut left, buf);
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

    /// Whether directory `node` is on filesystem `dev`.
    fn same_fs(&self, node: u64, dev: Option<libc::dev_t>) -> bool {
        dev.is_some() && self.stat_node(node).map(|st| st.st_dev) == dev
    }

    /// The contents of the small regular files named in `dirs`, in their
    /// order, while `left` bytes of budget last.
    fn stream_contents(
        &self,
        dirs: &[StreamedDir<'_>],
        file_max: u32,
        left: &mut usize,
        buf: &mut Vec<u8>,
    ) -> Vec<StreamedFile<'static>> {
        let max = file_max.min(MAX_OPEN_DATA) as usize;
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        // Hard links name one node more than once: its contents go once.
        let mut seen = std::collections::HashSet::new();
        let small = dirs
            .iter()
            .flat_map(|d| d.entries.iter().filter_map(|e| e.entry))
            .filter(|e| e.attr.mode & libc::S_IFMT == libc::S_IFREG && e.attr.size <= max as u64);
        for e in small {
            let cost = e.attr.size as usize + FILE_COST;
            if cost > *left || !seen.insert(e.node) {
                continue;
            }
            let Ok(n) = self.nodes.get(e.node) else {
                continue;
            };
            // Nobody asked for these contents: without O_NOATIME (refused
            // to a satellite that neither is root nor owns the file) the
            // file stays out rather than have its atime moved.
            let Ok(fd) = reopen(&n, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOATIME) else {
                continue;
            };
            // Only contents as long as the attributes say: a file that
            // changed since its lookup (reported: the host drops it all
            // anyway) or whose size means nothing (procfs, sysfs) stays out.
            if !whole_contents(fd.as_raw_fd(), max, buf)
                || buf.len() as u64 != e.attr.size
                || buf.len() + FILE_COST > *left
            {
                continue;
            }
            *left -= buf.len() + FILE_COST;
            out.push(StreamedFile {
                node: e.node,
                data: Cow::Owned(buf.clone()),
            });
        }
        out
    }
}
