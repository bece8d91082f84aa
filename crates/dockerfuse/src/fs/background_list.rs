//! Listing a watched directory in the background after lookups missed in
//! it, so that the following misses are answered on the host
//! ([`super::dir_names`]). A program creating files one after the other in
//! a directory nobody listed (each create looks its name up first), or
//! probing for names, would otherwise pay a round trip for every lookup.
//!
//! Names only (plain readdir on a handle of the satellite's own, not as
//! any caller), in chunks of [`PREFETCH`] bytes, at most
//! [`BACKGROUND_MAX`] names: a larger directory is left alone.

use std::sync::Arc;

use dockerfuse_proto::{Request, Response};

use super::coherence::Coherence;
use super::dir_names::BACKGROUND_MAX;
use super::prefetch::PREFETCH;
use super::{replies, Transport};

/// Lists directory `dir` in the container; its names become a complete
/// listing if nothing spoils it meanwhile.
pub(super) fn start<T: Transport>(rpc: Arc<T>, coh: Arc<Coherence>, dir: u64) {
    let again = rpc.clone();
    rpc.call(
        &Request::OpenDir { node: dir },
        Box::new(move |r| match r.and_then(replies::fh) {
            Ok(fh) => chunk(again, coh, dir, fh, 0, 0),
            Err(_) => coh.listings().background_done(dir, false),
        }),
    );
}

/// Closes the satellite's handle and ends the listing.
fn finish<T: Transport>(rpc: &T, coh: &Coherence, dir: u64, fh: u64, too_big: bool) {
    coh.listings().release(fh);
    rpc.call(&Request::ReleaseDir { fh }, Box::new(|_| {}));
    coh.listings().background_done(dir, too_big);
}

/// Reads from `offset` on, having read `seen` entries so far.
fn chunk<T: Transport>(
    rpc: Arc<T>,
    coh: Arc<Coherence>,
    dir: u64,
    fh: u64,
    offset: u64,
    seen: usize,
) {
    let Some(seq) = coh.listings().begin_read(fh, dir, offset) else {
        return finish(&*rpc, &coh, dir, fh, false);
    };
    let again = rpc.clone();
    rpc.call(
        &Request::ReadDir {
            fh,
            offset,
            size: PREFETCH,
            plus: false,
        },
        Box::new(move |r| match r {
            Ok(Response::Dir(v)) => {
                let seen = seen + v.len();
                let next = v.last().map(|e| e.offset);
                let names = v.iter().map(|e| (&e.name[..], e.offset));
                coh.listings().read_done(
                    fh,
                    seq,
                    Some(names),
                    coh.cache_dir(dir) && coh.holds(dir),
                );
                match next {
                    // The end: complete, or not.
                    None => finish(&*again, &coh, dir, fh, false),
                    Some(_) if seen > BACKGROUND_MAX => finish(&*again, &coh, dir, fh, true),
                    Some(next) => chunk(again, coh, dir, fh, next, seen),
                }
            }
            _ => {
                let none: Option<std::iter::Empty<(&[u8], u64)>> = None;
                coh.listings().read_done(fh, seq, none, false);
                finish(&*again, &coh, dir, fh, false)
            }
        }),
    );
}
