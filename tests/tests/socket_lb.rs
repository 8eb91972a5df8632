//! Socket-level load balancing on the real kernel: the agent loads the cgroup
//! sock_addr hooks into a child cgroup of a private netns, and real clients
//! (l4lb-probe, redis-cli) connect to VIPs that exist nowhere but in the maps.
//! Inside the netns only lo exists: a connect() the hooks fail to rewrite gets
//! ENETUNREACH, never a packet to a real address.
use std::{collections::BTreeMap, process::Command, time::Duration};

use l4lb_tests::{
    Agent, Sandbox, agent_bin, counts, probe_bin, require_root, run,
    table::{backend_total, backends, row},
};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(20);

fn share(c: &BTreeMap<String, u64>, id: &str) -> f64 {
    let total: u64 = c.values().sum();
    *c.get(id).unwrap_or(&0) as f64 * 100.0 / total as f64
}

/// Three test servers (ids a, b, c) on 127.0.0.2-4:7000 (TCP) and :7001 (UDP).
fn three_backends(sb: &mut Sandbox) {
    for (id, ip) in [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")] {
        sb.spawn_testsrv(id, &[&format!("{ip}:7000")], &[&format!("{ip}:7001")])
            .unwrap();
    }
}

/// The (address, weight) backends of TCP VIP `vip` in table `vips`.
fn backends_of(vips: &Value, vip: &str) -> Vec<(String, u64)> {
    backends(row(vips, vip, "tcp"))
}

#[test]
fn tcp_spreads_evenly_over_three_equal_backends() {
    require_root();
    let mut sb = Sandbox::new("spread").unwrap();
    three_backends(&mut sb);
    let agent = Agent::start(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, 127.0.0.3:7000, 127.0.0.4:7000]\n",
    )
    .unwrap();
    agent.wait_vips(1, READY).unwrap();
    // No packet interface: the table serves once the socket hooks are
    // attached, before the packet programs are verified.
    let log = agent.log();
    let early = log
        .find("the socket hooks serve")
        .expect("no early serving line");
    let all = log.find("socket hooks attached").expect("no attach line");
    assert!(early < all, "{log}");
    let v = sb.probe_tcp("11.0.0.1:7000", 300).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let c = counts(&v);
    assert_eq!(c.values().sum::<u64>(), 300, "{v}");
    for id in ["a", "b", "c"] {
        let s = share(&c, id);
        assert!(
            (20.0..=47.0).contains(&s),
            "backend {id} got {s:.1}% of 300: {v}"
        );
    }
    // The client sees the VIP as its peer, not the backend.
    assert_eq!(v["peers"], json!(["11.0.0.1:7000"]), "{v}");
    // Per-VIP and per-backend counters saw every connection.
    let table = agent.vips_json().unwrap();
    assert_eq!(table[0]["connects"], 300, "{table}");
    assert_eq!(backend_total(&table[0], "connects"), 300, "{table}");
}

#[test]
fn weights_three_to_one_and_zero() {
    require_root();
    let mut sb = Sandbox::new("weights").unwrap();
    three_backends(&mut sb);
    let agent = Agent::start(
        &mut sb,
        "vips:
  - vip: 11.0.0.1:7000
    backends: [{addr: 127.0.0.2:7000, weight: 3}, {addr: 127.0.0.3:7000, weight: 1}]
  - vip: 11.0.0.2:7000
    backends: [{addr: 127.0.0.2:7000, weight: 1}, {addr: 127.0.0.3:7000, weight: 0}, {addr: 127.0.0.4:7000, weight: 1}]
  - vip: 11.0.0.3:7000
    backends: [{addr: 127.0.0.2:7000, weight: 0}]
",
    )
    .unwrap();
    agent.wait_vips(3, READY).unwrap();

    let v = sb.probe_tcp("11.0.0.1:7000", 300).unwrap();
    let c = counts(&v);
    assert_eq!(c.values().sum::<u64>(), 300, "{v}");
    let a = share(&c, "a");
    assert!((65.0..=85.0).contains(&a), "weight 3:1 gave a {a:.1}%: {v}");

    let v = sb.probe_tcp("11.0.0.2:7000", 300).unwrap();
    let c = counts(&v);
    assert_eq!(c.get("b"), None, "weight 0 backend got connections: {v}");
    assert_eq!(c.values().sum::<u64>(), 300, "{v}");

    // Only weight-0 backends: new connections are refused (EPERM), never misrouted.
    let v = sb.probe_tcp("11.0.0.3:7000", 5).unwrap();
    assert_eq!(v["errors"], 5, "{v}");
    assert_eq!(v["error_kinds"], json!({"PermissionDenied": 5}), "{v}");
    // The kernel program's aya-log line reaches the agent's log at debug.
    agent.wait_log(
        "has no backend for new connections",
        "the kernel program's log line",
        READY,
    );
}

