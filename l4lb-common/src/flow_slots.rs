//! The IPv4 connection table (`L4LB_CONNTRACK4`) as an array of slots the
//! kernel reads inline: a hash map lookup is a call into the kernel, and
//! on this kernel (return-stack mitigations) its return alone was a
//! visible share of the established path. A flow lives in one of the
//! [`FLOW_PROBE_SLOTS`] slots from [`flow_slot`] on; a slot's key says
//! whose it is. Twice as many slots as `MAX_FLOWS` and 8 probes: with
//! `MAX_FLOWS` flows recorded, about 0.5 % of new flows find their range
//! full (4 probes in `MAX_FLOWS` slots: 2.7 % at half that load). A new flow takes its own slot, a free one, or else the
//! least recently seen of its range (counted: [`CT_EVICTED`]), as an LRU
//! forgets its least recently used entry when full. Shared by the kernel
//! side (`l4lb-ebpf/src/ct4.rs`) and the agent (`explain`).
use crate::{FlowValue, MAX_FLOWS};

/// Slots of the IPv4 connection table.
pub const FLOW_SLOTS: u32 = 2 * MAX_FLOWS;

/// One slot: the flow's key as [`crate::FlowKey4::words`] (word 0 holds
/// both addresses, never 0 for a flow to a VIP: 0 = free,
/// [`FLOW_SLOT_BUSY`] = being written), when it was last seen (jiffies),
/// and the flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot4 {
    pub key: [u64; 2],
    pub seen: u64,
    pub value: FlowValue,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<FlowSlot4>() == 72);
// The slot index is wrapped with a mask.
const _: () = assert!(FLOW_SLOTS.is_power_of_two());

/// Slots a flow may take from [`flow_slot`] on.
pub const FLOW_PROBE_SLOTS: u32 = 8;
/// Word 0 of a slot being written: matches no key (255.255.255.255 is
/// never a VIP), so a reader skips it, and no writer claims it.
pub const FLOW_SLOT_BUSY: u64 = u64::MAX;

/// The first slot of the flow whose key words are `key`, under the node's
/// `seed` (random per pin root, [`CT_SEED_MAP`]): a client that knows the
/// hash but not the seed cannot choose sources whose flows share one range
/// and push out other clients' flows. Two multiplications, the result from
/// the top bits, which every input bit reaches; not a cryptographic hash.
#[inline(always)]
pub const fn flow_slot(key: &[u64; 2], seed: u64) -> u32 {
    let a = (key[0] ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let h = (a ^ key[1] ^ seed.rotate_left(32)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    (h >> (64 - FLOW_SLOTS.trailing_zeros())) as u32
}

/// The pinned one-entry array that holds the node's `u64` slot-hash seed,
/// written once when the pin root is made: the slots it placed outlive
/// the agent. The programs get it as a constant at load (`L4LB_CT_SEED`).
pub const CT_SEED_MAP: &str = "L4LB_CT_SEED";

/// Slot `i` of the range from `first`.
#[inline(always)]
pub const fn flow_probe(first: u32, i: u32) -> u32 {
    first.wrapping_add(i) & (FLOW_SLOTS - 1)
}

/// The slots a flow whose key words are `key` may be in, in probe order
/// (the agent's `explain` and the tests; the programs keep their own
/// bounded loop, which the verifier can follow).
pub fn flow_range(key: &[u64; 2], seed: u64) -> impl Iterator<Item = u32> {
    let first = flow_slot(key, seed);
    (0..FLOW_PROBE_SLOTS).map(move |i| flow_probe(first, i))
}

/// Per-CPU counters of the IPv4 connection table (`L4LB_CT_STATS`), by index.
pub const CT_STATS_MAP: &str = "L4LB_CT_STATS";
/// A new flow took the slot of another, live one (its range was full):
/// that flow's next packet is re-picked by Maglev (the same backend unless
/// the set changed meanwhile), as after an LRU's eviction.
pub const CT_EVICTED: u32 = 0;
/// A new flow found no slot it could claim (all being written by other
/// CPUs at once): not recorded; its next packet tries again.
pub const CT_NO_SLOT: u32 = 1;
/// Names of the [`CT_STATS_MAP`] slots, by index.
pub const CT_COUNTERS: [&str; 2] = ["evicted", "no_slot"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FlowKey4;

    #[test]
    fn slots_stay_in_the_table_and_spread() {
        let mut seen = std::collections::HashSet::new();
        for port in 0..4096u16 {
            let k = FlowKey4::words(0x0201_12c6, 0x0100_000b, port.to_be(), 80u16.to_be(), 6);
            let s = flow_slot(&k, 0x5eed);
            assert!(s < FLOW_SLOTS);
            seen.insert(s);
        }
        assert_eq!(flow_probe(FLOW_SLOTS - 1, 1), 0);
        let k = FlowKey4::words(0x0201_12c6, 0x0100_000b, 1, 80u16.to_be(), 6);
        let range: Vec<u32> = flow_range(&k, 7).collect();
        assert_eq!(range.len(), FLOW_PROBE_SLOTS as usize);
        assert_eq!(range[0], flow_slot(&k, 7));
        // 4096 ports of one client: few collisions in 262144 slots.
        assert!(seen.len() > 4000, "{} distinct slots", seen.len());
    }

    #[test]
    fn another_seed_places_the_flows_elsewhere() {
        let k =
            |port: u16| FlowKey4::words(0x0201_12c6, 0x0100_000b, port.to_be(), 80u16.to_be(), 6);
        let moved = (0..64u16)
            .filter(|&p| flow_slot(&k(p), 1) != flow_slot(&k(p), 2))
            .count();
        assert!(moved > 60, "{moved} of 64 moved");
    }

    #[test]
    fn busy_matches_no_flow_key() {
        let k = FlowKey4::words(0xffff_fffe, 0x0100_000b, 1, 2, 17);
        assert_ne!(k[0], FLOW_SLOT_BUSY);
        assert_ne!(k[0], 0);
    }
}
