//! `explain` for the socket path: why connect() to a VIP would pick which
//! backend — the policy, every backend of the active table with its slot
//! share, health state and p2c cost, and the rule that decides. Computed from
//! the pinned maps with the same rules (`l4lb_common::health`) the hooks run.
mod local;

use std::{collections::BTreeMap, net::SocketAddr};

use anyhow::Result;
use serde::Serialize;

use crate::{
    datapath::{
        Maps,
        health::{HealthProbes, HealthView, LbPolicy, monotonic_ns},
    },
    model::{Proto, Vip},
};

#[derive(Debug, Serialize)]
pub struct SocketExplanation {
    pub policy: &'static str,
    /// Who probes a down backend: "agent" or "connection".
    pub health_probes: &'static str,
    pub candidates: Vec<Candidate>,
    pub verdict: String,
    /// What `--locality` decides for TCP connect() under p2c (None: off).
    pub locality: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Candidate {
    pub backend: SocketAddr,
    pub backend_id: u32,
    /// Share of the Maglev table's slots (the chance one random draw lands here), %.
    pub slot_share_pct: f64,
    #[serde(flatten)]
    pub health: HealthView,
    /// p2c takes it when drawn (up, or the next probe of a down backend).
    pub eligible: bool,
}

/// None: `vip` is not a VIP in these maps (connect() goes where it was asked).
pub fn explain(maps: &Maps, vip: SocketAddr, proto: Proto) -> Result<Option<SocketExplanation>> {
    let key = Vip { addr: vip, proto };
    let Some(svc) = maps.service_value(&key) else {
        return Ok(None);
    };
    let policy = maps.lb_policy().unwrap_or_default();
    let probes = maps.health_probes().unwrap_or_default();
    let applied = maps.read_applied()?;
    let mut slots: BTreeMap<u32, u32> = BTreeMap::new();
    for id in maps.service_slots(&svc)? {
        *slots.entry(id).or_default() += 1;
    }
    let now = monotonic_ns();
    let mut candidates: Vec<Candidate> = slots
        .iter()
        .filter_map(|(id, n)| {
            let backend = *applied.backends.get(id)?;
            let health = maps.health_view(*id, now).unwrap_or_default();
            Some(Candidate {
                backend,
                backend_id: *id,
                slot_share_pct: (f64::from(*n) * 1000.0 / f64::from(svc.slot_count)).round() / 10.0,
                // A probe-due backend takes a client connect only when
                // connections are the probes.
                eligible: health.state == "up"
                    || (health.state == "probe-due" && probes == HealthProbes::Connection),
                health,
            })
        })
        .collect();
    // p2c compares cost per unit of weight; slot shares follow the weights.
    let per_share = |c: &Candidate| c.health.cost as f64 / c.slot_share_pct.max(0.1);
    candidates.sort_by(|x, y| {
        (!x.eligible, per_share(x), x.backend_id)
            .partial_cmp(&(!y.eligible, per_share(y), y.backend_id))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let verdict = verdict(policy, probes, proto, &candidates);
    let mode = match (policy, proto) {
        (LbPolicy::P2c, Proto::Tcp) => maps.locality_mode().unwrap_or_default(),
        _ => l4lb_core::locality::Mode::Off,
    };
    let locality = local::verdict(mode, &svc, maps.local_set(svc.id), &candidates);
    Ok(Some(SocketExplanation {
        policy: policy.name(),
        health_probes: probes.name(),
        candidates,
        verdict,
        locality,
    }))
}

/// The rule that decides, in words.
fn verdict(policy: LbPolicy, probes: HealthProbes, proto: Proto, c: &[Candidate]) -> String {
    if c.is_empty() {
        return "no backend takes new connections: connect() is refused (EPERM)".into();
    }
    if proto == Proto::Udp {
        return "UDP: a random slot per socket (kept while the set is unchanged); the policy applies to TCP connect()".into();
    }
    if policy == LbPolicy::Random {
        return "random: each connect() takes a uniformly random slot; backends get their slot share whatever their state".into();
    }
    let skipped: Vec<String> = c
        .iter()
        .filter(|c| !c.eligible)
        .map(|c| format!("{} ({})", c.backend, c.health.state))
        .collect();
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!("; skipped: {}", skipped.join(", "))
    };
    let due = c.iter().find(|c| c.health.state == "probe-due");
    match due.filter(|_| probes == HealthProbes::Connection) {
        Some(p) => format!(
            "p2c: {} is down and due a probe: the next connect() that draws it probes it (one at a time){skipped}",
            p.backend
        ),
        None if c[0].eligible => format!(
            "p2c: random slots per connect() until two distinct backends are drawn, the lower cost per unit of weight wins (a tie keeps the first); {} has the lowest cost per unit of weight ({}, {} live, handshake {} us, lifetime {} us) and wins every draw it is in{skipped}{}",
            c[0].backend,
            c[0].health.cost,
            c[0].health.live_connections,
            c[0].health.handshake_ewma_us,
            c[0].health.lifetime_ewma_us,
            agent_probing(c)
        ),
        None => format!(
            "p2c: every backend is down or suspect for this node: connect() falls back to the first random slot (the control plane's choice) and counts it{skipped}"
        ),
    }
}

/// What the agent's probes are doing about the down backends (agent mode).
fn agent_probing(c: &[Candidate]) -> String {
    let down: Vec<String> = c
        .iter()
        .filter(|c| matches!(c.health.state, "down" | "probe-due"))
        .map(|c| {
            format!(
                "{} ({} sent, {} failed)",
                c.backend, c.health.agent_probes, c.health.agent_probes_failed
            )
        })
        .collect();
    if down.is_empty() {
        return String::new();
    }
    format!(
        "; the agent probes the down ones, no client connect is a probe: {}",
        down.join(", ")
    )
}

/// Text lines for `explain` without `--json`.
pub fn print(e: Option<&SocketExplanation>) {
    let Some(e) = e else {
        println!("socket path: not a VIP: connect() goes to the address as given");
        return;
    };
    println!(
        "socket path (policy {}, probes by {}): {}",
        e.policy, e.health_probes, e.verdict
    );
    if let Some(l) = &e.locality {
        println!("  {l}");
    }
    for c in &e.candidates {
        println!(
            "  {:<40} id {:>5} slots {:>5.1}% {:<9} cost {:>12} live {:>5} in flight {:>4} handshake {:>8.1}us lifetime {:>10.1}us failed {} agent probes {}/{}/{}",
            c.backend.to_string(),
            c.backend_id,
            c.slot_share_pct,
            c.health.state,
            c.health.cost,
            c.health.live_connections,
            c.health.handshakes_in_flight,
            c.health.handshake_ewma_us,
            c.health.lifetime_ewma_us,
            c.health.handshake_failures,
            c.health.agent_probes,
            c.health.agent_probes_ok,
            c.health.agent_probes_failed
        );
    }
}
