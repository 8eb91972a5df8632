//! The two arrays behind XDP's one-lookup established path
//! (`l4lb_common::fast_path`), both written through mappings of the array
//! (memory stores, no syscall; the next bpf() call orders them before
//! whatever it writes): the generations a few windows at a time
//! ([`Windows`]), the filter's 8 KB whole:
//! - [`SvcGens`]: service id → generation, written before each service
//!   value put or removal, so a flow recorded under an older backend set,
//!   or under a removed or re-created service of the same id, never matches;
//! - [`VipFilter`]: a bit per filter slot, set while some VIP address
//!   hashes there, kept by the VIP address map's writer (`vip_addrs.rs`).
use std::collections::{HashMap as StdHashMap, HashSet};

use aya::maps::{HashMap, Map, MapData, MapError};
use l4lb_common::{Addr6, ServiceGen, ServiceKey, ServiceValue, vip_filter_bit, vip_filter_slot};

use super::mmap::{Mapped, Windows};

fn publish() {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

type Services = HashMap<MapData, ServiceKey, ServiceValue>;

/// `L4LB_SVC_GEN`. One writer per pin root (the agent holds its lock).
pub struct SvcGens {
    gens: Windows<ServiceGen>,
    /// Above every generation in the array: the next one handed out.
    next: u32,
}

impl SvcGens {
    pub fn new(map: Map) -> Result<SvcGens, MapError> {
        let gens: Windows<ServiceGen> = Windows::new(map, l4lb_common::SVC_GEN_MAP)?;
        let mut top = 0;
        gens.for_each(|_, g| top = top.max(g.generation))?;
        Ok(SvcGens {
            gens,
            next: top + 1,
        })
    }

    /// `v` is about to be written: its id gets a new generation unless the
    /// array already describes this very value (a rewrite, an adoption).
    /// Errs only if its part of the array cannot be mapped.
    pub fn put(&mut self, v: &ServiceValue) -> Result<(), MapError> {
        let next = &mut self.next;
        let Some(g) = self.gens.get_mut(v.id as usize)? else {
            return Ok(()); // out of the array: XDP checks this id the slow way
        };
        if g.live != 0 && g.revision == v.revision && g.slot_base == v.slot_base {
            return Ok(());
        }
        store(
            g,
            ServiceGen {
                generation: take(next),
                revision: v.revision,
                slot_base: v.slot_base,
                live: 1,
            },
        );
        Ok(())
    }

    /// Service `id` is about to be removed: no flow's generation matches it
    /// from now on. Errs only if its part of the array cannot be mapped.
    pub fn remove(&mut self, id: u32) -> Result<(), MapError> {
        let next = &mut self.next;
        if let Some(g) = self.gens.get_mut(id as usize)?
            && g.live != 0
        {
            store(
                g,
                ServiceGen {
                    generation: take(next),
                    ..ServiceGen::default()
                },
            );
        }
        Ok(())
    }

    /// Makes the array describe the services map (at load: a previous run
    /// may have stopped between the two writes).
    pub fn sync(&mut self, services: &Services) -> Result<(), MapError> {
        let mut ids = HashSet::new();
        for entry in services.iter() {
            let (_, v) = entry?;
            ids.insert(v.id);
            self.put(&v)?;
        }
        let mut stale = Vec::new();
        self.gens.for_each(|id, g| {
            if g.live != 0 && !ids.contains(&(id as u32)) {
                stale.push(id as u32);
            }
        })?;
        for id in stale {
            self.remove(id)?;
        }
        Ok(())
    }

    /// The entry of `id` (tests, CLI).
    pub fn get(&mut self, id: u32) -> Result<Option<ServiceGen>, MapError> {
        Ok(self.gens.get_mut(id as usize)?.copied())
    }
}

/// Writes `new` over `g` so that XDP, reading the entry while it changes,
/// never sees the new generation beside the old revision and slot base: the
/// generation is cleared first and written last.
fn store(g: &mut ServiceGen, new: ServiceGen) {
    let g: *mut ServiceGen = g;
    // SAFETY: `g` is a valid, aligned element of the mapping; volatile so
    // the three steps reach memory in this order.
    unsafe {
        std::ptr::addr_of_mut!((*g).generation).write_volatile(0);
        publish();
        std::ptr::addr_of_mut!((*g).revision).write_volatile(new.revision);
        std::ptr::addr_of_mut!((*g).slot_base).write_volatile(new.slot_base);
        std::ptr::addr_of_mut!((*g).live).write_volatile(new.live);
        publish();
        std::ptr::addr_of_mut!((*g).generation).write_volatile(new.generation);
    }
    publish();
}

fn take(next: &mut u32) -> u32 {
    let g = *next;
    // 0 stays "never written"; 2^32 service writes wrap.
    *next = next.wrapping_add(1).max(1);
    g
}

/// `L4LB_VIP_FILTER`: a bitmap of the slots some VIP address hashes to.
/// The per-slot counts live here: a bit is cleared only when the last
/// address of its slot goes.
pub struct VipFilter {
    words: Mapped<u64>,
    addrs: HashSet<Addr6>,
    counts: SlotCounts,
}

impl VipFilter {
    pub fn new(map: Map) -> Result<VipFilter, MapError> {
        Ok(VipFilter {
            words: Mapped::new(map, l4lb_common::VIP_FILTER_MAP)?,
            addrs: HashSet::new(),
            counts: SlotCounts::default(),
        })
    }

    /// `addr` is a VIP address (before the VIP address map says so).
    pub fn add(&mut self, addr: &Addr6) {
        let slot = vip_filter_slot(addr);
        if self.addrs.insert(*addr) && self.counts.add(slot) {
            self.set_bit(slot, true);
        }
    }

    /// `addr` is no VIP address any more.
    pub fn remove(&mut self, addr: &Addr6) {
        let slot = vip_filter_slot(addr);
        if self.addrs.remove(addr) && self.counts.remove(slot) {
            self.set_bit(slot, false);
        }
    }

    /// Writes the one word whose bit changes.
    fn set_bit(&mut self, slot: u32, on: bool) {
        let (word, mask) = vip_filter_bit(slot);
        if let Some(w) = self.words.slice().get_mut(word as usize) {
            let new = if on { *w | mask } else { *w & !mask };
            store_word(w, new);
        }
        publish();
    }

    /// Makes the filter hold exactly `addrs`.
    pub fn rebuild<'a>(&mut self, addrs: impl Iterator<Item = &'a Addr6>) {
        self.addrs.clear();
        self.counts = SlotCounts::default();
        for a in addrs {
            if self.addrs.insert(*a) {
                self.counts.add(vip_filter_slot(a));
            }
        }
        let want = self.counts.bitmap(self.words.len);
        // New bits first, stale ones after: no VIP address's bit is ever clear.
        let words = self.words.slice();
        for (w, new) in words.iter_mut().zip(&want) {
            store_word(w, *w | new);
        }
        publish();
        for (w, new) in words.iter_mut().zip(&want) {
            store_word(w, *new);
        }
        publish();
    }
}

