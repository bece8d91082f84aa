//! Whole directories per round trip for readdirplus.
//!
//! The kernel asks for a directory in chunks of one page (about 25
//! entries with attributes). The first chunk asks the satellite for up to
//! [`PREFETCH`] bytes of entries instead; what the kernel does not take
//! stays here, with the lookup reference the satellite counted for each,
//! and the following chunks are answered from it when they continue where
//! the last one stopped. A buffer is thrown away (its references
//! forgotten) when the kernel asks for another offset, when the handle is
//! released, and when any change came from the container since it was
//! filled (its attributes may be stale; the change feed could not name
//! nodes the kernel did not hold yet). When the satellite said its reply
//! reached the end of the directory (protocol 7), the buffer stays once
//! emptied, and the kernel's chunk past the last entry is answered here
//! with nothing: the end, without a round trip.

use std::collections::HashMap;
use std::sync::Mutex;

use super::listing::PlusItem;

/// Bytes of entries (in the kernel's dirent sizes) asked for at once.
pub(super) const PREFETCH: u32 = 128 * 1024;
/// Entries offered to the kernel per chunk (a page holds fewer).
pub(super) const OFFER: usize = 64;

/// Entries of one handle not given to the kernel yet.
pub(super) struct Buffer {
    /// The offset the kernel's next chunk asks for if it continues.
    pub(super) next: u64,
    /// The change generation the entries are current for.
    pub(super) generation: u64,
    /// The ledger's mark when the entries were asked for: their
    /// attributes are kept only if nothing was dropped since.
    pub(super) stamp: u64,
    pub(super) items: Vec<PlusItem<'static>>,
    /// The directory ends after `items`.
    pub(super) end: bool,
}

impl Buffer {
    /// The lookup references its entries hold.
    pub(super) fn references(&self) -> Vec<(u64, u64)> {
        self.items
            .iter()
            .filter(|i| i.counted)
            .map(|i| (i.node, 1))
            .collect()
    }
}

/// Buffers by directory handle.
#[derive(Default)]
pub(super) struct Prefetched {
    map: Mutex<HashMap<u64, Buffer>>,
}

impl Prefetched {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Buffer>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The buffer of `fh` if the kernel's chunk at `offset` continues it
    /// and nothing changed since; otherwise the references of a buffer
    /// that was there, to forget.
    pub(super) fn take(
        &self,
        fh: u64,
        offset: u64,
        generation: u64,
    ) -> Result<Buffer, Vec<(u64, u64)>> {
        match self.lock().remove(&fh) {
            Some(b) if b.next == offset && b.generation == generation => Ok(b),
            Some(b) => Err(b.references()),
            None => Err(Vec::new()),
        }
    }

    pub(super) fn put(&self, fh: u64, b: Buffer) {
        if b.items.is_empty() && !b.end {
            return;
        }
        self.lock().insert(fh, b);
    }

    /// The handle is released: the references its buffer held.
    pub(super) fn release(&self, fh: u64) -> Vec<(u64, u64)> {
        self.lock()
            .remove(&fh)
            .map(|b| b.references())
            .unwrap_or_default()
    }
}
