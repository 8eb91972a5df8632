//! The XDP datapath on real traffic: netns `client` — veth — `node` (agent
//! with `--xdp-iface n0`, forwarding on) — veth — `backends` (real servers).
//! The client is a plain remote host: nothing is attached to its cgroup, so
//! only the node's XDP and tc programs can make the VIP work. Every address
//! exists only inside these namespaces (see `l4lb_tests::topology`).
use std::{collections::BTreeSet, process::Command, time::Duration};

use l4lb_tests::{
    Agent, Topology, agent_bin, counts, probe_bin, require_root, run,
    table::{backend_total, row},
    topology::{BACKEND_IP4, BACKEND_IP6, CLIENT_IP4, NODE_IN, NODE_OUT},
};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(20);

/// TCP and UDP VIPs over backends a and b of [`two_backends`]; tests append
/// their own.
const AB_VIPS: &str = "vips:
  - vip: 11.0.0.1:80
    backends: [198.18.2.2:7000, 198.18.2.3:7000]
  - vip: 11.0.0.1:53
    protocol: udp
    backends: [198.18.2.2:7001, 198.18.2.3:7001]
  - vip: '[fd01:c::1]:80'
    backends: ['[fd00:b1::2]:7000', '[fd00:b1::3]:7000']
";

/// The agent in the node with XDP on its client-facing side (plus `extra`
/// arguments), once it lists every VIP in `yaml` and has attached XDP.
fn start_agent(t: &mut Topology, yaml: &str, extra: &[&str]) -> Agent {
    let args = [&["--xdp-iface", NODE_IN][..], extra].concat();
    let agent = Agent::start_with_args(&mut t.node, yaml, &args).unwrap();
    agent
        .wait_vips(yaml.matches("vip:").count(), READY)
        .unwrap();
    agent.wait_log("XDP attached", "the XDP attach", READY);
    agent
}

/// Test servers a and b on the first two backend addresses: TCP :7000 on
/// IPv4 and IPv6, UDP :7001 on IPv4 (and on IPv6 too if `udp6`).
fn two_backends(t: &mut Topology, udp6: bool) {
    for (id, ip4, ip6) in [
        ("a", BACKEND_IP4[0], BACKEND_IP6[0]),
        ("b", BACKEND_IP4[1], BACKEND_IP6[1]),
    ] {
        let (tcp4, tcp6) = (format!("{ip4}:7000"), format!("[{ip6}]:7000"));
        let (udp4, udp6_addr) = (format!("{ip4}:7001"), format!("[{ip6}]:7001"));
        let udp: &[&str] = if udp6 { &[&udp4, &udp6_addr] } else { &[&udp4] };
        t.backends.spawn_testsrv(id, &[&tcp4, &tcp6], udp).unwrap();
    }
}

/// `n` connections from the client to each TCP VIP of [`AB_VIPS`]: no
/// errors, both backends reached, and the client sees the VIP as its peer.
fn tcp_reaches_both_backends(t: &Topology, n: u32) {
    for vip in ["11.0.0.1:80", "[fd01:c::1]:80"] {
        let v = t.client.probe_tcp(vip, n).unwrap();
        assert_eq!(v["errors"], 0, "{vip}: {v}");
        let c = counts(&v);
        assert_eq!(c.values().sum::<u64>(), u64::from(n), "{vip}: {v}");
        assert_eq!(c.len(), 2, "{n} connections all reached one backend: {v}");
        assert_eq!(
            v["peers"],
            json!([vip]),
            "the client must see the VIP as its peer: {v}"
        );
    }
}

