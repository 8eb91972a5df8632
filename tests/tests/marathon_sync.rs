//! The agent following a (test) Marathon: named VIP `/redis:6379` over three
//! real redis-server backends, through scale-up, kill, health flips, outages,
//! garbage and leader changes. Everything runs inside the sandbox netns.
use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{
    Agent, FakeMarathon, Fault, Sandbox, TaskSpec, redis_app, require_root, table::backends,
};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(10);

fn start_redis(sb: &mut Sandbox, ips: &[&str]) {
    for ip in ips {
        sb.spawn_redis(ip, 6379).unwrap();
    }
}

fn redis(sb: &Sandbox, host: &str, args: &[&str]) -> String {
    sb.redis_cli(host, 6379, args)
}

/// `n` sessions through the VIP; which redis-server (by bind address) answered each.
fn spread(sb: &Sandbox, vip: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let out = redis(sb, vip, &["CONFIG", "GET", "bind"]);
        let bind = out.lines().nth(1).unwrap_or("FAILED").to_string();
        *seen.entry(bind).or_default() += 1;
    }
    seen
}

/// backend → weight of the only VIP in the table.
fn table(agent: &Agent) -> (String, BTreeMap<String, u64>) {
    let v = agent.vips_json().unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let vip = rows[0]["vip"].as_str().unwrap().to_string();
    (vip, backends(&rows[0]).into_iter().collect())
}

fn wait_for(agent: &Agent, what: &str, want: &[(&str, u64)]) -> Duration {
    wait_within(agent, what, want, BOUND)
}

fn wait_within(agent: &Agent, what: &str, want: &[(&str, u64)], bound: Duration) -> Duration {
    let want: BTreeMap<String, u64> = want.iter().map(|(a, w)| (a.to_string(), *w)).collect();
    let start = Instant::now();
    loop {
        let (_, got) = table(agent);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "{what}: table {got:?} never became {want:?}\nlog:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn healthy(host: &str) -> TaskSpec {
    TaskSpec::new(host, 6379).alive(Some(true))
}

#[test]
fn named_vip_follows_marathon_through_changes_and_outages() {
    require_root();
    let mut sb = Sandbox::new("marathon").unwrap();
    start_redis(&mut sb, &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let m = FakeMarathon::start(&mut sb, 2, json!({"apps": [redis_app("/redis", "/redis:6379", &[healthy("127.0.0.2"), healthy("127.0.0.3")])]})).unwrap();
    let urls = m.urls().join(",");
    let agent = Agent::start_with_args(
        &mut sb,
        "",
        &["--marathon", &urls, "--marathon-resync-secs", "1"],
    )
    .unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    let (vip, _) = table(&agent);
    let vip_ip = vip.rsplit_once(':').unwrap().0.to_string();
    assert!(
        vip_ip.starts_with("11."),
        "named VIP outside 11.0.0.0/8: {vip}"
    );
    wait_for(
        &agent,
        "initial",
        &[("127.0.0.2:6379", 1), ("127.0.0.3:6379", 1)],
    );
    assert_eq!(redis(&sb, &vip_ip, &["PING"]).trim(), "PONG");

    // Scale up: the new task takes connections.
    let t3 = m.scale("/redis", &healthy("127.0.0.4")).unwrap();
    let took = wait_for(
        &agent,
        "scale-up",
        &[
            ("127.0.0.2:6379", 1),
            ("127.0.0.3:6379", 1),
            ("127.0.0.4:6379", 1),
        ],
    );
    eprintln!("scale-up reflected in {took:?}");
    let s = spread(&sb, &vip_ip, 45);
    assert!(
        s.get("127.0.0.4").copied().unwrap_or(0) > 0 && !s.contains_key("FAILED"),
        "{s:?}"
    );

    // Health flip: an unhealthy task keeps its member entry with weight 0 (no new connections).
    let t3_id = t3["id"].as_str().unwrap().to_string();
    m.set_health(&t3_id, Some(false)).unwrap();
    wait_for(
        &agent,
        "unhealthy",
        &[
            ("127.0.0.2:6379", 1),
            ("127.0.0.3:6379", 1),
            ("127.0.0.4:6379", 0),
        ],
    );
    let s = spread(&sb, &vip_ip, 30);
    assert!(
        !s.contains_key("127.0.0.4") && !s.contains_key("FAILED"),
        "{s:?}"
    );
    m.set_health(&t3_id, Some(true)).unwrap();
    wait_for(
        &agent,
        "healthy again",
        &[
            ("127.0.0.2:6379", 1),
            ("127.0.0.3:6379", 1),
            ("127.0.0.4:6379", 1),
        ],
    );
    // Those changes named their app: read as that app alone, and counted.
    let (code, metrics) = sb.agent_http("/metrics");
    assert_eq!(code, "200", "{metrics}");
    let value = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        value(r#"l4lb_marathon_reads_total{scope="app"}"#) >= 3,
        "{metrics}"
    );
    assert!(
        value(r#"l4lb_marathon_reads_total{scope="all"}"#) >= 1,
        "{metrics}"
    );
    assert!(
        value(r#"l4lb_marathon_events_total{kind="all"}"#) >= 3,
        "{metrics}"
    );

    // Kill: TASK_KILLING → weight 0, then gone.
    let apps = m.apps().unwrap();
    let first = apps["apps"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["host"] == "127.0.0.2")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.kill(&first).unwrap();
    wait_for(
        &agent,
        "killing",
        &[
            ("127.0.0.2:6379", 0),
            ("127.0.0.3:6379", 1),
            ("127.0.0.4:6379", 1),
        ],
    );
    m.kill_now(&first).unwrap();
    wait_for(
        &agent,
        "killed",
        &[("127.0.0.3:6379", 1), ("127.0.0.4:6379", 1)],
    );
    let before = table(&agent);

    // Failures are never mistaken for truth: outage, 500, garbage, truncation.
    for fault in [
        Fault::Down,
        Fault::Status { code: 500 },
        Fault::Garbage,
        Fault::Truncate,
    ] {
        let what = format!("{fault:?}");
        m.fault(0, fault.clone()).unwrap();
        m.fault(1, fault).unwrap();
        // Several resync periods pass while Marathon is broken.
        thread::sleep(Duration::from_millis(2500));
        assert_eq!(
            table(&agent),
            before,
            "{what} changed the table\nlog:\n{}",
            agent.log()
        );
        let s = spread(&sb, &vip_ip, 10);
        assert!(!s.contains_key("FAILED"), "{what}: {s:?}");
        m.clear_faults().unwrap();
    }

    // Leader change: the agent follows the new leader's event stream.
    m.set_leader(Some(1)).unwrap();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        table(&agent),
        before,
        "a leader change alone must not change the table"
    );
    m.scale("/redis", &healthy("127.0.0.2")).unwrap();
    // After the outages above the source is in its reconnect backoff (capped at
    // 30 s, jittered), so this change may wait for the next attempt.
    let took = wait_within(
        &agent,
        "scale after leader change",
        &[
            ("127.0.0.2:6379", 1),
            ("127.0.0.3:6379", 1),
            ("127.0.0.4:6379", 1),
        ],
        Duration::from_secs(75),
    );
    eprintln!("change after leader switch reflected in {took:?}");
    // The agent reports event → maps latency.
    assert!(agent.log().contains("event_to_maps_us"), "{}", agent.log());
    let _: Value = agent.vips_json().unwrap();
}
