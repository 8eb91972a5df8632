//! Locality at connect() under p2c (`--locality node|zone`): the service's
//! local backends (`L4LB_LOCAL`, written by the agent for the table revision
//! in force) are tried first, the closest class and then the lowest cost per
//! weight. The best one keeps the connection while it is up and its cost is
//! within `LOCAL_SPILL_RATIO` × the cheaper of two random backends; otherwise
//! (all local ones down or suspect, or past the threshold) None: p2c over the
//! whole table. A down local backend whose back-off is over is probed here.
use aya_ebpf::helpers::bpf_get_prandom_u32;
use l4lb_common::{
    CLASS_REMOTE, HealthState, LOCAL_MAX, LocalStats, ServiceValue, better_local, conn_time, cost,
    load_cost, stays_local, weighted_cost,
};

use super::{p2c::Choice, slot_backend};
use crate::{health, maps::L4LB_LOCAL};

#[inline(always)]
fn count(service_id: u32, f: impl FnOnce(&mut LocalStats)) {
    super::count_in_record(service_id, |r| f(&mut r.local));
}

/// The backend's state and cost now (an id without a health entry: up, idle).
#[inline(always)]
fn state_cost(id: u32, now: u64) -> (HealthState, u64, Option<*mut l4lb_common::BackendHealth>) {
    match health::entry(id) {
        // Load and handshake only: a remote backend's lifetime average
        // fades while this node sends it nothing, so lifetimes would make
        // the local one look worse than the others only for being used.
        Some(h) => {
            let (state, load, ewma, _) = health::snapshot(h, id, now);
            (state, load_cost(load, conn_time(ewma, 0)), Some(h))
        }
        None => (HealthState::Up, cost(0, 0, 0, 0), None),
    }
}

/// The cheaper of two random up backends of the whole table (u64::MAX: none up).
#[inline(always)]
fn remote_cost(svc: &ServiceValue, now: u64) -> u64 {
    let mut best = u64::MAX;
    let mut i = 0;
    while i < 2 {
        // SAFETY: helper without preconditions.
        let pick = unsafe { bpf_get_prandom_u32() };
        if let Some(id) = slot_backend(svc, pick) {
            let (state, c, _) = state_cost(id, now);
            if state == HealthState::Up && c < best {
                best = c;
            }
        }
        i += 1;
    }
    best
}

/// A local backend for this connect, or None for p2c over the whole table.
#[inline(always)]
pub fn choose(svc: &ServiceValue, now: u64) -> Option<Choice> {
    // SAFETY: copied out before any other map operation.
    let set = unsafe { L4LB_LOCAL.get(&svc.id) }.copied()?;
    if set.active == 0 || set.revision != svc.revision {
        return None;
    }
    let (mut best, mut best_class, mut best_wcost, mut best_cost) = (0u32, CLASS_REMOTE, 0, 0);
    let mut i = 0;
    while i < LOCAL_MAX {
        if i >= set.count as usize {
            break;
        }
        let (Some(&id), Some(&w), Some(&class)) =
            (set.ids.get(i), set.weights.get(i), set.classes.get(i))
        else {
            break;
        };
        i += 1;
        if w == 0 {
            continue;
        }
        let (state, c, h) = state_cost(id, now);
        if state == HealthState::ProbeDue
            && super::p2c::connection_probes()
            && let Some(h) = h
            && health::claim_probe(h, now)
        {
            count(svc.id, |s| s.probes += 1);
            return Some(Choice {
                backend_id: id,
                probe: true,
            });
        }
        if state != HealthState::Up {
            continue;
        }
        let wc = weighted_cost(c, w);
        if best == 0 || better_local(class, wc, best_class, best_wcost) {
            (best, best_class, best_wcost, best_cost) = (id, class, wc, c);
        }
    }
    if best == 0 {
        count(svc.id, |s| s.spill_down += 1);
        return None;
    }
    if !stays_local(best_cost, remote_cost(svc, now)) {
        count(svc.id, |s| s.spill_load += 1);
        return None;
    }
    count(svc.id, |s| s.local += 1);
    Some(Choice {
        backend_id: best,
        probe: false,
    })
}
