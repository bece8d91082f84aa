//! Open files and directory streams, keyed by handle ids that are never
//! reused (a late RELEASE can then never close a newer file).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use dockerfuse_proto::{Errno, HOST_FH_BIT};

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

    /// Whether `id` may name a handle the host is about to open (protocol
    /// 8): it has [`HOST_FH_BIT`] and nothing above it (EINVAL) and is
    /// not in use (EEXIST).
    pub(crate) fn check_new(&self, id: u64) -> Result<(), Errno> {
        Self::check_free(&self.lock(), id)
    }

    fn check_free(t: &Inner, id: u64) -> Result<(), Errno> {
        if id & HOST_FH_BIT == 0 || id >> 47 != 0 {
            return Err(Errno::EINVAL);
        }
        match t.map.contains_key(&id) {
            true => Err(Errno::EEXIST),
            false => Ok(()),
        }
    }

    /// Inserts `h` under `id`, the host's choice, refused as
    /// [`Handles::check_new`] says (then `h` is dropped).
    pub(crate) fn insert_at(&self, id: u64, h: Handle) -> Result<(), Errno> {
        let mut t = self.lock();
        Self::check_free(&t, id)?;
        t.map.insert(id, Arc::new(h));
        Ok(())
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

    #[test]
    fn host_chosen_handles_are_checked() {
        let h = Handles::default();
        let file = || Handle::File(std::fs::File::open("/").unwrap().into());
        assert_eq!(h.check_new(3), Err(Errno::EINVAL));
        assert_eq!(h.insert_at(3, file()), Err(Errno::EINVAL));
        assert_eq!(h.insert_at(HOST_FH_BIT << 1, file()), Err(Errno::EINVAL));
        let id = HOST_FH_BIT | 9;
        assert_eq!(h.insert_at(id, file()), Ok(()));
        assert_eq!(h.check_new(id), Err(Errno::EEXIST));
        assert_eq!(h.insert_at(id, file()), Err(Errno::EEXIST));
        assert!(h.get(id).is_ok());
        // The satellite's own numbering is not disturbed.
        assert_eq!(h.insert(file()), 1);
    }
}
