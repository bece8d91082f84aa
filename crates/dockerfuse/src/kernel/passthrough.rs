//! FUSE passthrough bookkeeping: which inode is backed by which file.
//!
//! The kernel allows one backing file per inode, and an inode open for
//! passthrough cannot be opened through the page cache at the same time
//! (nor the other way round): such an open fails with EIO. So every open
//! of an inode follows the mode of the opens already there: the first
//! open with a usable descriptor registers it (FUSE_DEV_IOC_BACKING_OPEN)
//! and later opens share that backing id; an inode already open through
//! the page cache stays there until all its opens are released. The
//! backing id is closed when the last open of the inode is released; the
//! host's copy of each descriptor is closed as soon as it is registered
//! (or not used).
//!
//! The view here is never behind the kernel's: an open is counted before
//! its reply goes out, and a release only after the kernel has let go.
//!
//! The state lives in the core's node ledger ([`crate::fs::ledger`])
//! under its one lock; [`Backings`] is the view of it. A registration
//! (an ioctl on /dev/fuse, which sends the filesystem no request) runs
//! with the lock held, so that two opens of one inode never both
//! register; a backing id is closed outside it.
//!
//! Generic over the backing id type so the rules are tested without a
//! kernel; the adapter uses fuser's `BackingId`. The ledger holds the ids
//! type-erased (it is not generic), the view gives them back typed.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::ledger::Ledger;

/// How to answer one open.
pub(crate) enum Mode<B> {
    /// Reply with this backing id.
    Passthrough(Arc<B>),
    /// Reply with a normal open.
    Cached,
    /// Neither works (the inode is in passthrough, this open brought no
    /// usable descriptor): fail the open with EIO.
    Refuse,
}

/// A backing id as the ledger holds it.
type Held = Arc<dyn Any + Send + Sync>;

struct Node {
    backing: Option<Held>,
    opens: usize,
}

/// The backing files of one mount, in the ledger.
#[derive(Default)]
pub(crate) struct Inner {
    nodes: HashMap<u64, Node>,
    /// Open handle -> its node.
    handles: HashMap<u64, u64>,
}

/// The view of the ledger's backing files; `B` is the kernel's id of one.
pub(crate) struct Backings<B> {
    ledger: Arc<Mutex<Ledger>>,
    ids: PhantomData<fn() -> B>,
}

impl<B> Default for Backings<B> {
    /// Over a ledger of its own (tests).
    fn default() -> Self {
        Backings::over(Arc::default())
    }
}

/// The ledger, locked, seen as its backing files.
struct Locked<'a>(MutexGuard<'a, Ledger>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0.backings
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0.backings
    }
}

impl<B> Backings<B> {
    /// The view of `ledger`'s backing files.
    pub(crate) fn over(ledger: Arc<Mutex<Ledger>>) -> Self {
        Backings {
            ledger,
            ids: PhantomData,
        }
    }