#[test]
fn tcp_and_udp_through_the_vip_from_the_client_netns_v4_and_v6() {
    require_root();
    let mut t = Topology::new("xtopo").unwrap();
    two_backends(&mut t, true);
    let yaml = format!(
        "{AB_VIPS}  - vip: '[fd01:c::1]:53'
    protocol: udp
    backends: ['[fd00:b1::2]:7001', '[fd00:b1::3]:7001']
"
    );
    let agent = start_agent(&mut t, &yaml, &[]);
    tcp_reaches_both_backends(&t, 60);
    for vip in ["11.0.0.1:53", "[fd01:c::1]:53"] {
        for mode in ["connected", "unconnected"] {
            let v = t.client.probe_udp(vip, 20, &["--mode", mode]).unwrap();
            assert_eq!(v["errors"], 0, "{vip} {mode}: {v}");
            assert_eq!(counts(&v).values().sum::<u64>(), 20, "{vip} {mode}: {v}");
            assert_eq!(
                v["sources"],
                json!([vip]),
                "{vip} {mode}: replies must come from the VIP: {v}"
            );
        }
        let v = t
            .client
            .probe_udp(vip, 40, &["--mode", "unconnected", "--fresh-socket"])
            .unwrap();
        assert_eq!(
            counts(&v).len(),
            2,
            "{vip}: 40 fresh sockets all reached one backend: {v}"
        );
    }
    // The XDP and tc counters saw it, per VIP and per backend; the socket hooks did not.
    let table = agent.vips_json().unwrap();
    let tcp4 = row(&table, "11.0.0.1:80", "tcp");
    assert_eq!(tcp4["flows"], 60, "{tcp4}");
    assert!(tcp4["packets"].as_u64().unwrap() >= 180, "{tcp4}");
    assert!(tcp4["reply_packets"].as_u64().unwrap() >= 120, "{tcp4}");
    assert_eq!(tcp4["connects"], 0, "{tcp4}");
    assert_eq!(backend_total(tcp4, "flows"), 60, "{tcp4}");

    // explain runs the loaded program: the answer is one of the backends.
    let out = run(Command::new(agent_bin())
        .args([
            "explain",
            "--vip",
            "11.0.0.1:80",
            "--src",
            &format!("{CLIENT_IP4}:45678"),
            "--json",
            "--pin-root",
        ])
        .arg(t.node.pin_root()))
    .unwrap();
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["action"], "pass", "{e}");
    assert!(
        ["198.18.2.2:7000", "198.18.2.3:7000"].contains(&e["destination"].as_str().unwrap()),
        "{e}"
    );
}

#[test]
fn redis_and_http_servers_behind_the_vip() {
    require_root();
    let mut t = Topology::new("xreal").unwrap();
    for ip in &BACKEND_IP4[..2] {
        // Up (answering PING from the backends netns itself) on return.
        t.backends.spawn_redis(ip, 6379).unwrap();
        let dir = t.backends.workdir().join(ip);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("served by {ip}\n")).unwrap();
        let mut http = t.backends.in_netns("/usr/bin/python3");
        http.args(["-m", "http.server", "8080", "--bind", ip, "--directory"])
            .arg(&dir)
            .stdout(std::process::Stdio::null());
        t.backends.spawn(http).unwrap();
    }
    let _agent = start_agent(
        &mut t,
        "vips:
  - vip: 11.0.0.2:6379
    backends: [198.18.2.2:6379, 198.18.2.3:6379]
  - vip: 11.0.0.2:80
    backends: [198.18.2.2:8080, 198.18.2.3:8080]
",
        &[],
    );
    // HTTP servers up (checked from the backends netns itself, not through the VIP).
    let deadline = std::time::Instant::now() + READY;
    for ip in &BACKEND_IP4[..2] {
        loop {
            let http = t
                .backends
                .in_netns("curl")
                .args(["-sf", &format!("http://{ip}:8080/")])
                .output()
                .unwrap();
            if http.status.success() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "HTTP server on {ip} never answered: {http:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut served = BTreeSet::new();
    for i in 0..20 {
        // One redis-cli session = one TCP flow = one backend.
        let out = t
            .client
            .redis_session(
                "11.0.0.2",
                6379,
                &format!("SET k{i} v{i}\nGET k{i}\nCONFIG GET bind\n"),
            )
            .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.get(..2),
            Some(&["OK", &format!("v{i}") as &str][..]),
            "{out}"
        );
        served.insert(lines[3].to_string());
        let page = t
            .client
            .in_netns("curl")
            .args(["-sf", "--max-time", "5", "http://11.0.0.2/"])
            .output()
            .unwrap();
        assert!(
            page.status.success(),
            "curl through the VIP failed: {page:?}"
        );
        served.insert(String::from_utf8_lossy(&page.stdout).trim().to_string());
    }
    assert!(
        served.len() >= 3,
        "20 redis sessions and 20 HTTP GETs reached too few servers: {served:?}"
    );
}

