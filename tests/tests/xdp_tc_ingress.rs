//! The tc ingress mode on a container-like veth: the client's link (c0 —
//! n0) has tx checksum offload on at both ends, as a container's veth has by
//! default, so the client's packets reach the node marked CHECKSUM_PARTIAL
//! (only the pseudo-header sum in the checksum field). XDP's full-checksum
//! rewrite corrupts them; the agent balances such an interface on tc ingress,
//! where the kernel's helpers update a partial checksum as partial. Every
//! receiver verifies checksums in software (rx offload off), and the
//! backends' checksum error counters must stay 0.
use std::time::{Duration, Instant};

use l4lb_tests::{
    Agent, Topology, counts, require_root,
    table::row,
    topology::{BACKEND_IP4, BACKEND_IP6},
};
use serde_json::json;

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
    assert_eq!(tcp4["flows"], 40, "{tcp4}");
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
