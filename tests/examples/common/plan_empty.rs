//! A full plan from empty maps, as a fresh agent makes it on its first
//! sync, with the benchmarks' capacity. Included with `#[path]` (not an
//! example itself).
use l4lb_agent::{
    model::ServiceMap,
    plan::{Applied, Capacity, Index, Op, Plan, plan_all_emitting},
    reconcile::SERVICES_PER_WRITE,
};

/// The maps' sizes the benchmarks give the agent at 10,000 services
/// (`--max-slots 5046272`: 503 slots a service).
pub fn capacity() -> Capacity {
    Capacity {
        slots: 5_046_272,
        ..Capacity::default()
    }
}

/// `desired` planned from empty maps of [`capacity`], in parts of
/// `SERVICES_PER_WRITE` services handed to `write`: the plan, the
/// allocation index it leaves and its op count.
pub fn plan_from_empty(
    desired: &ServiceMap,
    write: &mut dyn FnMut(&[Op]) -> bool,
) -> (Plan, Index, usize) {
    let applied = Applied::default();
    let mut index = Index::new(&applied, capacity());
    let planned = plan_all_emitting(&applied, desired, &mut index, SERVICES_PER_WRITE, write);
    let (plan, ops) = planned.expect("every part taken");
    (plan, index, ops)
}
