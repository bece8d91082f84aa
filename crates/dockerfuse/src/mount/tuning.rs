//! The kernel's knobs of one mount, set once it exists: more readahead,
//! less dirty data held (both need root; a failure costs only speed or
//! leaves the kernel's own bound).

use std::path::Path;

use crate::kernel::mountinfo;

/// The kernel gives a FUSE mount 128 KiB of readahead whatever the
/// filesystem asks for at init; 1 MiB keeps several large reads in flight
/// (measured: 78-87 -> 106-112 MB/s for a first read). Needs root; a
/// failure only costs speed.
pub(super) fn raise_readahead(mountpoint: &Path) {
    // The device number comes from mountinfo: a stat of the mount point
    // would be a FUSE request, and the session loop is not running yet.
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    let kb = (dockerfuse_proto::MAX_IO / 1024).to_string();
    if let Err(e) = std::fs::write(&knob, kb) {
        tracing::debug!(%knob, error = %e, "readahead left as the kernel set it");
    }
}

/// Most bytes the kernel may hold written and not yet sent for one mount
/// (its page cache with `--writeback-cache`, shared mappings otherwise):
/// what a crash of dockerfuse may lose of them (docs/SEMANTICS.md).
const DIRTY_LIMIT: u64 = 24 << 20;

/// The kernel lets a FUSE mount hold 1% of the machine's dirty limit
/// (strictly: a writer waits past it), 45 MiB on a 24 GiB machine and
/// more on larger ones; this lowers it to [`DIRTY_LIMIT`], never raises
/// it. Needs root (and kernel 6.2); otherwise the kernel's share stays the
/// bound.
pub(super) fn limit_dirty(mountpoint: &Path) {
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/max_bytes");
    let now = std::fs::read_to_string(&knob)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match now {
        Some(n) if n <= DIRTY_LIMIT => {}
        _ => match std::fs::write(&knob, DIRTY_LIMIT.to_string()) {
            Ok(()) => {
                tracing::debug!(%knob, bytes = DIRTY_LIMIT, "dirty data of the mount bounded")
            }
            Err(e) => {
                tracing::debug!(%knob, error = %e, "dirty data bounded by the kernel's share only")
            }
        },
    }
}

/// `major:minor` of the filesystem mounted on `path` (the last such mount).
fn mount_device(path: &Path) -> Option<String> {
    mountinfo::find(path).map(|e| e.device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_mount_has_a_device_number() {
        let dev = mount_device(Path::new("/")).expect("/ is mounted");
        assert!(dev.contains(':'), "{dev}");
    }
}
