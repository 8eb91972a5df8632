//! The value of `L4LB_SVC_STATS` ([`crate::SERVICE_STATS_MAP`]): every
//! counter of one service in one per-CPU record. It was three per-CPU arrays
//! indexed by service id; the kernel makes one per-CPU allocation per entry,
//! so each 65,536-entry array cost ~50 ms of the agent's start, and a VIP
//! connect touched up to three records of the service instead of one.
use crate::{LbStats, LocalStats, Stats};

/// Per-CPU counters of a service. `stats` first: the per-packet writers (XDP,
/// tc) and every connect write its cache line; `lb` and `local` share the
/// second, written by connect4/6 only under p2c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    pub stats: Stats,
    /// How p2c decided, and TCP connects whose mark found no slot.
    pub lb: LbStats,
    /// How connect() used the service's local set (`--locality`).
    pub local: LocalStats,
}

impl ServiceStats {
    pub fn add(&mut self, o: &ServiceStats) {
        self.stats.add(&o.stats);
        self.lb.add(&o.lb);
        self.local.add(&o.local);
    }
}

// Two cache lines, the hot one first.
const _: () = assert!(core::mem::size_of::<Stats>() == 64);
const _: () = assert!(core::mem::size_of::<ServiceStats>() == 128);

#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceStats {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_every_sub_record() {
        let mut one = ServiceStats::default();
        one.stats.connects = 1;
        one.lb.probes = 2;
        one.local.spill_load = 3;
        let mut total = ServiceStats::default();
        total.add(&one);
        total.add(&one);
        assert_eq!(total.stats.connects, 2);
        assert_eq!(total.lb.probes, 4);
        assert_eq!(total.local.spill_load, 6);
        assert_eq!(
            total.stats.bytes + total.lb.fallbacks + total.local.local,
            0
        );
    }
}
