//! The simulated cluster (`l4lb_tests::cluster`): three nodes, each with its
//! own agent following one fake Marathon over a bridge. Every node resolves
//! and reaches every VIP; a node that dies is routed around once Marathon
//! says so (the whole curve is printed); the faults come and go; nothing of
//! a cluster is left after drop.
use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use l4lb_tests::{
    Cluster, ClusterSpec, VipSpec,
    cluster::{DeathSpec, Kill, StreamSpec, backend_id, fabric},
    counts, require_root, wait,
};

const NODES: usize = 3;

#[test]
fn every_node_resolves_and_reaches_every_vip() {
    require_root();
    let vips = vec![
        VipSpec::new("web", 80, 7000),
        VipSpec::new("api", 8080, 7001),
    ];
    let c = Cluster::new(ClusterSpec::new("clu-reach", NODES).vips(vips.clone())).unwrap();
    let all: BTreeSet<String> = (0..NODES).map(backend_id).collect();
    for node in c.nodes() {
        for (k, vip) in vips.iter().enumerate() {
            let addr = c.vip_addr(k);
            let answers = wait::until(&vip.dns_name(), Duration::from_secs(10), || {
                node.resolve(vip).and_then(|a| {
                    if a.is_empty() {
                        Err("no answer".into())
                    } else {
                        Ok(a)
                    }
                })
            });
            assert_eq!(answers, vec![addr.ip().to_string()], "node {}", node.index);
            let ids: Vec<&str> = all.iter().map(String::as_str).collect();
            let seen = node.sb.reach_each(&addr.to_string(), &ids, 90).unwrap();
            assert_eq!(seen, all, "node {} → {}", node.index, vip.label());
        }
    }
}

/// What works today: a node's link goes down, Marathon marks its tasks
/// unreachable 1.5 s later, and every other node stops choosing its
/// backend once that event is applied. Before the event a share of new
/// connections fail (the dead backend is still chosen); after it none do.
/// Revived, the node is chosen again.
#[test]
fn node_death_is_routed_around_once_marathon_says_so() {
    require_root();
    let c = Cluster::new(ClusterSpec::new("clu-death", NODES)).unwrap();
    let dead = NODES - 1;
    let run = c.node_death(&DeathSpec::new(dead, &[0, 1])).unwrap();
    let event = run.event_ms.unwrap();
    for ((i, curve), applied) in run.curves.iter().zip(&run.applied_ms) {
        let applied = applied.unwrap();
        eprintln!(
            "node {i}: link down at 0, event at {event:.0} ms, applied (seen) at {applied:.0} ms\n{}",
            curve.render()
        );
        let before: BTreeSet<&str> = curve
            .between(f64::MIN, 0.0)
            .filter_map(|c| c.backend.as_deref())
            .collect();
        assert!(
            before.contains(backend_id(dead).as_str()),
            "node {i}: {before:?}"
        );
        assert_eq!(
            curve.tally(f64::MIN, 0.0).2,
            0,
            "node {i}: failures before the link went down"
        );
        let (_, _, failed) = curve.tally(0.0, event);
        assert!(
            failed > 0,
            "node {i}: the dead backend was never chosen before the event"
        );
        let (ok, stalled, failed) = curve.tally(applied, f64::MAX);
        assert_eq!(
            (stalled, failed),
            (0, 0),
            "node {i}: bad connections after the event applied"
        );
        assert!(
            ok >= 100,
            "node {i}: only {ok} connections after the event applied"
        );
    }

    c.revive(dead, Kill::Link, Duration::from_secs(20)).unwrap();
    let v = c.node(0).probe_tcp(c.vip_addr(0), 60).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert!(counts(&v).contains_key(&backend_id(dead)), "{v}");
}

/// The fault helpers do what they say, and undo it: SYNs dropped by nft in
/// the node (counted there; its own clients unaffected), the link down on
/// the bridge; IPv4 and IPv6 over the fabric.
#[test]
fn faults_come_and_go() {
    require_root();
    let c = Cluster::new(ClusterSpec::new("clu-fault", NODES)).unwrap();
    let (from, victim) = (c.node(0), 2);
    let v4 = format!("{}:7000", fabric::node_ip4(victim));
    let v6 = format!("[{}]:7000", fabric::node_ip6(victim));
    let reaches = |to: &str| from.reaches(to, 500).unwrap();
    assert!(reaches(&v4) && reaches(&v6));

    c.drop_syns(victim).unwrap();
    assert!(!reaches(&v4) && !reaches(&v6));
    assert!(c.syns_dropped(victim).unwrap() >= 2);
    assert!(
        c.node(victim).reaches(&v4, 500).unwrap(),
        "local clients still reach it"
    );
    c.allow_syns(victim).unwrap();
    assert!(reaches(&v4) && reaches(&v6));

    c.link_down(victim).unwrap();
    assert!(!reaches(&v4) && !reaches(&v6));
    c.link_up(victim).unwrap();
    wait::until("the link back up", Duration::from_secs(10), || {
        if reaches(&v4) && reaches(&v6) {
            Ok(())
        } else {
            Err("unreachable".into())
        }
    });
}