#[test]
fn removal_sends_new_flows_elsewhere_and_established_flows_survive_an_addition() {
    require_root();
    let mut t = Topology::new("xchange").unwrap();
    let ids = ["a", "b", "c"];
    for (id, ip) in ids.iter().zip(BACKEND_IP4) {
        t.backends
            .spawn_testsrv(id, &[&format!("{ip}:7000")], &[])
            .unwrap();
    }
    let yaml = |ips: &[&str]| {
        let b: Vec<String> = ips.iter().map(|ip| format!("{ip}:7000")).collect();
        format!(
            "vips:\n  - vip: 11.0.0.3:7000\n    backends: [{}]\n",
            b.join(", ")
        )
    };
    let agent = start_agent(&mut t, &yaml(&BACKEND_IP4[..2]), &[]);
    let nbackends = |n: usize| {
        move |v: &Value| {
            row(v, "11.0.0.3:7000", "tcp")["backends"]
                .as_array()
                .map(Vec::len)
                == Some(n)
        }
    };

    // An established connection through the VIP …
    let mut hold = t.client.hold("11.0.0.3:7000").unwrap();
    let held = hold.backend.clone();
    assert!(held == "a" || held == "b", "hold reached {held:?}");

    // … survives an addition (Maglev may map its 5-tuple elsewhere now; the
    // connection table keeps it where it is).
    agent.rewrite_config(&yaml(&BACKEND_IP4)).unwrap();
    agent.wait_table("the addition", READY, nbackends(3));
    for i in 0..5 {
        let line = format!("after-add-{i}");
        assert_eq!(
            hold.echo(&line).unwrap(),
            line,
            "the held connection broke after the addition"
        );
    }
    let v = t.client.probe_tcp("11.0.0.3:7000", 90).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(
        counts(&v).len(),
        3,
        "new flows do not use the added backend: {v}"
    );

    // A removal: new flows never reach the removed backend.
    let gone = if held == "a" { "b" } else { "a" };
    let keep: Vec<&str> = ids
        .iter()
        .zip(BACKEND_IP4)
        .filter(|(id, _)| **id != gone)
        .map(|(_, ip)| ip)
        .collect();
    agent.rewrite_config(&yaml(&keep)).unwrap();
    agent.wait_table("the removal", READY, nbackends(2));
    let v = t.client.probe_tcp("11.0.0.3:7000", 120).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let c = counts(&v);
    assert_eq!(
        c.get(gone),
        None,
        "removed backend {gone} got new flows: {v}"
    );
    assert_eq!(c.values().sum::<u64>(), 120, "{v}");
    // The held connection's backend stayed: it still echoes.
    assert_eq!(hold.echo("after-remove").unwrap(), "after-remove");
    assert!(hold.finish().unwrap().success());
}

