//! Room for one new or changed service, and the writes that make it.
use std::net::SocketAddr;

use l4lb_common::{MemberKey, ServiceValue};

use super::{AppliedService, Index, Members, Op, PlanError, SlotTable};
use crate::{
    codec,
    model::{ServiceSpec, Vip},
    slots::table_size,
};

/// The backends a plan adds: counter resets, then puts (one batch write).
#[derive(Default)]
pub(super) struct NewBackends {
    pub resets: Vec<Op>,
    pub puts: Vec<Op>,
    /// (id, address) of each.
    pub added: Vec<(u32, SocketAddr)>,
}

/// The addresses of `spec` that have no backend id yet.
pub(super) fn missing(index: &Index, spec: &ServiceSpec) -> Vec<SocketAddr> {
    spec.backends
        .keys()
        .filter(|a| index.backend(a).is_none())
        .copied()
        .collect()
}

/// backend id → weight for `spec` (every address has an id).
pub(super) fn members(index: &Index, spec: &ServiceSpec) -> Members {
    spec.backends
        .iter()
        .map(|(a, w)| (index.backend(a).expect("every address has an id"), *w))
        .collect()
}

/// True if the maps hold `spec` as it is: `old`, checked, with the same members.
pub(super) fn unchanged(index: &Index, spec: &ServiceSpec, old: Option<&AppliedService>) -> bool {
    old.is_some_and(|old| {
        !old.stale && missing(index, spec).is_empty() && old.members == members(index, spec)
    })
}

/// Finds room for a new or changed service (backend ids, a service id, a
/// free slot range) and returns what it will be, its writes pushed onto
/// `ops` (table, members, then the switch); nothing is taken or pushed if
/// it does not fit.
pub(super) fn place(
    vip: &Vip,
    spec: &ServiceSpec,
    old: Option<&AppliedService>,
    index: &mut Index,
    new: &mut NewBackends,
    ops: &mut Vec<Op>,
) -> Result<AppliedService, PlanError> {
    // Each address looked up once: the members and the table both need its id.
    let mut ids: Vec<Option<u32>> = spec.backends.keys().map(|a| index.backend(a)).collect();
    let missing = ids.iter().filter(|id| id.is_none()).count();
    room_for_ids(vip, missing, old, index)?;
    // Slots before backend ids: a table that does not fit takes nothing.
    let range = slot_range(vip, spec, old, index)?;
    // New ids in address order.
    for (id, addr) in ids.iter_mut().zip(spec.backends.keys()) {
        if id.is_none() {
            let added = index.add_backend(*addr, &mut new.resets, &mut new.puts);
            new.added.push((added, *addr));
            *id = Some(added);
        }
    }
    let table: Vec<(u32, SocketAddr, u32)> = (ids.into_iter().flatten())
        .zip(spec.backends.iter())
        .map(|(id, (addr, w))| (id, *addr, *w))
        .collect();
    let no_members = Members::new();
    let (id, revision, old_members) = match old {
        Some(o) => (o.id, o.revision.wrapping_add(1), &o.members),
        None => {
            let id = index.take_service_id().expect("checked by room_for_ids");
            ops.push(Op::ResetServiceStats(id));
            (id, 0, &no_members)
        }
    };
    let members: Members = table.iter().map(|(b, _, w)| (*b, *w)).collect();
    if range.count > 0 {
        ops.push(Op::WriteSlots {
            base: range.base,
            table: SlotTable::new(range.count, table),
        });
    }
    push_member_changes(ops, id, &members, old_members);
    let applied = AppliedService {
        id,
        revision,
        slot_base: range.base,
        slot_count: range.count,
        backends: range.backends,
        members,
        stale: false,
    };
    ops.push(Op::PutService(codec::service_key(vip), value_of(&applied)));
    Ok(applied)
}

/// Checks that `missing` backend ids and (for a new service) a service id are free.
fn room_for_ids(
    vip: &Vip,
    missing: usize,
    old: Option<&AppliedService>,
    index: &Index,
) -> Result<(), PlanError> {
    let cap = index.cap;
    if old.is_none() && !index.has_service_id() {
        return Err(PlanError::ServicesFull {
            capacity: cap.services,
        });
    }
    if !index.has_backend_ids(missing) {
        return Err(PlanError::BackendsFull {
            vip: *vip,
            need: missing,
            capacity: cap.backends,
        });
    }
    Ok(())
}

/// A service's Maglev table: where its slots start, how many, and how many
/// distinct backends fill them.
struct SlotRange {
    base: u32,
    count: u32,
    backends: u32,
}

/// Takes the slot range `spec`'s table needs (none without a live backend).
fn slot_range(
    vip: &Vip,
    spec: &ServiceSpec,
    old: Option<&AppliedService>,
    index: &mut Index,
) -> Result<SlotRange, PlanError> {
    let live = spec.backends.values().filter(|w| **w > 0).count();
    let size = table_size(live, old.map(|o| o.slot_count).unwrap_or(0));
    // What `maglev` fills: nothing without a live backend.
    let count = if live == 0 || size < 2 { 0 } else { size };
    let base = match count {
        0 => 0,
        n => index.alloc_slots(n).ok_or(PlanError::SlotsFull {
            vip: *vip,
            need: n,
            capacity: index.cap.slots,
        })?,
    };
    let backends = if count == 0 { 0 } else { live as u32 };
    Ok(SlotRange {
        base,
        count,
        backends,
    })
}

/// A member write for each backend whose weight in service `id` changed.
fn push_member_changes(ops: &mut Vec<Op>, id: u32, members: &Members, old_members: &Members) {
    for (b, w) in members.iter() {
        if old_members.get(b) != Some(w) {
            let key = MemberKey {
                service_id: id,
                backend_id: *b,
            };
            ops.push(Op::PutMember(key, *w));
        }
    }
}

/// The services map's value for `s`.
fn value_of(s: &AppliedService) -> ServiceValue {
    ServiceValue {
        id: s.id,
        slot_count: s.slot_count,
        revision: s.revision,
        slot_base: s.slot_base,
        backends: s.backends,
    }
}
