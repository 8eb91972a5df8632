//! L2 direct server return (`--xdp-dsr l2`) in the 3-namespace topology,
//! plus a second link from the backends to the client that their replies
//! take: XDP on the node's n0 changes only the destination MAC of a client's
//! packet and sends it out of n1; the backends hold the VIPs on their
//! loopback (`deploy/dsr-backend-setup.sh`) and answer the client directly.
//! Both backend addresses live in the one backends namespace, so one server
//! listens on each VIP:port; the node's per-backend flow counters show the
//! spread.
use std::{process::Command, time::Duration};

use l4lb_tests::{
    Agent, Topology, counts, require_root, run,
    table::{backend_total, row},
};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(20);

/// `Ip: ForwDatagrams` of the node: packets its kernel forwarded.
fn forwarded(t: &Topology) -> u64 {
    let snmp = run(t.node.in_netns("cat").arg("/proc/net/snmp")).unwrap();
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// `Ip6OutForwDatagrams` of the node.
fn forwarded6(t: &Topology) -> u64 {
    let snmp = run(t.node.in_netns("cat").arg("/proc/net/snmp6")).unwrap();
    snmp.lines()
        .find_map(|l| l.strip_prefix("Ip6OutForwDatagrams"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn with_l2_dsr_requests_succeed_and_no_reply_crosses_the_node() {
    require_root();
    let mut t = Topology::new("xdsr").unwrap();
    t.napi_on_backends().unwrap();
    t.direct_return_link(&["11.0.0.1", "fd01:c::1"]).unwrap();
    t.backends
        .spawn_testsrv("dsr", &["11.0.0.1:80", "[fd01:c::1]:80"], &[])
        .unwrap();
    let yaml = "vips:
  - vip: 11.0.0.1:80
    backends: [198.18.2.2:80, 198.18.2.3:80]
  - vip: '[fd01:c::1]:80'
    backends: ['[fd00:b1::2]:80', '[fd00:b1::3]:80']
";
    let args = [
        "--xdp-iface",
        "n0",
        "--xdp-dsr",
        "l2",
        "--xdp-mode",
        "native",
    ];
    let agent = Agent::start_with_args(&mut t.node, yaml, &args).unwrap();
    agent.wait_vips(2, READY).unwrap();
    agent.wait_log("XDP attached", "the XDP attach", READY);
    // The agent resolves the backends' neighbour entries; until then a DSR
    // packet passes to l4lb0 and is dropped, and the client retries.
    let (f4, f6) = (forwarded(&t), forwarded6(&t));
    for (vip, n) in [("11.0.0.1:80", 10_000), ("[fd01:c::1]:80", 2_000)] {
        let v = t.client.probe_tcp(vip, n).unwrap();
        assert_eq!(v["errors"], 0, "{vip}: {v}");
        assert_eq!(counts(&v).values().sum::<u64>(), u64::from(n), "{vip}: {v}");
        assert_eq!(v["peers"], json!([vip]), "{vip}: {v}");
    }
    // Requests left from XDP (redirect), replies went by the other link.
    assert_eq!(forwarded(&t) - f4, 0, "IPv4 packets the node forwarded");
    assert_eq!(forwarded6(&t) - f6, 0, "IPv6 packets the node forwarded");
    let table: Value = agent.vips_json().unwrap();
    for (vip, n) in [("11.0.0.1:80", 10_000), ("[fd01:c::1]:80", 2_000)] {
        let r = row(&table, vip, "tcp");
        assert_eq!(r["reply_packets"], 0, "{r}");
        assert_eq!(backend_total(r, "flows"), n, "{r}");
        for b in r["backends"].as_array().unwrap() {
            let flows = b["flows"].as_u64().unwrap();
            assert!(flows * 4 > n, "one backend got {flows} of {n}: {r}");
        }
    }
    // The node's own interfaces saw no replies: n1 received only neighbour
    // traffic from the backends.
    let rx =
        run(Command::new("ip").args(["-n", t.node.netns(), "-s", "link", "show", "n1"])).unwrap();
    let rx_packets: u64 = rx
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("RX:"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rx_packets < 100, "n1 received {rx_packets} packets: {rx}");
}
