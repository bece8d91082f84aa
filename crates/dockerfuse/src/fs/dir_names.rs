//! The names of directories listed completely while the change feed
//! watches them, so that a lookup of a name such a directory does not
//! hold is answered on the host (a create, a PATH search, a compiler's
//! probe then costs no round trip).
//!
//! A listing is gathered per directory handle from the satellite's
//! replies: it starts with a read at offset 0, each following read must
//! continue where a previous reply left off, and it is complete at the
//! empty reply that ends the directory. A name changed meanwhile (the feed
//! reports it, or the mount's own operation on it completes) may have been
//! read before or after its change, so it is kept as present — a name a
//! listing holds is always asked for in the container — or, removed by
//! the mount itself, left out; a change of the directory as a whole (a
//! lost event, the watch ending) abandons the listing. A change reported
//! after completion is applied to the listing. So the order of the
//! satellite's stream (replies and change frames, read by one thread) is
//! all this relies on: a change made in the container after a read was
//! sent is reported after that, while the listing is read or once it is
//! complete. A lookup that finds a name counts as such a report (it may
//! come first).
//!
//! Once complete, a listing follows the mount's own operations (their
//! names are not echoed by the feed): a success inserts or removes the
//! name, a failure makes it unknown. A name the feed reports changed
//! becomes unknown too. A lookup of an unknown name goes to the satellite:
//! "found" holds it, "absent" settles it unless something else happened
//! to the directory meanwhile. Too many unknown names, a change of the
//! directory itself, a lost event, the watch ending or the kernel
//! forgetting the directory drop the listing.
//!
//! Names the kernel was told are absent from a watched directory with
//! the long TTL are known absent too, listing or not, until the mount's
//! own operation or the feed names them, or the directory goes: the kernel
//! asks again all the same when an exclusive create revalidates its
//! negative entry (`cp`, `open(O_CREAT|O_EXCL)`: a LOOKUP right before
//! each CREATE) or after it dropped the entry, and the answer it had still
//! holds (the CREATE itself is checked in the container: EEXIST).
//!
//! Everything here is bounded ([`MAX_NAMES`] names and [`MAX_BYTES`] bytes
//! of names across all listings, finished or not, and [`MAX_TOLD`] names
//! told absent): past the bound a listing or a name is not kept, which
//! only costs round trips.
//!
//! The state lives in the node [`Ledger`] under its one lock
//! ([`Inner`]): forgetting a directory, a change event and a loss of
//! events touch that one structure; [`DirNames`] is the view the core
//! reads and fills through.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use dockerfuse_proto::Change;

use super::ledger::Ledger;

/// Names held across all listings (and listings themselves).
pub(crate) const MAX_NAMES: usize = 500_000;
/// Bytes of names held across all listings.
pub(crate) const MAX_BYTES: usize = 32 << 20;
/// Unknown names a listing may have before it is dropped.
pub(crate) const MAX_UNKNOWN: usize = 256;
/// Names told absent kept (at most 255 bytes each).
pub(crate) const MAX_TOLD: usize = 16_384;
/// Longest name kept.
const NAME_MAX: usize = 255;

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name != b"."
        && name != b".."
}

/// A complete listing of one directory.
struct Listing {
    /// Names known to exist.
    names: HashSet<Box<[u8]>>,
    /// Names that may or may not exist.
    unknown: HashSet<Box<[u8]>>,
    /// Changes whenever the listing does (unique across listings): a
    /// lookup's "absent" settles its name only if nothing happened since
    /// it was sent.
    stamp: u64,
}

/// A listing being read on one handle.
struct Pending {
    dir: u64,
    names: HashSet<Box<[u8]>>,
    /// The read in flight (replies to older reads are ignored).
    seq: u64,
    /// Offsets a following read may start at and still continue: the last
    /// read's own and the cookies of its entries.
    resume: Vec<u64>,
    /// Something happened to the directory since the listing began.
    spoiled: bool,
}

