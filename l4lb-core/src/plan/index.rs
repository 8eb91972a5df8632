//! [`Index`]: what a plan allocates from, derived from what the maps hold
//! (`Applied`): backend ids by address and how many services name each,
//! free backend ids, free service ids, free slot ranges. A full plan builds
//! it from `Applied`; a plan of a change takes it from the plan before,
//! updated, instead of rebuilding it from every service.
//!
//! What a plan replaces or removes (old slot ranges, ids of removed
//! services and deleted backends) stays taken until [`Index::commit`]: in-flight
//! programs may use it until the plan's grace period is over.
use std::net::SocketAddr;

use super::{Applied, Capacity, Op, addr_ids::AddrIds, free::FreeList, refs::Refs};
use crate::codec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// The maps' sizes.
    pub(super) cap: Capacity,
    /// Backend id by address: those in the maps, and those the current plan adds.
    by_addr: AddrIds,
    /// How many services name each backend id (those the maps hold, as the
    /// current plan leaves them).
    refs: Refs,
    backend_ids: FreeList,
    service_ids: FreeList,
    slots: FreeList,
    /// Freed by the current plan once it has run: taken until `commit`.
    pending: Pending,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Pending {
    ranges: Vec<(u32, u32)>,
    service_ids: Vec<u32>,
    backends: Vec<(u32, SocketAddr)>,
}

impl Index {
    /// The index of what `applied` holds, for maps of `cap`. Ids of orphan
    /// members' services stay taken until those are deleted.
    pub fn new(applied: &Applied, cap: Capacity) -> Index {
        let mut refs = Refs::default();
        // Members read back from pinned maps may name any id: one past the
        // backends' capacity names no backend (adoption finds it stale),
        // and would size the counts by it.
        refs.name(
            applied
                .services
                .values()
                .flat_map(|s| s.members.keys().copied())
                .filter(|id| *id < cap.backends),
        );
        let service_ids = applied.services.values().map(|s| s.id);
        let service_ids = service_ids.chain(applied.orphan_members.iter().map(|(s, _)| *s));
        let ranges = applied
            .services
            .values()
            .map(|s| (s.slot_base, s.slot_count));
        Index {
            cap,
            by_addr: applied.backends.iter().map(|(id, a)| (*a, *id)).collect(),
            refs,
            backend_ids: FreeList::ids(1, cap.backends, applied.backends.keys().copied()),
            service_ids: FreeList::ids(0, cap.services, service_ids),
            slots: FreeList::new(0, cap.slots, ranges),
            pending: Pending::default(),
        }
    }

    /// Room for `v4` and `v6` backend addresses in the address map, taken
    /// at once rather than by doubling (a full sync from nothing adds
    /// 50,000); none more if it holds that many already.
    pub(super) fn reserve(&mut self, v4: usize, v6: usize) {
        self.by_addr.reserve(v4, v6);
    }

    /// The id of the backend at `addr`, if it has one.
    pub(super) fn backend(&self, addr: &SocketAddr) -> Option<u32> {
        self.by_addr.get(addr)
    }

    pub(super) fn has_backend_ids(&self, n: usize) -> bool {
        self.backend_ids.has(n)
    }

    pub(super) fn has_service_id(&self) -> bool {
        self.service_ids.has(1)
    }

    pub(super) fn take_service_id(&mut self) -> Option<u32> {
        self.service_ids.take()
    }

    pub(super) fn alloc_slots(&mut self, len: u32) -> Option<u32> {
        self.slots.alloc(len)
    }

    /// An id for the backend at `addr` (the caller checked there is one),
    /// with the writes that add it: a counter reset into `resets`, the put
    /// into `puts`.
    pub(super) fn add_backend(
        &mut self,
        addr: SocketAddr,
        resets: &mut Vec<Op>,
        puts: &mut Vec<Op>,
    ) -> u32 {
        let id = self.backend_ids.take().expect("checked by has_backend_ids");
        resets.push(Op::ResetBackendStats(id));
        puts.push(Op::PutBackend(id, codec::backend(addr)));
        self.by_addr.insert(addr, id);
        id
    }

    /// A service now names `ids`.
    pub(super) fn name(&mut self, ids: impl Iterator<Item = u32>) {
        self.refs.name(ids);
    }

    /// A service no longer names `ids`.
    pub(super) fn unname(&mut self, ids: impl Iterator<Item = u32>) {
        self.refs.unname(ids);
    }

    /// True if some service names backend `id`.
    pub(super) fn named(&self, id: u32) -> bool {
        self.refs.named(id)
    }

    /// A replaced or removed table's range, free once the plan ran.
    pub(super) fn free_range(&mut self, base: u32, len: u32) {
        if len > 0 {
            self.pending.ranges.push((base, len));
        }
    }

    /// A removed service's id, free once the plan ran.
    pub(super) fn free_service_id(&mut self, id: u32) {
        self.pending.service_ids.push(id);
    }

    /// A deleted backend's id (and its address's), free once the plan ran.
    pub(super) fn free_backend(&mut self, id: u32, addr: SocketAddr) {
        self.pending.backends.push((id, addr));
    }

    /// The plan ran, grace period and cleanup included: what it freed can be
    /// taken by the next one. The index is then `Index::new` of its `next`.
    pub fn commit(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (base, len) in pending.ranges {
            self.slots.release(base, len);
        }
        for id in pending.service_ids {
            self.service_ids.release(id, 1);
        }
        for (id, addr) in pending.backends {
            if self.by_addr.get(&addr) == Some(id) {
                self.by_addr.remove(&addr);
            }
            self.backend_ids.release(id, 1);
        }
    }
}
