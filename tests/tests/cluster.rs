//! The simulated cluster (`l4lb_tests::cluster`): three nodes, each with its
//! own agent following one fake Marathon over a bridge. Every node resolves
//! and reaches every VIP; a node that dies is routed around once Marathon
//! says so (the whole curve is printed); the faults come and go; nothing of
//! a cluster is left after drop.
use std::{collections::BTreeSet, time::Duration};

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
            let v = node.probe_tcp(addr, 90).unwrap();
            assert_eq!(v["errors"], 0, "node {} → {}: {v}", node.index, vip.label());
            let seen: BTreeSet<String> = counts(&v).into_keys().collect();
            assert_eq!(seen, all, "node {} → {}: {v}", node.index, vip.label());
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
