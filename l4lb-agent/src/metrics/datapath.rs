//! `/metrics` from the pinned maps, read at scrape time: per-VIP and
//! per-backend counters kept by the kernel programs, backend health, XDP's
//! drops and ICMP errors, map usage against capacity.
use std::path::{Path, PathBuf};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeGaugeValue},
};

use super::family::{Labels, by_label, counters, gauges, labels};
use crate::{
    datapath::{Maps, health::HealthView},
    table::{self, VipRow},
};

/// Reads the pinned maps at scrape time: per-VIP and per-backend counters
/// (kept by the kernel programs) and map usage against capacity.
#[derive(Debug)]
pub(super) struct DatapathCollector {
    pub(super) pin_root: PathBuf,
    /// Per-backend series only up to this many VIP members (`--metrics-max-backends`).
    pub(super) max_backends: usize,
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match Reading::take(&self.pin_root, self.max_backends) {
            Some(reading) => reading.encode(&mut encoder),
            None => Ok(()),
        }
    }
}

/// What one scrape reads from the pinned maps (nothing when they cannot be
/// opened or read: the agent's other metrics are still served).
#[derive(Debug, Default)]
struct Reading {
    rows: Vec<VipRow>,
    /// What the per-backend series left out (None: nothing).
    omitted: Option<table::Omitted>,
    escaped_packets: Option<u64>,
    guard_drops: Vec<(&'static str, u64)>,
    icmp_errors: Vec<(&'static str, u64)>,
    conntrack_losses: Vec<(&'static str, u64)>,
    usage: Vec<(&'static str, u64, u64)>,
}

impl Reading {
    fn take(pin_root: &Path, max_backends: usize) -> Option<Reading> {
        let maps = Maps::open_pinned(pin_root).ok()?;
        let (rows, omitted) = table::vip_rows_up_to(&maps, max_backends).ok()?;
        Some(Reading {
            rows,
            omitted,
            escaped_packets: crate::datapath::escape::escaped_packets(),
            guard_drops: maps.vip_guard_drops(),
            icmp_errors: maps.icmp_errors(),
            conntrack_losses: maps.conntrack_losses(),
            usage: maps.usage(),
        })
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        vip_counters(encoder, &self.rows)?;
        pair_counters(encoder, &self.rows)?;
        p2c_counters(encoder, &self.rows)?;
        let health = backend_health(&self.rows);
        health_counters(encoder, &health, self.omitted.map(|o| o.probes))?;
        self.node_counters(encoder)?;
        self.map_gauges(encoder)?;
        health_gauges(encoder, &health)?;
        super::locality::encode(encoder, &self.rows)
    }

    /// Counters of the node as a whole: escaped VIP packets, XDP's drops,
    /// ICMP errors and the connection table's losses.
    fn node_counters(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(n) = self.escaped_packets {
            counters(
                encoder,
                "escaped_vip_packets",
                "Packets to a VIP address that escaped the hooks, dropped by the l4lb0 route",
                [(Labels::new(), n)],
            )?;
        }
        counters(
            encoder,
            "xdp_vip_guard_drops",
            "Packets to a VIP address XDP dropped because it cannot balance them (fragment, IP options, IPv6 extension header, other protocol, truncated)",
            by_label("reason", self.guard_drops.iter().copied()),
        )?;
        counters(
            encoder,
            "xdp_icmp_errors",
            "ICMP errors about VIP flows: translated for the client (tc egress), steered to the backend (XDP or tc ingress), dropped for no flow, rate-limited",
            by_label("result", self.icmp_errors.iter().copied()),
        )?;
        counters(
            encoder,
            "xdp_conntrack_losses",
            "IPv4 flows the connection table could not keep: a live flow's slot taken by a new one (evicted; that flow is re-picked by Maglev), or no slot free to claim",
            by_label("reason", self.conntrack_losses.iter().copied()),
        )
    }

    fn map_gauges(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauges(
            encoder,
            "metrics_omitted_backends",
            "VIP members whose per-backend series this scrape left out: more than --metrics-max-backends in all (the per-VIP series are all there)",
            [(Labels::new(), self.omitted.map_or(0, |o| o.members) as i64)],
        )?;
        let per_map = |value: fn(u64, u64) -> u64| {
            self.usage.iter().map(move |&(map, entries, cap)| {
                (labels(&[("map", map)]), value(entries, cap) as i64)
            })
        };
        gauges(
            encoder,
            "map_entries",
            "Entries in each BPF map",
            per_map(|entries, _| entries),
        )?;
        gauges(
            encoder,
            "map_capacity",
            "Capacity (max_entries) of each BPF map",
            per_map(|_, cap| cap),
        )
    }
}

/// A per-VIP counter family: name, help, the row's value.
type VipFamily = (&'static str, &'static str, fn(&VipRow) -> u64);

/// Per-VIP counters of the socket hooks and of XDP / tc.
fn vip_counters(encoder: &mut DescriptorEncoder, rows: &[VipRow]) -> Result<(), std::fmt::Error> {
    let families: [VipFamily; 6] = [
        (
            "vip_connections",
            "connect() and unconnected sendmsg() calls sent to a backend, per VIP",
            |r| r.connects + r.sendmsgs,
        ),
        (
            "vip_refused",
            "connect()/sendmsg() refused: no backend takes new connections",
            |r| r.no_backend,
        ),
        (
            "vip_xdp_packets",
            "Packets to the VIP balanced by the XDP program",
            |r| r.packets,
        ),
        (
            "vip_xdp_bytes",
            "Bytes to the VIP balanced by the XDP program",
            |r| r.bytes,
        ),
        (
            "vip_xdp_flows",
            "New flows the XDP program picked a backend for",
            |r| r.flows,
        ),
        (
            "vip_reply_packets",
            "Reply packets rewritten back to the VIP by the tc program",
            |r| r.reply_packets,
        ),
    ];
    per_vip(encoder, rows, &families)
}

/// Per-VIP counters of p2c's choices.
fn p2c_counters(encoder: &mut DescriptorEncoder, rows: &[VipRow]) -> Result<(), std::fmt::Error> {
    let families: [VipFamily; 4] = [
        (
            "vip_p2c_fallbacks",
            "TCP connects where every p2c candidate was down or suspect for this node: the first random slot was used",
            |r| r.p2c_fallbacks,
        ),
        (
            "vip_p2c_avoided",
            "TCP connects where p2c avoided the first random slot's backend (down or suspect)",
            |r| r.p2c_avoided,
        ),
        (
            "vip_p2c_probes",
            "TCP connects sent as the one half-open probe of a backend down for this node (--health-probes connection only)",
            |r| r.p2c_probes,
        ),
        (
            "vip_unmarked_connects",
            "TCP connects balanced without a socket mark (its L4LB_SOCKS slots were all live): sock_ops does not follow them and getpeername shows the backend",
            |r| r.unmarked,
        ),
    ];
    per_vip(encoder, rows, &families)
}

fn per_vip(
    encoder: &mut DescriptorEncoder,
    rows: &[VipRow],
    families: &[VipFamily],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in families {
        counters(
            encoder,
            name,
            help,
            rows.iter().map(|r| (vip_labels(r), value(r))),
        )?;
    }
    Ok(())
}

/// Per-(VIP, backend) counters.
fn pair_counters(encoder: &mut DescriptorEncoder, rows: &[VipRow]) -> Result<(), std::fmt::Error> {
    counters(
        encoder,
        "backend_flows",
        "New XDP flows sent to a backend, per VIP and backend",
        per_pair(rows, |b| b.flows),
    )?;
    counters(
        encoder,
        "backend_connections",
        "connect() and unconnected sendmsg() calls sent to a backend, per VIP and backend",
        per_pair(rows, |b| b.connects + b.sendmsgs),
    )
}

/// Per-backend counters of what this node's connections saw, and the
/// agent's probes (per backend and in all).
/// `omitted`: the probes' sums (sent, ok, failed) when the per-backend
/// views were left out of `health`.
fn health_counters(
    encoder: &mut DescriptorEncoder,
    health: &Health,
    omitted: Option<[u64; 3]>,
) -> Result<(), std::fmt::Error> {
    let by_backend = |f: HealthField| {
        health
            .iter()
            .map(move |(addr, h)| (labels(&[("backend", addr)]), f(h)))
    };
    counters(
        encoder,
        "backend_handshakes",
        "TCP handshakes through a VIP that completed, per backend (this node)",
        by_backend(|h| h.handshakes),
    )?;
    counters(
        encoder,
        "backend_handshake_failures",
        "TCP handshakes through a VIP that failed (SYN timeout, RST, unreachable, abandoned), per backend",
        by_backend(|h| h.handshake_failures),
    )?;
    let probe_results: [(&str, HealthField); 3] = [
        ("sent", |h| h.agent_probes),
        ("ok", |h| h.agent_probes_ok),
        ("failed", |h| h.agent_probes_failed),
    ];
    counters(
        encoder,
        "backend_agent_probes",
        "The agent's own TCP probes of a backend down for this node, by result (sent, ok: answered, failed)",
        probe_results.iter().flat_map(|&(result, f)| {
            health
                .iter()
                .map(move |(addr, h)| (labels(&[("backend", addr), ("result", result)]), f(h)))
        }),
    )?;
    counters(
        encoder,
        "health_probes",
        "The agent's own TCP probes of backends down for this node, all backends, by result (sent, ok, failed)",
        probe_results.iter().enumerate().map(|(k, &(result, f))| {
            let sum = match omitted {
                Some(sums) => sums[k],
                None => health.iter().map(|(_, h)| f(h)).sum(),
            };
            (labels(&[("result", result)]), sum)
        }),
    )
}

fn vip_labels(r: &VipRow) -> Labels {
    labels(&[("vip", &r.vip.to_string()), ("proto", &r.proto.to_string())])
}

/// One value per (VIP, backend), labelled with both.
fn per_pair(
    rows: &[VipRow],
    value: fn(&table::BackendRow) -> u64,
) -> impl Iterator<Item = (Labels, u64)> + '_ {
    rows.iter().flat_map(move |r| {
        r.backends.iter().map(move |b| {
            let mut l = vip_labels(r);
            l.push(("backend".into(), b.addr.to_string()));
            (l, value(b))
        })
    })
}

/// Reads one number of a backend's health.
type HealthField = fn(&HealthView) -> u64;

/// Each backend once (it may serve several VIPs) with its health, in the
/// order of its address's text. The views stay in the rows: a sorted list
/// of references instead of a map of copies (~9 MB less at 50,000 backends).
type Health<'a> = Vec<(String, &'a HealthView)>;

fn backend_health(rows: &[VipRow]) -> Health<'_> {
    let mut health: Health = rows
        .iter()
        .flat_map(|r| r.backends.iter())
        .filter_map(|b| Some((b.addr.to_string(), b.health.as_ref()?)))
        .collect();
    // Stable, and an address listed twice keeps its last view, as the map did.
    health.sort_by(|a, b| a.0.cmp(&b.0));
    health.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1 = later.1;
        }
        same
    });
    health
}

