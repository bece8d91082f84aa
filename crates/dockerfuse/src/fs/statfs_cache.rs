//! Recent statfs answers. `grep -r`, `du` and `find` ask for the
//! filesystem's counts at every start (fts), `df` at every call; each
//! would cost a round trip. An answer is kept for [`KEEP`] (with the feed;
//! without it, or with an explicit `--ttl`, for the short TTL) and only
//! while nothing changed that the mount knows of: any change the feed
//! reports and any change the mount makes drops it. What the container's
//! other writers do to the free space where the mount does not look (or
//! other containers on the same disk) shows within [`KEEP`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dockerfuse_proto::StatFs;

/// How long an answer is kept with the feed.
pub(super) const KEEP: Duration = Duration::from_secs(5);
/// Answers kept at once (one per node asked about).
const MAX: usize = 64;

/// One answer: the counts, the change generation they are current for,
/// and until when they may be given.
type Kept = (StatFs, u64, Instant);

#[derive(Default)]
pub(super) struct Recent {
    inner: Mutex<HashMap<u64, Kept>>,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Kept>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer kept for `node`, if nothing changed since (`generation`)
    /// and it is recent enough.
    pub(super) fn get(&self, node: u64, generation: u64) -> Option<StatFs> {
        let t = self.lock();
        let &(s, g, until) = t.get(&node)?;
        (g == generation && Instant::now() < until).then_some(s)
    }

    /// Keeps `s`, asked for `node` at `generation`, for `ttl`.
    pub(super) fn put(&self, node: u64, generation: u64, s: StatFs, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut t = self.lock();
        if t.len() >= MAX && !t.contains_key(&node) {
            t.clear();
        }
        t.insert(node, (s, generation, Instant::now() + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_while_nothing_changed_and_recent() {
        let r = Recent::default();
        let s = StatFs {
            blocks: 7,
            ..Default::default()
        };
        assert!(r.get(1, 0).is_none());
        r.put(1, 3, s, KEEP);
        assert_eq!(r.get(1, 3), Some(s));
        assert!(r.get(1, 4).is_none(), "a change since");
        assert!(r.get(2, 3).is_none(), "another node");
        r.put(1, 3, s, Duration::ZERO);
        assert_eq!(r.get(1, 3), Some(s), "a zero TTL keeps nothing new");
        r.put(5, 3, s, Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(1));
        assert!(r.get(5, 3).is_none(), "expired");
        for n in 0..MAX as u64 + 1 {
            r.put(100 + n, 3, s, KEEP);
        }
        assert!(r.lock().len() <= MAX);
    }
}
