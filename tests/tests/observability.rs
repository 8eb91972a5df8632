//! Prometheus metrics and health endpoints, scraped with Debian's curl from
//! inside the sandbox netns (the agent binds 127.0.0.1 there by default).
use std::time::Duration;

use l4lb_tests::{Agent, Sandbox, require_root};

fn get(sb: &Sandbox, path: &str) -> (String, String) {
    sb.agent_http(path)
}

#[test]
fn metrics_count_connections_and_report_map_usage() {
    require_root();
    let mut sb = Sandbox::new("metrics").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    let agent = Agent::start(&mut sb, "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n  - vip: 11.0.0.2:7000\n    backends: []\n").unwrap();
    agent.wait_vips(2, Duration::from_secs(20)).unwrap();
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "20"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.2:7000", "-n", "3"])
        .unwrap();
    assert_eq!(v["errors"], 3, "{v}");

    let (code, body) = get(&sb, "/healthz");
    assert_eq!(code, "200", "{body}");
    let (code, body) = get(&sb, "/readyz");
    assert_eq!(code, "200", "{body}");
    let (code, m) = get(&sb, "/metrics");
    assert_eq!(code, "200", "{m}");
    for line in [
        r#"l4lb_vip_connections_total{vip="11.0.0.1:7000",proto="tcp"} 20"#,
        r#"l4lb_backend_connections_total{vip="11.0.0.1:7000",proto="tcp",backend="127.0.0.2:7000"} 20"#,
        r#"l4lb_vip_refused_total{vip="11.0.0.2:7000",proto="tcp"} 3"#,
        r#"l4lb_map_entries{map="L4LB_SERVICES"} 2"#,
        r#"l4lb_map_capacity{map="L4LB_SERVICES"} 65536"#,
        r#"l4lb_table_applies_total{trigger="initial"} 1"#,
        "l4lb_sync_ok 1",
        "l4lb_metrics_omitted_backends 0",
    ] {
        assert!(
            m.lines()
                .any(|l| l == line || l.starts_with(&format!("{line} "))),
            "missing {line:?} in:\n{m}"
        );
    }
}

/// Over `--metrics-max-backends` VIP members, a scrape has the per-VIP
/// series only and says how many backends it left out; the CLI still lists
/// every backend.
#[test]
fn per_backend_series_stop_at_the_metrics_backend_limit() {
    require_root();
    let mut sb = Sandbox::new("metricsmax").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000", "127.0.0.3:7000"], &[])
        .unwrap();
    let config = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, 127.0.0.3:7000]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.2:7000]\n";
    let agent = Agent::start_with_args(&mut sb, config, &["--metrics-max-backends", "2"]).unwrap();
    agent.wait_vips(2, Duration::from_secs(20)).unwrap();
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "4"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let (code, m) = get(&sb, "/metrics");
    assert_eq!(code, "200", "{m}");
    assert!(
        m.lines()
            .any(|l| l == r#"l4lb_vip_connections_total{vip="11.0.0.1:7000",proto="tcp"} 4"#),
        "per-VIP series missing:\n{m}"
    );
    assert!(
        m.lines().any(|l| l == "l4lb_metrics_omitted_backends 3"),
        "{m}"
    );
    // The node's sum over backends stays.
    assert!(
        m.lines()
            .any(|l| l == r#"l4lb_health_probes_total{result="sent"} 0"#),
        "{m}"
    );
    let per_backend: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("l4lb_backend_"))
        .collect();
    assert!(per_backend.is_empty(), "{per_backend:?}");
    let out = sb
        .in_netns(l4lb_tests::agent_bin())
        .args(["backends", "--json", "--pin-root"])
        .arg(sb.pin_root())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("127.0.0.3:7000"), "{listed}");
}

#[test]
fn backends_and_stats_commands_read_the_pinned_maps() {
    require_root();
    let mut sb = Sandbox::new("cli").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    let agent = Agent::start(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, {addr: 127.0.0.3:7000, weight: 0}]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.2:7000]\n",
    )
    .unwrap();
    agent.wait_vips(2, Duration::from_secs(20)).unwrap();
    sb.probe(&["tcp", "--to", "11.0.0.2:7000", "-n", "4"])
        .unwrap();
    let run = |sub: &str| -> serde_json::Value {
        let out = sb
            .in_netns(l4lb_tests::agent_bin())
            .args([sub, "--json", "--pin-root"])
            .arg(sb.pin_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let backends = run("backends");
    let a = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == "127.0.0.2:7000")
        .unwrap();
    assert_eq!(a["vips"].as_array().unwrap().len(), 2, "{backends}");
    assert_eq!(a["connects"], 4, "{backends}");
    let idle = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == "127.0.0.3:7000")
        .unwrap();
    assert_eq!(idle["vips"][0]["weight"], 0, "{backends}");
    // Per (VIP, backend): the shared backend's 4 connects belong to the VIP
    // they went through, not to both.
    let vips = run("vips");
    let pair = |vip: &str| {
        let row = vips
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["vip"] == vip)
            .unwrap();
        let b = row["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["addr"] == "127.0.0.2:7000")
            .unwrap()
            .clone();
        (b["connects"].as_u64(), b["flows"].as_u64())
    };
    assert_eq!(pair("11.0.0.1:7000"), (Some(0), Some(0)), "{vips}");
    assert_eq!(pair("11.0.0.2:7000"), (Some(4), Some(0)), "{vips}");
    let (_, m) = get(&sb, "/metrics");
    for line in [
        r#"l4lb_backend_connections_total{vip="11.0.0.1:7000",proto="tcp",backend="127.0.0.2:7000"} 0"#,
        r#"l4lb_backend_connections_total{vip="11.0.0.2:7000",proto="tcp",backend="127.0.0.2:7000"} 4"#,
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in:\n{m}");
    }
    let stats = run("stats");
    assert_eq!(
        (
            stats["vips"].as_u64(),
            stats["backends"].as_u64(),
            stats["connects"].as_u64()
        ),
        (Some(2), Some(2), Some(4)),
        "{stats}"
    );
    let services = stats["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["map"] == "L4LB_SERVICES")
        .unwrap();
    assert_eq!(services["entries"], 2, "{stats}");
}

/// Every metric the shipped Grafana dashboard queries is one the agent
/// serves (under its exporter name: counters end in `_total`, histograms in
/// `_bucket`), so a renamed metric breaks this test, not a dashboard.
#[test]
fn grafana_dashboard_queries_only_served_metrics() {
    require_root();
    let mut sb = Sandbox::new("grafana").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    let agent = Agent::start_with_args(
        &mut sb,
        "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n",
        &["--dns-listen", "127.0.0.1:5353"],
    )
    .unwrap();
    agent.wait_vips(1, Duration::from_secs(20)).unwrap();
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "2"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    // Any answer counts a query (this one is NXDOMAIN: no such app).
    sb.dig_status("web.marathon.l4lb.thisdcos.directory", "A");
    let (code, m) = get(&sb, "/metrics");
    assert_eq!(code, "200", "{m}");
    let families: std::collections::BTreeSet<&str> = m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/l4lb.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queried.extend(metric_names(expr));
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for name in &queried {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "the dashboard queries {name}, which /metrics does not serve (families: {families:?})"
        );
    }
}

/// `l4lb_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("l4lb_"))
        .map(str::to_owned)
        .collect()
}
