//! Locality at connect() (`--locality off|node|zone`): the per-service set of
//! backends local to this node that the agent writes, the counters the
//! connect hooks keep, and the pure rules both sides share.
//!
//! Drawing random Maglev slots would rarely find the one local backend among
//! many, so the agent lists each service's local backends (at most
//! [`LOCAL_MAX`]) in `L4LB_LOCAL`, keyed by service id and tied to the
//! service's table revision: a set written for another revision is ignored.

/// `--locality off`: no preference (what an unwritten config reads as).
pub const LOCALITY_OFF: u32 = 0;
/// `--locality node`: backends on one of this node's addresses first.
pub const LOCALITY_NODE: u32 = 1;
/// `--locality zone`: node-local first, then backends in this node's zone.
pub const LOCALITY_ZONE: u32 = 2;

/// A backend's locality class for this node (higher is closer).
pub const CLASS_REMOTE: u8 = 0;
pub const CLASS_ZONE: u8 = 1;
pub const CLASS_NODE: u8 = 2;

/// Local backends kept per service: the kernel looks at each on every
/// connect(), so the set is small and bounded.
pub const LOCAL_MAX: usize = 8;

/// The local candidate keeps new connections while its cost is at most this
/// many times the cost of the cheaper of two random backends: a local hop
/// saves the network round trip and the remote node's tail, worth taking up to
/// a few times the load of an average remote backend, not more (this node sees
/// only its own connections to it, not what other nodes send it).
pub const LOCAL_SPILL_RATIO: u64 = 4;

/// Value of `L4LB_LOCAL[service id]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalSet {
    /// The service's table revision the set was computed from; the kernel
    /// ignores a set whose revision is not the service value's.
    pub revision: u32,
    /// Entries in use (≤ [`LOCAL_MAX`]).
    pub count: u16,
    /// 1: prefer these (some weighted backend is farther). 0: kept for the
    /// CLI only (every weighted backend is local: nothing to prefer).
    pub active: u8,
    pub _pad: u8,
    pub ids: [u32; LOCAL_MAX],
    /// Member weights (1–100; weight-0 members are never listed).
    pub weights: [u8; LOCAL_MAX],
    /// `CLASS_NODE` or `CLASS_ZONE`.
    pub classes: [u8; LOCAL_MAX],
}

impl LocalSet {
    /// The class of `backend_id` in this set; `CLASS_REMOTE` if absent.
    pub fn class_of(&self, backend_id: u32) -> u8 {
        let n = (self.count as usize).min(LOCAL_MAX);
        (0..n)
            .find(|&i| self.ids[i] == backend_id)
            .map_or(CLASS_REMOTE, |i| self.classes[i])
    }
}

/// `ServiceStats::local` of `L4LB_SVC_STATS[service id]`: how connect() used the set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Connections sent to a local backend.
    pub local: u64,
    /// Sent farther because the best local one was over the load threshold.
    pub spill_load: u64,
    /// Sent farther because every local one was down or suspect.
    pub spill_down: u64,
    /// Half-open probes of a down local backend.
    pub probes: u64,
}

impl LocalStats {
    pub fn add(&mut self, o: &LocalStats) {
        self.local += o.local;
        self.spill_load += o.spill_load;
        self.spill_down += o.spill_down;
        self.probes += o.probes;
    }
}

/// A local candidate's cost per unit of weight (`weight` ≥ 1), so that among
/// several local backends the load follows their weights.
#[inline(always)]
pub const fn weighted_cost(cost: u64, weight: u8) -> u64 {
    // checked_div: no division-by-zero panic path for the BPF verifier.
    match cost.checked_div(weight as u64) {
        Some(c) => c,
        None => cost,
    }
}

/// Whether candidate (`class`, `wcost`) beats the best so far: the closer
/// class first, then the lower weighted cost.
#[inline(always)]
pub const fn better_local(class: u8, wcost: u64, best_class: u8, best_wcost: u64) -> bool {
    class > best_class || (class == best_class && wcost < best_wcost)
}

/// Whether the local candidate keeps the connection: its cost within
/// [`LOCAL_SPILL_RATIO`] times the remote sample's (`u64::MAX`: no remote up).
#[inline(always)]
pub const fn stays_local(local_cost: u64, remote_cost: u64) -> bool {
    local_cost / LOCAL_SPILL_RATIO <= remote_cost
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::LocalSet {}
    unsafe impl aya::Pod for super::LocalStats {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost;

    #[test]
    fn the_set_is_fifty_six_bytes_with_no_hidden_padding() {
        assert_eq!(size_of::<LocalSet>(), 8 + 4 * LOCAL_MAX + 2 * LOCAL_MAX);
        assert_eq!(size_of::<LocalStats>(), 32);
    }

    #[test]
    fn class_of_finds_listed_backends_only() {
        let mut s = LocalSet {
            count: 2,
            ..Default::default()
        };
        s.ids[..2].copy_from_slice(&[7, 9]);
        s.classes[..2].copy_from_slice(&[CLASS_NODE, CLASS_ZONE]);
        s.ids[2] = 11; // beyond count: not listed
        s.classes[2] = CLASS_NODE;
        assert_eq!(s.class_of(7), CLASS_NODE);
        assert_eq!(s.class_of(9), CLASS_ZONE);
        assert_eq!(s.class_of(11), CLASS_REMOTE);
        assert_eq!(s.class_of(0), CLASS_REMOTE);
    }

    #[test]
    fn closer_class_wins_then_weighted_cost() {
        assert!(better_local(CLASS_NODE, 1_000_000, CLASS_ZONE, 1));
        assert!(!better_local(CLASS_ZONE, 1, CLASS_NODE, 1_000_000));
        assert!(better_local(CLASS_NODE, 5, CLASS_NODE, 6));
        assert!(!better_local(CLASS_NODE, 6, CLASS_NODE, 6));
        // Twice the weight: twice the (load + 1) at the same weighted cost.
        let light = weighted_cost(cost(1, 0, 0, 0), 50);
        assert_eq!(weighted_cost(cost(3, 0, 0, 0), 100), light);
        assert!(weighted_cost(cost(2, 0, 0, 0), 100) < light);
        assert_eq!(weighted_cost(10, 0), 10);
    }

    #[test]
    fn local_keeps_up_to_the_ratio_then_spills() {
        let remote = cost(0, 0, 80_000, 0); // an idle remote backend
        assert!(stays_local(cost(0, 0, 30_000, 0), remote));
        assert!(stays_local(cost(3, 0, 30_000, 0), remote)); // 4 connections: 4×
        assert!(!stays_local(cost(4, 0, 30_000, 0), remote)); // 5: past 4×
        // A slow local handshake counts as load too (past the floor).
        assert!(stays_local(cost(0, 0, 1_000_000, 0), remote));
        assert!(!stays_local(cost(0, 0, 5_000_000, 0), remote));
        // No remote backend up: stay.
        assert!(stays_local(u64::MAX, u64::MAX));
        assert!(stays_local(cost(1 << 30, 0, 1 << 40, 0), u64::MAX));
    }
}
