//! The VIP table as the CLI prints it, built from the pinned maps alone so it
//! works whether or not the agent is running.
use std::net::SocketAddr;

use anyhow::Result;
use serde::Serialize;

use crate::{
    datapath::{Maps, health::HealthView},
    model::Proto,
};

#[derive(Debug, Serialize)]
pub struct VipRow {
    pub vip: SocketAddr,
    pub proto: Proto,
    pub service_id: u32,
    pub revision: u32,
    /// Slots of the active generation: 0 = connections to the VIP are refused.
    pub slots: u32,
    pub connects: u64,
    pub sendmsgs: u64,
    pub no_backend: u64,
    /// XDP: packets and bytes sent to a backend, flows that got one, and tc
    /// replies shown as coming from the VIP.
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub reply_packets: u64,
    /// p2c: connects where every candidate was down or suspect (the first
    /// random slot was used), where the first slot's backend was avoided, and
    /// probes of down backends.
    pub p2c_fallbacks: u64,
    pub p2c_avoided: u64,
    pub p2c_probes: u64,
    pub backends: Vec<BackendRow>,
}

#[derive(Debug, Serialize)]
pub struct BackendRow {
    pub addr: SocketAddr,
    pub backend_id: u32,
    pub weight: u32,
    pub connects: u64,
    pub sendmsgs: u64,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    /// What this node saw of the backend's TCP handshakes (None: the pinned
    /// maps predate health tracking).
    pub health: Option<HealthView>,
}

pub fn vip_rows(maps: &Maps) -> Result<Vec<VipRow>> {
    let applied = maps.read_applied()?;
    let now = crate::datapath::health::monotonic_ns();
    let mut rows = Vec::new();
    for (vip, svc) in &applied.services {
        let stats = maps.service_stats(svc.id);
        let slots = maps.service_value(vip).map(|v| v.slot_count).unwrap_or(0);
        let backends = svc
            .members
            .iter()
            .filter_map(|(id, weight)| {
                let addr = *applied.backends.get(id)?;
                let s = maps.backend_stats(*id);
                Some(BackendRow {
                    addr,
                    backend_id: *id,
                    weight: *weight,
                    connects: s.connects,
                    sendmsgs: s.sendmsgs,
                    packets: s.packets,
                    bytes: s.bytes,
                    flows: s.flows,
                    health: maps.health_view(*id, now),
                })
            })
            .collect();
        let lb = maps.lb_stats(svc.id);
        rows.push(VipRow {
            vip: vip.addr,
            proto: vip.proto,
            service_id: svc.id,
            revision: svc.revision,
            slots,
            connects: stats.connects,
            sendmsgs: stats.sendmsgs,
            no_backend: stats.no_backend,
            packets: stats.packets,
            bytes: stats.bytes,
            flows: stats.flows,
            reply_packets: stats.reply_packets,
            p2c_fallbacks: lb.fallbacks,
            p2c_avoided: lb.avoided,
            p2c_probes: lb.probes,
            backends,
        });
    }
    Ok(rows)
}

pub fn print_vips(rows: &[VipRow]) {
    if rows.is_empty() {
        println!("no VIPs");
        return;
    }
    println!(
        "{:<42} {:<5} {:>6} {:>9} {:>10} {:>10}  BACKEND STATE (this node), HANDSHAKE EWMA, LIVE, FAILED HANDSHAKES, AGENT PROBES (sent/ok/failed)",
        "VIP", "PROTO", "ID", "REVISION", "CONNECTS", "PACKETS"
    );
    for r in rows {
        println!(
            "{:<42} {:<5} {:>6} {:>9} {:>10} {:>10}",
            r.vip.to_string(),
            r.proto.to_string(),
            r.service_id,
            r.revision,
            r.connects + r.sendmsgs,
            r.packets
        );
        if r.backends.is_empty() {
            println!("  (no backends: connections are refused)");
        }
        for b in &r.backends {
            println!(
                "  -> {:<37} weight {:>3} {:>10} {:>10}{}",
                b.addr.to_string(),
                b.weight,
                b.connects + b.sendmsgs,
                b.packets,
                b.health.as_ref().map(health_columns).unwrap_or_default()
            );
        }
        if r.p2c_fallbacks + r.p2c_avoided + r.p2c_probes > 0 {
            println!(
                "  p2c: {} avoided, {} fallbacks (all candidates down), {} probes",
                r.p2c_avoided, r.p2c_fallbacks, r.p2c_probes
            );
        }
    }
}

