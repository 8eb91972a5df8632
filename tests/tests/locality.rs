//! `--locality node` on the simulated cluster (`l4lb_tests::cluster`): three
//! nodes, each with its own backend of one VIP. A node keeps ≥ 90 % of its
//! new connections on its own backend; when that backend stops answering the
//! node's clients (their SYNs dropped on `lo`, no Marathon event), the node
//! spills to the others within 1 s and nothing fails after; `--locality off`
//! spreads every node's connections over the three.

use l4lb_tests::{
    Cluster, ClusterSpec,
    cluster::{LocalSpec, backend_id},
    require_root, run,
};
use serde_json::Value;

const NODES: usize = 3;

/// The VIP's row in node `i`'s `vips --json`.
fn vip_row(c: &Cluster, i: usize) -> Value {
    let rows = c.node(i).agent.vips_json().unwrap();
    let addr = c.vip_addr(0).to_string();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["vip"] == addr.as_str() && r["proto"] == "tcp")
        .cloned()
        .unwrap_or_else(|| panic!("node {i}: no row for {addr}: {rows}"))
}

/// `explain`'s words on locality for VIP 0 from node `i`.
fn explain_locality(c: &Cluster, i: usize) -> String {
    let sb = &c.node(i).sb;
    let vip = c.vip_addr(0).to_string();
    let mut cmd = sb.in_netns(l4lb_tests::agent_bin());
    cmd.args([
        "explain",
        "--vip",
        &vip,
        "--src",
        "198.18.0.9:40000",
        "--json",
        "--pin-root",
    ])
    .arg(sb.pin_root());
    let e: Value = serde_json::from_str(&run(&mut cmd).unwrap()).unwrap();
    e["socket"]["locality"]
        .as_str()
        .unwrap_or_else(|| panic!("{e}"))
        .to_string()
}

