//! What lets XDP forward an established flow after one hash lookup (the
//! connection table): a per-service generation array checked instead of the
//! service map, and a VIP address pre-filter that lets every other packet
//! (and every connect or sendmsg to no VIP address) leave after one array
//! read, before any hash lookup.

use crate::Addr6;

/// Service id → [`ServiceGen`] (array, mmap-able: the agent writes it by
/// memory store, before the service value it describes).
pub const SVC_GEN_MAP: &str = "L4LB_SVC_GEN";
/// A bitmap (`u64` words, array, mmap-able): bit `hash(VIP address) %
/// VIP_FILTER_SLOTS` is set while some VIP address hashes there; clear =
/// surely not a VIP address. Bits rather than per-slot counts (the agent
/// keeps those): 8 KB whose lines stay cached, where 512 KB of counts cost
/// a VIP connect one more cold line.
pub const VIP_FILTER_MAP: &str = "L4LB_VIP_FILTER";
/// Slots (bits) of [`VIP_FILTER_MAP`] (a power of two).
pub const VIP_FILTER_SLOTS: u32 = 65_536;
/// `u64` words of [`VIP_FILTER_MAP`].
pub const VIP_FILTER_WORDS: u32 = VIP_FILTER_SLOTS / 64;

/// A service's generation: a number that never repeats for its id while the
/// maps are pinned (the agent takes the next one above the largest in the
/// array, which survives restarts). A flow records the generation its
/// backend was picked under; while the array still holds it, the backend
/// set has not changed since and the service was not removed or re-created,
/// so the backend's recorded address is used with no other lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceGen {
    /// 0: never written (no flow records 0 as a live generation).
    pub generation: u32,
    /// The service value's revision and slot base this generation is for:
    /// a new flow records `generation` only when they match the service
    /// value it was picked from (else 0: checked the slow way).
    pub revision: u32,
    pub slot_base: u32,
    /// 1 while the service exists; 0 after its removal.
    pub live: u32,
}

const _: () = assert!(VIP_FILTER_SLOTS.is_power_of_two());

/// The [`VIP_FILTER_MAP`] slot of a VIP address (the agent and the
/// programs agree).
#[inline(always)]
pub const fn vip_filter_slot(a: &Addr6) -> u32 {
    let h = a[0] ^ a[1].rotate_left(8) ^ a[2].rotate_left(16) ^ a[3].rotate_left(24) ^ a[3];
    h.wrapping_mul(0x9e37_79b1) >> 16 & (VIP_FILTER_SLOTS - 1)
}

/// Where slot `slot`'s bit is: (word index, mask within the word).
#[inline(always)]
pub const fn vip_filter_bit(slot: u32) -> (u32, u64) {
    (slot / 64, 1 << (slot % 64))
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceGen {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4_mapped;

    #[test]
    fn neighbouring_addresses_spread_over_the_filter() {
        let slots: std::collections::HashSet<u32> = (0..1000u32)
            .map(|i| vip_filter_slot(&v4_mapped((0xc612_0000 + i).to_be())))
            .collect();
        assert!(slots.len() > 950, "{} distinct slots", slots.len());
        assert!(slots.iter().all(|s| *s < VIP_FILTER_SLOTS));
    }

    #[test]
    fn every_slot_has_its_own_bit_inside_the_words() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..VIP_FILTER_SLOTS {
            let (word, mask) = vip_filter_bit(slot);
            assert!(word < VIP_FILTER_WORDS);
            assert_eq!(mask.count_ones(), 1);
            assert!(seen.insert((word, mask)), "slot {slot} shares a bit");
        }
    }
}
