//! The guard: no VIP may take an address the node depends on, whatever the
//! source says, and `run` never falls back to the demo table.
use std::time::Duration;

use l4lb_tests::{Agent, FakeMarathon, Sandbox, TaskSpec, agent_bin, redis_app, require_root};
use serde_json::json;

fn vips(table: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = table
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["vip"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn metric(sb: &Sandbox, name: &str) -> String {
    let (_, m) = sb.agent_http("/metrics");
    m.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn vips_on_node_and_upstream_addresses_are_refused_and_counted() {
    require_root();
    let mut sb = Sandbox::new("guard").unwrap();
    sb.add_addr("198.18.0.1/32").unwrap(); // an address of this "node"
    let yaml = "vips:\n\
        \x20 - vip: 198.18.0.1:22\n    backends: [127.0.0.2:22]\n\
        \x20 - vip: 198.18.0.53:53\n    protocol: udp\n    backends: [127.0.0.2:53]\n\
        \x20 - vip: 198.18.9.9:80\n    backends: [198.18.7.7:80]\n\
        \x20 - vip: 198.18.7.7:8080\n    backends: [127.0.0.2:80]\n\
        \x20 - vip: 11.0.0.1:80\n    backends: [127.0.0.2:80]\n";
    let agent = Agent::start_with_args(
        &mut sb,
        yaml,
        &[
            "--dns-listen",
            "127.0.0.1:5353",
            "--dns-upstream",
            "198.18.0.53:53",
        ],
    )
    .unwrap();
    let table = agent.wait_table("the allowed VIPs", Duration::from_secs(20), |t| {
        vips(t).len() == 2
    });
    assert_eq!(vips(&table), ["11.0.0.1:80", "198.18.9.9:80"], "{table}");
    let log = agent.log();
    for needle in [
        "VIP 198.18.0.1:22/tcp declared by vips[0] (vip 198.18.0.1:22) refused: 198.18.0.1 is an address of this node",
        "VIP 198.18.0.53:53/udp declared by vips[1]",
        "the DNS upstream 198.18.0.53:53",
        "VIP 198.18.7.7:8080/tcp declared by vips[3] (vip 198.18.7.7:8080) refused: 198.18.7.7 is a backend's address",
    ] {
        assert!(
            log.contains(needle),
            "missing {needle:?} in the log:\n{log}"
        );
    }
    assert_eq!(
        metric(&sb, "l4lb_refused_vips_total"),
        "l4lb_refused_vips_total 3"
    );
    assert_eq!(
        metric(&sb, "l4lb_refused_vips_current"),
        "l4lb_refused_vips_current 3"
    );

    // The same file again (SIGHUP): nothing new is refused, nothing logged twice.
    agent.sighup();
    agent.wait_log(
        "trigger=\"SIGHUP\"",
        "the SIGHUP apply",
        Duration::from_secs(10),
    );
    assert_eq!(
        metric(&sb, "l4lb_refused_vips_total"),
        "l4lb_refused_vips_total 3"
    );
}

/// An app whose VIP label names Marathon's own address: refused, naming the
/// app, while the other app's VIP is installed.
#[test]
fn an_app_vip_on_the_control_plane_is_refused_naming_the_app() {
    require_root();
    let mut sb = Sandbox::new("guard-mara").unwrap();
    let tasks = [TaskSpec::new("127.0.0.2", 7000)];
    let m = FakeMarathon::start(
        &mut sb,
        1,
        json!({"apps": [redis_app("/web", "/web:80", &tasks)]}),
    )
    .unwrap();
    let marathon = m.addrs()[0].to_string();
    m.add_app(redis_app("/evil", &marathon, &tasks)).unwrap();
    let agent = Agent::start_with_args(&mut sb, "", &["--marathon", &m.urls().join(",")]).unwrap();
    agent.wait_vips(1, Duration::from_secs(20)).unwrap();
    agent.wait_log(
        &format!("VIP {marathon}/tcp declared by app /evil refused"),
        "the refusal naming the app",
        Duration::from_secs(10),
    );
    let table = agent.vips_json().unwrap();
    assert_eq!(vips(&table).len(), 1, "{table}");
    assert!(!vips(&table).contains(&marathon), "{table}");
}

/// A VIP a previous run installed that now collides (here: the address
/// became the node's) is removed at adoption, before the new source is read:
/// with a source that never answers, the old code kept it forever.
#[test]
fn an_adopted_vip_that_collides_is_removed_before_the_source_is_read() {
    require_root();
    let mut sb = Sandbox::new("guard-adopt").unwrap();
    let yaml = "vips:\n  - vip: 198.18.0.7:80\n    backends: [127.0.0.2:80]\n  - vip: 11.0.0.1:80\n    backends: [127.0.0.2:80]\n";
    let mut first = Agent::start(&mut sb, yaml).unwrap();
    first.wait_vips(2, Duration::from_secs(20)).unwrap();
    first
        .kill_no_teardown(libc::SIGTERM, Duration::from_secs(10))
        .unwrap();

    sb.add_addr("198.18.0.7/32").unwrap();
    // A Marathon that refuses every connection: no read ever succeeds.
    let second =
        Agent::start_with_args(&mut sb, "", &["--marathon", "http://127.0.0.1:9"]).unwrap();
    let table = second.wait_table("the colliding VIP removed", Duration::from_secs(20), |t| {
        vips(t).len() == 1
    });
    assert_eq!(vips(&table), ["11.0.0.1:80"], "{table}");
    second.wait_log(
        "198.18.0.7 is an address of this node",
        "the adoption refusal",
        Duration::from_secs(5),
    );
}

#[test]
fn run_without_a_source_is_an_error_and_loads_nothing() {
    require_root();
    let sb = Sandbox::new("nosource").unwrap();
    let out = sb
        .in_netns(agent_bin())
        .args(["run", "--cgroup"])
        .arg(sb.cgroup())
        .arg("--pin-root")
        .arg(sb.pin_root())
        .env("L4LB_FORBID_ROOT_CGROUP", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "run with no source started");
    assert!(err.contains("no source: give --marathon"), "{err}");
    assert!(
        !sb.pin_root().exists(),
        "run with no source created {}",
        sb.pin_root().display()
    );

    let out = sb
        .in_netns(agent_bin())
        .args(["run", "--demo", "--config", "/dev/null"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{out:?}"
    );
}