/// `Ip: ForwDatagrams` of the node netns: packets the kernel forwarded.
fn forwarded(t: &Topology) -> u64 {
    let out = t
        .node
        .in_netns("cat")
        .arg("/proc/net/snmp")
        .output()
        .unwrap();
    let snmp = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

#[test]
fn fib_forwarding_from_xdp_skips_the_node_stack() {
    require_root();
    let mut t = Topology::new("xfib").unwrap();
    t.napi_on_backends().unwrap();
    two_backends(&mut t, false);
    // A sink for the one-way flood below: counted and dropped in the backends' prerouting.
    let sink = "table inet sink { chain pre { type filter hook prerouting priority -300; policy accept; udp dport 9 counter drop; }; }";
    assert!(
        t.backends
            .in_netns("nft")
            .arg(sink)
            .status()
            .unwrap()
            .success()
    );
    let yaml = format!(
        "{AB_VIPS}  - vip: 11.0.0.1:9
    protocol: udp
    backends: [198.18.2.2:9]
"
    );
    let _agent = start_agent(&mut t, &yaml, &["--xdp-forward", "fib"]);
    // TCP and UDP work end to end (TTL, MACs and checksums are checked by the receivers).
    tcp_reaches_both_backends(&t, 40);
    let v = t
        .client
        .probe_udp("11.0.0.1:53", 20, &["--mode", "connected"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["sources"], json!(["11.0.0.1:53"]), "{v}");
    // One-way traffic to the VIP leaves the node from XDP: the kernel forwards (almost) none of it.
    let before = forwarded(&t);
    let flood = t
        .client
        .in_netns(probe_bin())
        .args([
            "flood",
            "--to",
            "11.0.0.1:9",
            "--flows",
            "4",
            "-n",
            "2000",
            "--seconds",
            "5",
        ])
        .output()
        .unwrap();
    assert!(flood.status.success(), "{flood:?}");
    let via_kernel = forwarded(&t) - before;
    let arrived = t.backends.nft_packets("inet", "sink", "pre").unwrap();
    assert!(
        arrived >= 1000,
        "only {arrived} of 2000 datagrams reached the backend"
    );
    assert!(
        via_kernel * 10 < arrived,
        "the kernel forwarded {via_kernel} of {arrived}: XDP did not redirect"
    );
}

/// Entries in one of the node agent's pinned maps (`bpftool map dump`).
fn map_entries(t: &Topology, map: &str) -> usize {
    let out = run(Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(t.node.pin_root().join(map)))
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array().map_or(0, Vec::len)
}

/// The IPv4 connection table's live slots (an array: every slot is an
/// entry to bpftool; a free one's key is 0).
fn live_slots4(t: &Topology) -> Vec<l4lb_common::FlowSlot4> {
    use aya::maps::{Array, Map, MapData};
    let data = MapData::from_pin(t.node.pin_root().join("L4LB_CONNTRACK4")).unwrap();
    let map: Array<MapData, l4lb_common::FlowSlot4> =
        Map::from_map_data(data).unwrap().try_into().unwrap();
    map.iter()
        .map(Result::unwrap)
        .filter(|s| s.key[0] != 0)
        .collect()
}

/// (connection-table, reverse-NAT) entries once they stop changing: the
/// last ACK of a flow may still be on its way when the client returns.
fn settled_entries(t: &Topology) -> (usize, usize) {
    let read = || {
        (
            // IPv4 flows are in the 16-byte-key table, IPv6 ones in the other.
            live_slots4(t).len() + map_entries(t, "L4LB_CONNTRACK"),
            map_entries(t, "L4LB_XDP_REVNAT"),
        )
    };
    let mut last = read();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

#[test]
fn finished_tcp_flows_leave_no_entries_behind() {
    require_root();
    let mut t = Topology::new("xclose").unwrap();
    two_backends(&mut t, false);
    let _agent = start_agent(&mut t, AB_VIPS, &[]);
    let mut baseline = settled_entries(&t);
    // Every flow ends with FIN both ways; LRU eviction alone would keep all
    // of them (the tables hold 131072).
    for (vip, n) in [("11.0.0.1:80", 10_000), ("[fd01:c::1]:80", 2_000)] {
        let v = t.client.probe_tcp(vip, n).unwrap();
        assert_eq!(v["errors"], 0, "{vip}: {v}");
        assert_eq!(counts(&v).values().sum::<u64>(), u64::from(n), "{v}");
        // A rare race (0-1 in 10,000 here: a plain ACK that arrives after
        // the flow's last ACK removed it, and records it again) leaves an
        // entry to the LRU; without close tracking all 10,000 would stay.
        // (2-14 before the backend's ACK of the client's FIN, overtaken by
        // its own FIN, stopped counting as the last ACK: `tcp_close`.)
        let (ct, rn) = settled_entries(&t);
        let slack = n as usize / 1000;
        assert!(
            ct <= baseline.0 + slack && rn <= baseline.1 + slack,
            "{n} finished flows to {vip}: ({ct}, {rn}) (connection table, reverse NAT) entries, baseline {baseline:?}; left: {:?}",
            live_slots4(&t)
        );
        baseline = (ct, rn);
    }
    // A flow still open keeps its entries until it closes.
    let hold = t.client.hold("11.0.0.1:80").unwrap();
    let open = settled_entries(&t);
    assert_eq!(open, (baseline.0 + 1, baseline.1 + 1), "one open flow");
    assert!(hold.finish().unwrap().success());
    assert_eq!(settled_entries(&t), baseline, "after the held flow closed");
    // Flows the client ends with RST (SO_LINGER 0) go as well.
    let v = t
        .client
        .probe(&[
            "latency",
            "--to",
            "11.0.0.1:80",
            "-n",
            "2000",
            "--warmup",
            "0",
            "--rst",
        ])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let (ct, rn) = settled_entries(&t);
    assert!(
        ct <= baseline.0 + 2 && rn <= baseline.1 + 2,
        "after 2000 flows ended by RST: ({ct}, {rn}), baseline {baseline:?}"
    );
}

/// `l4lb_xdp_icmp_errors_total{result=...}` from the node agent's /metrics.
fn icmp_metric(t: &Topology, result: &str) -> u64 {
    let (code, body) = t.node.agent_http("/metrics");
    assert_eq!(code, "200", "{body}");
    let prefix = format!("l4lb_xdp_icmp_errors_total{{result=\"{result}\"}}");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn path_mtu_discovery_through_the_vip_v4_and_v6() {
    require_root();
    let mut t = Topology::new("xpmtu").unwrap();
    t.spawn_byte_sinks().unwrap();
    let yaml = "vips:
  - vip: 11.0.0.3:80
    backends: [198.18.2.2:7100]
  - vip: '[fd01:c::3]:80'
    backends: ['[fd00:b1::2]:7100']
";
    let _agent = start_agent(&mut t, yaml, &[]);
    // The node routes to the backends over a 1280-byte link while the
    // backends' own end stays at 1500, so both sides agree on a 1460-byte
    // MSS and the client's full-sized segments need the node's "fragmentation
    // needed" / "packet too big", which embeds client -> backend.
    t.in_node("ip", &["link", "set", NODE_OUT, "mtu", "1280"])
        .unwrap();
    for vip in ["11.0.0.3", "fd01:c::3"] {
        assert_eq!(t.upload_mib(vip, 80).unwrap(), "1048576", "1 MiB to {vip}");
    }
    assert!(icmp_metric(&t, "to_client") >= 2, "translated errors");
}
