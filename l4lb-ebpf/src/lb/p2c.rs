//! Power of two choices at connect(): random slots of the service's Maglev
//! table (so weight-0 backends, which have no slot, never come up) until two
//! distinct up backends are drawn (down and suspect ones, and the first drawn
//! again, are redrawn, bounded); the lower `p2c_cost` wins (connections it
//! has per unit of weight times what one takes, handshake plus lifetime
//! averages, plus this one's own time), a tie keeps the first draw. A down
//! backend is probed by the agent (no client connect is ever a probe) unless
//! the agent set `--health-probes connection`: then one whose back-off is
//! over is taken by exactly one connect as its probe. Every draw down or
//! suspect → the first up backend in the slots after the last draw; none →
//! the control plane's choice (the first slot), counted as a fallback.
use aya_ebpf::helpers::bpf_get_prandom_u32;
use l4lb_common::{
    HealthState, LB_POLICY_P2C, LbStats, MemberKey, P2C_MAX_DRAWS, PROBES_AGENT, PROBES_CONNECTION,
    ServiceValue, conn_time, p2c_cost, second_wins,
};

use super::slot_backend;
use crate::{health, maps::L4LB_MEMBERS};

/// The backend connect() goes to, and whether it is a down backend's probe.
pub struct Choice {
    pub backend_id: u32,
    pub probe: bool,
}

/// `--lb-policy` (`LB_POLICY_*`), set by the agent at load (frozen
/// read-only data, as [`L4LB_LOCALITY_STEP`]): both are fixed for a load,
/// so a connect reads no config map for them (one cache line fewer), and
/// the verifier drops the other policy's paths. The agent still writes
/// `L4LB_LB_CONFIG` for the CLI.
#[unsafe(no_mangle)]
static L4LB_POLICY: u32 = LB_POLICY_P2C;

/// `--health-probes` (`PROBES_*`), set at load like [`L4LB_POLICY`].
#[unsafe(no_mangle)]
static L4LB_PROBES_MODE: u32 = PROBES_AGENT;

/// The policy the agent loaded the programs for (`--lb-policy`).
#[inline(always)]
pub fn policy() -> u32 {
    // SAFETY: a plain read of a static; volatile so the compiler leaves the
    // value to the loader.
    unsafe { core::ptr::read_volatile(&L4LB_POLICY) }
}

/// Client connections may be half-open probes (`--health-probes connection`).
#[inline(always)]
pub(super) fn connection_probes() -> bool {
    // SAFETY: as in `policy`.
    unsafe { core::ptr::read_volatile(&L4LB_PROBES_MODE) == PROBES_CONNECTION }
}

/// 0 when the agent loads the programs for `--locality off`: a constant of
/// the frozen read-only data, so the verifier drops the locality step
/// instead of walking each of its paths into p2c's draws (~80 % of
/// connect4/6's verification). 1 (the default) keeps it.
#[unsafe(no_mangle)]
static L4LB_LOCALITY_STEP: u8 = 1;

/// The programs were loaded for `--locality node|zone`. The mode in
/// `L4LB_LB_CONFIG` is not read here (no program reads that map): under `off` the agent loads the
/// step as 0, and before its first local set (or after it deleted the
/// last) an `L4LB_LOCAL` lookup misses and p2c goes on as without it.
#[inline(always)]
fn locality_on() -> bool {
    // SAFETY: a plain read of a static; volatile so the compiler leaves the
    // value to the loader.
    unsafe { core::ptr::read_volatile(&L4LB_LOCALITY_STEP) != 0 }
}

#[inline(always)]
fn random() -> u32 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_prandom_u32() }
}

#[inline(always)]
pub(crate) fn count(service_id: u32, f: impl FnOnce(&mut LbStats)) {
    super::count_in_record(service_id, |r| f(&mut r.lb));
}

