//! Diff between what the maps hold (`Applied`) and what they should hold
//! (`DesiredState`): an ordered list of map writes. Pure; the datapath module
//! executes it. The order is the safety argument:
//!
//! 1. new backends are written before any slot names them;
//! 2. a changed service's new Maglev table is written into a FREE range of the
//!    slots array, then one update of its service value switches to that range,
//!    so a connect() or packet sees the old set or the new set, never a mix;
//! 3. removed services disappear from the services map first;
//! 4. only after a grace period (in-flight programs may still use the old
//!    range) are old members and unused backends deleted; the old range becomes
//!    free for the next plan, which starts after the grace period.
//!
//! A full plan ([`plan`]) compares every service with the maps. Between two
//! catalogs most services are the same: [`plan_change`] plans only the VIPs
//! whose desired service changed (found by the caller by diffing persistent
//! maps, not told by a source), with the allocation [`Index`] kept from the
//! plan before. Both run the same loop over their VIPs, in VIP order, so a
//! change gives the writes, in the order, a full plan gives (`change_tests.rs`).
use std::{collections::BTreeSet, net::SocketAddr};

use l4lb_common::{
    Backend, MAX_BACKENDS, MAX_SERVICES, MAX_SLOTS, MemberKey, ServiceKey, ServiceValue,
};
use serde::Serialize;

use crate::{
    model::{DesiredState, ServiceMap, ServiceSpec, Vip},
    slots::{AddrKey, maglev},
};

mod addr_ids;
mod backend_addrs;
mod free;
mod index;
mod members;
mod place;
mod refs;
mod run;

pub use backend_addrs::BackendAddrs;
pub use index::Index;
pub use members::Members;
use run::Run;

/// One service as the maps hold it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppliedService {
    pub id: u32,
    pub revision: u32,
    /// Its Maglev table: `slot_count` slots of the array from `slot_base`.
    pub slot_base: u32,
    pub slot_count: u32,
    /// Distinct backends in the table (`ServiceValue::backends`).
    pub backends: u32,
    /// backend id → weight.
    pub members: Members,
    /// Its slots are not the table of its members (adoption check, `adopt.rs`):
    /// the next plan rewrites it even if its members are unchanged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// Everything the maps hold, as read back by the datapath or predicted by a plan.
/// Persistent maps: a plan's `next` starts as an O(1) copy of what it
/// replaces and shares every service the plan does not touch, so copies for
/// later comparisons cost nothing and their diff visits only what changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub services: imbl::OrdMap<Vip, AppliedService>,
    /// backend id → address.
    pub backends: BackendAddrs,
    /// (service id, backend id) of members whose service is not in the
    /// services map (a crash between a removal and its cleanup, or before a
    /// new service's switch): deleted by the next plan, their ids not reused.
    pub orphan_members: BTreeSet<(u32, u32)>,
}

impl Applied {
    /// The desired state these maps implement (for comparisons and the CLI).
    pub fn to_desired(&self) -> DesiredState {
        let services = self
            .services
            .iter()
            .map(|(vip, s)| {
                let backends = s
                    .members
                    .iter()
                    .filter_map(|(id, w)| Some((*self.backends.get(id)?, *w)))
                    .collect();
                (
                    *vip,
                    ServiceSpec {
                        name: None,
                        framework: None,
                        origin: None,
                        backends,
                    },
                )
            })
            .collect();
        DesiredState { services }
    }
}

/// A service's Maglev table, filled when it is written: the plan of a full
/// sync would otherwise hold every service's table at once (10,000 services
/// of 503 slots: 20 MB), where the members take a tenth of that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotTable {
    pub size: u32,
    /// (backend id, address, weight); the address keys the permutation.
    members: Vec<(u32, SocketAddr, u32)>,
}

impl SlotTable {
    /// The table of `size` slots for (backend id, address, weight) members.
    pub fn new(size: u32, members: Vec<(u32, SocketAddr, u32)>) -> SlotTable {
        SlotTable { size, members }
    }

    /// Backend ids for the table's `size` slots.
    pub fn fill(&self) -> Vec<u32> {
        let keyed: Vec<(u32, AddrKey, u32)> = self
            .members
            .iter()
            .map(|(id, a, w)| (*id, AddrKey::of(a), *w))
            .collect();
        maglev(&keyed, self.size)
    }
}

/// One map write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    PutBackend(u32, Backend),
    ResetBackendStats(u32),
    ResetServiceStats(u32),
    /// Slots `base..base + table.size` of the slots array.
    WriteSlots {
        base: u32,
        table: SlotTable,
    },
    PutMember(MemberKey, u32),
    DelMember(MemberKey),
    PutService(ServiceKey, ServiceValue),
    DelService(ServiceKey),
    DelBackend(u32),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// Sizes of the maps a plan allocates from (their max_entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub services: u32,
    pub backends: u32,
    pub slots: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            services: MAX_SERVICES,
            backends: MAX_BACKENDS,
            slots: MAX_SLOTS,
        }
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Safe to run at once, in order.
    pub now: Vec<Op>,
    /// Run after in-flight programs can no longer use what `now` replaced.
    pub after_grace: Vec<Op>,
    /// What the maps hold once both lists ran.
    pub next: Applied,
    pub summary: Summary,
    /// Services left out because a map is full (the rest apply; services
    /// already in the maps keep their table).
    pub skipped: Vec<(Vip, PlanError)>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the services map is full ({capacity} VIPs; raise --max-services)")]
    ServicesFull { capacity: u32 },
    #[error("the backends map is full: no id for {need} new backend(s) of {vip} (it holds {max}; raise --max-backends)", max = .capacity.saturating_sub(1))]
    BackendsFull {
        vip: Vip,
        need: usize,
        capacity: u32,
    },
    #[error(
        "the slots array is full: no free range of {need} slots for {vip} (capacity {capacity}; raise --max-slots)"
    )]
    SlotsFull { vip: Vip, need: u32, capacity: u32 },
}

