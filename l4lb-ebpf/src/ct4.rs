//! The IPv4 connection table's slots (`L4LB_CONNTRACK4`, an array; see
//! `l4lb_common::flow_slots`): found by comparing the key in at most
//! `FLOW_PROBE_SLOTS` slots, all inline (no call into the kernel).
//!
//! Claims are compare-and-swaps of the key's first word, so two CPUs never
//! write one slot: a claimed slot reads `FLOW_SLOT_BUSY` (matching no key)
//! until its value and second word are written, then its first word is
//! stored last. An update in place (close bits, refresh) races a reader as
//! the hash map's in-place updates did; so does an eviction: a reader that
//! matched the old key just before the claim may read the new flow's value
//! (the LRU hash reuses a removed element as soon, without a grace period).
use core::{
    intrinsics::{AtomicOrdering, atomic_cxchg},
    ptr::{addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::helpers::bpf_jiffies64;
use l4lb_common::{
    CT_EVICTED, CT_NO_SLOT, FLOW_PROBE_SLOTS, FLOW_SLOT_BUSY, FlowSlot4, FlowValue, flow_probe,
    flow_slot,
};

use crate::maps::{L4LB_CONNTRACK4, L4LB_CT_STATS};

const SEQ: AtomicOrdering = AtomicOrdering::SeqCst;

/// The node's slot-hash seed (`l4lb_common::CT_SEED_MAP`), set by the agent
/// at load: a constant of the frozen read-only data, one load from a line
/// that stays cached. The default is never used (the agent requires it).
#[unsafe(no_mangle)]
static L4LB_CT_SEED: u64 = 1;

#[inline(always)]
fn seed() -> u64 {
    // SAFETY: a plain read of a static; volatile so the compiler leaves the
    // value to the loader.
    unsafe { read_volatile(&L4LB_CT_SEED) }
}

/// The slot holding the flow whose key words are `key`, if any.
#[inline(always)]
fn find(key: &[u64; 2]) -> Option<*mut FlowSlot4> {
    let first = flow_slot(key, seed());
    let mut i = 0;
    while i < FLOW_PROBE_SLOTS {
        let s = L4LB_CONNTRACK4.get_ptr_mut(flow_probe(first, i))?;
        // SAFETY: a live array value.
        if unsafe { (*s).key[0] == key[0] && (*s).key[1] == key[1] } {
            return Some(s);
        }
        i += 1;
    }
    None
}

/// The established path: the flow's entry, read in place, marked seen now
/// (written only when the clock moved: once a tick at most).
#[inline(always)]
pub fn get(key: &[u64; 2]) -> Option<&'static FlowValue> {
    let s = find(key)?;
    // SAFETY: a live array value; the clock read is inlined by the verifier.
    unsafe {
        let now = bpf_jiffies64();
        if (*s).seen != now {
            write_volatile(addr_of_mut!((*s).seen), now);
        }
        Some(&(*s).value)
    }
}

/// The flow's entry, to update in place.
#[inline(always)]
pub fn get_ptr_mut(key: &[u64; 2]) -> Option<*mut FlowValue> {
    // SAFETY: a field of a live array value.
    find(key).map(|s| unsafe { addr_of_mut!((*s).value) })
}

/// Records `flow` under `key`: in its own slot if it has one, else in a
/// free one, else in the least recently seen of its range (counted).
#[inline(always)]
pub fn insert(key: &[u64; 2], flow: &FlowValue) {
    let Some(s) = claim(key) else {
        count(CT_NO_SLOT);
        return;
    };
    // SAFETY: the slot is ours (its first word is BUSY): no other writer;
    // readers match it only once the first word is stored, last.
    unsafe {
        write_volatile(addr_of_mut!((*s).value), *flow);
        write_volatile(addr_of_mut!((*s).seen), bpf_jiffies64());
        write_volatile(addr_of_mut!((*s).key[1]), key[1]);
        write_volatile(addr_of_mut!((*s).key[0]), key[0]);
    }
}

/// Frees the flow's slot, if it has one.
#[inline(always)]
pub fn remove(key: &[u64; 2]) {
    if let Some(s) = find(key) {
        take(s, key[0], 0);
    }
}

/// A slot for `key`, its first word set to BUSY; None if every slot of its
/// range is being written by another CPU.
#[inline(always)]
fn claim(key: &[u64; 2]) -> Option<*mut FlowSlot4> {
    if let Some(s) = find(key) {
        return take(s, key[0], FLOW_SLOT_BUSY).then_some(s);
    }
    let first = flow_slot(key, seed());
    // The least recently seen live slot: (slot, its first word, seen).
    let mut oldest: Option<(*mut FlowSlot4, u64, u64)> = None;
    let mut i = 0;
    while i < FLOW_PROBE_SLOTS {
        let s = L4LB_CONNTRACK4.get_ptr_mut(flow_probe(first, i))?;
        i += 1;
        // SAFETY: a live array value; aligned 8-byte reads.
        let (owner, seen) = unsafe {
            (
                read_volatile(addr_of_mut!((*s).key[0])),
                read_volatile(addr_of_mut!((*s).seen)),
            )
        };
        if owner == 0 && take(s, 0, FLOW_SLOT_BUSY) {
            return Some(s);
        }
        if owner != 0 && owner != FLOW_SLOT_BUSY && oldest.is_none_or(|(_, _, t)| seen < t) {
            oldest = Some((s, owner, seen));
        }
    }
    let (s, owner, _) = oldest?;
    take(s, owner, FLOW_SLOT_BUSY).then(|| {
        count(CT_EVICTED);
        s
    })
}

/// Sets the slot's first word from `owner` to `to`; false if another CPU
/// changed it meanwhile.
#[inline(always)]
fn take(s: *mut FlowSlot4, owner: u64, to: u64) -> bool {
    // SAFETY: a live array value, an aligned 8-byte field.
    unsafe { atomic_cxchg::<u64, SEQ, SEQ>(addr_of_mut!((*s).key[0]), owner, to).1 }
}

#[inline(always)]
fn count(what: u32) {
    if let Some(n) = L4LB_CT_STATS.get_ptr_mut(what) {
        // SAFETY: per-CPU array element, only this CPU writes it while we run.
        unsafe { *n += 1 };
    }
}