    fn lock(&self) -> Locked<'_> {
        Locked(self.ledger.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<B: Send + Sync + 'static> Backings<B> {
    /// Decides how to answer the open `fh` of `node`; `fd` is the
    /// satellite's descriptor when usable; `register` makes a backing id
    /// of it. `fd` is closed on return in every case.
    pub(crate) fn open(
        &self,
        node: u64,
        fh: u64,
        fd: Option<OwnedFd>,
        register: impl FnOnce(&OwnedFd) -> std::io::Result<B>,
    ) -> Mode<B> {
        let mut t = self.lock();
        let mode = match (t.nodes.get_mut(&node), fd) {
            (Some(n), fd) => match (&n.backing, fd) {
                // Only this view puts ids in, all of type `B`.
                (Some(b), Some(_)) => match b.clone().downcast::<B>() {
                    Ok(b) => {
                        n.opens += 1;
                        Mode::Passthrough(b)
                    }
                    Err(_) => return Mode::Refuse,
                },
                (Some(_), None) => return Mode::Refuse,
                (None, _) => {
                    n.opens += 1;
                    Mode::Cached
                }
            },
            (None, Some(fd)) => match register(&fd) {
                Ok(b) => {
                    let b = Arc::new(b);
                    t.nodes.insert(
                        node,
                        Node {
                            backing: Some(b.clone()),
                            opens: 1,
                        },
                    );
                    Mode::Passthrough(b)
                }
                Err(e) => {
                    tracing::debug!(node, error = %e, "the kernel refused the backing file: normal path");
                    t.nodes.insert(
                        node,
                        Node {
                            backing: None,
                            opens: 1,
                        },
                    );
                    Mode::Cached
                }
            },
            (None, None) => {
                t.nodes.insert(
                    node,
                    Node {
                        backing: None,
                        opens: 1,
                    },
                );
                Mode::Cached
            }
        };
        t.handles.insert(fh, node);
        mode
    }

    /// The kernel released `fh`; the backing id goes with the node's last
    /// open.
    pub(crate) fn release(&self, fh: u64) {
        let gone = {
            let mut t = self.lock();
            let Some(node) = t.handles.remove(&fh) else {
                return;
            };
            match t.nodes.get_mut(&node) {
                Some(n) if n.opens > 1 => {
                    n.opens -= 1;
                    None
                }
                Some(_) => t.nodes.remove(&node),
                None => None,
            }
        };
        // Closes the backing id (outside the lock).
        drop(gone);
    }

    /// Backing ids held.
    #[cfg(test)]
    fn backed(&self) -> usize {
        self.lock()
            .nodes
            .values()
            .filter(|n| n.backing.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backing id that counts how many are alive.
    struct Id(Arc<AtomicUsize>);
    impl Drop for Id {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn fd() -> Option<OwnedFd> {
        Some(std::fs::File::open("/").unwrap().into())
    }

    fn reg(live: &Arc<AtomicUsize>) -> impl FnOnce(&OwnedFd) -> std::io::Result<Id> + '_ {
        move |_| {
            live.fetch_add(1, Ordering::SeqCst);
            Ok(Id(live.clone()))
        }
    }

    fn is_pt<B>(m: &Mode<B>) -> bool {
        matches!(m, Mode::Passthrough(_))
    }

    #[test]
    fn opens_of_one_inode_share_a_backing_id_until_the_last_release() {
        let live = Arc::new(AtomicUsize::new(0));
        let b = Backings::default();
        assert!(is_pt(&b.open(5, 1, fd(), reg(&live))));
        // The second open registers nothing new.
        assert!(is_pt(&b.open(5, 2, fd(), |_| panic!("registered twice"))));
        assert_eq!(live.load(Ordering::SeqCst), 1);
        // Another inode gets its own.
        assert!(is_pt(&b.open(6, 3, fd(), reg(&live))));
        assert_eq!(live.load(Ordering::SeqCst), 2);
        b.release(1);
        assert_eq!(live.load(Ordering::SeqCst), 2);
        b.release(2);
        assert_eq!(
            live.load(Ordering::SeqCst),
            1,
            "released with the last open"
        );
        b.release(3);
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert_eq!(b.backed(), 0);
        // Unknown and repeated releases change nothing.
        b.release(3);
        b.release(99);
    }

    #[test]
    fn modes_never_mix_on_one_inode() {
        let live = Arc::new(AtomicUsize::new(0));
        let b = Backings::default();
        // An open without a descriptor puts the inode on the normal path...
        assert!(matches!(b.open(5, 1, None, reg(&live)), Mode::Cached));
        // ... and later opens follow, even with a descriptor.
        assert!(matches!(b.open(5, 2, fd(), |_| panic!("no")), Mode::Cached));
        assert_eq!(live.load(Ordering::SeqCst), 0);
        b.release(1);
        b.release(2);
        // Free again: passthrough now, and an open without a descriptor
        // must be refused while it lasts.
        assert!(is_pt(&b.open(5, 3, fd(), reg(&live))));
        assert!(matches!(b.open(5, 4, None, reg(&live)), Mode::Refuse));
        b.release(4); // the refused handle was never counted
        assert_eq!(b.backed(), 1);
        b.release(3);
        assert_eq!(b.backed(), 0);
    }

    #[test]
    fn a_refused_registration_falls_back_for_the_inode() {
        let b: Backings<Id> = Backings::default();
        let m = b.open(5, 1, fd(), |_| {
            Err(std::io::Error::from_raw_os_error(libc::ELOOP))
        });
        assert!(matches!(m, Mode::Cached));
        let live = Arc::new(AtomicUsize::new(0));
        assert!(matches!(b.open(5, 2, fd(), reg(&live)), Mode::Cached));
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }
}
