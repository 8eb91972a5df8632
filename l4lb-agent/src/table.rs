//! The VIP table as the CLI prints it, built from the pinned maps alone so it
//! works whether or not the agent is running.
use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
};

use anyhow::Result;
use l4lb_common::{MemberKey, ServiceStats, Stats};
use serde::Serialize;

use crate::{
    datapath::{Maps, health::HealthView},
    model::{Proto, Vip},
    plan::{Applied, AppliedService},
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
    /// TCP connects balanced without a socket mark (`L4LB_SOCKS` full
    /// where the cookie landed): not followed by `sock_ops`, and their
    /// getpeername shows the backend.
    pub unmarked: u64,
    pub backends: Vec<BackendRow>,
    /// `--locality` for this VIP (None: off, or maps that predate it).
    pub locality: Option<LocalityRow>,
}

/// How connect() used the VIP's local set (`--locality`).
#[derive(Debug, Serialize)]
pub struct LocalityRow {
    /// `node` or `zone`.
    pub mode: &'static str,
    /// A local set for the table in force that prefers (false: none, or
    /// every weighted backend is local: nothing to prefer).
    pub preferring: bool,
    /// Connections sent to a local backend; sent farther because the best
    /// local one was past the load threshold, or all were down or suspect;
    /// probes of a down local backend.
    pub local_picks: u64,
    pub spills_load: u64,
    pub spills_down: u64,
    pub local_probes: u64,
}

#[derive(Debug, Serialize)]
pub struct BackendRow {
    pub addr: SocketAddr,
    pub backend_id: u32,
    pub weight: u32,
    /// What this VIP sent this backend: connect() calls, unconnected
    /// sendmsg() calls and XDP flows (a backend shared by several VIPs has
    /// each VIP's own counts here).
    pub connects: u64,
    pub sendmsgs: u64,
    pub flows: u64,
    /// XDP packets and bytes the backend received through every VIP it
    /// belongs to (counted per backend: per packet, a per-pair count would
    /// cost the established-flow path a hash lookup).
    pub backend_packets: u64,
    pub backend_bytes: u64,
    /// What this node saw of the backend's TCP handshakes (None: the pinned
    /// maps predate health tracking).
    pub health: Option<HealthView>,
    /// `node`, `zone` or `remote` for this node (None: `--locality off`).
    pub locality: Option<&'static str>,
}

pub fn vip_rows(maps: &Maps) -> Result<Vec<VipRow>> {
    Ok(vip_rows_up_to(maps, usize::MAX)?.0)
}

/// What [`vip_rows_up_to`] left out of the rows' backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Omitted {
    /// VIP members (a backend of two VIPs counts twice).
    pub members: usize,
    /// The agent's probes of the backends, summed once per backend: sent,
    /// answered, failed.
    pub probes: [u64; 3],
}

/// The rows, with their backends only while the VIPs have at most
/// `max_backends` of them in all; else every row's `backends` is left
/// empty, and what was left out is returned.
pub fn vip_rows_up_to(maps: &Maps, max_backends: usize) -> Result<(Vec<VipRow>, Option<Omitted>)> {
    let applied = maps.read_applied()?;
    let members: usize = applied.services.values().map(|s| s.members.len()).sum();
    let with_backends = members <= max_backends;
    let now = crate::datapath::health::monotonic_ns();
    let mode = maps
        .locality_mode()
        .filter(|m| *m != l4lb_core::locality::Mode::Off);
    let ids = backend_ids(&applied);
    let (reads, omitted) = if with_backends {
        (BackendReads::take(maps, &ids, now), None)
    } else {
        let probes = probe_sums(maps, &ids, now);
        (BackendReads::default(), Some(Omitted { members, probes }))
    };
    let records = service_records(maps, &applied);
    // Sized up front: at 10,000 VIPs x 5 backends, growing these by doubling
    // held ~8 MB of spare capacity through a whole `/metrics` scrape.
    let mut rows = Vec::with_capacity(applied.services.len());
    for (vip, svc) in &applied.services {
        let set = mode.and_then(|_| maps.local_set(svc.id));
        let mut backends = Vec::with_capacity(if with_backends { svc.members.len() } else { 0 });
        let listed = svc.members.iter().filter(|_| with_backends);
        backends.extend(listed.filter_map(|(id, weight)| {
            let addr = *applied.backends.get(id)?;
            let locality = mode.map(|_| {
                let class = set.map_or(l4lb_common::CLASS_REMOTE, |s| s.class_of(*id));
                l4lb_core::locality::class_name(class)
            });
            Some(reads.row(maps, svc.id, (*id, *weight), addr, locality))
        }));
        let record = records.get(&svc.id).copied().unwrap_or_default();
        let locality = mode.map(|m| locality_row(m, set, svc.revision, &record.local));
        rows.push(vip_row(vip, svc, &record, backends, locality));
    }
    Ok((rows, omitted))
}