/// The listings, kept in the ledger.
#[derive(Default)]
pub(crate) struct Inner {
    done: HashMap<u64, Listing>,
    pending: HashMap<u64, Pending>,
    /// Names and listings held (each listing counts as one name).
    names: usize,
    bytes: usize,
    next_stamp: u64,
    next_seq: u64,
    /// Names the kernel holds as absent for the long TTL, by directory.
    told: HashMap<u64, HashSet<Box<[u8]>>>,
    told_names: usize,
}

impl Inner {
    fn charge(&mut self, bytes: usize) -> bool {
        if self.names >= MAX_NAMES || self.bytes + bytes > MAX_BYTES {
            return false;
        }
        self.names += 1;
        self.bytes += bytes;
        true
    }

    fn refund(&mut self, names: usize, bytes: usize) {
        self.names = self.names.saturating_sub(names);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    fn drop_pending(&mut self, fh: u64) {
        if let Some(p) = self.pending.remove(&fh) {
            let bytes = p.names.iter().map(|n| n.len()).sum();
            self.refund(p.names.len() + 1, bytes);
        }
    }

    fn drop_done(&mut self, dir: u64) {
        if let Some(l) = self.done.remove(&dir) {
            let bytes = l.names.iter().chain(&l.unknown).map(|n| n.len()).sum();
            self.refund(l.names.len() + l.unknown.len() + 1, bytes);
        }
    }

    fn absent(&self, dir: u64, name: &[u8]) -> bool {
        valid_name(name)
            && (self
                .done
                .get(&dir)
                .is_some_and(|l| !l.names.contains(name) && !l.unknown.contains(name))
                || self.told.get(&dir).is_some_and(|t| t.contains(name)))
    }

    /// `name` in `dir` is no longer known absent by what the kernel was told.
    fn untell(&mut self, dir: u64, name: &[u8]) {
        if let Some(t) = self.told.get_mut(&dir) {
            if t.remove(name) {
                self.told_names -= 1;
            }
            if t.is_empty() {
                self.told.remove(&dir);
            }
        }
    }

    fn untell_dir(&mut self, dir: u64) {
        if let Some(t) = self.told.remove(&dir) {
            self.told_names -= t.len();
        }
    }

    /// Events were lost: nothing listed can be trusted.
    pub(crate) fn drop_all(&mut self) {
        self.told.clear();
        self.told_names = 0;
        let dirs: Vec<u64> = self.done.keys().copied().collect();
        for d in dirs {
            self.drop_done(d);
        }
        for p in self.pending.values_mut() {
            p.spoiled = true;
        }
    }

    /// Something happened to `dir`: listings being read are spoiled.
    fn spoil(&mut self, dir: u64) {
        for p in self.pending.values_mut().filter(|p| p.dir == dir) {
            p.spoiled = true;
        }
    }

    /// Listings of `dir` being read learn what the mount or the feed
    /// says of `name`: gone (Some(false)), or to be asked in the container
    /// (kept as present: a name a listing holds is always asked for).
    fn note_pending(&mut self, dir: u64, name: &[u8], known: Option<bool>) {
        let fhs: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.dir == dir && !p.spoiled)
            .map(|(fh, _)| *fh)
            .collect();
        for fh in fhs {
            let p = self.pending.get_mut(&fh).expect("listed above");
            if !valid_name(name) {
                p.spoiled = true;
            } else if known == Some(false) {
                if p.names.remove(name) {
                    self.refund(1, name.len());
                }
            } else if !p.names.contains(name) {
                if self.charge(name.len()) {
                    let p = self.pending.get_mut(&fh).expect("listed above");
                    p.names.insert(name.into());
                } else {
                    self.pending.get_mut(&fh).expect("listed above").spoiled = true;
                }
            }
        }
    }

