//! Typed ids: the kernel's node ids and file handles, which the core's
//! operations take, and the bit layout of handles, owned here alone.
//!
//! A handle is 64 bits:
//!
//! | bits   | what                                                        |
//! |--------|-------------------------------------------------------------|
//! | 63     | a directory handle of the host's own ([`super::lazy_dir`]), never sent to the satellite |
//! | 48..63 | with `--reconnect`, the epoch of the satellite that opened it (its low 15 bits; [`crate::transport::relink`]) |
//! | 0..48  | the satellite's handle                                      |
//!
//! Without `--reconnect` the kernel holds the satellite's handles as they
//! are; the satellite numbers them from 1 up, far below bit 48.

/// A node id as the kernel holds it (the satellite's, or with
/// `--reconnect` relink's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeId(pub(crate) u64);

/// A file or directory handle as the kernel holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Fh(pub(crate) u64);

/// Marks a host directory handle.
const HOST: u64 = 1 << 63;
/// Bits of the satellite's own handle.
const SATELLITE_BITS: u32 = 48;
const SATELLITE_MASK: u64 = (1 << SATELLITE_BITS) - 1;
/// Bits of the epoch (below the host bit).
const EPOCH_MASK: u64 = (1 << (63 - SATELLITE_BITS)) - 1;

impl Fh {
    /// The `n`th host directory handle (`n` from 1).
    pub(crate) fn host(n: u64) -> Fh {
        Fh(HOST | (n & !HOST))
    }

    /// A handle of the host's own, not the satellite's.
    pub(crate) fn is_host(self) -> bool {
        self.0 & HOST != 0
    }

    /// The handle the kernel holds for satellite handle `sfh` of the
    /// satellite of `epoch`; None when `sfh` does not fit.
    pub(crate) fn of_epoch(epoch: u64, sfh: u64) -> Option<Fh> {
        (sfh <= SATELLITE_MASK).then_some(Fh(((epoch & EPOCH_MASK) << SATELLITE_BITS) | sfh))
    }

    /// The satellite's handle in `self`, if it belongs to the satellite
    /// of `epoch` (never for a host handle).
    pub(crate) fn in_epoch(self, epoch: u64) -> Option<u64> {
        (!self.is_host() && self.0 >> SATELLITE_BITS == epoch & EPOCH_MASK)
            .then_some(self.0 & SATELLITE_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_epoch_and_satellite_bits_never_overlap() {
        let h = Fh::host(5);
        assert!(h.is_host());
        assert_eq!(h.in_epoch(0), None);
        for epoch in [0, 1, 0x7fff, 0x8000, 0xffff, u64::MAX] {
            let fh = Fh::of_epoch(epoch, 42).unwrap();
            // No epoch turns a satellite's handle into a host handle.
            assert!(!fh.is_host(), "epoch {epoch:#x}");
            assert_eq!(fh.in_epoch(epoch), Some(42));
            assert_eq!(fh.in_epoch(epoch.wrapping_add(1)), None);
        }
        assert_eq!(Fh::of_epoch(3, SATELLITE_MASK + 1), None);
        assert_eq!(Fh::of_epoch(0, 7), Some(Fh(7)));
    }
}