/// One aligned 8-byte store (the programs read the word whole).
fn store_word(w: &mut u64, v: u64) {
    if *w != v {
        // SAFETY: `w` is a valid, aligned element of the mapping.
        unsafe { std::ptr::write_volatile(w, v) };
    }
}

/// Per filter slot, how many VIP addresses hash there (only slots above 0).
#[derive(Default)]
struct SlotCounts(StdHashMap<u32, u32>);

impl SlotCounts {
    /// One more address in `slot`; true when it was the first (set its bit).
    fn add(&mut self, slot: u32) -> bool {
        let n = self.0.entry(slot).or_default();
        *n += 1;
        *n == 1
    }

    /// One address fewer in `slot`; true when it was the last (clear its bit).
    fn remove(&mut self, slot: u32) -> bool {
        let Some(n) = self.0.get_mut(&slot) else {
            return false;
        };
        *n -= 1;
        if *n > 0 {
            return false;
        }
        self.0.remove(&slot);
        true
    }

    /// The bitmap of the counted slots, `words` long.
    fn bitmap(&self, words: usize) -> Vec<u64> {
        let mut bits = vec![0u64; words];
        for slot in self.0.keys() {
            let (word, mask) = vip_filter_bit(*slot);
            if let Some(w) = bits.get_mut(word as usize) {
                *w |= mask;
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_bit_goes_with_its_last_address_only() {
        let mut c = SlotCounts::default();
        assert!(c.add(70));
        assert!(!c.add(70), "second address of the slot: bit already set");
        assert!(!c.remove(70), "one address still hashes there");
        assert!(c.remove(70));
        assert!(!c.remove(70), "an uncounted slot is no change");
    }

    #[test]
    fn the_bitmap_has_the_counted_slots_bits() {
        let mut c = SlotCounts::default();
        for slot in [0, 63, 64, 65_535] {
            c.add(slot);
        }
        let bits = c.bitmap(l4lb_common::VIP_FILTER_WORDS as usize);
        assert_eq!(bits[0], 1 | 1 << 63);
        assert_eq!(bits[1], 1);
        assert_eq!(bits[1023], 1 << 63);
        assert_eq!(bits.iter().map(|w| w.count_ones()).sum::<u32>(), 4);
    }
}