    /// A batch of changes from the container.
    pub(crate) fn changed(&mut self, changes: &[Change<'_>]) {
        for c in changes {
            match c {
                Change::Entry { dir, name } | Change::Removed { dir, name, .. } => {
                    self.set(*dir, name, None, true)
                }
                Change::Data { node } | Change::Unwatched { node } => self.forgotten(*node),
                Change::Attr { .. } => {}
                Change::All => self.drop_all(),
            }
        }
    }

    /// The kernel forgot `dir` (its watch ends), or the directory changed
    /// as a whole: its listings go.
    pub(crate) fn forgotten(&mut self, dir: u64) {
        self.spoil(dir);
        self.drop_done(dir);
        self.untell_dir(dir);
    }

    /// Directories with a listing or names told absent, for checks.
    #[cfg(test)]
    pub(crate) fn dirs(&self) -> Vec<u64> {
        self.done.keys().chain(self.told.keys()).copied().collect()
    }

    /// Sets what is known of `name` in `dir`'s listing: present (Some(true)),
    /// absent (Some(false)) or unknown (None); listings being read learn
    /// it too when `pending`.
    fn set(&mut self, dir: u64, name: &[u8], known: Option<bool>, pending: bool) {
        self.untell(dir, name);
        if pending {
            self.note_pending(dir, name, known);
        }
        if !self.done.contains_key(&dir) {
            return;
        }
        if !valid_name(name) {
            return self.drop_done(dir);
        }
        let stamp = self.stamp();
        let l = self.done.get_mut(&dir).expect("checked above");
        l.stamp = stamp;
        let had = l.names.remove(name) || l.unknown.remove(name);
        if had {
            self.refund(1, name.len());
        }
        let l = self.done.get_mut(&dir).expect("checked above");
        let too_many = known.is_none() && l.unknown.len() >= MAX_UNKNOWN;
        if known == Some(false) {
            return;
        }
        if too_many || !self.charge(name.len()) {
            return self.drop_done(dir);
        }
        let l = self.done.get_mut(&dir).expect("checked above");
        match known {
            Some(_) => l.names.insert(name.into()),
            None => l.unknown.insert(name.into()),
        };
    }
}

/// The complete listings of one mount: a view of the ledger's [`Inner`].
#[derive(Default)]
pub(crate) struct DirNames {
    ledger: Arc<Mutex<Ledger>>,
}

/// The ledger's listings, locked.
struct Locked<'a>(MutexGuard<'a, Ledger>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0.listings
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0.listings
    }
}

impl DirNames {
    /// The view of `ledger`'s listings.
    pub(crate) fn over(ledger: Arc<Mutex<Ledger>>) -> Self {
        DirNames { ledger }
    }