/// `cap` gives the maps' sizes. A service that does not fit (services map,
/// backends map or slots array full) is skipped and listed in
/// `Plan::skipped`, keeping its current table if it has one; the rest apply.
pub fn plan(applied: &Applied, desired: &DesiredState, cap: Capacity) -> Plan {
    plan_all(applied, &desired.services, cap)
}

/// [`plan`] of desired services held in a persistent map.
pub fn plan_all(applied: &Applied, desired: &ServiceMap, cap: Capacity) -> Plan {
    plan_all_indexed(applied, desired, &mut Index::new(applied, cap))
}

/// [`plan_all`], taking from `index` (`Index::new(applied)`) as
/// [`plan_change`] does. If `applied` has no stale service and no orphan
/// member (every table of it is disjoint from the others, every service id
/// is a service's), [`Index::commit`] then makes it the index of `next`;
/// otherwise build that one anew.
pub fn plan_all_indexed(applied: &Applied, desired: &ServiceMap, index: &mut Index) -> Plan {
    reserve(index, desired);
    let mut run = Run::new(applied, index);
    run.services(every_vip(applied, desired), desired.len());
    run.all_backends()
}

/// [`plan_all_indexed`] that hands the services' writes to `write` as it
/// plans them, `every` services at a time (each part: its new backends,
/// then its services' groups), so that a full sync never holds them all.
/// The plan returned holds what comes after them (`now`: removals;
/// `after_grace`) and `next`. `Err(ops handed on)` if `write` refused a
/// part: planning stopped there, and the maps hold what the parts before
/// it wrote (each a complete table, or none, per service).
pub fn plan_all_emitting(
    applied: &Applied,
    desired: &ServiceMap,
    index: &mut Index,
    every: usize,
    write: &mut dyn FnMut(&[Op]) -> bool,
) -> Result<(Plan, usize), usize> {
    reserve(index, desired);
    let mut run = Run::new(applied, index).emitting(run::Emit::new(every, write));
    run.services(every_vip(applied, desired), desired.len());
    let emit = run.take_emit().expect("set above");
    if emit.refused {
        return Err(emit.emitted);
    }
    Ok((run.all_backends(), emit.emitted))
}

/// The plan of a change: what [`plan`] gives for `desired`, comparing only
/// the services of `changed` with the maps. `changed` must list, in order,
/// every VIP whose desired service differs from the one `applied` was
/// planned for (added, changed, removed); `index` must be the index of
/// `applied` (`Index::new`, or that of the plan that made it, committed);
/// `applied` has no stale service and no orphan member (a full plan leaves
/// none when it skips nothing). The plan takes from `index`; what it frees
/// becomes free at [`Index::commit`].
pub fn plan_change(
    applied: &Applied,
    desired: &ServiceMap,
    changed: &[Vip],
    index: &mut Index,
) -> Plan {
    debug_assert!(changed.is_sorted() && applied.orphan_members.is_empty());
    let mut run = Run::new(applied, index);
    let changed = changed
        .iter()
        .map(|v| (*v, desired.get(v), applied.services.get(v)));
    run.services(changed, desired.len());
    run.touched_backends()
}

impl Applied {
    /// True if an index of it, committed after a full plan, is the index of
    /// that plan's `next` (see [`plan_all_indexed`]).
    pub fn index_follows(&self) -> bool {
        self.orphan_members.is_empty() && self.services.values().all(|s| !s.stale)
    }
}

/// Every VIP of `desired` or `applied`, in order, with its service in
/// each: both maps walked side by side (sorted), not a lookup per VIP.
/// Room in `index` for the backends `desired` names.
fn reserve(index: &mut Index, desired: &ServiceMap) {
    let (mut v4, mut v6) = (0, 0);
    for addr in desired.values().flat_map(|s| s.backends.keys()) {
        match addr.is_ipv4() {
            true => v4 += 1,
            false => v6 += 1,
        }
    }
    index.reserve(v4, v6);
}

fn every_vip<'a, 'd>(
    applied: &'a Applied,
    desired: &'d ServiceMap,
) -> impl Iterator<Item = run::Item<'a, 'd>> {
    let mut d = desired.iter().peekable();
    let mut a = applied.services.iter().peekable();
    std::iter::from_fn(move || {
        let order = match (d.peek(), a.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((dv, _)), Some((av, _))) => dv.cmp(av),
        };
        Some(match order {
            std::cmp::Ordering::Less => d.next().map(|(v, s)| (*v, Some(s), None))?,
            std::cmp::Ordering::Greater => a.next().map(|(v, o)| (*v, None, Some(o)))?,
            std::cmp::Ordering::Equal => {
                let (v, s) = d.next()?;
                (*v, Some(s), a.next().map(|(_, o)| o))
            }
        })
    })
}

/// The VIPs whose service differs between `old` and `new`, in order: the
/// parts both maps share are skipped, so this is O(change) when `new` was
/// made from `old`, and a full comparison when they share nothing.
pub fn changed_vips(old: &ServiceMap, new: &ServiceMap) -> Vec<Vip> {
    use imbl::ordmap::DiffItem;
    old.diff(new)
        .map(|d| match d {
            DiffItem::Add(v, _) | DiffItem::Remove(v, _) => *v,
            DiffItem::Update { new: (v, _), .. } => *v,
        })
        .collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod change_tests;

#[cfg(test)]
mod emit_tests;

#[cfg(test)]
mod table_tests;