/// Every backend of the table once, ascending (their health is read in
/// runs of ids).
fn backend_ids(applied: &Applied) -> Vec<u32> {
    let ids: BTreeSet<u32> = applied
        .services
        .values()
        .flat_map(|s| s.members.iter().map(|(id, _)| *id))
        .collect();
    ids.into_iter().collect()
}

/// Each service's counter record, by id (read in runs of ids).
fn service_records(maps: &Maps, applied: &Applied) -> HashMap<u32, ServiceStats> {
    let mut ids: Vec<u32> = applied.services.values().map(|s| s.id).collect();
    ids.sort_unstable();
    let mut records = HashMap::with_capacity(ids.len());
    maps.service_records(&ids, |id, r| {
        records.insert(id, r);
    });
    records
}

fn vip_row(
    vip: &Vip,
    svc: &AppliedService,
    record: &ServiceStats,
    backends: Vec<BackendRow>,
    locality: Option<LocalityRow>,
) -> VipRow {
    let (stats, lb) = (&record.stats, &record.lb);
    VipRow {
        vip: vip.addr,
        proto: vip.proto,
        service_id: svc.id,
        revision: svc.revision,
        slots: svc.slot_count,
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
        unmarked: lb.unmarked,
        backends,
        locality,
    }
}

/// How connect() used a VIP's local set: `set` prefers only for the
/// table in force (`revision`).
fn locality_row(
    mode: l4lb_core::locality::Mode,
    set: Option<l4lb_common::LocalSet>,
    revision: u32,
    local: &l4lb_common::LocalStats,
) -> LocalityRow {
    LocalityRow {
        mode: mode.name(),
        preferring: set.is_some_and(|s| s.active != 0 && revision == s.revision),
        local_picks: local.local,
        spills_load: local.spill_load,
        spills_down: local.spill_down,
        local_probes: local.probes,
    }
}

/// The agent's probes of each backend in `ids` (sent, answered, failed),
/// summed.
fn probe_sums(maps: &Maps, ids: &[u32], now: u64) -> [u64; 3] {
    let mut sums = [0; 3];
    maps.for_each_health(ids, now, |_, h| {
        sums[0] += h.agent_probes;
        sums[1] += h.agent_probes_ok;
        sums[2] += h.agent_probes_failed;
    });
    sums
}

/// What the rows' backends show, read for all of them at once.
#[derive(Default)]
struct BackendReads {
    health: HashMap<u32, HealthView>,
    totals: HashMap<u32, Stats>,
    /// None: read pair by pair (no batch reads here, or pins that predate
    /// per-pair counters).
    pairs: Option<HashMap<MemberKey, Stats>>,
}

impl BackendReads {
    /// Backends `ids` (ascending): their health and counters, in runs of
    /// ids, and every pair's counters in batches.
    fn take(maps: &Maps, ids: &[u32], now: u64) -> BackendReads {
        let mut reads = BackendReads {
            pairs: maps.all_member_stats(),
            ..BackendReads::default()
        };
        maps.for_each_health(ids, now, |id, h| {
            reads.health.insert(id, h);
        });
        maps.backend_stats_of(ids, |id, s| {
            reads.totals.insert(id, s);
        });
        reads
    }

    /// Member (`id`, `weight`) of VIP `service_id`, with its counters and health.
    fn row(
        &self,
        maps: &Maps,
        service_id: u32,
        (id, weight): (u32, u32),
        addr: SocketAddr,
        locality: Option<&'static str>,
    ) -> BackendRow {
        let (pair, total) = self.counters(maps, service_id, id);
        BackendRow {
            addr,
            backend_id: id,
            weight,
            connects: pair.connects,
            sendmsgs: pair.sendmsgs,
            flows: pair.flows,
            backend_packets: total.packets,
            backend_bytes: total.bytes,
            health: self.health.get(&id).copied(),
            locality,
        }
    }