    fn lock(&self) -> Locked<'_> {
        Locked(self.ledger.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A read of directory `dir` on handle `fh` at `offset` is about to be
    /// sent: the number to give its reply, if it starts or continues a
    /// listing that may still complete.
    pub(crate) fn begin_read(&self, fh: u64, dir: u64, offset: u64) -> Option<u64> {
        let mut g = self.lock();
        g.next_seq += 1;
        let seq = g.next_seq;
        if offset == 0 {
            g.drop_pending(fh);
            if !g.charge(0) {
                return None;
            }
            g.pending.insert(
                fh,
                Pending {
                    dir,
                    names: HashSet::new(),
                    seq,
                    resume: vec![0],
                    spoiled: false,
                },
            );
            return Some(seq);
        }
        match g.pending.get_mut(&fh) {
            Some(p) if p.dir == dir && !p.spoiled && p.resume.contains(&offset) => {
                p.seq = seq;
                p.resume = vec![offset];
                Some(seq)
            }
            _ => {
                g.drop_pending(fh);
                None
            }
        }
    }

    /// The reply to read `seq` on `fh`: its entries' names and cookies
    /// (empty at the end of the directory), or None when it failed.
    /// `watched`: the directory is watched now. True when the directory's
    /// listing became complete.
    pub(crate) fn read_done<'a>(
        &self,
        fh: u64,
        seq: u64,
        entries: Option<impl IntoIterator<Item = (&'a [u8], u64)>>,
        watched: bool,
    ) -> bool {
        let mut g = self.lock();
        match g.pending.get(&fh) {
            Some(p) if p.seq == seq && !p.spoiled => {}
            Some(p) if p.seq == seq => {
                g.drop_pending(fh);
                return false;
            }
            _ => return false,
        }
        let Some(entries) = entries else {
            g.drop_pending(fh);
            return false;
        };
        let mut empty = true;
        for (name, cookie) in entries {
            empty = false;
            if name == b"." || name == b".." {
                g.pending.get_mut(&fh).expect("present").resume.push(cookie);
                continue;
            }
            if !valid_name(name) {
                g.drop_pending(fh);
                return false;
            }
            let p = g.pending.get_mut(&fh).expect("present");
            p.resume.push(cookie);
            // At most one name per entry and per cookie: the reply's size
            // bounds the offsets kept.
            if p.names.contains(name) {
                continue;
            }
            if !g.charge(name.len()) {
                g.drop_pending(fh);
                return false;
            }
            g.pending
                .get_mut(&fh)
                .expect("present")
                .names
                .insert(name.into());
        }
        if !empty {
            return false;
        }
        let p = g.pending.remove(&fh).expect("present");
        if !watched {
            let bytes = p.names.iter().map(|n| n.len()).sum();
            g.refund(p.names.len() + 1, bytes);
            return false;
        }
        g.drop_done(p.dir);
        let stamp = g.stamp();
        g.done.insert(
            p.dir,
            Listing {
                names: p.names,
                unknown: HashSet::new(),
                stamp,
            },
        );
        true
    }

    /// The handle is released: its listing, if unfinished, is dropped.
    pub(crate) fn release(&self, fh: u64) {
        self.lock().drop_pending(fh);
    }

    /// Whether `name` is known not to exist in `dir`.
    pub(crate) fn absent(&self, dir: u64, name: &[u8]) -> bool {
        self.lock().absent(dir, name)
    }

    /// Whether a complete listing of `dir` holds `name` (known to exist).
    pub(crate) fn present(&self, dir: u64, name: &[u8]) -> bool {
        self.lock()
            .done
            .get(&dir)
            .is_some_and(|l| l.names.contains(name))
    }

    /// Whether a complete listing of `dir` holds no name, known or not.
    pub(crate) fn empty(&self, dir: u64) -> bool {
        self.lock()
            .done
            .get(&dir)
            .is_some_and(|l| l.names.is_empty() && l.unknown.is_empty())
    }

    /// The stamp of `dir`'s listing, taken when a lookup is sent.
    pub(crate) fn stamp(&self, dir: u64) -> Option<u64> {
        self.lock().done.get(&dir).map(|l| l.stamp)
    }

    /// The container found `name` in `dir`: listings, finished or being
    /// read, hold it from now on (whenever the lookup was sent: a listing
    /// read past the name before it was created must not take it for
    /// absent until the feed's report of its creation arrives).
    pub(crate) fn found(&self, dir: u64, name: &[u8]) {
        let mut g = self.lock();
        g.untell(dir, name);
        g.note_pending(dir, name, Some(true));
        if g.done.get(&dir).is_some_and(|l| !l.names.contains(name)) {
            g.set(dir, name, Some(true), false);
        }
    }

    /// The container answered that `name` is not in `dir` to a lookup
    /// sent at `stamp`: the name is absent if nothing happened to the
    /// listing since.
    pub(crate) fn not_found(&self, dir: u64, name: &[u8], stamp: Option<u64>) {
        let mut g = self.lock();
        let same = stamp.is_some() && g.done.get(&dir).map(|l| l.stamp) == stamp;
        if same && !g.absent(dir, name) {
            g.set(dir, name, Some(false), false);
        }
    }

    /// The kernel was told `name` is absent from watched `dir` for the
    /// long TTL.
    pub(crate) fn told_absent(&self, dir: u64, name: &[u8]) {
        let mut g = self.lock();
        if !valid_name(name) || g.told_names >= MAX_TOLD {
            return;
        }
        if g.told.entry(dir).or_default().insert(name.into()) {
            g.told_names += 1;
        }
    }

    /// The mount itself made `name` exist in `dir`.
    pub(crate) fn created(&self, dir: u64, name: &[u8]) {
        self.lock().set(dir, name, Some(true), true);
    }

    /// The mount itself made `dir`, empty: its listing is complete (the
    /// feed reports what the container puts in it from then on).
    pub(crate) fn made_empty(&self, dir: u64) {
        let mut g = self.lock();
        g.drop_done(dir);
        if !g.charge(0) {
            return;
        }
        let stamp = g.stamp();
        g.done.insert(
            dir,
            Listing {
                names: HashSet::new(),
                unknown: HashSet::new(),
                stamp,
            },
        );
    }

    /// The mount itself removed `name` from `dir`.
    pub(crate) fn removed(&self, dir: u64, name: &[u8]) {
        self.lock().set(dir, name, Some(false), true);
    }

    /// An operation of the mount on `name` in `dir` failed: whether the
    /// name exists is not known.
    pub(crate) fn unsure(&self, dir: u64, name: &[u8]) {
        self.lock().set(dir, name, None, true);
    }

    /// A batch of changes from the container (`Coherence::apply` does
    /// it on the ledger it holds).
    #[cfg(test)]
    pub(crate) fn changed(&self, changes: &[Change<'_>]) {
        self.lock().changed(changes);
    }

    /// Events were lost: nothing listed can be trusted.
    #[cfg(test)]
    pub(crate) fn drop_all(&self) {
        self.lock().drop_all();
    }

    /// The kernel forgot `dir` (the ledger does it when it forgets a node).
    #[cfg(test)]
    pub(crate) fn forgotten(&self, dir: u64) {
        self.lock().forgotten(dir);
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let g = self.lock();
        (g.names, g.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FH: u64 = 7;
    const DIR: u64 = 3;

    fn names(list: &[&'static str]) -> Vec<(&'static [u8], u64)> {
        list.iter()
            .enumerate()
            .map(|(i, n)| (n.as_bytes(), i as u64 + 1))
            .collect()
    }

    /// Lists `DIR` on `FH` in one chunk and the empty end.
    fn list(d: &DirNames, list: &[&'static str]) -> bool {
        let seq = d.begin_read(FH, DIR, 0).expect("a listing starts");
        assert!(!d.read_done(FH, seq, Some(names(list)), true));
        let seq = d.begin_read(FH, DIR, list.len() as u64).expect("continues");
        d.read_done(FH, seq, Some(names(&[])), true)
    }

    #[test]
    fn a_full_uninterrupted_listing_completes() {
        let d = DirNames::default();
        assert!(!d.absent(DIR, b"x"), "nothing known before a listing");
        assert!(list(&d, &[".", "..", "a", "b"]));
        assert!(d.absent(DIR, b"x"));
        assert!(!d.absent(DIR, b"a"));
        assert!(!d.absent(DIR, b"."));
        assert!(!d.absent(DIR, b"x/y"), "invalid names are never answered");
        assert!(!d.absent(DIR + 1, b"x"), "other directories are not listed");
    }

    #[test]
    fn listings_that_do_not_run_from_start_to_end_uninterrupted_do_not_complete() {
        let d = DirNames::default();
        // Not from offset 0.
        assert!(d.begin_read(FH, DIR, 5).is_none());
        // A jump to an offset no reply gave.
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        d.read_done(FH, seq, Some(names(&["a", "b"])), true);
        assert!(d.begin_read(FH, DIR, 99).is_none());
        assert!(!d.read_done(FH, seq, Some(names(&[])), true));
        assert!(!d.absent(DIR, b"x"));
        // A change of the directory as a whole while it is read.
        for whole in [
            Change::Data { node: DIR },
            Change::Unwatched { node: DIR },
            Change::All,
        ] {
            let seq = d.begin_read(FH, DIR, 0).unwrap();
            d.read_done(FH, seq, Some(names(&["a"])), true);
            d.changed(&[whole]);
            assert!(d.begin_read(FH, DIR, 1).is_none(), "abandoned");
        }
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        d.forgotten(DIR);
        assert!(!d.read_done(FH, seq, Some(names(&[])), true));
        assert!(!d.absent(DIR, b"x"));
        // A change elsewhere does not spoil it; a failed read does.
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        d.changed(&[Change::Entry {
            dir: DIR + 1,
            name: b"n".to_vec().into(),
        }]);
        d.read_done(FH, seq, Some(names(&["a"])), true);
        let seq = d.begin_read(FH, DIR, 1).expect("still continues");
        d.read_done(FH, seq, None::<Vec<(&[u8], u64)>>, true);
        assert!(
            d.begin_read(FH, DIR, 1).is_none(),
            "not after a failed read"
        );
        // Not watched at the end.
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        assert!(!d.read_done(FH, seq, Some(names(&[])), false));
        assert!(!d.absent(DIR, b"x"));
        // Released half way.
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        d.read_done(FH, seq, Some(names(&["a"])), true);
        d.release(FH);
        assert!(d.begin_read(FH, DIR, 1).is_none());
        assert_eq!(d.held(), (0, 0), "nothing held after all that");
    }

    #[test]
    fn names_changed_while_a_listing_is_read_are_asked_for_or_left_out() {
        let d = DirNames::default();
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        d.read_done(FH, seq, Some(names(&["a", "gone", "b"])), true);
        // The feed: read before or after the change, the name is asked for.
        d.changed(&[
            Change::Entry {
                dir: DIR,
                name: b"new".to_vec().into(),
            },
            Change::Removed {
                dir: DIR,
                name: b"a".to_vec().into(),
                node: 9,
            },
        ]);
        // The mount's own operations: created, failed, removed.
        d.created(DIR, b"mine");
        d.unsure(DIR, b"failed");
        d.removed(DIR, b"gone");
        // A lookup found a name the listing may have read past.
        d.found(DIR, b"looked-up");
        // Elsewhere: nothing here.
        d.created(DIR + 1, b"other");
        let seq = d.begin_read(FH, DIR, 3).expect("continues");
        assert!(d.read_done(FH, seq, Some(names(&[])), true));
        for asked in ["new", "a", "mine", "failed", "b", "looked-up"] {
            assert!(!d.absent(DIR, asked.as_bytes()), "{asked}");
        }
        for absent in ["gone", "other", "x"] {
            assert!(d.absent(DIR, absent.as_bytes()), "{absent}");
        }
    }

    #[test]
    fn a_read_may_resume_at_any_cookie_of_the_last_reply() {
        let d = DirNames::default();
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        d.read_done(FH, seq, Some(names(&["a", "b", "c"])), true);
        // The kernel took only "a" and continues after it.
        let seq = d.begin_read(FH, DIR, 1).unwrap();
        d.read_done(
            FH,
            seq,
            Some(vec![(&b"b"[..], 2), (b"c", 3), (b"d", 4)]),
            true,
        );
        let seq = d.begin_read(FH, DIR, 4).unwrap();
        assert!(d.read_done(FH, seq, Some(names(&[])), true));
        assert!(!d.absent(DIR, b"d"));
        assert!(d.absent(DIR, b"e"));
    }

    #[test]
    fn own_operations_update_the_listing_and_failures_make_names_unknown() {
        let d = DirNames::default();
        assert!(list(&d, &["a"]));
        d.created(DIR, b"x");
        assert!(!d.absent(DIR, b"x"));
        d.removed(DIR, b"a");
        assert!(d.absent(DIR, b"a"));
        d.unsure(DIR, b"y");
        assert!(!d.absent(DIR, b"y"), "unknown: asked in the container");
        // A lookup's answer settles it...
        let s = d.stamp(DIR);
        d.not_found(DIR, b"y", s);
        assert!(d.absent(DIR, b"y"));
        // ...unless something happened meanwhile.
        d.unsure(DIR, b"y");
        let s = d.stamp(DIR);
        d.created(DIR, b"z");
        d.not_found(DIR, b"y", s);
        assert!(!d.absent(DIR, b"y"));
        d.not_found(DIR, b"y", None);
        assert!(!d.absent(DIR, b"y"), "sent before the listing");
        // Found: held whenever the lookup was sent.
        let s = d.stamp(DIR);
        d.removed(DIR, b"z");
        d.found(DIR, b"z");
        assert!(!d.absent(DIR, b"z"));
        d.not_found(DIR, b"z", s);
        assert!(!d.absent(DIR, b"z"));
        // Own operations elsewhere do nothing here.
        d.created(DIR + 1, b"q");
        assert!(d.absent(DIR, b"q"));
    }

    #[test]
    fn feed_changes_make_names_unknown_or_drop_the_listing() {
        let d = DirNames::default();
        assert!(list(&d, &["a"]));
        d.changed(&[
            Change::Entry {
                dir: DIR,
                name: b"new".to_vec().into(),
            },
            Change::Removed {
                dir: DIR,
                name: b"a".to_vec().into(),
                node: 9,
            },
            Change::Attr { node: DIR },
        ]);
        assert!(!d.absent(DIR, b"new"));
        assert!(!d.absent(DIR, b"a"));
        assert!(d.absent(DIR, b"other"));
        for drop in [
            Change::Data { node: DIR },
            Change::Unwatched { node: DIR },
            Change::All,
        ] {
            assert!(list(&d, &["a"]));
            d.changed(&[drop]);
            assert!(!d.absent(DIR, b"other"));
        }
        assert!(list(&d, &["a"]));
        d.forgotten(DIR);
        assert!(!d.absent(DIR, b"other"));
        assert!(list(&d, &["a"]));
        d.drop_all();
        assert!(!d.absent(DIR, b"other"));
        // Too many unknown names.
        assert!(list(&d, &["a"]));
        for i in 0..MAX_UNKNOWN {
            d.unsure(DIR, format!("u{i}").as_bytes());
        }
        assert!(d.absent(DIR, b"other"));
        d.unsure(DIR, b"one-more");
        assert!(!d.absent(DIR, b"other"));
        // Invalid names from the container drop it.
        assert!(list(&d, &["a"]));
        d.changed(&[Change::Entry {
            dir: DIR,
            name: b"a/b".to_vec().into(),
        }]);
        assert!(!d.absent(DIR, b"other"));
        assert_eq!(d.held(), (0, 0));
    }

    #[test]
    fn invalid_names_in_a_listing_abandon_it() {
        let d = DirNames::default();
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        d.read_done(FH, seq, Some(vec![(&b"a\0b"[..], 1)]), true);
        assert!(d.begin_read(FH, DIR, 1).is_none());
        assert_eq!(d.held(), (0, 0));
    }

    #[test]
    fn listings_are_bounded() {
        let d = DirNames::default();
        let big: Vec<Vec<u8>> = (0..MAX_NAMES)
            .map(|i| format!("n{i}").into_bytes())
            .collect();
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        let entries = big.iter().enumerate().map(|(i, n)| (&n[..], i as u64 + 1));
        d.read_done(FH, seq, Some(entries), true);
        assert!(
            d.begin_read(FH, DIR, MAX_NAMES as u64).is_none(),
            "a listing past the bound is abandoned"
        );
        assert_eq!(d.held(), (0, 0));
        // Long names: the byte budget.
        let long: Vec<Vec<u8>> = (0..MAX_BYTES / 200 + 1)
            .map(|i| format!("{i:0>200}").into_bytes())
            .collect();
        let seq = d.begin_read(FH, DIR, 0).unwrap();
        let entries = long.iter().enumerate().map(|(i, n)| (&n[..], i as u64 + 1));
        d.read_done(FH, seq, Some(entries), true);
        assert!(d.begin_read(FH, DIR, 1).is_none());
        assert_eq!(d.held(), (0, 0));
        // Within the bound, a complete listing is kept and accounted.
        assert!(list(&d, &["a", "bb"]));
        assert_eq!(d.held(), (3, 3));
        d.forgotten(DIR);
        assert_eq!(d.held(), (0, 0));
    }
}
