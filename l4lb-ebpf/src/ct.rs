//! The connection table, in two maps: IPv4 flows (both addresses
//! IPv4-mapped) in `L4LB_CONNTRACK4`, slots under a 16-byte key read inline
//! (`ct4.rs`), the others in the LRU hash `L4LB_CONNTRACK` under the
//! 40-byte [`FlowKey`]. The kernel hashes and compares the whole key of a
//! hash map lookup, behind a call: on the established path that was most
//! of the time not spent in the test run itself. The map is chosen from the
//! key itself, so every caller (balancing, close tracking, ICMP steering)
//! finds what another wrote.
use l4lb_common::{FlowKey, FlowKey4, FlowValue};

use crate::{client::Key4, ct4, maps::L4LB_CONNTRACK};

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

/// An IPv4 flow's entry, read in place, under the key the caller built.
#[inline(always)]
pub fn get4(key: &Key4) -> Option<&'static FlowValue> {
    ct4::get(key.words())
}

/// `key`'s entry, to update in place.
#[inline(always)]
pub fn get_ptr_mut(key: &FlowKey) -> Option<*mut FlowValue> {
    match FlowKey4::of(key) {
        Some(k4) => ct4::get_ptr_mut(&k4.to_words()),
        None => L4LB_CONNTRACK.get_ptr_mut(key),
    }
}

/// Records `flow` under `key` (a failed insert only costs a re-pick).
#[inline(always)]
pub fn insert(key: &FlowKey, flow: &FlowValue) {
    match FlowKey4::of(key) {
        Some(k4) => ct4::insert(&k4.to_words(), flow),
        None => {
            let _ = L4LB_CONNTRACK.insert(key, flow, 0);
        }
    }
}

/// Removes `key`'s entry, if any.
#[inline(always)]
pub fn remove(key: &FlowKey) {
    match FlowKey4::of(key) {
        Some(k4) => ct4::remove(&k4.to_words()),
        None => {
            let _ = L4LB_CONNTRACK.remove(key);
        }
    }
}