    /// What VIP `service_id` sent backend `id`, and the backend's totals.
    fn counters(&self, maps: &Maps, service_id: u32, id: u32) -> (Stats, Stats) {
        let total = self.totals.get(&id).copied().unwrap_or_default();
        let pair = match &self.pairs {
            Some(pairs) => {
                let key = MemberKey {
                    service_id,
                    backend_id: id,
                };
                pairs.get(&key).copied().unwrap_or_default()
            }
            // Pins of an agent before per-pair counters: the backend's totals.
            None => maps.member_stats(service_id, id).unwrap_or(total),
        };
        (pair, total)
    }
}

pub fn print_vips(rows: &[VipRow]) {
    if rows.is_empty() {
        println!("no VIPs");
        return;
    }
    println!(
        "{:<42} {:<5} {:>6} {:>9} {:>10} {:>8} {:>10}  BACKEND STATE (this node), HANDSHAKE EWMA, LIVE, FAILED HANDSHAKES, AGENT PROBES (sent/ok/failed)",
        "VIP", "PROTO", "ID", "REVISION", "CONNECTS", "FLOWS", "PACKETS"
    );
    for r in rows {
        println!(
            "{:<42} {:<5} {:>6} {:>9} {:>10} {:>8} {:>10}",
            r.vip.to_string(),
            r.proto.to_string(),
            r.service_id,
            r.revision,
            r.connects + r.sendmsgs,
            r.flows,
            r.packets
        );
        if r.backends.is_empty() {
            println!("  (no backends: connections are refused)");
        }
        for b in &r.backends {
            // This VIP's connects and flows to the backend; packets are
            // counted per backend only (`--json`: backend_packets).
            println!(
                "  -> {:<37} weight {:>3} {:>10} {:>8} {:>10}{}{}",
                b.addr.to_string(),
                b.weight,
                b.connects + b.sendmsgs,
                b.flows,
                "",
                b.health.as_ref().map(health_columns).unwrap_or_default(),
                b.locality.map(|l| format!("  {l}")).unwrap_or_default()
            );
        }
        if let Some(l) = &r.locality {
            println!(
                "  locality {}: {}, {} local, {} spilled (load), {} spilled (local down), {} probes",
                l.mode,
                if l.preferring {
                    "preferring local"
                } else {
                    "nothing to prefer"
                },
                l.local_picks,
                l.spills_load,
                l.spills_down,
                l.local_probes
            );
        }
        if r.p2c_fallbacks + r.p2c_avoided + r.p2c_probes > 0 {
            println!(
                "  p2c: {} avoided, {} fallbacks (all candidates down), {} probes",
                r.p2c_avoided, r.p2c_fallbacks, r.p2c_probes
            );
        }
        if r.unmarked > 0 {
            println!(
                "  {} connects unmarked (socket-mark slots full: not followed, peer shows the backend)",
                r.unmarked
            );
        }
    }
}

/// `  STATE  handshake EWMA  lifetime EWMA  live  failures  [probes]` after a backend line;
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
        "  {:<9} {:>9.1}us {:>10.1}us life {:>6} live {:>6} failed{probes}",
        h.state, h.handshake_ewma_us, h.lifetime_ewma_us, h.live_connections, h.handshake_failures
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
                connects: 0,
                vips: Vec::new(),
            });
            // Each VIP's own connects to it, added up.
            view.connects += b.connects + b.sendmsgs;
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
    /// ICMP errors about VIP flows translated by XDP/tc, dropped, rate-limited.
    pub icmp_errors: std::collections::BTreeMap<&'static str, u64>,
    /// IPv4 flows the connection table could not keep (evicted, no slot).
    pub conntrack_losses: std::collections::BTreeMap<&'static str, u64>,
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
        icmp_errors: maps.icmp_errors().into_iter().collect(),
        conntrack_losses: maps.conntrack_losses().into_iter().collect(),
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

/// `reason n  reason n …` for counters by reason.
fn counter_line(counts: &std::collections::BTreeMap<&'static str, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
    parts.join("  ")
}

pub fn print_stats(t: &Totals) {
    println!(
        "VIPs {}  backends {}  connects {}  sendmsgs {}  refused {}",
        t.vips, t.backends, t.connects, t.sendmsgs, t.refused
    );
    println!(
        "XDP drops to VIP addresses: {}",
        counter_line(&t.vip_guard_drops)
    );
    println!(
        "ICMP errors about VIP flows: {}",
        counter_line(&t.icmp_errors)
    );
    println!(
        "IPv4 flows the connection table lost: {}",
        counter_line(&t.conntrack_losses)
    );
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