#[test]
fn redis_cli_through_the_vip() {
    require_root();
    let mut sb = Sandbox::new("redis").unwrap();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        sb.spawn_redis(ip, 6379).unwrap();
    }
    let agent = Agent::start(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:6379\n    backends: [127.0.0.2:6379, 127.0.0.3:6379, 127.0.0.4:6379]\n",
    )
    .unwrap();
    agent.wait_vips(1, READY).unwrap();
    let mut servers_seen = std::collections::BTreeSet::new();
    for i in 0..30 {
        assert_eq!(sb.redis_cli("11.0.0.1", 6379, &["PING"]).trim(), "PONG");
        // SET and GET on one connection (one redis-cli process) land on one backend.
        let out = sb
            .redis_session(
                "11.0.0.1",
                6379,
                &format!("SET k{i} v{i}\nGET k{i}\nCONFIG GET bind\n"),
            )
            .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..2], &["OK", &format!("v{i}")], "{out}");
        servers_seen.insert(lines[3].to_string());
    }
    assert!(
        servers_seen.len() >= 2,
        "30 sessions all hit one server: {servers_seen:?}"
    );
}

#[test]
fn udp_replies_come_from_the_vip() {
    require_root();
    let mut sb = Sandbox::new("udp").unwrap();
    three_backends(&mut sb);
    let agent = Agent::start(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:53\n    protocol: udp\n    backends: [127.0.0.2:7001, 127.0.0.3:7001, 127.0.0.4:7001]\n",
    )
    .unwrap();
    agent.wait_vips(1, READY).unwrap();
    for mode in ["unconnected", "connected"] {
        let v = sb.probe_udp("11.0.0.1:53", 20, &["--mode", mode]).unwrap();
        assert_eq!(v["errors"], 0, "{mode}: {v}");
        assert_eq!(counts(&v).values().sum::<u64>(), 20, "{mode}: {v}");
        assert_eq!(
            v["sources"],
            json!(["11.0.0.1:53"]),
            "{mode}: recvfrom must show the VIP: {v}"
        );
        if mode == "connected" {
            assert_eq!(
                v["peers"],
                json!(["11.0.0.1:53"]),
                "getpeername must show the VIP: {v}"
            );
        }
    }
    // Fresh sockets spread over the backends.
    let v = sb
        .probe_udp(
            "11.0.0.1:53",
            60,
            &["--mode", "unconnected", "--fresh-socket"],
        )
        .unwrap();
    assert!(counts(&v).len() >= 2, "{v}");
    assert_eq!(v["sources"], json!(["11.0.0.1:53"]), "{v}");
}

