//! VIP traffic from a process outside the hooked cgroup used to leave by the
//! default route (to the real, public 11.0.0.0/8). The agent routes every VIP
//! address to its dummy `l4lb0`, which drops and counts what it is sent.
//!
//! The node sandbox gets a veth to a second sandbox (the "uplink", no route
//! anywhere) and a default route through it; an nft counter in the uplink
//! sees every VIP packet that left the node.
use std::{process::Command, thread, time::Duration};

use l4lb_tests::{Agent, Sandbox, counts, probe_bin, require_root, run};

const BOUND: Duration = Duration::from_secs(20);
const VIPS: &str = "vips:
  - vip: 11.0.0.1:7000
    protocol: udp
    backends: [127.0.0.2:7001]
  - vip: '[fd01:c::1]:7000'
    protocol: udp
    backends: ['[::1]:7001']
";

/// `node` gets v0 (198.18.9.1, fd00:9::1) with default routes to the uplink's
/// p0 (198.18.9.2, fd00:9::2), where an nft chain counts packets to the VIPs.
fn uplink(node: &Sandbox, up: &Sandbox) {
    let ip = |args: &[&str]| run(Command::new("ip").args(args)).unwrap();
    let (n, u) = (node.netns(), up.netns());
    ip(&[
        "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "p0", "netns", u,
    ]);
    for (ns, dev, a4, a6) in [
        (n, "v0", "198.18.9.1/24", "fd00:9::1/64"),
        (u, "p0", "198.18.9.2/24", "fd00:9::2/64"),
    ] {
        ip(&["-n", ns, "addr", "add", a4, "dev", dev]);
        ip(&["-n", ns, "addr", "add", a6, "dev", dev, "nodad"]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", n, "route", "add", "default", "via", "198.18.9.2"]);
    ip(&["-n", n, "-6", "route", "add", "default", "via", "fd00:9::2"]);
    let nft = |args: &[&str]| run(up.in_netns("nft").args(args)).unwrap();
    nft(&["add", "table", "inet", "count"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "count",
        "pre",
        "{ type filter hook prerouting priority 0; }",
    ]);
    nft(&[
        "add",
        "rule",
        "inet",
        "count",
        "pre",
        "ip",
        "daddr",
        "11.0.0.0/8",
        "counter",
    ]);
    nft(&[
        "add",
        "rule",
        "inet",
        "count",
        "pre",
        "ip6",
        "daddr",
        "fd01:c::/64",
        "counter",
    ]);
}

/// Packets to the VIPs that reached the uplink (both families).
fn leaked(up: &Sandbox) -> u64 {
    let out = run(up
        .in_netns("nft")
        .args(["list", "chain", "inet", "count", "pre"]))
    .unwrap();
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "packets")
        .map(|w| w[1].parse::<u64>().unwrap())
        .sum()
}

/// 10 datagrams to `to` from a process in the node's netns but outside the
/// hooked cgroup.
fn send_escaping(node: &Sandbox, to: &str) {
    let mut cmd = node.in_netns(probe_bin());
    cmd.args([
        "flood",
        "--to",
        to,
        "--flows",
        "1",
        "--count",
        "10",
        "--seconds",
        "2",
    ]);
    run(&mut cmd).unwrap();
}

fn escaped_metric(node: &Sandbox) -> u64 {
    let (code, body) = node.agent_http("/metrics");
    assert_eq!(code, "200", "{body}");
    body.lines()
        .find_map(|l| {
            l.strip_prefix("l4lb_escaped_vip_packets_total")?
                .split_whitespace()
                .last()
        })
        .unwrap_or_else(|| {
            let ours: Vec<&str> = body
                .lines()
                .filter(|l| l.contains("escaped") || l.contains("guard"))
                .collect();
            panic!("no l4lb_escaped_vip_packets_total in\n{}", ours.join("\n"))
        })
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn vip_packets_that_escape_the_hooks_never_leave_the_node() {
    require_root();
    let mut node = Sandbox::new("escape-n").unwrap();
    let up = Sandbox::new("escape-u").unwrap();
    uplink(&node, &up);
    // The setup can see a leak: without the agent, VIP packets go out.
    send_escaping(&node, "11.0.0.1:7000");
    let before = leaked(&up);
    assert!(
        before >= 10,
        "the uplink counted {before} packets to 11.0.0.1"
    );

    node.spawn_testsrv("a", &[], &["127.0.0.2:7001"]).unwrap();
    let mut agent = Agent::start(&mut node, VIPS).unwrap();
    agent.wait_vips(2, BOUND).unwrap();
    wait_route(&node, "11.0.0.1");
    wait_route(&node, "fd01:c::1");
    // l4lb0 holds no address: an IPv6 link-local on it made getaddrinfo's
    // AI_ADDRCONFIG take a lo-only netns for IPv6-connected (dnsperf's
    // queries to 127.0.0.1 then failed with ENETUNREACH).
    let addrs = l4lb_tests::run(std::process::Command::new("ip").args([
        "-n",
        node.netns(),
        "addr",
        "show",
        "dev",
        "l4lb0",
    ]))
    .unwrap();
    assert!(!addrs.contains("inet"), "l4lb0 has an address: {addrs}");
    send_escaping(&node, "11.0.0.1:7000");
    send_escaping(&node, "[fd01:c::1]:7000");
    assert_eq!(leaked(&up), before, "VIP packets left the node");
    assert!(
        escaped_metric(&node) >= 20,
        "{}",
        node.agent_http("/metrics").1
    );
    // Hooked processes are still balanced (the hooks act before routing).
    let v = node.probe_udp("11.0.0.1:7000", 3, &[]).unwrap();
    assert_eq!(counts(&v).get("a"), Some(&3), "{v}");

    // A VIP that leaves the table takes its route with it; teardown takes l4lb0.
    agent.rewrite_config("vips: []\n").unwrap();
    agent.wait_table("empty table", BOUND, |t| {
        t.as_array().is_some_and(|a| a.is_empty())
    });
    wait_no_route(&node, "11.0.0.1");
    agent.stop().unwrap();
    let links = run(node.in_netns("ip").args(["-o", "link", "show"])).unwrap();
    assert!(!links.contains("l4lb0"), "{links}");
}

fn routes(node: &Sandbox, dev: &str) -> String {
    let v4 = run(node.in_netns("ip").args(["route", "show", "dev", dev])).unwrap_or_default();
    let v6 = run(node
        .in_netns("ip")
        .args(["-6", "route", "show", "dev", dev]))
    .unwrap_or_default();
    v4 + &v6
}

fn wait_route(node: &Sandbox, ip: &str) {
    for _ in 0..200 {
        if routes(node, "l4lb0")
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ip))
        {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("no route {ip} dev l4lb0: {}", routes(node, "l4lb0"));
}

fn wait_no_route(node: &Sandbox, ip: &str) {
    for _ in 0..200 {
        if !routes(node, "l4lb0")
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ip))
        {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "route {ip} dev l4lb0 still there: {}",
        routes(node, "l4lb0")
    );
}
