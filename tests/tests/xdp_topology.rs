//! The XDP datapath on real traffic: netns `client` — veth — `node` (agent
//! with `--xdp-iface n0`, forwarding on) — veth — `backends` (real servers).
//! The client is a plain remote host: nothing is attached to its cgroup, so
//! only the node's XDP and tc programs can make the VIP work. Every address
//! exists only inside these namespaces (see `l4lb_tests::topology`).
use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    time::{Duration, Instant},
};

use l4lb_tests::{
    Agent, Topology, agent_bin, probe_bin, require_root,
    topology::{BACKEND_IP4, CLIENT_IP4, NODE_IN},
};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(20);

fn start_agent(t: &mut Topology, yaml: &str) -> Agent {
    let agent = Agent::start_with_args(&mut t.node, yaml, &["--xdp-iface", NODE_IN]).unwrap();
    let n = yaml.matches("vip:").count();
    agent.wait_vips(n, READY).unwrap();
    let deadline = Instant::now() + READY;
    while !agent.log().contains("XDP attached") {
        assert!(
            Instant::now() < deadline,
            "no XDP attach in the log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent
}

fn counts(v: &Value) -> std::collections::BTreeMap<String, u64> {
    v["counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

fn row<'a>(vips: &'a Value, vip: &str, proto: &str) -> &'a Value {
    vips.as_array()
        .unwrap()
        .iter()
        .find(|r| r["vip"] == vip && r["proto"] == proto)
        .unwrap_or_else(|| panic!("{vip}/{proto} not in {vips}"))
}

/// Waits until `pred` holds for `vips --json` (a reload is asynchronous).
fn wait_table(agent: &Agent, what: &str, pred: impl Fn(&Value) -> bool) {
    agent.wait_table(what, READY, pred);
}

#[test]
fn tcp_and_udp_through_the_vip_from_the_client_netns_v4_and_v6() {
    require_root();
    let mut t = Topology::new("xtopo").unwrap();
    for (id, ip4, ip6) in [
        ("a", "198.18.2.2", "fd00:b1::2"),
        ("b", "198.18.2.3", "fd00:b1::3"),
    ] {
        t.backends
            .spawn_testsrv(
                id,
                &[&format!("{ip4}:7000"), &format!("[{ip6}]:7000")],
                &[&format!("{ip4}:7001"), &format!("[{ip6}]:7001")],
            )
            .unwrap();
    }
    let agent = start_agent(
        &mut t,
        "vips:
  - vip: 11.0.0.1:80
    backends: [198.18.2.2:7000, 198.18.2.3:7000]
  - vip: 11.0.0.1:53
    protocol: udp
    backends: [198.18.2.2:7001, 198.18.2.3:7001]
  - vip: '[fd01:c::1]:80'
    backends: ['[fd00:b1::2]:7000', '[fd00:b1::3]:7000']
  - vip: '[fd01:c::1]:53'
    protocol: udp
    backends: ['[fd00:b1::2]:7001', '[fd00:b1::3]:7001']
",
    );
    for vip in ["11.0.0.1:80", "[fd01:c::1]:80"] {
        let v = t.client.probe(&["tcp", "--to", vip, "-n", "60"]).unwrap();
        assert_eq!(v["errors"], 0, "{vip}: {v}");
        let c = counts(&v);
        assert_eq!(c.values().sum::<u64>(), 60, "{vip}: {v}");
        assert_eq!(c.len(), 2, "60 connections all reached one backend: {v}");
        assert_eq!(
            v["peers"],
            json!([vip]),
            "the client must see the VIP as its peer: {v}"
        );
    }
    for vip in ["11.0.0.1:53", "[fd01:c::1]:53"] {
        for mode in ["connected", "unconnected"] {
            let v = t
                .client
                .probe(&["udp", "--to", vip, "-n", "20", "--mode", mode])
                .unwrap();
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
            .probe(&[
                "udp",
                "--to",
                vip,
                "-n",
                "40",
                "--mode",
                "unconnected",
                "--fresh-socket",
            ])
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
    let per_backend: u64 = tcp4["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["flows"].as_u64().unwrap())
        .sum();
    assert_eq!(per_backend, 60, "{tcp4}");

    // explain runs the loaded program: the answer is one of the backends.
    let out = std::process::Command::new(agent_bin())
        .args([
            "explain",
            "--vip",
            "11.0.0.1:80",
            "--src",
            &format!("{CLIENT_IP4}:45678"),
            "--json",
            "--pin-root",
        ])
        .arg(t.node.pin_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
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
        let mut redis = t.backends.in_netns("redis-server");
        redis
            .args([
                "--bind",
                ip,
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null());
        t.backends.spawn(redis).unwrap();
        let dir = t.backends.workdir().join(ip);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("served by {ip}\n")).unwrap();
        let mut http = t.backends.in_netns("/usr/bin/python3");
        http.args(["-m", "http.server", "8080", "--bind", ip, "--directory"])
            .arg(&dir)
            .stdout(Stdio::null());
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
    );
    // Servers up (checked from the backends netns itself, not through the VIP).
    let deadline = Instant::now() + READY;
    for ip in &BACKEND_IP4[..2] {
        loop {
            let redis = t
                .backends
                .in_netns("redis-cli")
                .args(["-h", ip, "PING"])
                .output()
                .unwrap();
            let http = t
                .backends
                .in_netns("curl")
                .args(["-sf", &format!("http://{ip}:8080/")])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&redis.stdout).contains("PONG") && http.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "servers on {ip} never answered: {redis:?} {http:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut served = std::collections::BTreeSet::new();
    for i in 0..20 {
        // One redis-cli session = one TCP flow = one backend.
        let mut cli = t
            .client
            .in_netns("redis-cli")
            .args(["-h", "11.0.0.2", "-p", "6379"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        cli.stdin
            .take()
            .unwrap()
            .write_all(format!("SET k{i} v{i}\nGET k{i}\nCONFIG GET bind\n").as_bytes())
            .unwrap();
        let out = cli.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
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
    let agent = start_agent(&mut t, &yaml(&BACKEND_IP4[..2]));
    let nbackends = |n: usize| {
        move |v: &Value| {
            row(v, "11.0.0.3:7000", "tcp")["backends"]
                .as_array()
                .map(Vec::len)
                == Some(n)
        }
    };

    // An established connection through the VIP …
    let mut hold = t
        .client
        .in_netns(probe_bin())
        .args(["hold", "--to", "11.0.0.3:7000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = hold.stdin.take().unwrap();
    let mut stdout = BufReader::new(hold.stdout.take().unwrap());
    let mut held = String::new();
    stdout.read_line(&mut held).unwrap();
    let held = held.trim().to_string();
    assert!(held == "a" || held == "b", "hold reached {held:?}");

    // … survives an addition (Maglev may map its 5-tuple elsewhere now; the
    // connection table keeps it where it is).
    agent.rewrite_config(&yaml(&BACKEND_IP4)).unwrap();
    wait_table(&agent, "the addition", nbackends(3));
    for i in 0..5 {
        writeln!(stdin, "after-add-{i}").unwrap();
        let mut echo = String::new();
        stdout.read_line(&mut echo).unwrap();
        assert_eq!(
            echo.trim(),
            format!("after-add-{i}"),
            "the held connection broke after the addition"
        );
    }
    let v = t
        .client
        .probe(&["tcp", "--to", "11.0.0.3:7000", "-n", "90"])
        .unwrap();
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
    wait_table(&agent, "the removal", nbackends(2));
    let v = t
        .client
        .probe(&["tcp", "--to", "11.0.0.3:7000", "-n", "120"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let c = counts(&v);
    assert_eq!(
        c.get(gone),
        None,
        "removed backend {gone} got new flows: {v}"
    );
    assert_eq!(c.values().sum::<u64>(), 120, "{v}");
    // The held connection's backend stayed: it still echoes.
    writeln!(stdin, "after-remove").unwrap();
    let mut echo = String::new();
    stdout.read_line(&mut echo).unwrap();
    assert_eq!(echo.trim(), "after-remove");
    drop(stdin);
    assert!(hold.wait().unwrap().success());
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
    for (id, ip4, ip6) in [
        ("a", "198.18.2.2", "fd00:b1::2"),
        ("b", "198.18.2.3", "fd00:b1::3"),
    ] {
        t.backends
            .spawn_testsrv(
                id,
                &[&format!("{ip4}:7000"), &format!("[{ip6}]:7000")],
                &[&format!("{ip4}:7001")],
            )
            .unwrap();
    }
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
    let agent = Agent::start_with_args(
        &mut t.node,
        "vips:
  - vip: 11.0.0.1:80
    backends: [198.18.2.2:7000, 198.18.2.3:7000]
  - vip: 11.0.0.1:53
    protocol: udp
    backends: [198.18.2.2:7001, 198.18.2.3:7001]
  - vip: '[fd01:c::1]:80'
    backends: ['[fd00:b1::2]:7000', '[fd00:b1::3]:7000']
  - vip: 11.0.0.1:9
    protocol: udp
    backends: [198.18.2.2:9]
",
        &["--xdp-iface", NODE_IN, "--xdp-forward", "fib"],
    )
    .unwrap();
    agent.wait_vips(4, READY).unwrap();
    // TCP and UDP work end to end (TTL, MACs and checksums are checked by the receivers).
    for vip in ["11.0.0.1:80", "[fd01:c::1]:80"] {
        let v = t.client.probe(&["tcp", "--to", vip, "-n", "40"]).unwrap();
        assert_eq!(v["errors"], 0, "{vip}: {v}");
        assert_eq!(counts(&v).len(), 2, "{vip}: {v}");
        assert_eq!(v["peers"], json!([vip]), "{v}");
    }
    let v = t
        .client
        .probe(&[
            "udp",
            "--to",
            "11.0.0.1:53",
            "-n",
            "20",
            "--mode",
            "connected",
        ])
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
    let out = t
        .backends
        .in_netns("nft")
        .args(["list", "chain", "inet", "sink", "pre"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let arrived: u64 = listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        arrived >= 1000,
        "only {arrived} of 2000 datagrams reached the backend"
    );
    assert!(
        via_kernel * 10 < arrived,
        "the kernel forwarded {via_kernel} of {arrived}: XDP did not redirect"
    );
}
