//! Power of two choices at connect(): two independent random slots of the
//! service's Maglev table (so weights hold, and weight-0 backends, which have
//! no slot, never come up), down and suspect backends skipped with a few
//! bounded redraws, the lower `cost` (live connections and handshakes times
//! the handshake average) wins. A down backend is probed by the agent (no
//! client connect is ever a probe) unless the agent set `--health-probes
//! connection`: then one whose back-off is over is taken by exactly one
//! connect as its probe. Every draw down or suspect →
//! the control plane's choice (the first slot), counted as a fallback.
use aya_ebpf::helpers::bpf_get_prandom_u32;
use l4lb_common::{
    HealthState, LB_POLICY_P2C, LbStats, P2C_MAX_DRAWS, PROBES_CONNECTION, ServiceValue, cost,
};

use super::slot_backend;
use crate::{
    health,
    maps::{L4LB_LB_CONFIG, L4LB_LB_STATS},
};

/// The backend connect() goes to, and whether it is a down backend's probe.
pub struct Choice {
    pub backend_id: u32,
    pub probe: bool,
}

/// The policy the agent set (`--lb-policy`); p2c when unset.
#[inline(always)]
pub fn policy() -> u32 {
    L4LB_LB_CONFIG.get(0).map_or(LB_POLICY_P2C, |c| c.policy)
}

/// Client connections may be half-open probes (`--health-probes connection`).
#[inline(always)]
pub(super) fn connection_probes() -> bool {
    L4LB_LB_CONFIG
        .get(0)
        .is_some_and(|c| u32::from(c.probes) == PROBES_CONNECTION)
}

#[inline(always)]
fn random() -> u32 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_prandom_u32() }
}

#[inline(always)]
fn count(service_id: u32, f: impl FnOnce(&mut LbStats)) {
    if let Some(s) = L4LB_LB_STATS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU array element, only this CPU writes it while we run.
        f(unsafe { &mut *s });
    }
}

/// `svc.slot_count` must be > 0. None: the table could not be read.
#[inline(always)]
pub fn choose(svc: &ServiceValue) -> Option<Choice> {
    let now = health::now_ns();
    if let Some(local) = super::local::choose(svc, now) {
        return Some(local);
    }
    let first = slot_backend(svc, random())?;
    let (mut best, mut best_cost, mut found) = (first, u64::MAX, 0u32);
    let mut first_up = false;
    let mut id = first;
    let mut i = 0;
    while i < P2C_MAX_DRAWS {
        if i > 0 {
            id = match slot_backend(svc, random()) {
                Some(b) => b,
                None => break,
            };
        }
        let (state, c) = match health::entry(id) {
            Some(h) => {
                let (state, live, inflight, ewma) = health::snapshot(h, id, now);
                if state == HealthState::ProbeDue
                    && connection_probes()
                    && health::claim_probe(h, now)
                {
                    count(svc.id, |s| s.probes += 1);
                    return Some(Choice {
                        backend_id: id,
                        probe: true,
                    });
                }
                (state, cost(live, inflight, ewma))
            }
            None => (HealthState::Up, cost(0, 0, 0)),
        };
        if state == HealthState::Up {
            first_up |= i == 0;
            if c < best_cost {
                (best, best_cost) = (id, c);
            }
            found += 1;
            if found == 2 {
                break;
            }
        }
        i += 1;
    }
    if found == 0 {
        count(svc.id, |s| s.fallbacks += 1);
    } else if !first_up {
        count(svc.id, |s| s.avoided += 1);
    }
    Some(Choice {
        backend_id: best,
        probe: false,
    })
}
