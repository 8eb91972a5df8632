//! The two arrays behind XDP's one-lookup established path
//! (`l4lb_common::fast_path`), both written through a mapping of the whole
//! array (memory stores, no syscall; the next bpf() call orders them before
//! whatever it writes):
//! - [`SvcGens`]: service id → generation, written before each service
//!   value put or removal, so a flow recorded under an older backend set,
//!   or under a removed or re-created service of the same id, never matches;
//! - [`VipFilter`]: per filter slot, the VIP addresses hashing there, kept
//!   by the VIP address map's writer (`vip_addrs.rs`).
use std::collections::{HashMap as StdHashMap, HashSet};

use aya::maps::{HashMap, Map, MapData, MapError};
use l4lb_common::{Addr6, ServiceGen, ServiceKey, ServiceValue, vip_filter_slot};

use super::mmap::Mapped;

fn publish() {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

type Services = HashMap<MapData, ServiceKey, ServiceValue>;

/// `L4LB_SVC_GEN`. One writer per pin root (the agent holds its lock).
pub struct SvcGens {
    gens: Mapped<ServiceGen>,
    /// Above every generation in the array: the next one handed out.
    next: u32,
}

impl SvcGens {
    pub fn new(map: Map) -> Result<SvcGens, MapError> {
        let mut gens: Mapped<ServiceGen> = Mapped::new(map, l4lb_common::SVC_GEN_MAP)?;
        let top = gens.slice().iter().map(|g| g.generation).max().unwrap_or(0);
        Ok(SvcGens {
            gens,
            next: top + 1,
        })
    }

    /// `v` is about to be written: its id gets a new generation unless the
    /// array already describes this very value (a rewrite, an adoption).
    pub fn put(&mut self, v: &ServiceValue) {
        let next = &mut self.next;
        let Some(g) = self.gens.slice().get_mut(v.id as usize) else {
            return; // out of the array: XDP checks this id the slow way
        };
        if g.live != 0 && g.revision == v.revision && g.slot_base == v.slot_base {
            return;
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
    }

    /// Service `id` is about to be removed: no flow's generation matches it
    /// from now on.
    pub fn remove(&mut self, id: u32) {
        let next = &mut self.next;
        if let Some(g) = self.gens.slice().get_mut(id as usize)
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
    }

    /// Makes the array describe the services map (at load: a previous run
    /// may have stopped between the two writes).
    pub fn sync(&mut self, services: &Services) -> Result<(), MapError> {
        let mut ids = HashSet::new();
        for entry in services.iter() {
            let (_, v) = entry?;
            ids.insert(v.id);
            self.put(&v);
        }
        let stale: Vec<u32> = (0..self.gens.len as u32)
            .filter(|id| self.gens.slice()[*id as usize].live != 0 && !ids.contains(id))
            .collect();
        for id in stale {
            self.remove(id);
        }
        Ok(())
    }

    /// The entry of `id` (tests, CLI).
    pub fn get(&mut self, id: u32) -> Option<ServiceGen> {
        self.gens.slice().get(id as usize).copied()
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

/// `L4LB_VIP_FILTER`: per slot, how many VIP addresses hash there.
pub struct VipFilter {
    slots: Mapped<u64>,
    addrs: HashSet<Addr6>,
}

impl VipFilter {
    pub fn new(map: Map) -> Result<VipFilter, MapError> {
        Ok(VipFilter {
            slots: Mapped::new(map, l4lb_common::VIP_FILTER_MAP)?,
            addrs: HashSet::new(),
        })
    }

    /// `addr` is a VIP address (before the VIP address map says so).
    pub fn add(&mut self, addr: &Addr6) {
        if self.addrs.insert(*addr) {
            self.bump(addr, 1);
        }
    }

    /// `addr` is no VIP address any more.
    pub fn remove(&mut self, addr: &Addr6) {
        if self.addrs.remove(addr) {
            self.bump(addr, -1);
        }
    }

    fn bump(&mut self, addr: &Addr6, by: i64) {
        let slot = vip_filter_slot(addr) as usize;
        if let Some(n) = self.slots.slice().get_mut(slot) {
            *n = n.saturating_add_signed(by);
        }
        publish();
    }

    /// Makes the filter hold exactly `addrs`.
    pub fn rebuild<'a>(&mut self, addrs: impl Iterator<Item = &'a Addr6>) {
        let mut counts: StdHashMap<usize, u64> = StdHashMap::new();
        self.addrs.clear();
        for a in addrs {
            self.addrs.insert(*a);
            *counts.entry(vip_filter_slot(a) as usize).or_default() += 1;
        }
        // New slots first, stale ones after: no VIP address is ever 0.
        let slots = self.slots.slice();
        for (i, n) in &counts {
            if let Some(s) = slots.get_mut(*i) {
                *s = (*s).max(*n);
            }
        }
        publish();
        for (i, s) in slots.iter_mut().enumerate() {
            *s = counts.get(&i).copied().unwrap_or(0);
        }
        publish();
    }
}
