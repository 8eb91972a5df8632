//! `--locality node` on the simulated cluster (`l4lb_tests::cluster`): three
//! nodes, each with its own backend of one VIP. A node keeps ≥ 90 % of its
//! new connections on its own backend; when that backend stops answering the
//! node's clients (their SYNs dropped on `lo`, no Marathon event), the node
//! spills to the others within 1 s and nothing fails after; `--locality off`
//! spreads every node's connections over the three.
use l4lb_tests::{
    Cluster, ClusterSpec,
    cluster::{LocalSpec, backend_id},
    require_root,
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
        assert!(
            (0.15..0.55).contains(&share),
            "node {i}: local share {share:.3}, not about 1/3"
        );
    }
}
