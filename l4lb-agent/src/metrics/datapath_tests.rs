//! The text a scrape of the datapath's metrics gives for a fixed reading:
//! names, labels and values dashboards and alerts depend on.
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};

use super::Reading;
use crate::{
    datapath::health::HealthView,
    model::Proto,
    table::{BackendRow, LocalityRow, VipRow},
};

#[derive(Debug)]
struct Fixed(Reading);

impl Collector for Fixed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(&mut encoder)
    }
}

fn backend(addr: &str, id: u32, health: Option<HealthView>) -> BackendRow {
    BackendRow {
        addr: addr.parse().unwrap(),
        backend_id: id,
        weight: 1,
        connects: 10 * u64::from(id),
        sendmsgs: 1,
        flows: 3,
        backend_packets: 100,
        backend_bytes: 6400,
        health,
        locality: Some(if id == 1 { "node" } else { "remote" }),
    }
}

fn vip(addr: &str, proto: Proto, backends: Vec<BackendRow>, local: bool) -> VipRow {
    VipRow {
        vip: addr.parse().unwrap(),
        proto,
        service_id: 1,
        revision: 2,
        slots: 251,
        connects: 21,
        sendmsgs: 2,
        no_backend: 4,
        packets: 200,
        bytes: 12800,
        flows: 6,
        reply_packets: 190,
        p2c_fallbacks: 1,
        p2c_avoided: 5,
        p2c_probes: 0,
        unmarked: 3,
        backends,
        locality: local.then_some(LocalityRow {
            mode: "node",
            preferring: true,
            local_picks: 7,
            spills_load: 2,
            spills_down: 1,
            local_probes: 0,
        }),
    }
}

fn reading() -> Reading {
    let up = HealthView {
        state: "up",
        handshake_ewma_us: 250.0,
        lifetime_ewma_us: 1500.0,
        live_connections: 3,
        handshakes_in_flight: 1,
        handshakes: 40,
        handshake_failures: 2,
        agent_probes: 4,
        agent_probes_ok: 3,
        agent_probes_failed: 1,
        ..HealthView::default()
    };
    let down = HealthView {
        state: "down",
        ..up
    };
    Reading {
        rows: vec![
            vip(
                "198.18.0.1:80",
                Proto::Tcp,
                vec![
                    backend("198.18.1.1:8080", 1, Some(up)),
                    backend("198.18.1.2:8080", 2, Some(down)),
                ],
                true,
            ),
            vip(
                "[fd00::1]:53",
                Proto::Udp,
                vec![backend("[fd00::2]:53", 3, None)],
                false,
            ),
        ],
        omitted: None,
        escaped_packets: Some(9),
        guard_drops: vec![("fragment", 5), ("truncated", 1)],
        icmp_errors: vec![("to_client", 2), ("no_flow", 0)],
        conntrack_losses: vec![("evicted", 4), ("no_slot", 0)],
        usage: vec![("L4LB_SERVICES", 2, 65536), ("L4LB_SLOTS", 502, 4194304)],
    }
}

fn render(reading: Reading) -> String {
    let mut registry = Registry::with_prefix("l4lb");
    registry.register_collector(Box::new(Fixed(reading)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

#[test]
fn a_reading_renders_as_the_documented_text() {
    let got = render(reading());
    let want = include_str!("testdata/datapath.prom");
    if got != want {
        let path = std::env::temp_dir().join("l4lb-datapath.prom");
        let _ = std::fs::write(&path, &got);
        panic!(
            "/metrics text changed; the new text is in {}",
            path.display()
        );
    }
}

/// Past the per-backend limit: no backend series, the omitted count, and
/// the node's probe sums from what was read apart.
#[test]
fn omitted_backends_keep_the_node_sums() {
    let mut r = reading();
    for row in &mut r.rows {
        row.backends.clear();
    }
    r.omitted = Some(crate::table::Omitted {
        members: 3,
        probes: [8, 6, 2],
    });
    let text = render(r);
    assert!(
        !text.lines().any(|l| l.starts_with("l4lb_backend_")),
        "{text}"
    );
    for line in [
        "l4lb_metrics_omitted_backends 3\n",
        "l4lb_health_probes_total{result=\"sent\"} 8\n",
        "l4lb_health_probes_total{result=\"ok\"} 6\n",
        "l4lb_health_probes_total{result=\"failed\"} 2\n",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
}

#[test]
fn a_node_without_the_escape_route_has_no_escaped_packets_metric() {
    let text = render(Reading {
        escaped_packets: None,
        ..reading()
    });
    assert!(!text.contains("escaped_vip_packets"), "{text}");
    assert!(render(reading()).contains("l4lb_escaped_vip_packets_total 9\n"));
}

#[test]
fn a_backend_of_two_vips_is_one_health_series_with_its_last_view() {
    let seen = |state| HealthView {
        state,
        handshakes: 7,
        ..HealthView::default()
    };
    let shared = "198.18.1.1:8080";
    let text = render(Reading {
        rows: vec![
            vip(
                "198.18.0.1:80",
                Proto::Tcp,
                vec![backend(shared, 1, Some(seen("up")))],
                false,
            ),
            vip(
                "198.18.0.2:80",
                Proto::Tcp,
                vec![backend(shared, 1, Some(seen("down")))],
                false,
            ),
        ],
        ..Reading::default()
    });
    let handshakes = format!("l4lb_backend_handshakes_total{{backend=\"{shared}\"}} 7\n");
    assert_eq!(text.matches(&handshakes).count(), 1, "{text}");
    let down = format!("l4lb_backend_state{{backend=\"{shared}\",state=\"down\"}} 1\n");
    assert!(text.contains(&down), "{text}");
    // Both VIPs keep their own per-pair series.
    assert_eq!(
        text.matches("l4lb_backend_flows_total{").count(),
        2,
        "{text}"
    );
}
