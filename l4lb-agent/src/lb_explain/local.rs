//! `explain`'s words on `--locality`: whether the VIP's local set decides
//! connect() now, and for which backend, by the rules `lb/local.rs` runs.
use l4lb_common::{HealthState, LocalSet, ServiceValue, better_local, stays_local, weighted_cost};
use l4lb_core::locality::{Mode, class_name};

use super::Candidate;

/// None: locality does not apply (off, random, UDP).
pub(super) fn verdict(
    mode: Mode,
    svc: &ServiceValue,
    set: Option<LocalSet>,
    candidates: &[Candidate],
) -> Option<String> {
    if mode == Mode::Off {
        return None;
    }
    let m = mode.name();
    let Some(set) = set else {
        return Some(format!(
            "locality {m}: no backend of this VIP is local to this node: p2c over all"
        ));
    };
    if set.revision != svc.revision {
        return Some(format!(
            "locality {m}: the local set is for revision {}, the table is at {}: p2c over all until the agent rewrites it",
            set.revision, svc.revision
        ));
    }
    if set.active == 0 {
        return Some(format!(
            "locality {m}: every backend taking connections is local: nothing to prefer, p2c over all"
        ));
    }
    let n = usize::from(set.count).min(set.ids.len());
    let local: Vec<(&Candidate, u8, u8)> = (0..n)
        .filter_map(|i| {
            let c = candidates.iter().find(|c| c.backend_id == set.ids[i])?;
            Some((c, set.weights[i], set.classes[i]))
        })
        .collect();
    if let Some((c, _, _)) = local
        .iter()
        .find(|(c, _, _)| c.health.state == HealthState::ProbeDue.name())
    {
        return Some(format!(
            "locality {m}: local {} is down and due a probe: the next connect() probes it",
            c.backend
        ));
    }
    let best = local
        .iter()
        .filter(|(c, _, _)| c.health.state == HealthState::Up.name())
        .fold(None::<(&Candidate, u8, u64)>, |best, (c, w, class)| {
            let wc = weighted_cost(c.health.cost, *w);
            match best {
                Some((_, bc, bw)) if !better_local(*class, wc, bc, bw) => best,
                _ => Some((c, *class, wc)),
            }
        });
    let Some((best, class, _)) = best else {
        return Some(format!(
            "locality {m}: every local backend is down or suspect for this node: connections spill to p2c over all"
        ));
    };
    let cheapest = candidates
        .iter()
        .filter(|c| c.health.state == HealthState::Up.name())
        .map(|c| c.health.cost)
        .min()
        .unwrap_or(u64::MAX);
    let how = if stays_local(best.health.cost, cheapest) {
        "it keeps every new connection"
    } else {
        "a draw finding a backend under a quarter of its cost spills the connection (load)"
    };
    Some(format!(
        "locality {m}: {} ({} local, cost {}) is preferred while up and its cost is within 4x the cheaper of two random backends: {how}",
        best.backend,
        class_name(class),
        best.health.cost
    ))
}
