//! The connection table, in two maps: IPv4 flows (both addresses
//! IPv4-mapped) in `L4LB_CONNTRACK4` under a 16-byte key, the others in
//! `L4LB_CONNTRACK` under the 40-byte [`FlowKey`]. The kernel hashes and
//! compares the whole key on every lookup: on the established path that was
//! a quarter of the time. The map is chosen from the key itself, so every
//! caller (balancing, close tracking, ICMP steering) finds what another wrote.
use l4lb_common::{FlowKey, FlowKey4, FlowValue};

use crate::maps::{L4LB_CONNTRACK, L4LB_CONNTRACK4};

/// `key`'s entry, read in place: the established path reads a few fields
/// of it, and a copy of the whole value cost a zeroed stack slot and ten
/// moves per packet. (A value removed and reused by another CPU meanwhile
/// is the same race a copy taken a moment earlier has.)
#[inline(always)]
pub fn get(key: &FlowKey) -> Option<&'static FlowValue> {
    // SAFETY: a live map value; the map is static and its memory stays
    // mapped while the program runs.
    get_ptr_mut(key).map(|p| unsafe { &*p })
}

/// An IPv4 flow's entry, read in place, under the key the caller built
/// (`client::Key4`).
#[inline(always)]
pub fn get4(key: &FlowKey4) -> Option<&'static FlowValue> {
    // SAFETY: as in `get`.
    L4LB_CONNTRACK4.get_ptr_mut(key).map(|p| unsafe { &*p })
}

/// `key`'s entry, to update in place.
#[inline(always)]
pub fn get_ptr_mut(key: &FlowKey) -> Option<*mut FlowValue> {
    match FlowKey4::of(key) {
        Some(k4) => L4LB_CONNTRACK4.get_ptr_mut(&k4),
        None => L4LB_CONNTRACK.get_ptr_mut(key),
    }
}

/// Records `flow` under `key` (a failed insert only costs a re-pick).
#[inline(always)]
pub fn insert(key: &FlowKey, flow: &FlowValue) {
    let _ = match FlowKey4::of(key) {
        Some(k4) => L4LB_CONNTRACK4.insert(&k4, flow, 0),
        None => L4LB_CONNTRACK.insert(key, flow, 0),
    };
}

/// Removes `key`'s entry, if any.
#[inline(always)]
pub fn remove(key: &FlowKey) {
    let _ = match FlowKey4::of(key) {
        Some(k4) => L4LB_CONNTRACK4.remove(&k4),
        None => L4LB_CONNTRACK.remove(key),
    };
}
