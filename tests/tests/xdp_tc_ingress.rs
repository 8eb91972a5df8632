//! The tc ingress mode on a container-like veth: the client's link (c0 —
//! n0) has tx checksum offload on at both ends, as a container's veth has by
//! default, so the client's packets reach the node marked CHECKSUM_PARTIAL
//! (only the pseudo-header sum in the checksum field). XDP's full-checksum
//! rewrite corrupts them; the agent balances such an interface on tc ingress,
//! where the kernel's helpers update a partial checksum as partial. Every
//! receiver verifies checksums in software (rx offload off), and the
//! backends' checksum error counters must stay 0.
use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use l4lb_agent::{
    datapath::{self, Maps},
    model::{DesiredState, Proto, ServiceSpec, Vip},
    packet::{self, FrameOpts, Tuple},
    plan,
    reconcile::Reconciler,
};
use l4lb_tests::{
    Agent, Sandbox, Topology, counts, require_root,
    table::row,
    topology::{BACKEND_IP4, BACKEND_IP6},
};
use serde_json::json;

mod frames;
use frames::{embedded, icmp_error, valid_ip4};

const READY: Duration = Duration::from_secs(20);

const YAML: &str = "vips:
  - vip: 11.0.0.1:80
    backends: [198.18.2.2:7000, 198.18.2.3:7000]
  - vip: 11.0.0.1:53
    protocol: udp
    backends: [198.18.2.2:7001, 198.18.2.3:7001]
  - vip: '[fd01:c::1]:80'
    backends: ['[fd00:b1::2]:7000', '[fd00:b1::3]:7000']
  - vip: 11.0.0.3:80
    backends: [198.18.2.2:7100]
  - vip: '[fd01:c::3]:80'
    backends: ['[fd00:b1::2]:7100']
";

/// `<group>: InCsumErrors` of the backends netns (`/proc/net/snmp`, the
/// Tcp group counts IPv4 and IPv6).
fn csum_errors(t: &Topology, group: &str) -> u64 {
    let out = t.backends.in_netns("cat").arg("/proc/net/snmp").output();
    let snmp = String::from_utf8_lossy(&out.unwrap().stdout).into_owned();
    let prefix = format!("{group}:");
    let mut lines = snmp.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "InCsumErrors")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

