//! Open files and directory streams, keyed by handle ids that are never
//! reused (a late RELEASE can then never close a newer file).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use dockerfuse_proto::Errno;

/// A directory stream: the descriptor and a lock that serialises the
/// seek + getdents pair of one readdir.
pub(crate) struct DirStream {
    pub(crate) fd: OwnedFd,
    /// The directory's node (the parent of what readdirplus looks up).
    pub(crate) node: u64,
    pub(crate) lock: Mutex<()>,
}

pub(crate) enum Handle {
    File(OwnedFd),
    Dir(DirStream),
}

impl Handle {
    pub(crate) fn file(&self) -> Result<RawFd, Errno> {
        match self {
            Handle::File(fd) => Ok(fd.as_raw_fd()),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub(crate) fn dir(&self) -> Result<&DirStream, Errno> {
        match self {
            Handle::Dir(d) => Ok(d),
            Handle::File(_) => Err(Errno::ENOTDIR),
        }
    }
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, Arc<Handle>>,
    next: u64,
}

#[derive(Default)]
pub(crate) struct Handles {
    inner: Mutex<Inner>,
}

impl Handles {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, h: Handle) -> u64 {
        let mut t = self.lock();
        t.next += 1;
        let id = t.next;
        t.map.insert(id, Arc::new(h));
        id
    }

    pub(crate) fn get(&self, id: u64) -> Result<Arc<Handle>, Errno> {
        self.lock().map.get(&id).cloned().ok_or(Errno::EBADF)
    }

    /// Removes a handle; its descriptor closes when the last in-flight
    /// operation using it is done.
    pub(crate) fn remove(&self, id: u64) -> Result<(), Errno> {
        self.lock().map.remove(&id).map(drop).ok_or(Errno::EBADF)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_never_reused() {
        let h = Handles::default();
        let a = h.insert(Handle::File(std::fs::File::open("/").unwrap().into()));
        h.remove(a).unwrap();
        let b = h.insert(Handle::File(std::fs::File::open("/").unwrap().into()));
        assert_ne!(a, b);
        assert_eq!(h.remove(a), Err(Errno::EBADF));
        assert_eq!(h.len(), 1);
    }
}