#[test]
fn a_node_keeps_its_connections_local_and_spills_when_its_backend_stops() {
    require_root();
    let c = Cluster::new(ClusterSpec::new("loc-node", NODES).agent_args(&["--locality", "node"]))
        .unwrap();
    for i in 0..NODES {
        let row = vip_row(&c, i);
        assert_eq!(row["locality"]["preferring"], true, "node {i}: {row}");
        for b in row["backends"].as_array().unwrap() {
            let own = b["addr"] == c.spec().vips[0].backend_on(i).as_str();
            let want = if own { "node" } else { "remote" };
            assert_eq!(b["locality"], want, "node {i}: {b}");
        }
    }
    let own = c.spec().vips[0].backend_on(1);
    let why = explain_locality(&c, 1);
    assert!(why.contains(&format!("{own} (node local")), "{why}");
    let victim = 0;
    let run = c.local_run(&LocalSpec::new(Some(victim))).unwrap();
    assert!(c.local_syns_dropped(victim).unwrap() > 0);
    for i in 0..NODES {
        let (local, total) = run.local_share(i, f64::MIN, 0.0);
        let share = local as f64 / total.max(1) as f64;
        eprintln!(
            "node {i}: {local} of {total} connections local before the kill ({:.1} %)",
            share * 100.0
        );
        assert!(total >= 100, "node {i}: only {total} connections");
        assert!(share >= 0.9, "node {i}: local share {share:.3} < 0.9");
        assert_eq!(
            run.curve(i).tally(f64::MIN, 0.0).2,
            0,
            "node {i}: failures before the kill"
        );
    }
    // The other nodes keep theirs local.
    for i in 1..NODES {
        let (local, total) = run.local_share(i, 0.0, f64::MAX);
        assert!(
            local as f64 >= 0.9 * total as f64,
            "node {i} after: {local}/{total}"
        );
    }
    // The victim spills within 1 s, and every connection after that is fine.
    let curve = run.curve(victim);
    eprintln!(
        "node {victim}: local backend dropped at 0\n{}",
        curve.render()
    );
    let last = run
        .last_local_ms(victim)
        .expect("the victim chose its backend after the kill");
    eprintln!("node {victim}: last connect to its own backend {last:.0} ms after the kill");
    assert!(
        last <= 1000.0,
        "node {victim} still chose its dropped backend {last:.0} ms after"
    );
    let (ok, stalled, failed) = curve.tally(last + 1.0, f64::MAX);
    assert_eq!((stalled, failed), (0, 0), "after the spill");
    assert!(ok >= 100, "only {ok} connections after the spill");
    let after: Vec<&str> = curve
        .between(last + 1.0, f64::MAX)
        .filter_map(|c| c.backend.as_deref())
        .collect();
    assert!(!after.contains(&backend_id(victim).as_str()));
    let row = vip_row(&c, victim);
    let l = &row["locality"];
    assert!(l["local_picks"].as_u64().unwrap() > 100, "{row}");
    assert!(l["spills_down"].as_u64().unwrap() > 100, "{row}");
    let own = row["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["locality"] == "node")
        .unwrap();
    assert_ne!(own["health"]["state"], "up", "{own}");
    let why = explain_locality(&c, victim);
    assert!(
        why.contains("down or suspect") || why.contains("due a probe"),
        "{why}"
    );

    // Back: its own backend answers again and (after its probe) takes over.
    c.allow_local_syns(victim).unwrap();
}

#[test]
fn locality_off_spreads_every_node_s_connections() {
    require_root();
    let c = Cluster::new(ClusterSpec::new("loc-off", NODES).agent_args(&["--locality", "off"]))
        .unwrap();
    let row = vip_row(&c, 0);
    assert!(row["locality"].is_null(), "{row}");
    assert!(row["backends"][0]["locality"].is_null(), "{row}");
    let mut spec = LocalSpec::new(None);
    spec.after = std::time::Duration::ZERO;
    let run = c.local_run(&spec).unwrap();
    for i in 0..NODES {
        let (local, total) = run.local_share(i, f64::MIN, f64::MAX);
        let share = local as f64 / total.max(1) as f64;
        eprintln!(
            "node {i} (--locality off): {local} of {total} local ({:.1} %)",
            share * 100.0
        );
        assert!(total >= 100, "node {i}: only {total}");
        // About 1/3, not exactly: p2c weighs each pick by the backends'
        // handshakes in flight and RTT, so a slower-answering local backend
        // gets less (14 % seen once under load). What `off` must show: no
        // node keeps its own backend (`node` gives >= 90 %) or avoids it.
        assert!(
            (0.08..0.6).contains(&share),
            "node {i}: local share {share:.3}, not about 1/3"
        );
    }
}

/// `--locality zone`: nodes 0 and 1 in zone `a`, node 2 in `b` (Marathon's
/// `tasks[].zone`, each agent's `--zone`). Each node keeps its own backend;
/// when node 0's stops answering it, node 0 spills to node 1 (same zone),
/// not to node 2.
#[test]
fn zone_locality_spills_within_the_zone_first() {
    require_root();
    let spec = ClusterSpec::new("loc-zone", NODES)
        .agent_args(&["--locality", "zone"])
        .zones(&["a", "a", "b"]);
    let c = Cluster::new(spec).unwrap();
    let classes = |i: usize| -> Vec<String> {
        let row = vip_row(&c, i);
        (0..NODES)
            .map(|j| {
                let addr = c.spec().vips[0].backend_on(j);
                let b = row["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["addr"] == addr.as_str());
                b.unwrap_or_else(|| panic!("{row}"))["locality"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(classes(0), ["node", "zone", "remote"]);
    assert_eq!(classes(1), ["zone", "node", "remote"]);
    assert_eq!(classes(2), ["remote", "remote", "node"]);
    let victim = 0;
    let run = c.local_run(&LocalSpec::new(Some(victim))).unwrap();
    for i in 0..NODES {
        let (local, total) = run.local_share(i, f64::MIN, 0.0);
        eprintln!("node {i} (zone): {local} of {total} on its own backend before the kill");
        assert!(
            local as f64 >= 0.9 * total as f64 && total >= 100,
            "node {i}: {local}/{total}"
        );
    }
    let last = run
        .last_local_ms(victim)
        .expect("the victim chose its backend after the kill");
    let curve = run.curve(victim);
    let after: Vec<&str> = curve
        .between(last + 1.0, f64::MAX)
        .filter_map(|c| c.backend.as_deref())
        .collect();
    let same_zone = after.iter().filter(|b| **b == backend_id(1)).count();
    eprintln!(
        "node {victim}: spilled {last:.0} ms after the kill; then {same_zone} of {} to node 1 (same zone)",
        after.len()
    );
    assert!(last <= 1000.0, "{last}");
    assert!(after.len() >= 100, "{}", after.len());
    assert!(
        same_zone as f64 >= 0.9 * after.len() as f64,
        "{same_zone} of {}",
        after.len()
    );
}