#[test]
fn ipv6_vip_to_ipv6_backends_tcp_and_udp() {
    require_root();
    let mut sb = Sandbox::new("v6").unwrap();
    sb.add_addr("fd00:b::2/128").unwrap();
    sb.add_addr("fd00:b::3/128").unwrap();
    sb.spawn_testsrv("a", &["[fd00:b::2]:7000"], &["[fd00:b::2]:7001"])
        .unwrap();
    sb.spawn_testsrv("b", &["[fd00:b::3]:7000"], &["[fd00:b::3]:7001"])
        .unwrap();
    let agent = Agent::start(
        &mut sb,
        "vips:
  - vip: '[fd01:c::1]:80'
    backends: ['[fd00:b::2]:7000', '[fd00:b::3]:7000']
  - vip: '[fd01:c::1]:53'
    protocol: udp
    backends: ['[fd00:b::2]:7001', '[fd00:b::3]:7001']
",
    )
    .unwrap();
    agent.wait_vips(2, READY).unwrap();
    let v = sb.probe_tcp("[fd01:c::1]:80", 100).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(counts(&v).len(), 2, "{v}");
    assert_eq!(v["peers"], json!(["[fd01:c::1]:80"]), "{v}");
    for mode in ["unconnected", "connected"] {
        let v = sb
            .probe_udp("[fd01:c::1]:53", 10, &["--mode", mode])
            .unwrap();
        assert_eq!(v["errors"], 0, "{mode}: {v}");
        assert_eq!(v["sources"], json!(["[fd01:c::1]:53"]), "{mode}: {v}");
    }
}

#[test]
fn removed_backend_gets_no_new_connections_and_keeps_its_old_one() {
    require_root();
    let mut sb = Sandbox::new("remove").unwrap();
    three_backends(&mut sb);
    let all = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, 127.0.0.3:7000, 127.0.0.4:7000]\n";
    let agent = Agent::start(&mut sb, all).unwrap();
    agent.wait_vips(1, READY).unwrap();

    // Hold a connection through the VIP and learn which backend it reached.
    let mut hold = sb.hold("11.0.0.1:7000").unwrap();
    let id = hold.backend.clone();
    let ip = match id.as_str() {
        "a" => "127.0.0.2",
        "b" => "127.0.0.3",
        "c" => "127.0.0.4",
        other => panic!("hold reached unknown backend {other:?}"),
    };

    let rest: Vec<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .filter(|i| **i != ip)
        .map(|i| format!("{i}:7000"))
        .collect();
    agent
        .rewrite_config(&format!(
            "vips:\n  - vip: 11.0.0.1:7000\n    backends: [{}]\n",
            rest.join(", ")
        ))
        .unwrap();
    agent.wait_table("the backend removal", READY, |v| {
        backends_of(v, "11.0.0.1:7000").len() == 2
    });

    let v = sb.probe_tcp("11.0.0.1:7000", 500).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let c = counts(&v);
    assert_eq!(
        c.get(&id),
        None,
        "removed backend {id} got new connections: {v}"
    );
    assert_eq!(c.values().sum::<u64>(), 500);

    // The connection opened before the removal still works.
    assert_eq!(hold.echo("still-there").unwrap(), "still-there");
    assert!(hold.finish().unwrap().success());
}

