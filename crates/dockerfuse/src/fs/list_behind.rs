//! Directories listed behind: a lookup the container answers "absent" in
//! a watched directory without a complete listing starts one, in the
//! background (plain names, no lookups), so that the next names a program
//! creates there are known absent on the host and their creates do not
//! wait ([`super::pending`]): a directory costs one round trip, not one
//! per file (`tar x` or a program creating files in a directory it did
//! not list).
//!
//! At most [`MAX_CHUNKS`] replies per directory (larger ones stay
//! unlisted) and [`MAX_LISTING`] directories at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dockerfuse_proto::{DirEntry, Request, Response};

use super::coherence::Coherence;
use super::prefetch::PREFETCH;
use super::Transport;

/// Replies read per directory before giving up.
const MAX_CHUNKS: u32 = 8;
/// Directories listed at once.
const MAX_LISTING: usize = 16;

/// The directories being listed behind.
#[derive(Default)]
pub(super) struct ListBehind {
    busy: Mutex<HashSet<u64>>,
    /// Numbers the listings: their key in [`super::dir_names`], where the
    /// kernel's handles are the keys of its own reads (never this bit).
    next: AtomicU64,
}

/// Marks a listing's key.
const KEY: u64 = 1 << 62;

/// One listing behind: the directory and its key in the listings.
#[derive(Clone, Copy)]
struct Listing {
    dir: u64,
    key: u64,
}

impl ListBehind {
    /// Lists watched directory `dir` in the background unless it is
    /// listed, being listed, or too many are.
    pub(super) fn start<T: Transport>(
        self: &Arc<Self>,
        rpc: &Arc<T>,
        coh: &Arc<Coherence>,
        dir: u64,
    ) {
        if !coh.cache_dir(dir) || coh.listings().stamp(dir).is_some() {
            return;
        }
        {
            let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if b.len() >= MAX_LISTING || !b.insert(dir) {
                return;
            }
        }
        let key = KEY | (self.next.fetch_add(1, Ordering::Relaxed) & (KEY - 1));
        let l = Listing { dir, key };
        // Begun when sent: what the mount does to the directory from now
        // on is noted in it, whatever the satellite read first.
        let Some(seq) = coh.listings().begin_read(key, dir, 0) else {
            return self.done(dir);
        };
        let req = Request::OpenReadDir {
            node: dir,
            size: PREFETCH,
            plus: false,
        };
        let (me, rpc2, coh) = (self.clone(), rpc.clone(), coh.clone());
        let _bg = crate::mount::waits::background();
        rpc.call(
            &req,
            Box::new(move |r| match r {
                Ok(Response::DirOpened { fh, entries, end }) => {
                    me.chunk(rpc2, coh, l, fh, (seq, 0), Some(&entries), end, MAX_CHUNKS)
                }
                _ => {
                    coh.listings().release(key);
                    me.done(dir)
                }
            }),
        );
    }

    fn done(&self, dir: u64) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&dir);
    }

    /// Takes the reply to read `seq` (at `offset`) into the listing and
    /// reads on until the end, or gives up.
    #[allow(clippy::too_many_arguments)]
    fn chunk<T: Transport>(
        self: Arc<Self>,
        rpc: Arc<T>,
        coh: Arc<Coherence>,
        l: Listing,
        fh: u64,
        (seq, offset): (u64, u64),
        entries: Option<&[DirEntry<'_>]>,
        end: bool,
        left: u32,
    ) {
        let listings = coh.listings();
        let watched = coh.cache_dir(l.dir) && coh.holds(l.dir);
        let names = entries.map(|v| v.iter().map(|e| (&e.name[..], e.offset)));
        listings.read_done(l.key, seq, names, watched);
        let last = entries.and_then(|v| v.last()).map_or(offset, |e| e.offset);
        let empty = entries.is_some_and(<[_]>::is_empty);
        if entries.is_some() && end && !empty {
            // The end stands for the empty reply that would follow.
            if let Some(seq) = listings.begin_read(l.key, l.dir, last) {
                let none: [(&[u8], u64); 0] = [];
                listings.read_done(l.key, seq, Some(none), watched);
            }
        }
        let next = (entries.is_some() && !end && !empty && left > 0)
            .then(|| listings.begin_read(l.key, l.dir, last))
            .flatten();
        let Some(seq) = next else {
            listings.release(l.key);
            let _bg = crate::mount::waits::background();
            rpc.call(&Request::ReleaseDir { fh }, Box::new(|_| {}));
            return self.done(l.dir);
        };
        let req = Request::ReadDir {
            fh,
            offset: last,
            size: PREFETCH,
            plus: false,
        };
        let rpc2 = rpc.clone();
        let at = (seq, last);
        let _bg = crate::mount::waits::background();
        rpc.call(
            &req,
            Box::new(move |r| match r {
                Ok(Response::Dir(v)) => self.chunk(rpc2, coh, l, fh, at, Some(&v), false, left - 1),
                Ok(Response::DirEnd(v)) => {
                    self.chunk(rpc2, coh, l, fh, at, Some(&v), true, left - 1)
                }
                _ => self.chunk(rpc2, coh, l, fh, at, None, false, 0),
            }),
        );
    }
}
