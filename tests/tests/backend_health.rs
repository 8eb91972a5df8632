//! Per-node backend health on the real kernel: the `sock_ops` program watches
//! the handshakes connect4 sends to each backend, and p2c routes around a
//! backend whose SYNs vanish — with no control-plane event — while `random`
//! keeps sending it its share. Backends are test servers on 127.0.0.2-4 in the
//! sandbox netns; the fault is an nft rule in that netns dropping SYNs to one.
use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{Agent, Sandbox, counts, probe_bin, require_root, run, table::row};
use serde_json::Value;

const READY: Duration = Duration::from_secs(20);
const VIP: &str = "11.0.0.1:7000";
const TABLE: &str = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, 127.0.0.3:7000, 127.0.0.4:7000]\n";
/// The backend the fault hits (testsrv id `c`).
const DEAD: &str = "127.0.0.4:7000";

fn three_backends(sb: &mut Sandbox, slow_c: Option<u64>) {
    for (id, ip) in [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")] {
        let delay = slow_c.filter(|_| id == "c").map(|d| d.to_string());
        let extra: Vec<&str> = match &delay {
            Some(d) => vec!["--accept-delay-ms", d],
            None => vec![],
        };
        sb.spawn_testsrv_with(id, &[&format!("{ip}:7000")], &[], &extra)
            .unwrap();
    }
}

fn start(sb: &mut Sandbox, policy: &str) -> Agent {
    start_probing(sb, policy, "agent")
}

fn start_probing(sb: &mut Sandbox, policy: &str, probes: &str) -> Agent {
    let args = ["--lb-policy", policy, "--health-probes", probes];
    let agent = Agent::start_with_args(sb, TABLE, &args).unwrap();
    agent.wait_vips(1, READY).unwrap();
    agent
}

/// The backend `addr` of the VIP's row in `vips --json`.
fn backend<'a>(table: &'a Value, addr: &str) -> &'a Value {
    row(table, VIP, "tcp")["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in {table}"))
}