#[test]
fn processes_outside_the_cgroup_and_other_destinations_are_untouched() {
    require_root();
    let mut sb = Sandbox::new("scope").unwrap();
    three_backends(&mut sb);
    let agent = Agent::start(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n",
    )
    .unwrap();
    agent.wait_vips(1, READY).unwrap();

    // Same netns, not in the cgroup: not balanced; the VIP address is routed
    // to l4lb0, which drops the SYNs (the connects time out, nothing leaves).
    let out = sb
        .in_netns(probe_bin())
        .args([
            "tcp",
            "--to",
            "11.0.0.1:7000",
            "-n",
            "3",
            "--timeout-ms",
            "300",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error_kinds"], json!({"TimedOut": 3}), "{v}");

    // In the cgroup: a non-VIP destination and a VIP address on another port go where they were sent.
    let v = sb.probe_tcp("127.0.0.3:7000", 20).unwrap();
    assert_eq!(v["counts"], json!({"b": 20}), "{v}");
    let v = sb
        .probe(&[
            "tcp",
            "--to",
            "11.0.0.1:7999",
            "-n",
            "3",
            "--timeout-ms",
            "300",
        ])
        .unwrap();
    assert_eq!(v["error_kinds"], json!({"TimedOut": 3}), "{v}");
    // A non-VIP address outside the sandbox stays unroutable.
    let v = sb
        .probe(&[
            "tcp",
            "--to",
            "11.0.0.9:7000",
            "-n",
            "1",
            "--timeout-ms",
            "300",
        ])
        .unwrap();
    assert_eq!(v["error_kinds"], json!({"NetworkUnreachable": 1}), "{v}");
    // A UDP VIP is not a TCP VIP.
    let v = sb
        .probe_udp("11.0.0.1:7000", 1, &["--timeout-ms", "300"])
        .unwrap();
    assert_eq!(v["errors"], 1, "{v}");
}

#[test]
fn config_errors_name_the_entry_and_a_bad_reload_keeps_the_table() {
    require_root();
    let cases: &[(&str, &str)] = &[
        (
            "vips:\n  - vip: 11.0.0.1:70000\n    backends: []\n",
            "vips[0]",
        ),
        ("vips:\n  - vip: 11.0.0.1:0\n    backends: []\n", "vips[0]"),
        (
            "vips:\n  - vip: 11.0.0.1:80\n    backends: [127.0.0.1:80]\n  - vip: 11.0.0.1:80\n    backends: [nonsense]\n",
            "vips[1]",
        ),
        (
            "vips:\n  - vip: 11.0.0.1:80\n    backends: []\n  - vip: 11.0.0.1:80\n    backends: []\n",
            "vips[1]",
        ),
        (
            "vips:\n  - vip: 11.0.0.1:80\n    protcol: tcp\n    backends: []\n",
            "vips[0]",
        ),
        (
            "vips:\n  - vip: 11.0.0.1:80\n    backends: [{addr: 127.0.0.1:80, weight: 101}]\n",
            "weight",
        ),
        (
            "vips:\n  - vip: 11.0.0.1:80\n    backends: [{addr: 127.0.0.1:80, weight: 1}, {addr: '[::1]:80'}]\n",
            "vips[0]",
        ),
    ];
    let mut sb = Sandbox::new("config").unwrap();
    for (i, (yaml, needle)) in cases.iter().enumerate() {
        let path = sb.workdir().join(format!("bad-{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        for sub in ["check", "run"] {
            let mut cmd = sb.in_netns(agent_bin());
            cmd.arg(sub).arg("--config").arg(&path);
            if sub == "run" {
                cmd.arg("--cgroup")
                    .arg(sb.cgroup())
                    .arg("--pin-root")
                    .arg(sb.pin_root())
                    .env("L4LB_FORBID_ROOT_CGROUP", "1");
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{sub} accepted case {i}: {yaml}");
            assert!(
                err.contains(needle),
                "{sub} case {i}: error does not name {needle:?}: {err}"
            );
        }
    }
    assert!(
        !sb.pin_root().exists(),
        "a bad config must not load anything"
    );

    three_backends(&mut sb);
    let good = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.3:7000]\n";
    let mut agent = Agent::start(&mut sb, good).unwrap();
    let before = agent.wait_vips(2, READY).unwrap();
    agent.rewrite_config(cases[2].0).unwrap();
    agent.sighup();
    agent.wait_log(
        "keeping the previous table",
        "an error logged for the bad reload",
        READY,
    );
    assert!(agent.is_running());
    assert_eq!(
        strip_counters(agent.vips_json().unwrap()),
        strip_counters(before.clone())
    );
    let v = sb.probe_tcp("11.0.0.1:7000", 5).unwrap();
    assert_eq!(v["counts"], json!({"a": 5}), "{v}");

    // A good reload changes only the service that changed.
    agent
        .rewrite_config("vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.4:7000]\n")
        .unwrap();
    let after = agent.wait_table("the good reload", READY, |v| {
        backends_of(v, "11.0.0.2:7000") == vec![("127.0.0.4:7000".into(), 1)]
    });
    let rev = |v: &Value, vip: &str| row(v, vip, "tcp")["revision"].clone();
    assert_eq!(
        rev(&after, "11.0.0.1:7000"),
        rev(&before, "11.0.0.1:7000"),
        "unchanged service was rewritten"
    );
    assert_ne!(rev(&after, "11.0.0.2:7000"), rev(&before, "11.0.0.2:7000"));
}

fn strip_counters(mut v: Value) -> Value {
    for row in v.as_array_mut().unwrap() {
        let row = row.as_object_mut().unwrap();
        for k in ["connects", "sendmsgs", "no_backend"] {
            row.remove(k);
        }
        for b in row["backends"].as_array_mut().unwrap() {
            let b = b.as_object_mut().unwrap();
            b.remove("connects");
            b.remove("sendmsgs");
        }
    }
    v
}

#[test]
fn pinned_maps_dump_as_typed_json_and_the_cli_lists_them() {
    require_root();
    let mut sb = Sandbox::new("inspect").unwrap();
    let mut agent = Agent::start(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:6379\n    backends: [127.0.0.2:6379, {addr: 127.0.0.3:6379, weight: 2}]\n  - name: /redis:6379\n    backends: ['[::1]:7002']\n",
    )
    .unwrap();
    agent.wait_vips(2, READY).unwrap();

    let map = sb.pin_root().join("L4LB_SERVICES");
    let out = run(Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(&map))
    .unwrap();
    let dump: Value = serde_json::from_str(&out).unwrap();
    let entries = dump.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{dump}");
    for e in entries {
        let f = &e["formatted"];
        assert!(
            f["key"]["port"].is_u64() && f["key"]["proto"] == 6,
            "not typed: {e}"
        );
        assert!(
            f["value"]["slot_count"].is_u64() && f["value"]["revision"].is_u64(),
            "not typed: {e}"
        );
    }

    // The named VIP got its IPv6 address by dcos-net's rule, in fd01:c::/64.
    let table = agent.vips_json().unwrap();
    let v6 = table
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vip"].as_str().unwrap().starts_with("[fd01:c::"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(v6["backends"][0]["addr"], "[::1]:7002");

    // `vips` reads the pinned maps: also after the agent is gone.
    let pin = sb.pin_root().to_path_buf();
    agent
        .kill_no_teardown(libc::SIGTERM, Duration::from_secs(10))
        .unwrap();
    let text = run(sb
        .in_netns(agent_bin())
        .args(["vips", "--pin-root"])
        .arg(&pin))
    .unwrap();
    assert!(
        text.contains("11.0.0.1:6379")
            && text.contains("127.0.0.3:6379")
            && text.contains("weight   2"),
        "{text}"
    );
    run(sb
        .in_netns(agent_bin())
        .args(["teardown", "--pin-root"])
        .arg(&pin))
    .unwrap();
    assert!(!pin.join("L4LB_SERVICES").exists());
}

/// getpeername shows the VIP for as long as the socket lives, not only while
/// it is established: after the client shut its write side (FIN_WAIT, the
/// connection no longer live for `sock_ops`) the mark is still there.
#[test]
fn getpeername_shows_the_vip_on_a_half_closed_socket() {
    require_root();
    let mut sb = Sandbox::new("halfclose").unwrap();
    // The echo's delay keeps the backend's side open while the probe looks.
    let slow_echo = ["--reply-delay-ms", "200"];
    sb.spawn_testsrv_with("a", &["127.0.0.2:7000"], &[], &slow_echo)
        .unwrap();
    let agent = Agent::start(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n",
    )
    .unwrap();
    agent.wait_vips(1, READY).unwrap();
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "5", "--half-close"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(counts(&v).values().sum::<u64>(), 5, "{v}");
    assert_eq!(v["peers"], json!(["11.0.0.1:7000"]), "{v}");
    assert_eq!(
        v["peers_half_closed"],
        json!(["11.0.0.1:7000"]),
        "getpeername on a half-closed socket must still show the VIP: {v}"
    );
}