/// `  STATE  handshake EWMA  live  failures  [probes]` after a backend line;
/// the agent's probes once it has sent any.
fn health_columns(h: &HealthView) -> String {
    let probes = if h.agent_probes > 0 {
        format!(
            " {}/{}/{} probes",
            h.agent_probes, h.agent_probes_ok, h.agent_probes_failed
        )
    } else {
        String::new()
    };
    format!(
        "  {:<9} {:>9.1}us {:>6} live {:>6} failed{probes}",
        h.state, h.handshake_ewma_us, h.live_connections, h.handshake_failures
    )
}

/// One backend and the VIPs it serves.
#[derive(Debug, Serialize)]
pub struct BackendView {
    pub addr: SocketAddr,
    pub backend_id: u32,
    pub connects: u64,
    pub vips: Vec<BackendVip>,
}

#[derive(Debug, Serialize)]
pub struct BackendVip {
    pub vip: SocketAddr,
    pub proto: Proto,
    pub weight: u32,
}

/// The VIP table turned around: backend → VIPs.
pub fn backend_rows(vips: &[VipRow]) -> Vec<BackendView> {
    let mut by_id: std::collections::BTreeMap<u32, BackendView> = Default::default();
    for r in vips {
        for b in &r.backends {
            let view = by_id.entry(b.backend_id).or_insert_with(|| BackendView {
                addr: b.addr,
                backend_id: b.backend_id,
                // Per-backend counters are kept per backend, across VIPs.
                connects: b.connects + b.sendmsgs,
                vips: Vec::new(),
            });
            view.vips.push(BackendVip {
                vip: r.vip,
                proto: r.proto,
                weight: b.weight,
            });
        }
    }
    by_id.into_values().collect()
}

pub fn print_backends(rows: &[BackendView]) {
    if rows.is_empty() {
        println!("no backends");
        return;
    }
    println!("{:<42} {:>6} {:>10}  VIPS", "BACKEND", "ID", "CONNECTS");
    for b in rows {
        let vips: Vec<String> = b
            .vips
            .iter()
            .map(|v| format!("{}/{} (w{})", v.vip, v.proto, v.weight))
            .collect();
        println!(
            "{:<42} {:>6} {:>10}  {}",
            b.addr.to_string(),
            b.backend_id,
            b.connects,
            vips.join(", ")
        );
    }
}

/// Totals and map usage.
#[derive(Debug, Serialize)]
pub struct Totals {
    pub vips: usize,
    pub backends: usize,
    pub connects: u64,
    pub sendmsgs: u64,
    pub refused: u64,
    /// Packets to a VIP address XDP dropped because it could not balance them, by reason.
    pub vip_guard_drops: std::collections::BTreeMap<&'static str, u64>,
    /// Packets to a VIP address that escaped the hooks, dropped by the `l4lb0`
    /// route in this netns (None: no `l4lb0` here).
    pub escaped_vip_packets: Option<u64>,
    pub maps: Vec<MapUsage>,
}

#[derive(Debug, Serialize)]
pub struct MapUsage {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

pub fn stats(maps: &Maps) -> Result<Totals> {
    let rows = vip_rows(maps)?;
    Ok(Totals {
        vips: rows.len(),
        backends: backend_rows(&rows).len(),
        connects: rows.iter().map(|r| r.connects).sum(),
        sendmsgs: rows.iter().map(|r| r.sendmsgs).sum(),
        refused: rows.iter().map(|r| r.no_backend).sum(),
        vip_guard_drops: maps.vip_guard_drops().into_iter().collect(),
        escaped_vip_packets: crate::datapath::escape::escaped_packets(),
        maps: maps
            .usage()
            .into_iter()
            .map(|(map, entries, capacity)| MapUsage {
                map,
                entries,
                capacity,
            })
            .collect(),
    })
}

pub fn print_stats(t: &Totals) {
    println!(
        "VIPs {}  backends {}  connects {}  sendmsgs {}  refused {}",
        t.vips, t.backends, t.connects, t.sendmsgs, t.refused
    );
    let drops: Vec<String> = t
        .vip_guard_drops
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!("XDP drops to VIP addresses: {}", drops.join("  "));
    match t.escaped_vip_packets {
        Some(n) => println!("escaped VIP packets dropped by l4lb0: {n}"),
        None => println!("escaped VIP packets: no l4lb0 in this network namespace"),
    }
    println!(
        "{:<16} {:>12} {:>12} {:>7}",
        "MAP", "ENTRIES", "CAPACITY", "USED"
    );
    for m in &t.maps {
        let pct = if m.capacity > 0 {
            m.entries as f64 * 100.0 / m.capacity as f64
        } else {
            0.0
        };
        println!(
            "{:<16} {:>12} {:>12} {:>6.1}%",
            m.map, m.entries, m.capacity, pct
        );
    }
}