fn health_u64(b: &Value, field: &str) -> u64 {
    b["health"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no health.{field} in {b}"))
}

/// Drops SYNs to `DEAD` in the sandbox netns (its input hook: the SYN leaves
/// the client and vanishes, as toward a dead node).
fn drop_syns(sb: &Sandbox) {
    let rules = "table inet l4lbfault {\n  chain syns {\n    type filter hook input priority 0;\n    \
                 ip daddr 127.0.0.4 tcp dport 7000 tcp flags & (syn | ack) == syn drop\n  }\n}\n";
    let path = sb.workdir().join("fault.nft");
    std::fs::write(&path, rules).unwrap();
    run(sb.in_netns("nft").arg("-f").arg(&path)).unwrap();
}

fn heal(sb: &Sandbox) {
    run(sb
        .in_netns("nft")
        .args(["delete", "table", "inet", "l4lbfault"]))
    .unwrap();
}

/// Paced concurrent load through the VIP in the cgroup, `seconds` long.
fn load(sb: &Sandbox, seconds: f64) -> std::process::Child {
    sb.in_cgroup(probe_bin())
        .args(["tcp", "--to", VIP, "-n", "5000", "--parallel", "4"])
        .args(["--interval-ms", "20", "--timeout-ms", "400"])
        .args(["--seconds", &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One sample of the dead backend while the fault lasts.
struct Sample {
    at: Duration,
    /// connects sent to it that were not its probes
    sent: u64,
    state: String,
}

/// What a policy did around the fault.
struct Outcome {
    samples: Vec<Sample>,
    /// The last time (after the fault) a non-probe connect went to the dead backend.
    last_sent: Option<Duration>,
    /// Its non-probe connects from 1 s after the fault to the end, and the VIP's.
    sent_late: u64,
    vip_late: u64,
}

/// Fault on `DEAD` while paced load runs; samples it every 50 ms for 4 s.
fn fault_under_load(sb: &Sandbox, agent: &Agent) -> Outcome {
    let mut load = load(sb, 6.0);
    thread::sleep(Duration::from_millis(1000));
    drop_syns(sb);
    let fault = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let (mut late_base, mut vip_base) = (None, 0);
    let mut vip_now = 0;
    while fault.elapsed() < Duration::from_secs(4) {
        let t = agent.vips_json().unwrap();
        let b = backend(&t, DEAD);
        let sent = b["connects"].as_u64().unwrap() - health_u64(b, "probes");
        vip_now = row(&t, VIP, "tcp")["connects"].as_u64().unwrap();
        let at = fault.elapsed();
        if late_base.is_none() && at >= Duration::from_secs(1) {
            late_base = Some(sent);
            vip_base = vip_now;
        }
        samples.push(Sample {
            at,
            sent,
            state: b["health"]["state"].as_str().unwrap().to_string(),
        });
        thread::sleep(Duration::from_millis(50));
    }
    let _ = load.kill();
    let _ = load.wait();
    // Sampled every ~50 ms: the sample that first shows a connect bounds its time.
    let last_sent = samples
        .windows(2)
        .filter(|w| w[1].sent > w[0].sent)
        .map(|w| w[1].at)
        .next_back();
    let end = samples.last().unwrap().sent;
    Outcome {
        last_sent,
        sent_late: end - late_base.unwrap(),
        vip_late: vip_now - vip_base,
        samples,
    }
}

/// `explain`: where the XDP program sends a TCP packet from 198.18.0.9:`port`
/// to the VIP, and whether the flow was tracked; `live` records the flow.
fn xdp_pick(sb: &Sandbox, port: u16, live: bool) -> (String, bool) {
    let src = format!("198.18.0.9:{port}");
    let mut cmd = sb.in_netns(l4lb_tests::agent_bin());
    cmd.args([
        "explain",
        "--vip",
        VIP,
        "--src",
        &src,
        "--json",
        "--pin-root",
    ])
    .arg(sb.pin_root());
    if live {
        cmd.arg("--live");
    }
    let e: Value = serde_json::from_str(&run(&mut cmd).unwrap()).unwrap();
    let dest = e["destination"].as_str().unwrap().to_string();
    (dest, e["tracked"].as_bool().unwrap())
}

fn timeline(o: &Outcome) -> String {
    o.samples
        .iter()
        .map(|s| format!("{}ms:{}:{}", s.at.as_millis(), s.sent, s.state))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Three backends under p2c with `probes`; SYNs to `DEAD` vanish under
/// load: no new connect goes to it after ≤ 1 s, new XDP flows skip it, it
/// ends down. Returns the agent with the fault still on.
fn fault_and_route_around(sb: &mut Sandbox, probes: &str) -> Agent {
    three_backends(sb, None);
    let agent = start_probing(sb, "p2c", probes);
    let sb = &*sb;
    // Warm up: every backend has completed handshakes and an average.
    let v = sb.probe_tcp(VIP, 90).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let t = agent.vips_json().unwrap();
    let mut handshakes = 0;
    for addr in ["127.0.0.2:7000", "127.0.0.3:7000", DEAD] {
        let b = backend(&t, addr);
        assert_eq!(b["health"]["state"], "up", "{b}");
        assert!(
            b["health"]["handshake_ewma_us"].as_f64().unwrap() > 0.0,
            "{b}"
        );
        assert_eq!(health_u64(b, "live_connections"), 0, "closed: {b}");
        assert_eq!(
            health_u64(b, "handshakes"),
            b["connects"].as_u64().unwrap(),
            "{b}"
        );
        handshakes += health_u64(b, "handshakes");
    }
    assert_eq!(handshakes, 90, "{t}");

    // XDP: two flows whose Maglev pick is the doomed backend, one of them
    // already tracked (a received packet recorded it).
    let ports: Vec<u16> = (40000..40400)
        .filter(|p| xdp_pick(sb, *p, false).0 == DEAD)
        .take(2)
        .collect();
    assert_eq!(ports.len(), 2, "no flow hashes to {DEAD}");
    assert_eq!(xdp_pick(sb, ports[0], true).0, DEAD);

    let o = fault_under_load(sb, &agent);
    let line = timeline(&o);
    // New XDP flows skip the backend down for this node; the tracked one keeps it.
    assert_eq!(xdp_pick(sb, ports[0], false), (DEAD.to_string(), true));
    let (fresh, tracked) = xdp_pick(sb, ports[1], false);
    assert!(
        fresh != DEAD && !tracked,
        "new XDP flow still sent to {fresh}"
    );
    eprintln!(
        "p2c: last connect to the dead backend {:?} after the fault; timeline {line}",
        o.last_sent
    );
    let last = o.last_sent.unwrap_or_default();
    assert!(
        last <= Duration::from_millis(1000),
        "p2c kept sending new connects to {DEAD} {last:?} after its SYNs vanished: {line}"
    );
    assert_eq!(o.sent_late, 0, "{line}");
    assert!(
        o.vip_late > 100,
        "the load went on: {} connects",
        o.vip_late
    );
    let t = agent.vips_json().unwrap();
    let b = backend(&t, DEAD);
    assert!(
        matches!(b["health"]["state"].as_str(), Some("down" | "probe-due")),
        "{b}"
    );
    // Taken down by its failed handshakes (one is enough once it stalled).
    assert!(health_u64(b, "handshake_failures") >= 1, "{b}");
    let r = row(&t, VIP, "tcp");
    assert!(r["p2c_avoided"].as_u64().unwrap() > 0, "{r}");
    agent
}

#[test]
fn p2c_routes_around_a_backend_whose_syns_vanish_and_the_agents_probe_brings_it_back() {
    require_root();
    let mut sb = Sandbox::new("health-p2c").unwrap();
    let agent = fault_and_route_around(&mut sb, "agent");
    let b = backend(&agent.vips_json().unwrap(), DEAD).clone();
    let failed_before = health_u64(&b, "agent_probes_failed");
    assert!(
        health_u64(&b, "agent_probes") >= 1,
        "probed while down: {b}"
    );
    // Heal with no client load at all: only the agent's probe can see it answer.
    heal(&sb);
    let healed = Instant::now();
    let t = agent.wait_table(
        "the agent's probe bringing the backend back",
        Duration::from_secs(40),
        |t| t.is_array() && backend(t, DEAD)["health"]["state"] == "up",
    );
    eprintln!(
        "p2c: back up {:?} after the fault was removed",
        healed.elapsed()
    );
    let b = backend(&t, DEAD);
    assert!(health_u64(b, "agent_probes_ok") >= 1, "{b}");
    assert!(health_u64(b, "agent_probes_failed") >= failed_before, "{b}");
    // No client connection was ever a probe, and none went to it while down.
    assert_eq!(health_u64(b, "probes"), 0, "{b}");
    assert_eq!(row(&t, VIP, "tcp")["p2c_probes"], 0, "{t}");
    let (code, metrics) = sb.agent_http("/metrics");
    assert_eq!(code, "200");
    let ok = format!("l4lb_backend_agent_probes_total{{backend=\"{DEAD}\",result=\"ok\"}} 1");
    assert!(metrics.contains(&ok), "{ok} not in:\n{metrics}");
    assert!(metrics.contains("l4lb_health_probes_total{result=\"sent\"}"));
    // Connections return to it.
    let v = sb.probe_tcp(VIP, 90).unwrap();
    assert!(counts(&v).get("c").copied().unwrap_or(0) > 0, "{v}");
}

#[test]
fn p2c_routes_around_a_backend_whose_syns_vanish_and_a_connection_probe_brings_it_back() {
    require_root();
    let mut sb = Sandbox::new("health-p2c-conn").unwrap();
    let agent = fault_and_route_around(&mut sb, "connection");
    let t = agent.vips_json().unwrap();
    let b = backend(&t, DEAD);
    assert_eq!(
        health_u64(b, "agent_probes"),
        0,
        "the agent does not probe: {b}"
    );
    // Heal: with light load, a probe (one connect) finds it answering again.
    heal(&sb);
    let probes_before = health_u64(b, "probes");
    let mut light = sb
        .in_cgroup(probe_bin())
        .args(["tcp", "--to", VIP, "-n", "400", "--interval-ms", "50"])
        .args(["--timeout-ms", "400", "--seconds", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let healed = Instant::now();
    let t = agent.wait_table(
        "a probe bringing the backend back",
        Duration::from_secs(20),
        |t| t.is_array() && backend(t, DEAD)["health"]["state"] == "up",
    );
    let _ = light.kill();
    let _ = light.wait();
    eprintln!(
        "p2c: back up {:?} after the fault was removed",
        healed.elapsed()
    );
    assert!(
        health_u64(backend(&t, DEAD), "probes") > probes_before,
        "{t}"
    );
    let v = sb.probe_tcp(VIP, 90).unwrap();
    assert!(counts(&v).get("c").copied().unwrap_or(0) > 0, "{v}");
}

#[test]
fn random_keeps_sending_the_dead_backend_its_share_but_sees_it_down() {
    require_root();
    let mut sb = Sandbox::new("health-rnd").unwrap();
    three_backends(&mut sb, None);
    let agent = start(&mut sb, "random");
    sb.probe_tcp(VIP, 30).unwrap();
    let port = (40000..40400)
        .find(|p| xdp_pick(&sb, *p, false).0 == DEAD)
        .expect("a flow hashing to the doomed backend");
    let o = fault_under_load(&sb, &agent);
    let line = timeline(&o);
    // XDP keeps the plain Maglev pick under `random`.
    assert_eq!(xdp_pick(&sb, port, false), (DEAD.to_string(), false));
    eprintln!(
        "random: {} of {} late connects to the dead backend; {line}",
        o.sent_late, o.vip_late
    );
    let share = o.sent_late as f64 / o.vip_late.max(1) as f64;
    assert!(
        o.sent_late >= 5 && share > 0.15,
        "random must keep the dead backend's share: {} of {}: {line}",
        o.sent_late,
        o.vip_late
    );
    // The observation runs under either policy.
    let t = agent.vips_json().unwrap();
    let b = backend(&t, DEAD);
    assert!(
        matches!(
            b["health"]["state"].as_str(),
            Some("down" | "probe-due" | "suspect")
        ),
        "{b}"
    );
    assert_eq!(row(&t, VIP, "tcp")["p2c_avoided"], 0, "{t}");
}

/// Shares of 400 connections from 8 concurrent clients when `c` accepts one
/// connection per 40 ms.
fn slow_backend_share(policy: &str) -> (f64, Value) {
    let mut sb = Sandbox::new(&format!("health-slow-{policy}")).unwrap();
    three_backends(&mut sb, Some(40));
    let agent = start(&mut sb, policy);
    let v = sb
        .probe(&[
            "tcp",
            "--to",
            VIP,
            "-n",
            "400",
            "--parallel",
            "8",
            "--timeout-ms",
            "5000",
        ])
        .unwrap();
    assert_eq!(v["errors"], 0, "{policy}: {v}");
    let c = counts(&v);
    let total: u64 = c.values().sum();
    let share = *c.get("c").unwrap_or(&0) as f64 / total as f64;
    // Every connection closed: live counts go back to 0.
    let t = agent.wait_table("live connections back to 0", Duration::from_secs(5), |t| {
        t.is_array()
            && ["127.0.0.2:7000", "127.0.0.3:7000", DEAD]
                .iter()
                .all(|a| backend(t, a)["health"]["live_connections"] == 0)
    });
    // …and every socket's mark left with it (a free slot's cookie is 0).
    let held = socket_marks(&sb);
    assert_eq!(held, 0, "{policy}: {held} socket marks left");
    (share, t)
}

/// Slots of the pinned `L4LB_SOCKS` array that hold a socket's mark.
fn socket_marks(sb: &Sandbox) -> usize {
    use aya::maps::{Array, Map, MapData};
    let data = MapData::from_pin(sb.pin_root().join("L4LB_SOCKS")).unwrap();
    let slots: Array<MapData, l4lb_common::SockSlot> = Array::try_from(Map::Array(data)).unwrap();
    slots
        .iter()
        .filter(|s| s.as_ref().is_ok_and(|s| s.cookie != 0))
        .count()
}

/// Takes every slot of the pinned `L4LB_SOCKS` array for a live socket of
/// none of ours (established: never stale), so no new mark finds a slot.
fn fill_socket_marks(sb: &Sandbox) {
    use aya::maps::{Array, Map, MapData};
    let data = MapData::from_pin(sb.pin_root().join("L4LB_SOCKS")).unwrap();
    let mut slots: Array<MapData, l4lb_common::SockSlot> =
        Array::try_from(Map::Array(data)).unwrap();
    let mut taken = l4lb_common::SockSlot::default();
    taken.mark.flags = l4lb_common::MARK_ESTABLISHED;
    for i in 0..l4lb_common::MAX_SOCKS {
        // Cookies far above any a test socket gets (they count up from 1).
        taken.cookie = (1 << 62) | u64::from(i);
        slots.set(i, taken, 0).unwrap();
    }
}

#[test]
fn connects_that_find_every_mark_slot_taken_are_balanced_and_counted() {
    require_root();
    let mut sb = Sandbox::new("health-unmarked").unwrap();
    three_backends(&mut sb, None);
    let agent = start(&mut sb, "p2c");
    let before = sb.probe(&["tcp", "--to", VIP, "-n", "10"]).unwrap();
    assert_eq!(before["errors"], 0, "{before}");
    let t = agent.vips_json().unwrap();
    assert_eq!(row(&t, VIP, "tcp")["unmarked"], 0, "{t}");

    fill_socket_marks(&sb);
    let full = sb.probe(&["tcp", "--to", VIP, "-n", "20"]).unwrap();
    assert_eq!(full["errors"], 0, "still balanced: {full}");
    let t = agent.vips_json().unwrap();
    let r = row(&t, VIP, "tcp");
    assert_eq!(r["connects"], 30, "{t}");
    assert_eq!(r["unmarked"], 20, "{t}");
    let (code, metrics) = sb.agent_http("/metrics");
    assert_eq!(code, "200");
    let needle = "l4lb_vip_unmarked_connects_total{vip=\"11.0.0.1:7000\",proto=\"tcp\"} 20";
    assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    let text = run(Command::new(l4lb_tests::agent_bin())
        .args(["vips", "--pin-root"])
        .arg(sb.pin_root()))
    .unwrap();
    assert!(text.contains("20 connects unmarked"), "{text}");
}

#[test]
fn p2c_sends_a_slow_to_accept_backend_fewer_connections_than_random() {
    require_root();
    let (random, _) = slow_backend_share("random");
    let (p2c, t) = slow_backend_share("p2c");
    eprintln!("slow backend's share: random {random:.3}, p2c {p2c:.3}");
    assert!(
        random > 0.2,
        "random should give it about a third: {random:.3}"
    );
    assert!(
        p2c < random / 2.0,
        "p2c gave the slow backend {p2c:.3} (random {random:.3}); table {t}"
    );
}

#[test]
fn explain_names_the_policy_and_each_backends_state() {
    require_root();
    let mut sb = Sandbox::new("health-explain").unwrap();
    three_backends(&mut sb, None);
    let agent = start(&mut sb, "p2c");
    sb.probe_tcp(VIP, 30).unwrap();
    let out = run(sb
        .in_netns(l4lb_tests::agent_bin())
        .args([
            "explain",
            "--vip",
            VIP,
            "--src",
            "198.18.0.9:40000",
            "--json",
            "--pin-root",
        ])
        .arg(sb.pin_root()))
    .unwrap();
    let e: Value = serde_json::from_str(&out).unwrap();
    let s = &e["socket"];
    assert_eq!(s["policy"], "p2c", "{e}");
    assert_eq!(s["health_probes"], "agent", "{e}");
    assert_eq!(s["candidates"].as_array().unwrap().len(), 3, "{e}");
    assert!(
        s["verdict"].as_str().unwrap().contains("lowest cost"),
        "{e}"
    );
    let text = run(Command::new(l4lb_tests::agent_bin())
        .args(["vips", "--pin-root"])
        .arg(sb.pin_root()))
    .unwrap();
    assert!(
        text.contains("TCP connect() policy: p2c; down backends probed by: agent")
            && text.contains("up"),
        "{text}"
    );
    let (code, metrics) = sb.agent_http("/metrics");
    assert_eq!(code, "200");
    for needle in [
        "l4lb_backend_state{backend=\"127.0.0.2:7000\",state=\"up\"} 1",
        "l4lb_backend_handshake_ewma_seconds{backend=\"127.0.0.4:7000\"}",
        "l4lb_backend_live_connections{backend=\"127.0.0.3:7000\"} 0",
        "l4lb_backend_handshake_failures_total{backend=\"127.0.0.2:7000\"} 0",
        "l4lb_vip_p2c_fallbacks_total{vip=\"11.0.0.1:7000\",proto=\"tcp\"} 0",
    ] {
        assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    }
    drop(agent);
}

/// One of two backends down: random draws alone would land every one of
/// p2c's eight draws on it for one connect in 256 (and XDP's five for one
/// new flow in 32); the walk over neighbouring slots finds the up one.
#[test]
fn with_one_of_two_backends_down_no_new_connect_or_xdp_flow_goes_to_it() {
    require_root();
    let mut sb = Sandbox::new("health-pair").unwrap();
    for (id, ip) in [("a", "127.0.0.2"), ("c", "127.0.0.4")] {
        sb.spawn_testsrv_with(id, &[&format!("{ip}:7000")], &[], &[])
            .unwrap();
    }
    let pair = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, 127.0.0.4:7000]\n";
    let args = ["--lb-policy", "p2c", "--health-probes", "agent"];
    let agent = Agent::start_with_args(&mut sb, pair, &args).unwrap();
    agent.wait_vips(1, READY).unwrap();
    assert_eq!(sb.probe_tcp(VIP, 20).unwrap()["errors"], 0);
    drop_syns(&sb);
    let mut l = load(&sb, 3.0);
    agent.wait_table("the backend down", Duration::from_secs(5), |t| {
        t.is_array() && backend(t, DEAD)["health"]["state"] == "down"
    });
    let _ = l.kill();
    let _ = l.wait();
    let before = backend(&agent.vips_json().unwrap(), DEAD)["connects"]
        .as_u64()
        .unwrap();

    let v = sb
        .probe(&["tcp", "--to", VIP, "-n", "2000", "--timeout-ms", "300"])
        .unwrap();
    let t = agent.vips_json().unwrap();
    let b = backend(&t, DEAD);
    assert!(
        matches!(b["health"]["state"].as_str(), Some("down" | "probe-due")),
        "{b}"
    );
    let sent = b["connects"].as_u64().unwrap() - before;
    assert_eq!((sent, &v["errors"]), (0, &Value::from(0)), "{v}\n{b}");
    assert_eq!(row(&t, VIP, "tcp")["p2c_fallbacks"], 0, "{t}");

    let to_dead = (40000..40256u16)
        .filter(|p| xdp_pick(&sb, *p, false).0 == DEAD)
        .count();
    assert_eq!(to_dead, 0, "new XDP flows sent to the down backend");
}

/// A handshake the backend refuses (RST to the SYN: nothing listens) is a
/// failure seen only as the socket's move to CLOSE; it leaves flight, and no
/// RTT sample, live connection or lifetime comes of it. A completed one
/// beside it gets an RTT sample.
#[test]
fn a_refused_handshake_counts_as_failed_and_leaves_flight() {
    require_root();
    let mut sb = Sandbox::new("health-refused").unwrap();
    sb.spawn_testsrv_with("a", &["127.0.0.2:7000"], &[], &[])
        .unwrap();
    let pair = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, 127.0.0.4:7000]\n";
    let args = ["--lb-policy", "random", "--health-probes", "agent"];
    let agent = Agent::start_with_args(&mut sb, pair, &args).unwrap();
    agent.wait_vips(1, READY).unwrap();
    let v = sb.probe_tcp(VIP, 40).unwrap();
    let t = agent.wait_table("every handshake out of flight", READY, |t| {
        t.is_array()
            && ["127.0.0.2:7000", DEAD].iter().all(|a| {
                let h = &backend(t, a)["health"];
                h["handshakes_in_flight"] == 0 && h["live_connections"] == 0
            })
    });
    let (up, refused) = (backend(&t, "127.0.0.2:7000"), backend(&t, DEAD));
    let sent = refused["connects"].as_u64().unwrap();
    assert!(sent > 0, "random sent nothing to {DEAD}: {t}");
    assert_eq!(v["errors"].as_u64(), Some(sent), "{v}\n{t}");
    assert_eq!(health_u64(refused, "handshake_failures"), sent, "{refused}");
    assert_eq!(health_u64(refused, "handshakes"), 0, "{refused}");
    assert_eq!(refused["health"]["handshake_ewma_us"], 0.0, "{refused}");
    assert_eq!(health_u64(up, "handshake_failures"), 0, "{up}");
    assert_eq!(
        health_u64(up, "handshakes"),
        up["connects"].as_u64().unwrap(),
        "{up}"
    );
    let rtt = up["health"]["handshake_ewma_us"].as_f64().unwrap();
    assert!(rtt > 0.0 && rtt < 1_000_000.0, "{up}");
}