/// `l4lb_backend_state{backend,state}` (1 for the current state), the
/// handshake and lifetime EWMAs, live connections and handshakes in flight.
fn health_gauges(encoder: &mut DescriptorEncoder, health: &Health) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        "backend_state",
        "1 for the backend's state as this node's connect() sees it: up, suspect (handshakes stuck), down, probe-due",
        health.iter().flat_map(|(addr, h)| {
            ["up", "suspect", "down", "probe-due"].map(|state| {
                (
                    labels(&[("backend", addr), ("state", state)]),
                    i64::from(h.state == state),
                )
            })
        }),
    )?;
    let seconds = |us: f64| us / 1e6;
    per_backend(
        encoder,
        health,
        "backend_handshake_ewma_seconds",
        "Moving average of the TCP handshake time through a VIP, per backend (0: none yet)",
        |h| seconds(h.handshake_ewma_us),
    )?;
    per_backend(
        encoder,
        health,
        "backend_lifetime_ewma_seconds",
        "Moving average of how long TCP connections through a VIP lived (established to closed), per backend, as p2c reads it now (halved per second without a new connection; 0: none yet)",
        |h| seconds(h.lifetime_ewma_us),
    )?;
    per_backend(
        encoder,
        health,
        "backend_live_connections",
        "TCP connections through a VIP established and not yet closed, per backend",
        |h| h.live_connections as i64,
    )?;
    per_backend(
        encoder,
        health,
        "backend_handshakes_in_flight",
        "TCP handshakes through a VIP in flight, per backend",
        |h| h.handshakes_in_flight as i64,
    )
}

/// A gauge family with one value per backend, labelled with its address.
fn per_backend<N: EncodeGaugeValue + Default>(
    encoder: &mut DescriptorEncoder,
    health: &Health,
    name: &str,
    help: &str,
    value: impl Fn(&HealthView) -> N,
) -> Result<(), std::fmt::Error> {
    let series = health
        .iter()
        .map(|(addr, h)| (labels(&[("backend", addr)]), value(h)));
    gauges(encoder, name, help, series)
}

#[cfg(test)]
#[path = "datapath_tests.rs"]
mod tests;