#[test]
fn a_veth_with_tx_offload_is_balanced_on_tc_ingress_with_valid_checksums() {
    require_root();
    let mut t = Topology::new("xtcin").unwrap();
    t.tx_offload_on_client_link().unwrap();
    for (id, ip4, ip6) in [
        ("a", BACKEND_IP4[0], BACKEND_IP6[0]),
        ("b", BACKEND_IP4[1], BACKEND_IP6[1]),
    ] {
        let tcp = [format!("{ip4}:7000"), format!("[{ip6}]:7000")];
        let udp = format!("{ip4}:7001");
        t.backends
            .spawn_testsrv(id, &[&tcp[0], &tcp[1]], &[&udp])
            .unwrap();
    }
    t.spawn_byte_sinks().unwrap();
    // The default mode (auto): the agent reads n0's offloads and picks.
    let agent = Agent::start_with_args(&mut t.node, YAML, &["--xdp-iface", "n0"]).unwrap();
    agent.wait_vips(5, READY).unwrap();
    // Logged once the ingress side (either mode) is attached.
    agent.wait_log("tc reply program attached", "the attach", READY);
    // A packet interface waits for its programs: no early serving.
    assert!(!agent.log().contains("the socket hooks serve"));

    for vip in ["11.0.0.1:80", "[fd01:c::1]:80"] {
        let v = t.client.probe_tcp(vip, 40).unwrap();
        assert_eq!(v["errors"], 0, "{vip}: {v}");
        assert_eq!(counts(&v).len(), 2, "{vip}: one backend only: {v}");
        assert_eq!(v["peers"], json!([vip]), "{vip}: {v}");
    }
    let v = t
        .client
        .probe_udp("11.0.0.1:53", 20, &["--mode", "connected"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(counts(&v).values().sum::<u64>(), 20, "{v}");
    // Full-sized segments (TSO/GSO on the offloading veth) both ways.
    for vip in ["11.0.0.3", "fd01:c::3"] {
        assert_eq!(t.upload_mib(vip, 80).unwrap(), "1048576", "1 MiB to {vip}");
    }
    assert_eq!(
        csum_errors(&t, "Tcp"),
        0,
        "TCP checksum errors at the backends"
    );
    assert_eq!(
        csum_errors(&t, "Udp"),
        0,
        "UDP checksum errors at the backends"
    );

    // It was the tc ingress program, with the XDP program's bookkeeping.
    let log = agent.log();
    assert!(
        log.contains("tc ingress balancing attached") && !log.contains("XDP attached"),
        "{log}"
    );
    let table = agent.vips_json().unwrap();
    let tcp4 = row(&table, "11.0.0.1:80", "tcp");
    // 40 connects, each one flow; rarely, under load, one more (seen once in
    // ~100 runs): most likely a client ACK held in another CPU's backlog past
    // its flow's close, recorded again (`tcp_close`), which `flows` counts as
    // a re-pick by design (`ServiceStats::flows`).
    let flows = tcp4["flows"].as_u64().unwrap();
    assert!((40..=41).contains(&flows), "{tcp4}");
    assert!(tcp4["reply_packets"].as_u64().unwrap() >= 80, "{tcp4}");
}

#[test]
fn a_forced_xdp_mode_is_refused_on_a_veth_with_tx_offload() {
    require_root();
    let mut t = Topology::new("xtcno").unwrap();
    t.tx_offload_on_client_link().unwrap();
    let mut agent = Agent::start_with_args(
        &mut t.node,
        YAML,
        &["--xdp-iface", "n0", "--xdp-mode", "native"],
    )
    .unwrap();
    let deadline = Instant::now() + READY;
    while agent.is_running() {
        assert!(
            Instant::now() < deadline,
            "the agent kept running: {}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = agent.log();
    assert!(
        log.contains("n0 is a veth with tx checksum offload on")
            && log.contains("ethtool -K n0 tx off")
            && log.contains("--xdp-mode auto or tc"),
        "{log}"
    );
    assert!(!log.contains("XDP attached"), "{log}");
}

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

/// `result`'s count in `l4lb_xdp_icmp_errors_total`.
fn icmp_count(maps: &Maps, result: &str) -> u64 {
    let all = maps.icmp_errors();
    all.iter()
        .find(|(r, _)| *r == result)
        .map(|(_, n)| *n)
        .unwrap()
}

/// ICMP errors to a VIP on the tc ingress program, run through
/// BPF_PROG_TEST_RUN (nothing attached): a "fragmentation needed" (IPv4) or
/// "packet too big" (IPv6) about a VIP flow's reply goes to that flow's
/// backend, rewritten with valid checksums; one about a flow the node does
/// not track is dropped and counted.
#[test]
fn icmp_errors_to_a_vip_reach_the_flows_backend_on_tc_ingress() {
    require_root();
    let sb = Sandbox::new("xtcicmp").unwrap();
    let loaded = datapath::load(sb.pin_root(), sb.cgroup(), plan::Capacity::default()).unwrap();
    let maps = Maps::open_pinned(sb.pin_root()).unwrap();
    let mut rec = Reconciler::adopt(loaded.maps, Duration::ZERO).unwrap();
    let mut desired = DesiredState::default();
    for (vip, backends) in [
        ("11.0.0.1:80", ["198.18.2.2:8080", "198.18.2.3:8080"]),
        ("[fd01:c::1]:80", ["[fd00:b1::2]:8080", "[fd00:b1::3]:8080"]),
    ] {
        let spec = ServiceSpec {
            name: None,
            framework: None,
            origin: None,
            backends: backends.iter().map(|b| (b.parse().unwrap(), 1)).collect(),
        };
        let vip = Vip {
            addr: vip.parse().unwrap(),
            proto: Proto::Tcp,
        };
        desired.services.insert(vip, spec);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(rec.reconcile(&desired)).unwrap();
    let prog = &loaded.attached;
    for (client, vip, router) in [
        ("198.18.1.2:40000", "11.0.0.1:80", "198.18.1.9"),
        ("[fd00:c1::2]:40000", "[fd01:c::1]:80", "fd00:c1::9"),
    ] {
        let (client, vip): (SocketAddr, SocketAddr) =
            (client.parse().unwrap(), vip.parse().unwrap());
        let tuple = |src: SocketAddr, dst: SocketAddr| Tuple {
            proto: Proto::Tcp,
            src,
            dst,
        };
        let req = packet::frame(&tuple(client, vip), &FrameOpts::default());
        let out = prog.test_tc_ingress(&req, 1).unwrap();
        assert_eq!(out.action, TC_ACT_OK, "{vip}");
        let backend = packet::parse(&out.frame).unwrap().dst;
        assert_ne!(backend, vip, "{vip}: the flow went to a backend");
        // A router on the client side: too big, about the reply VIP -> client.
        let steered = icmp_count(&maps, "to_backend");
        let err = icmp_error(router.parse().unwrap(), vip.ip(), &tuple(vip, client));
        let out = prog.test_tc_ingress(&err, 1).unwrap();
        assert_eq!(out.action, TC_ACT_OK, "{vip}: passed on");
        let (src, dst, ok) = embedded(&out.frame);
        assert_eq!(
            (src, dst),
            (backend, client),
            "{vip}: the backend's own flow"
        );
        assert!(ok, "{vip}: checksums after the rewrite");
        let outer_dst = match backend.ip() {
            IpAddr::V4(a) => out.frame[30..34] == a.octets() && valid_ip4(&out.frame),
            IpAddr::V6(a) => out.frame[38..54] == a.octets(),
        };
        assert!(outer_dst, "{vip}: outer destination is the backend");
        assert_eq!(icmp_count(&maps, "to_backend"), steered + 1, "{vip}");
        // About a flow the node does not track: dropped and counted.
        let no_flow = icmp_count(&maps, "no_flow");
        let stranger = tuple(vip, SocketAddr::new(client.ip(), 1));
        let err = icmp_error(router.parse().unwrap(), vip.ip(), &stranger);
        let out = prog.test_tc_ingress(&err, 1).unwrap();
        assert_eq!(out.action, TC_ACT_SHOT, "{vip}: unknown flow");
        assert_eq!(icmp_count(&maps, "no_flow"), no_flow + 1, "{vip}");
    }
}