/// `svc.slot_count` must be > 0; `now` is the caller's clock read (one
/// per connect: it also stamps the socket's mark). None: the table could
/// not be read.
#[inline(always)]
pub fn choose(svc: &ServiceValue, now: u64) -> Option<Choice> {
    if locality_on()
        && let Some(local) = super::local::choose(svc, now)
    {
        return Some(local);
    }
    if svc.backends == 1 {
        return single(svc, now);
    }
    let mut pick = random();
    let first = slot_backend(svc, pick)?;
    // Up to two distinct up candidates, in the order drawn.
    // Each with its load and connection time, for `p2c_cost`.
    let (mut a, mut a_load, mut a_t) = (first, 0u64, 0u64);
    let (mut b, mut b_load, mut b_t) = (0u32, 0u64, 0u64);
    let (mut found, mut first_up) = (0u32, false);
    let mut id = first;
    let mut i = 0;
    while i < P2C_MAX_DRAWS {
        if i > 0 {
            pick = random();
            id = match slot_backend(svc, pick) {
                Some(b) => b,
                None => break,
            };
        }
        i += 1;
        // The first candidate drawn again: no second opinion, draw anew.
        if found == 1 && id == a {
            continue;
        }
        let (state, load, t) = match health::entry(id) {
            Some(h) => {
                let (state, load, ewma, life) = health::snapshot(h, id, now);
                let t = conn_time(ewma, life);
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
                (state, load, t)
            }
            None => (HealthState::Up, 0, conn_time(0, 0)),
        };
        if state != HealthState::Up {
            continue;
        }
        if found == 0 {
            (a, a_load, a_t, found) = (id, load, t, 1);
            first_up = i == 1;
        } else {
            (b, b_load, b_t, found) = (id, load, t, 2);
            break;
        }
    }
    if found == 0 {
        // Every draw down or suspect: a neighbour's walk before giving up.
        match super::first_up(svc, pick, now, |s| s == HealthState::Up) {
            Some(up) => (a, found) = (up, 1),
            None => count(svc.id, |s| s.fallbacks += 1),
        }
    }
    if found > 0 && !first_up {
        count(svc.id, |s| s.avoided += 1);
    }
    // Weights are read only when they could matter: two idle backends with
    // the same connection time tie whatever their weights.
    let second = found == 2
        && ((a_load | b_load) != 0 || a_t != b_t)
        && second_wins(
            p2c_cost(a_load, a_t, weight(svc.id, a)),
            p2c_cost(b_load, b_t, weight(svc.id, b)),
        );
    Some(Choice {
        backend_id: if second { b } else { a },
        probe: false,
    })
}

/// p2c over a table of one backend: what the draws would come to, without
/// them (they would draw it 8 times, looking for a second). Up: taken.
/// Probe due (connection probes): this connect probes it. Otherwise taken
/// all the same, counted as a fallback, as when every draw finds nothing up.
#[inline(always)]
fn single(svc: &ServiceValue, now: u64) -> Option<Choice> {
    let id = slot_backend(svc, 0)?;
    if let Some(h) = health::entry(id) {
        let state = health::snapshot(h, id, now).0;
        if state == HealthState::ProbeDue && connection_probes() && health::claim_probe(h, now) {
            count(svc.id, |s| s.probes += 1);
            return Some(Choice {
                backend_id: id,
                probe: true,
            });
        }
        if state != HealthState::Up {
            count(svc.id, |s| s.fallbacks += 1);
        }
    }
    Some(Choice {
        backend_id: id,
        probe: false,
    })
}

/// The backend's weight in the service (255 at most; 1 if unreadable).
#[inline(always)]
fn weight(service_id: u32, backend_id: u32) -> u8 {
    let key = MemberKey {
        service_id,
        backend_id,
    };
    // SAFETY: copied out before any other map operation.
    unsafe { L4LB_MEMBERS.get(key) }.map_or(1, |m| m.weight.min(255) as u8)
}