/// Dropped with a stream still running, a link down and SYNs dropped: no
/// namespace, cgroup, pin root, work dir or process of the cluster is left.
#[test]
fn nothing_is_left_after_drop() {
    require_root();
    let c = Cluster::new(ClusterSpec::new("clu-drop", 2)).unwrap();
    let stream = c
        .node(0)
        .stream(
            c.vip_addr(0),
            StreamSpec::lasting(Duration::from_secs(30), 20, 1000),
        )
        .unwrap();
    c.link_down(1).unwrap();
    c.drop_syns(0).unwrap();
    let footprint = c.footprint();
    // 3 sandboxes; 2 agents + 2 testsrvs + the fake Marathon + the stream.
    assert_eq!(footprint.netns.len(), 3, "{footprint:?}");
    assert!(footprint.procs.len() >= 6, "{footprint:?}");
    assert!(footprint.pin_roots.iter().filter(|p| p.exists()).count() == 2);
    assert!(!footprint.leftovers().is_empty());
    // The cluster ends the client still running in its cgroup; the handle reaps it.
    drop(c);
    drop(stream);
    assert_eq!(footprint.leftovers(), Vec::<String>::new());
}

/// The backend row of `addr` under the VIP `vip` in a node's `vips --json`.
fn backend_row(table: &serde_json::Value, vip: SocketAddr, addr: &str) -> serde_json::Value {
    let row = l4lb_tests::table::row(table, &vip.to_string(), "tcp");
    row["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["addr"] == addr))
        .cloned()
        .unwrap_or_else(|| panic!("{addr} not under {vip}: {table}"))
}

/// Issue 15's node death with NO Marathon event: every other node routes
/// around the dead node on its own within 1 s (no new connection started
/// after that fails or stalls), the down backend is probed by each node's
/// agent, never by a client connection, and when the node comes back the
/// agent's probe (no client risked) brings it back and connections return.
#[test]
fn node_death_without_an_event_is_routed_around_in_a_second_and_the_agents_probe_revives_it() {
    require_root();
    let c = Cluster::new(ClusterSpec::new("clu-noev", NODES)).unwrap();
    let dead = NODES - 1;
    let vip = c.vip_addr(0);
    let target = c.spec().vips[0].backend_on(dead);
    let mut spec = DeathSpec::new(dead, &[0, 1]);
    spec.event_after = None;
    spec.after = Duration::from_millis(3500);
    let run = c.node_death(&spec).unwrap();
    for (i, curve) in &run.curves {
        eprintln!("node {i}: link down at 0, no event\n{}", curve.render());
        let (_, _, failed) = curve.tally(0.0, 1000.0);
        assert!(failed > 0, "node {i}: the dead backend was never chosen");
        let (ok, stalled, failed) = curve.tally(1000.0, f64::MAX);
        assert_eq!(
            (stalled, failed),
            (0, 0),
            "node {i}: bad connections started more than 1 s after the death"
        );
        assert!(ok >= 150, "node {i}: only {ok} connections after 1 s");
        let t = c.node(*i).agent.vips_json().unwrap();
        let b = backend_row(&t, vip, &target);
        let h = &b["health"];
        assert!(
            matches!(h["state"].as_str(), Some("down" | "probe-due")),
            "node {i}: {b}"
        );
        assert_eq!(
            h["probes"], 0,
            "node {i}: a client connection was a probe: {b}"
        );
        // Its first probe went when the 2 s back-off ended (it may still
        // be waiting out its 1 s timeout).
        assert!(
            h["agent_probes"].as_u64().unwrap() >= 1,
            "node {i}: the agent did not probe: {b}"
        );
        assert_eq!(
            l4lb_tests::table::row(&t, &vip.to_string(), "tcp")["p2c_probes"],
            0
        );
    }

    // Back, with no client traffic and no event: each agent's probe sees it.
    c.link_up(dead).unwrap();
    for i in [0, 1] {
        let t = c.node(i).agent.wait_table(
            "the agent's probe reviving the node's backend",
            Duration::from_secs(40),
            |t| t.is_array() && backend_row(t, vip, &target)["health"]["state"] == "up",
        );
        let h = backend_row(&t, vip, &target)["health"].clone();
        assert!(h["agent_probes_ok"].as_u64().unwrap() >= 1, "node {i}: {h}");
        assert_eq!(h["probes"], 0, "node {i}: {h}");
        let v = c.node(i).probe_tcp(vip, 60).unwrap();
        assert_eq!(v["errors"], 0, "node {i}: {v}");
        assert!(counts(&v).contains_key(&backend_id(dead)), "node {i}: {v}");
    }
}
